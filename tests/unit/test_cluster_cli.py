"""What users read of the cluster, rendered without one: `edgecrew cluster status`'s table in a terminal of
80 columns, and a failover's resume event in the CLI, the UI and A2A (the commands themselves run in e2e)."""

from __future__ import annotations

import pytest
from rich.console import Console

from edgecrew.cli.cluster import workers_table
from edgecrew.cluster import ClusterStatus
from edgecrew.cluster.lease import WorkerInfo


def test_a_workers_id_is_shown_whole_in_a_narrow_terminal() -> None:
    """The id was cut to "vm:19812:179…": the one name a user has for a worker (logs, incidents) was lost."""
    wid = "edge-box-kitchen:19812:1796614362"
    worker = WorkerInfo(wid, "edge-box-kitchen", 19812, ("coder", "fast", "local"), ("coding",), 100.0, 90.0)
    found = ClusterStatus(True, 10.0, workers=[worker.to_dict(101.0, 10.0)])
    console = Console(width=80, record=True)
    console.print(workers_table(found))
    shown = console.export_text()
    assert "…" not in shown
    assert wid in "".join(line.split("│")[1].strip() for line in shown.splitlines() if line.count("│") > 2)


def test_a_run_resumed_after_its_worker_died_says_which_worker() -> None:
    """A failover printed "↻ run resumed from its last finished step" (the UI: "run resumed by recovered
    from vm:…"): nothing said the run had moved, nor which worker it lost."""
    from edgecrew.api.a2a_agents import progress_note
    from edgecrew.cli.render import event_line
    from edgecrew.domain.events import EventRecord, RunResumed
    from edgecrew.ui.pages import templates

    data = RunResumed(lost_worker="vm:19812:1796614362").to_data()
    event = EventRecord(1, "r1", "resumed.vm:19812:1796614362", "run_resumed", None, None, data, 1.0)
    assert "(its worker vm:19812:1796614362 died)" in (event_line(event) or "")
    assert progress_note(event) == "run resumed on another worker (vm:19812:1796614362 died)"
    shown = templates.env.get_template("_event.html").render(e=event, t0=0.0)
    assert "run resumed on a live worker: its worker vm:19812:1796614362 died" in shown


def test_cluster_status_says_why_the_cluster_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """With EDGECREW_CLUSTER=1 set on SQLite it said "set EDGECREW_CLUSTER=1", which was set."""
    from typer.testing import CliRunner

    from edgecrew.cli import app
    from edgecrew.settings import get_settings

    off = CliRunner().invoke(app, ["cluster", "status"])
    assert off.exit_code == 0 and "EDGECREW_CLUSTER is not set" in " ".join(off.output.split())
    monkeypatch.setenv("EDGECREW_CLUSTER", "1")
    get_settings.cache_clear()
    sqlite = CliRunner().invoke(app, ["cluster", "status"])
    said = " ".join(sqlite.output.split())
    assert sqlite.exit_code == 0 and "EDGECREW_CLUSTER=1 is set, but the database is SQLite" in said, said


def test_a_worker_says_why_the_cluster_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgecrew worker` with EDGECREW_CLUSTER=1 on SQLite said "set EDGECREW_CLUSTER=1 and ...", which was set."""
    from typer.testing import CliRunner

    from edgecrew.cli import app
    from edgecrew.settings import get_settings

    off = CliRunner().invoke(app, ["worker"])
    assert off.exit_code == 1 and "EDGECREW_CLUSTER is not set" in " ".join(off.output.split()), off.output
    monkeypatch.setenv("EDGECREW_CLUSTER", "1")
    get_settings.cache_clear()
    sqlite = CliRunner().invoke(app, ["worker"])
    said = " ".join(sqlite.output.split())
    assert sqlite.exit_code == 1 and "EDGECREW_CLUSTER=1 is set, but the database is SQLite" in said, said


def test_a_dead_worker_runs_nothing() -> None:
    """It kept showing the load of its last heartbeat ("running 1/4") after its runs were recovered."""
    dead = WorkerInfo("vm:1:1", "vm", 1, ("fast",), (), 100.0, 90.0, state="dead", running=1, concurrency=4)
    live = WorkerInfo("vm:2:1", "vm", 2, ("fast",), (), 100.0, 100.0, running=1, concurrency=4)
    assert [w.to_dict(101.0, 10.0)["running"] for w in (dead, live)] == [0, 1]


def test_cluster_status_shows_what_live_workers_disagree_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from edgecrew.cli import app
    from edgecrew.cluster import ClusterService
    from edgecrew.ui.pages import templates

    warning = "live workers run different edgecrew versions: 0.1.0 on a; 0.2.0 on b; ..."
    found = ClusterStatus(True, 10.0, warnings=[warning])
    monkeypatch.setattr(ClusterService, "status", lambda self, now=None: found)
    shown = CliRunner().invoke(app, ["cluster", "status"])
    assert shown.exit_code == 0 and f"warning: {warning}" in " ".join(shown.output.split())
    page = templates.env.get_template("cluster.html").render(cluster=found, request=None)
    assert warning in page


def test_an_interrupted_command_on_a_cluster_says_its_runs_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C of `edgecrew run` on a cluster said "Unfinished runs are kept: the next `edgecrew run`
    resumes them", while a worker ran the run on to its end: only the following stopped."""
    import typer

    from edgecrew.cli.common import arun
    from edgecrew.settings import get_settings

    async def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setenv("EDGECREW_CLUSTER", "1")
    monkeypatch.setenv("EDGECREW_DATABASE_URL", "postgresql://db-host/edgecrew")
    get_settings.cache_clear()
    with pytest.raises(typer.Exit) as ended:
        arun(interrupted)
    said = " ".join(capsys.readouterr().err.split())
    assert ended.value.exit_code == 130
    assert "go on on the cluster's workers" in said and "`edgecrew cancel RUN`" in said, said
    assert "the next `edgecrew run` resumes them" not in said
    monkeypatch.delenv("EDGECREW_CLUSTER")
    get_settings.cache_clear()
    with pytest.raises(typer.Exit):
        arun(interrupted)  # alone, as before: the next run (or `edgecrew resume`) picks them up
    assert "the next `edgecrew run` resumes them" in " ".join(capsys.readouterr().err.split())
