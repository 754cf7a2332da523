"""Routines as declared: the spec's checks (with file:line) and the firing times it implies."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgecrew.errors import SpecError
from edgecrew.ops.routines import firing_key, next_firing, previous_firing
from edgecrew.specs.project import load_project
from edgecrew.specs.routines import RoutineDoc
from tests.conftest import write


def test_routines_are_read_from_edgecrew_yaml(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """
        routines:
          morning:
            team: machine-check
            task: How is this machine doing?
            cron: "0 8 * * 1-5"
            timezone: Europe/Berlin
            enabled: false
        """,
    )
    doc = load_project(project_dir).routines["morning"]
    assert (doc.team, doc.cron, doc.timezone, doc.enabled, doc.catch_up) == (
        "machine-check",
        "0 8 * * 1-5",
        "Europe/Berlin",
        False,
        "once",
    )
    assert doc.seconds_cron == "0 0 8 * * 1-5"  # DBOS reads cron with seconds first


def test_every_mistake_in_a_routine_is_named_with_its_line(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """
        routines:
          nightly:
            team: machine-check
            task: check
            cron: "0 25 * * *"
            timezone: Mars/Olympus
            catch_up: always
          Bad Name:
            team: x
            task: y
            cron: "* * * * *"
          quiet:
            team: x
            cron: "* * * * *"
            tsk: typo
          never:
            team: x
            task: y
            cron: "0 8 31 2 *"
        """,
    )
    with pytest.raises(SpecError) as caught:
        load_project(project_dir)
    text = str(caught.value)
    config = project_dir / "edgecrew.yaml"
    assert f"{config}:6: routines.nightly.cron: '0 25 * * *': its hour field '25' is not valid; write 0-23" in text
    assert f"{config}:7: routines.nightly.timezone" in text and "Mars/Olympus" in text
    assert f"{config}:8: routines.nightly.catch_up" in text
    assert "routines.Bad Name" in text
    assert "routines.quiet.task" in text and "routines.quiet.tsk" in text
    assert f"{config}:20: routines.never.cron" in text and "'0 8 31 2 *' never fires" in text  # 31 February


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("61 8 * * *", "its minute field '61' is not valid; write 0-59"),
        ("0 8 32 * *", "its day of the month field '32' is not valid; write 1-31"),
        ("0 8 * 13 *", "its month field '13' is not valid; write 1-12 or jan-dec"),
        ("0 8 * * 8", "its weekday field '8' is not valid; write 0-6 (0 is Sunday) or sun-sat"),
        ("0 8 * * mon-fry", "its weekday field 'mon-fry' is not valid"),
        ("75 0 8 * * *", "its second field '75' is not valid; write 0-59"),
        ("0 8 * *", "is not a cron expression; write five fields"),
    ],
)
def test_a_wrong_cron_field_is_named_with_what_it_may_be(cron: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        RoutineDoc(team="t", task="x", cron=cron)


def test_next_and_previous_firings_follow_the_time_zone() -> None:
    doc = RoutineDoc(team="t", task="x", cron="0 8 * * *", timezone="Europe/Berlin")
    now = datetime(2026, 12, 6, 6, 30, tzinfo=UTC)  # 07:30 in Berlin (UTC+1 in winter)
    assert next_firing(doc, now) == datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    assert previous_firing(doc, now) == datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 5, 30, tzinfo=UTC)  # 07:30 in Berlin (UTC+2)
    assert next_firing(doc, summer) == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def test_a_six_field_cron_counts_seconds() -> None:
    doc = RoutineDoc(team="t", task="x", cron="*/10 * * * * *")
    assert doc.seconds_cron == "*/10 * * * * *"
    assert next_firing(doc, datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)


def test_a_firing_has_one_key_whatever_zone_names_its_time() -> None:
    berlin = datetime.fromisoformat("2026-12-06T08:00:00+01:00")
    assert firing_key("morning", berlin) == firing_key("morning", datetime(2026, 12, 6, 7, 0, tzinfo=UTC))


def test_validate_names_a_routine_whose_team_does_not_exist(project_dir: Path) -> None:
    from typer.testing import CliRunner

    from edgecrew.cli import app

    write(
        project_dir / "edgecrew.yaml",
        """
        routines:
          nightly:
            team: nosuch
            task: check
            cron: "0 2 * * *"
        """,
    )
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 2
    assert f"{project_dir / 'edgecrew.yaml'}:4: routines.nightly.team: no team 'nosuch'" in result.output
    assert "machine-check" in result.output  # the known teams are listed


def test_a_routine_of_a_team_that_needs_a_project_and_names_none_is_listed_invalid(project_dir: Path) -> None:
    """Before: listed as if healthy ("fires once `edgecrew serve` is up") while each firing's run failed at
    its first step; now invalid with the reason, as a routine whose project is missing is."""
    from typer.testing import CliRunner

    from edgecrew.bootstrap import bootstrap
    from edgecrew.cli import app
    from edgecrew.engine import durable
    from edgecrew.ops.routines import RoutineService
    from edgecrew.projects import ProjectService

    write(
        project_dir / "edgecrew.yaml",
        """
        models:
          fake: {backend: scripted, replies: ["done"]}
        routines:
          homeless: {team: needy, task: x, cron: "0 2 * * *"}
          housed: {team: needy, task: x, cron: "0 3 * * *", project: main}
          seeds: {team: crew, task: Morning alignment, cron: "30 7 * * 1-5"}
        """,
    )
    write(
        project_dir / "teams" / "needy.yaml",
        """
        name: needy
        needs_project: true
        agents:
          solo: {model: fake, system: x}
        graph: {start: solo, edges: [{from: solo, to: end}]}
        """,
    )
    try:
        rt = bootstrap()
        ProjectService.of(rt).create("main")
        routines = RoutineService(rt)
        for name, team in (("homeless", "needy"), ("seeds", "crew")):  # the built-in crew says it needs one
            state = routines.state(name)
            assert state.status == "invalid" and state.next_firing is None, state
            assert state.problem is not None and f"team '{team}' needs a project (needs_project: true)" in state.problem
            assert "add `project: NAME`" in state.problem and "skipped until then" in state.problem
        housed = routines.state("housed")
        assert housed.status == "not scheduled" and housed.problem is None, housed
        listed = CliRunner().invoke(app, ["routines", "list"])
        assert listed.exit_code == 0, listed.output
        words = " ".join(listed.output.split())
        assert "homeless: team 'needy' needs a project (needs_project: true) and the routine names none" in words
        assert "housed: team" not in words
    finally:
        durable.shutdown()
