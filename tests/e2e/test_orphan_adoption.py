"""Orphans adopted once: an `edgecrew run` killed with SIGKILL leaves its run PENDING under a dead
executor; two recoveries racing for it resume it once (on SQLite and on Postgres, where several
machines' processes recover at once), and a server that was already running adopts it at its next
sweep."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOS

from edgecrew.bootstrap import bootstrap
from edgecrew.domain.runs import RunStatus
from edgecrew.engine import durable
from edgecrew.engine.service import RunService
from edgecrew.settings import reset_settings
from tests.api.live import ServerProcess, cli_env
from tests.conftest import read_store, write
from tests.e2e.databases import database, pg_server, rows, url_of
from tests.e2e.test_crash_resume import _lines, _wait_for

__all__ = ["database", "pg_server"]  # fixtures

PROJECT = """
models:
  fake:
    backend: scripted
    record: calls.jsonl
    replies_by_agent:
      a: [{text: "A done"}]
      b: [{text: "B done"}]
"""

PAIR = """
name: pair
agents:
  a: {model: fake, system: first}
  b: {model: fake, system: second}
graph: {start: a, edges: [{from: a, to: b}, {from: b, to: end}]}
"""


@pytest.fixture
def env(project_dir: Path, edgecrew_home: Path) -> dict[str, str]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "pair.yaml", PAIR)
    return cli_env(project_dir, edgecrew_home, PYTHONUNBUFFERED="1")


def _orphan(env: dict[str, str], home: Path) -> str:
    """The id of a run whose `edgecrew run` was killed with SIGKILL right after a's model call (in the
    store ``env`` names: the home's SQLite file, or ``EDGECREW_DATABASE_URL``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecrew", "run", "pair", "go"],
        env={**env, "EDGECREW_FAILPOINTS": "after_model_call:1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(lambda: (home / "failpoint.hit").exists(), proc, "the failpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)  # reaped: its executor id is dead, not a zombie
    (home / "failpoint.hit").unlink()
    (run,) = rows(url_of(env, home), "SELECT id FROM runs")
    return str(run["id"])


def _model_calls(project: Path) -> list[object]:
    return [c["agent"] for c in _lines(project / "calls.jsonl") if c["phase"] == "start"]


async def test_two_recoveries_racing_for_one_orphan_resume_it_once(
    env: dict[str, str],
    database: dict[str, str],
    edgecrew_home: Path,
    project_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both recoveries list the orphan before either acts on it (a server's sweep and a new `edgecrew
    run` at the same moment; on Postgres, two machines' processes): exactly one resumes it, and the run
    goes on once."""
    env = {**env, **database}
    for name, value in database.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    run_id = _orphan(env, edgecrew_home)
    rt = bootstrap()
    durable.launch(rt)
    listed = asyncio.Barrier(2)
    lists = 0
    list_workflows = DBOS.list_workflows_async

    async def listed_by_both(**query: Any) -> Any:
        nonlocal lists
        found = await list_workflows(**query)
        if query.get("status") == "PENDING" and lists < 2:
            lists += 1
            await listed.wait()  # neither acts until both have seen the orphan PENDING
        return found

    monkeypatch.setattr(DBOS, "list_workflows_async", listed_by_both)
    try:
        first, second = await asyncio.gather(durable.recover_orphans(rt), durable.recover_orphans(rt))
        assert sorted([first.adopted, second.adopted]) == [[], [run_id]]
        run = await RunService(rt).follow(run_id, timeout_s=60)
        assert run.status == RunStatus.SUCCEEDED, run
        resumed = [e for e in rt.store.events(run_id) if e.type == "run_resumed"]
        assert len(resumed) == 1, resumed
        assert _model_calls(project_dir) == ["a", "b"]  # a's call is not made again, b's once
        # It waited on this project's queue, which only this project's processes run: DBOS's internal
        # queue (where a plain resume puts it) is run by every process sharing the data dir, another
        # project's `edgecrew run` included.
        (workflow,) = await DBOS.list_workflows_async(workflow_ids=[run_id], load_input=False, load_output=False)
        assert workflow.queue_name == durable.adopted_queue(rt) == f"edgecrew.adopted.{rt.project_key}"
        other = bootstrap(rt.settings.model_copy(update={"project": edgecrew_home}))
        assert durable.adopted_queue(other) != durable.adopted_queue(rt)
    finally:
        durable.shutdown()


def test_a_server_adopts_a_run_orphaned_after_it_started(
    env: dict[str, str], edgecrew_home: Path, project_dir: Path
) -> None:
    quiet = {"EDGECREW_SAMPLE_INTERVAL_S": "0", "EDGECREW_ALERT_INTERVAL_S": "0", "EDGECREW_SUPERVISOR_INTERVAL_S": "0"}
    server = ServerProcess(project_dir, {**env, **quiet, "EDGECREW_ORPHAN_SWEEP_S": "0.5"}).start()
    try:
        run_id = _orphan(env, edgecrew_home)
        deadline = time.monotonic() + 30
        while _status(edgecrew_home, run_id) != "succeeded":
            assert time.monotonic() < deadline, f"the server did not adopt {run_id}\n{server.output()}"
            time.sleep(0.2)
        assert server.proc is not None
        with read_store(edgecrew_home / "edgecrew.db") as db:
            resumed = db.execute("SELECT data FROM events WHERE run_id = ? AND type = 'run_resumed'", (run_id,))
            (data,) = resumed.fetchall()
        assert f":{server.proc.pid}:" in data[0]  # by the server
        assert _model_calls(project_dir) == ["a", "b"]
        assert f"adopted 1 run(s) whose process died: {run_id}" in server.output()
    finally:
        server.kill()


def _status(home: Path, run_id: str) -> str:
    with read_store(home / "edgecrew.db") as db:
        (status,) = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return str(status)


async def test_a_sweep_with_no_unfinished_run_of_this_project_reads_only_the_store(
    edgecrew_home: Path, tmp_path: Path
) -> None:
    """The sweep runs forever on small boxes: with nothing of this project to adopt it never asks the
    durable engine (not launched here, so any use of it would raise)."""
    rt = bootstrap()
    assert not durable.launched(rt)
    assert await durable.sweep_orphans(rt) == durable.Recovery()
    other = str(tmp_path / "other-project")
    rt.store.create_run("r-other", "pair", "x", {}, "ws", project=other, executor="gone:1:1")
    assert await durable.sweep_orphans(rt) == durable.Recovery()
