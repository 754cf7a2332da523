"""Routines on the real durable engine: schedules synced from edgecrew.yaml, pause and resume, a run
now, a missed firing caught up once, and one run per firing with three servers up."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbos import DBOS

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService
from edgecrew.ops import Ops
from edgecrew.ops.routines import previous_firing
from tests.api.live import ServerProcess
from tests.conftest import write

PROJECT = """
models:
  fake:
    backend: scripted
    replies: ["the answer is 42"]
routines:
  daily:
    team: echo
    task: say the answer
    cron: "0 3 * * *"
  off:
    team: echo
    task: stay quiet
    cron: "0 4 * * *"
    enabled: false
  broken:
    team: nosuchteam
    task: x
    cron: "0 5 * * *"
"""
ECHO = """
name: echo
agents:
  solo: {model: fake, system: answer briefly}
graph: {start: solo, edges: [{from: solo, to: end}]}
"""


def _project(project: Path, text: str = PROJECT) -> None:
    write(project / "edgecrew.yaml", text)
    write(project / "teams" / "echo.yaml", ECHO)


@pytest.fixture
async def rt(project_dir: Path) -> AsyncIterator[Runtime]:
    _project(project_dir)
    runtime = bootstrap()
    ops = Ops.of(runtime)
    durable.launch(runtime, queues=ops.queues())
    await ops.routines.start()
    yield runtime
    durable.shutdown()


async def test_routines_become_schedules_with_their_declared_state(rt: Runtime) -> None:
    routines = Ops.of(rt).routines
    states = {s.name: s for s in routines.states()}
    assert states["daily"].status == "active" and states["daily"].next_firing is not None
    assert states["off"].status == "paused" and states["off"].next_firing is None
    assert states["broken"].status == "invalid" and "no team 'nosuchteam'" in (states["broken"].problem or "")
    assert "skipped until it exists" in (states["broken"].problem or "") and states["broken"].next_firing is None
    outcome = await asyncio.to_thread(routines.sync)  # a second server starting: nothing to change
    assert outcome["daily"] == outcome["off"] == "unchanged"
    assert outcome["broken"].startswith("unchanged (invalid: no team 'nosuchteam'")  # scheduled, firings skipped


async def test_a_pause_outlives_a_restart_until_the_yaml_changes_the_declared_state(rt: Runtime) -> None:
    routines = Ops.of(rt).routines
    assert routines.pause("daily").status == "paused"
    await asyncio.to_thread(routines.sync)  # a server starting again
    assert routines.state("daily").status == "paused"
    assert routines.resume("off").status == "active"
    await asyncio.to_thread(routines.sync)
    assert routines.state("off").status == "active"
    # The YAML now declares `daily` off and `off` on: declared changes win.
    _project(
        rt.project.dir,
        PROJECT.replace("    enabled: false\n", "").replace(
            'cron: "0 3 * * *"', 'cron: "0 3 * * *"\n    enabled: false'
        ),
    )
    fresh = bootstrap(rt.settings)
    outcome = await asyncio.to_thread(Ops.of(fresh).routines.sync)
    assert outcome["daily"] == "updated" and outcome["off"] == "updated"
    assert Ops.of(fresh).routines.state("daily").status == "paused"
    assert Ops.of(fresh).routines.state("off").status == "active"


async def test_a_routine_changed_in_the_yaml_says_the_servers_fire_the_old_schedule_until_restarted(
    rt: Runtime,
) -> None:
    _project(rt.project.dir, PROJECT.replace('cron: "0 3 * * *"', 'cron: "0 9 * * 6"'))
    fresh = Ops.of(bootstrap(rt.settings)).routines  # a CLI reading the edited YAML; no server restarted
    now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # a Monday, 01:00 UTC
    state = fresh.state("daily", now)
    assert state.status == "active" and state.doc.cron == "0 9 * * 6"
    assert state.problem is not None and "edgecrew.yaml changed" in state.problem and "0 0 3 * * *" in state.problem
    assert state.next_firing == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # the schedule in force, not Saturday's
    assert fresh.state("off", now).problem is None  # unchanged
    await asyncio.to_thread(fresh.sync)  # a server starting applies it
    state = fresh.state("daily", now)
    assert state.problem is None and state.next_firing == datetime(2026, 12, 12, 9, 0, tzinfo=UTC)


async def test_trigger_runs_the_routine_now_and_records_its_trigger(rt: Runtime) -> None:
    routines = Ops.of(rt).routines
    started = await routines.trigger("daily")
    done = await RunService(rt).finish(started)
    assert done.ok and done.run.task == "say the answer"
    assert done.run.trigger is not None and done.run.trigger["routine"] == "daily" and done.run.trigger["manual"]
    assert [r.id for r in routines.runs("daily")] == [done.run.id]
    state = routines.state("daily")
    assert state.last_run is not None and state.last_run.id == done.run.id and state.last_firing is not None


async def test_unknown_routines_are_named_with_the_known_ones(rt: Runtime) -> None:
    from edgecrew.errors import NotFoundError

    with pytest.raises(NotFoundError, match=r"no routine 'nope' \(known: broken, daily, off\)"):
        Ops.of(rt).routines.pause("nope")


async def test_a_firing_missed_while_no_server_was_up_runs_once(rt: Runtime) -> None:
    from dbos._dbos import _get_dbos_instance

    routines = Ops.of(rt).routines
    name = routines.schedule_name("daily")
    now = datetime.now(UTC)
    missed = previous_firing(rt.project.routines["daily"], now)
    # The last firing any process saw was two days before the one missed.
    _get_dbos_instance()._sys_db.update_last_fired_at(name, (missed - timedelta(days=2)).isoformat())
    await asyncio.to_thread(routines.sync, now)
    await asyncio.to_thread(routines.sync, now)  # a second server starting: the same firing, so no second run
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = routines.runs("daily")
        if runs and runs[0].status.terminal:
            break
        await asyncio.sleep(0.2)
    runs = routines.runs("daily")
    assert len(runs) == 1, runs
    assert runs[0].trigger == {"kind": "routine", "routine": "daily", "firing": missed.astimezone(UTC).isoformat()}
    assert runs[0].status.value == "succeeded"


async def test_catch_up_skip_leaves_a_missed_firing_alone(rt: Runtime) -> None:
    from dbos._dbos import _get_dbos_instance

    _project(rt.project.dir, PROJECT.replace('cron: "0 3 * * *"', 'cron: "0 3 * * *"\n    catch_up: skip'))
    fresh = bootstrap(rt.settings)
    routines = Ops.of(fresh).routines
    await asyncio.to_thread(routines.sync)
    now = datetime.now(UTC)
    missed = previous_firing(fresh.project.routines["daily"], now)
    _get_dbos_instance()._sys_db.update_last_fired_at(
        routines.schedule_name("daily"), (missed - timedelta(days=2)).isoformat()
    )
    await asyncio.to_thread(routines.sync, now)
    firings = await DBOS.list_workflows_async(name="edgecrew.routine_firing")
    assert firings == [] and routines.runs("daily") == []


def test_each_firing_runs_once_with_three_servers_up(project_dir: Path, edgecrew_home: Path) -> None:
    import os

    _project(
        project_dir,
        """
        models:
          fake:
            backend: scripted
            replies: ["tick"]
        routines:
          tick:
            team: echo
            task: tick
            cron: "*/3 * * * * *"
        """,
    )
    env = {
        **os.environ,
        "EDGECREW_HOME": str(edgecrew_home),
        "EDGECREW_LOG_FORMAT": "json",
        "EDGECREW_ALLOW_KEYLESS_LOCALHOST": "true",
    }
    servers = [ServerProcess(project_dir, env).start() for _ in range(3)]
    try:
        url = servers[0].url
        deadline = time.monotonic() + 90
        runs: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            runs = httpx.get(f"{url}/routines/tick/runs", timeout=10).json()
            if sum(1 for r in runs if r["status"] == "succeeded") >= 4:
                break
            time.sleep(1)
    finally:
        for s in servers:
            s.stop()
    firings = collections.Counter(str(r["trigger"]["firing"]) for r in runs)  # type: ignore[index]
    assert len(firings) >= 4, runs
    assert set(firings.values()) == {1}, firings  # one run per firing
    fired_by = {s.port for s in servers if "routine 'tick' fired" in s.output()}
    assert fired_by, "no server logged a firing"


def test_a_routine_whose_team_has_spec_problems_is_listed_invalid_with_the_first(project_dir: Path) -> None:
    routine = '  flawed: {team: flawed, task: x, cron: "0 6 * * *"}\n'
    _project(project_dir, PROJECT + routine)
    write(
        project_dir / "teams" / "flawed.yaml",
        ECHO.replace("name: echo", "name: flawed").replace("to: end", "to: nobody"),
    )
    try:
        state = Ops.of(bootstrap()).routines.state("flawed")
        assert state.status == "invalid" and state.next_firing is None
        assert state.problem is not None and "team 'flawed' is invalid" in state.problem and "nobody" in state.problem
        from typer.testing import CliRunner

        from edgecrew.cli import app

        resumed = CliRunner().invoke(app, ["routines", "resume", "flawed"], env={"COLUMNS": "200"})
        assert "routine flawed: invalid" in resumed.output and "team 'flawed' is invalid" in resumed.output
    finally:
        durable.shutdown()


def test_a_routine_declared_off_is_listed_paused_before_any_server_schedules_it(project_dir: Path) -> None:
    from typer.testing import CliRunner

    from edgecrew.cli import app

    _project(project_dir)
    try:
        listed = CliRunner().invoke(app, ["routines", "list"], env={"COLUMNS": "200"})
        assert listed.exit_code == 0, listed.output
        row = next(line for line in listed.output.splitlines() if " off " in line)
        assert "paused" in row and "not scheduled" not in row, listed.output
        assert "off: fires once" not in listed.output  # it will not fire: the first server schedules it paused
        assert "daily: fires once `edgecrew serve` is up" in listed.output
        state = Ops.of(bootstrap()).routines.state("off")
        assert state.status == "paused" and state.next_firing is None
    finally:
        durable.shutdown()


def test_the_cli_lists_pauses_and_triggers_routines(project_dir: Path) -> None:
    from typer.testing import CliRunner

    from edgecrew.cli import app

    _project(project_dir)
    runner = CliRunner()
    try:
        listed = runner.invoke(app, ["routines", "list"], env={"COLUMNS": "200"})
        assert listed.exit_code == 0, listed.output
        assert "daily" in listed.output and "0 3 * * * (UTC)" in listed.output
        assert "broken: no team 'nosuchteam'" in listed.output
        assert "fires once `edgecrew serve` is up" in listed.output  # no server has scheduled it yet
        paused = runner.invoke(app, ["routines", "pause", "daily"])
        assert paused.exit_code == 0 and "routine daily: paused" in paused.output, paused.output
        assert "paused" in runner.invoke(app, ["routines", "list"], env={"COLUMNS": "200"}).output
        ran = runner.invoke(app, ["routines", "trigger", "daily"])
        assert ran.exit_code == 0, ran.output
        assert "the answer is 42" in ran.output and "succeeded" in ran.output
        left = runner.invoke(app, ["routines", "trigger", "daily", "--no-wait"], env={"COLUMNS": "200"})
        assert left.exit_code == 0 and "not followed here" in left.output, left.output
        assert "`edgecrew resume r" in left.output  # no server runs it: how to run it
        history = runner.invoke(app, ["routines", "runs", "daily"], env={"COLUMNS": "200"})
        assert "(manual)" in history.output and "succeeded" in history.output
        unknown = runner.invoke(app, ["routines", "pause", "nope"])
        assert unknown.exit_code == 1 and "no routine 'nope'" in unknown.output
    finally:
        durable.shutdown()


async def _ended_firings(count: int, timeout_s: float = 60) -> list[Any]:
    """The routine firings that have ended, once there are ``count`` (or ``timeout_s`` has passed)."""
    deadline = time.monotonic() + timeout_s
    ended = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
    firings: list[Any] = []
    while time.monotonic() < deadline and len(firings) < count:
        await asyncio.sleep(0.5)
        listed = await DBOS.list_workflows_async(name="edgecrew.routine_firing")
        firings = [f for f in listed if f.status in ended]
    return firings


async def test_a_routine_whose_team_or_project_is_missing_is_skipped_until_they_exist_then_fires(
    project_dir: Path,
) -> None:
    """Scheduled all the same: each firing is skipped (no run, a warning, the reason in its step) while its
    team or project is missing, and the first firing after a team file is added or the project is created
    runs, without a restart or `routines resume`."""
    routines = (
        '  later: {team: later, task: x, cron: "* * * * * *"}\n'
        '  away: {team: echo, task: x, cron: "* * * * * *", project: nosuchproject}\n'
        '  homeless: {team: needy, task: x, cron: "* * * * * *"}\n'  # its team needs a project: it names none
    )
    _project(project_dir, PROJECT + routines)
    write(project_dir / "teams" / "needy.yaml", ECHO.replace("name: echo", "name: needy\nneeds_project: true"))
    runtime = bootstrap()
    ops = Ops.of(runtime)
    durable.launch(runtime, queues=ops.queues())
    try:
        await ops.routines.start()
        for name, missing in (("later", "no team 'later'"), ("away", "nosuchproject")):
            assert DBOS.get_schedule(ops.routines.schedule_name(name)) is not None
            state = ops.routines.state(name)
            assert state.status == "invalid" and missing in (state.problem or ""), state
            assert "skipped until it exists" in (state.problem or "") and state.next_firing is None
        state = ops.routines.state("homeless")
        assert state.status == "invalid" and "team 'needy' needs a project" in (state.problem or ""), state
        firings = await _ended_firings(6)
        assert len(firings) >= 6 and {f.status for f in firings} == {"SUCCESS"}, [(f.status, f.error) for f in firings]
        reasons = [str((await DBOS.list_workflow_steps_async(f.workflow_id))[0]["output"]["skipped"]) for f in firings]
        assert any("no team 'later'" in r for r in reasons) and any("nosuchproject" in r for r in reasons), reasons
        assert any("team 'needy' needs a project (needs_project: true)" in r for r in reasons), reasons
        # Nothing recorded that would fail (a run of needy in no project failed at its first step).
        assert ops.routines.runs("later") == ops.routines.runs("away") == ops.routines.runs("homeless") == []
        write(project_dir / "teams" / "later.yaml", ECHO.replace("name: echo", "name: later"))  # while it runs
        from edgecrew.projects import ProjectService

        ProjectService.of(runtime).create("nosuchproject")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            any(r.status.terminal for r in ops.routines.runs(name)) for name in ("later", "away")
        ):
            await asyncio.sleep(0.5)
        for name in ("later", "away"):
            runs = ops.routines.runs(name)
            assert any(r.status.value == "succeeded" for r in runs), (name, runs)
            assert ops.routines.state(name).status == "active"
        assert ops.routines.runs("homeless") == [] and ops.routines.state("homeless").status == "invalid"
    finally:
        durable.shutdown()


async def test_a_firing_whose_team_has_spec_problems_is_skipped_and_runs_once_the_file_is_fixed(
    project_dir: Path,
) -> None:
    """The team file can be broken or fixed while the server runs: each firing checks it, skips (no run,
    no failed workflow) while it is invalid, and runs again once it is fixed, without a restart."""
    routine = '  flawed: {team: flawed, task: x, cron: "* * * * * *"}\n'
    _project(project_dir, PROJECT + routine)
    flawed = project_dir / "teams" / "flawed.yaml"
    write(flawed, ECHO.replace("name: echo", "name: flawed").replace("to: end", "to: nobody"))
    runtime = bootstrap()
    ops = Ops.of(runtime)
    durable.launch(runtime, queues=ops.queues())
    try:
        await ops.routines.start()
        assert DBOS.get_schedule(ops.routines.schedule_name("flawed")) is not None
        deadline = time.monotonic() + 60
        ended = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
        firings: list[Any] = []
        while time.monotonic() < deadline and len(firings) < 2:
            await asyncio.sleep(0.5)
            listed = await DBOS.list_workflows_async(name="edgecrew.routine_firing")
            firings = [f for f in listed if f.status in ended]
        assert len(firings) >= 2, firings
        assert {f.status for f in firings} == {"SUCCESS"}, [(f.status, f.error) for f in firings]
        for firing in firings:  # each says why it was skipped, in its recorded step
            steps = await DBOS.list_workflow_steps_async(firing.workflow_id)
            assert "team 'flawed' is invalid" in str(steps[0]["output"]["skipped"]), steps
        assert ops.routines.runs("flawed") == []  # nothing recorded that would only fail
        state = ops.routines.state("flawed")
        assert state.status == "invalid" and "skipped until" in (state.problem or "")
        write(flawed, ECHO.replace("name: echo", "name: flawed"))  # fixed while the server runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(r.status.terminal for r in ops.routines.runs("flawed")):
            await asyncio.sleep(0.5)
        runs = ops.routines.runs("flawed")
        assert runs and any(r.status.value == "succeeded" for r in runs), runs
        assert ops.routines.state("flawed").status == "active"
    finally:
        durable.shutdown()


def test_the_cli_lists_the_project_a_routine_works_in(project_dir: Path) -> None:
    from typer.testing import CliRunner

    from edgecrew.cli import app

    _project(project_dir, PROJECT + '  morning: {team: echo, task: x, cron: "30 7 * * 1-5", project: main}\n')
    try:
        listed = CliRunner().invoke(app, ["routines", "list"], env={"COLUMNS": "200"})
        assert listed.exit_code == 0, listed.output
        assert "in main" in listed.output and "morning: no project 'main'" in listed.output
    finally:
        durable.shutdown()


def test_a_narrow_terminal_lists_each_routine_by_its_whole_name(project_dir: Path) -> None:
    from typer.testing import CliRunner

    from edgecrew.cli import app

    _project(project_dir, PROJECT + '  crew-afternoon: {team: echo, task: x, cron: "30 15 * * 1-5"}\n')
    try:
        listed = CliRunner().invoke(app, ["routines", "list"], env={"COLUMNS": "80"})
        assert listed.exit_code == 0, listed.output
        assert "│ crew-afternoon " in listed.output  # was "crew-afte…", not a name `routines resume` takes
    finally:
        durable.shutdown()
