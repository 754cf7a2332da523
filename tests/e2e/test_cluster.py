"""Three real `edgecrew worker` processes on a real Postgres: a kill -9 of the worker running a team run
hands the run to another worker within the lease (+30 s) without repeating a finished model call, and
a step whose model only one worker serves runs on that worker. Calls are counted across processes
through the scripted model's record file (each line carries the pid that made the call)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import pg
from tests.conftest import write
from tests.teams import CHAIN as TEAM_CHAIN

pytestmark = pytest.mark.skipif(not pg.available(), reason="needs the Debian postgresql server binaries")

LEASE_S = 3.0

PROJECT = """
models:
  fast:
    backend: scripted
    record: calls.jsonl
    tags: [general]
    replies_by_agent:
      a: [{text: "A done", delay: 0.3}]
      b: [{text: "B done", delay: 4}]
      c: [{text: "C done", delay: 0.3}]
      x: [{text: "fallback answer", delay: 0.1}]
  coder:
    backend: scripted
    record: calls.jsonl
    tags: [coding]
    fallbacks: [fast]
    replies_by_agent:
      x: [{text: "expert answer", delay: 0.3}]
"""

CHAIN = TEAM_CHAIN.replace("model: fake", "model: fast")  # tests/teams.py's chain on this file's model

EXPERT = """
name: expert
agents:
  x: {model: {tag: coding}, system: code it}
graph:
  start: x
  edges:
    - {from: x, to: end}
"""


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pg.postgres_server() as url:
        yield url


@pytest.fixture
def cluster_env(pg_url: str, project_dir: Path, edgecrew_home: Path) -> Iterator[dict[str, str]]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "chain.yaml", CHAIN)
    write(project_dir / "teams" / "expert.yaml", EXPERT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        EDGECREW_HOME=str(edgecrew_home),
        EDGECREW_PROJECT=str(project_dir),
        EDGECREW_DATABASE_URL=pg_url,
        EDGECREW_CLUSTER="1",
        EDGECREW_CLUSTER_LEASE_S=str(LEASE_S),
        EDGECREW_CLUSTER_HEARTBEAT_S="0.5",
        PYTHONUNBUFFERED="1",
    )
    yield env
    engine = _engine(pg_url)
    with engine.begin() as conn:  # the next test starts with an empty cluster and no queued work
        conn.execute(sa.text("DELETE FROM workers"))
        conn.execute(sa.text("DELETE FROM dbos.workflow_status"))
    engine.dispose()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def _worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgecrew", "worker", *args], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait(predicate, what: str, timeout: float, logs: Path | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    detail = logs.read_text()[-4000:] if logs and logs.exists() else ""
    pytest.fail(f"timed out waiting for {what}\n{detail}")


def _live_workers(url: str) -> int:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM workers WHERE state = 'alive'")).scalar_one())
    except sa.exc.DBAPIError:
        return 0
    finally:
        engine.dispose()


def _run_state(url: str, run_id: str) -> tuple[str, object]:
    engine = _engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, output FROM runs WHERE id = :i"), {"i": run_id}).one()
    engine.dispose()
    return str(row[0]), row[1]


def _submit(env: dict[str, str], team: str, task: str) -> str:
    """Start a run from a short-lived process (it enqueues, a worker runs it) and return its id."""
    code = (
        "import asyncio\n"
        "from edgecrew.bootstrap import bootstrap\n"
        "from edgecrew.settings import get_settings\n"
        "from edgecrew.engine.service import RunService, TeamName\n"
        "from edgecrew.engine import durable\n"
        "async def main():\n"
        "    rt = bootstrap(get_settings())\n"
        f"    s = await RunService(rt).start(TeamName({team!r}), {task!r})\n"
        "    print(s.run.id)\n"
        "    durable.shutdown()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_kill_9_of_the_worker_running_a_run_resumes_it_elsewhere(
    cluster_env: dict[str, str], project_dir: Path, tmp_path: Path, pg_url: str
) -> None:
    logs = tmp_path / "workers.log"
    workers = [_worker(cluster_env, logs) for _ in range(3)]
    try:
        _wait(lambda: _live_workers(pg_url) == 3, "three live workers", 90, logs)
        run_id = _submit(cluster_env, "chain", "survive a kill")
        calls = project_dir / "calls.jsonl"
        b_start = _wait(
            lambda: next((c for c in _lines(calls) if c["agent"] == "b" and c["phase"] == "start"), None),
            "agent b's call",
            60,
            logs,
        )
        victim = next(w for w in workers if w.pid == b_start["pid"])  # the worker running the run
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(timeout=10)

        _wait(lambda: _run_state(pg_url, run_id)[0] == "succeeded", "the run to finish elsewhere", LEASE_S + 30, logs)
        took = time.monotonic() - killed_at
        assert took <= LEASE_S + 30
        records = _lines(calls)
        ends = Counter((c["run"], c["step"]) for c in records if c["phase"] == "end")
        assert ends and max(ends.values()) == 1, ends  # no finished call ran twice
        assert {c["agent"] for c in records if c["phase"] == "end"} == {"a", "b", "c"}
        resumed_by = {c["pid"] for c in records if c["agent"] in ("b", "c") and c["phase"] == "end"}
        assert victim.pid not in resumed_by
        a_calls = [c for c in records if c["agent"] == "a"]
        assert [c["phase"] for c in a_calls] == ["start", "end"]  # finished before the kill: not repeated
        engine = _engine(pg_url)
        with engine.connect() as conn:
            dead = conn.execute(sa.text("SELECT state, recovered FROM workers WHERE pid = :p"), {"p": victim.pid}).one()
            resumed = conn.execute(
                sa.text("SELECT COUNT(*) FROM events WHERE run_id = :i AND type = 'run_resumed'"), {"i": run_id}
            ).scalar_one()
        engine.dispose()
        assert dead[0] == "dead" and dead[1] >= 1 and resumed == 1

        shown = subprocess.run(
            [sys.executable, "-m", "edgecrew", "cluster", "status", "--json"],
            env=cluster_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        status = json.loads(shown.stdout)
        states = Counter(w["state"] for w in status["workers"])
        assert states == {"alive": 2, "dead": 1}
        assert any(q["queue"] == "edgecrew.cluster.runs" for q in status["queues"])
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()


def test_a_tag_only_one_worker_serves_runs_there_and_falls_back_when_it_dies(
    cluster_env: dict[str, str], project_dir: Path, tmp_path: Path, pg_url: str
) -> None:
    logs = tmp_path / "workers.log"
    plain = [_worker(cluster_env, logs, "--models", "fast") for _ in range(2)]
    expert = _worker(cluster_env, logs, "--models", "fast,coder")
    workers = [*plain, expert]
    try:
        _wait(lambda: _live_workers(pg_url) == 3, "three live workers", 90, logs)
        calls = project_dir / "calls.jsonl"
        for i in range(3):  # several runs: the runs land on any worker, the expert call on one
            run_id = _submit(cluster_env, "expert", f"write code {i}")
            _wait(lambda r=run_id: _run_state(pg_url, r)[0] == "succeeded", "the expert run", 60, logs)
            assert _run_state(pg_url, run_id)[1] == {"text": "expert answer"}
        x_calls = [c for c in _lines(calls) if c["agent"] == "x"]
        assert x_calls and {c["pid"] for c in x_calls} == {expert.pid}
        engine = _engine(pg_url)
        with engine.connect() as conn:  # a run that a plain worker ran sent its call to the expert's queue
            elsewhere = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM dbos.workflow_status s JOIN workers w ON w.id = s.executor_id "
                    "WHERE s.name = 'edgecrew.team_run' AND w.pid <> :p"
                ),
                {"p": expert.pid},
            ).scalar_one()
            remote = conn.execute(
                sa.text("SELECT COUNT(*) FROM dbos.workflow_status WHERE name = 'edgecrew.cluster.model_call'")
            ).scalar_one()
        engine.dispose()
        assert remote == elsewhere

        expert.send_signal(signal.SIGKILL)
        expert.wait(timeout=10)
        run_id = _submit(cluster_env, "expert", "write code without the expert")
        _wait(lambda: _run_state(pg_url, run_id)[0] == "succeeded", "the fallback run", LEASE_S + 30, logs)
        assert _run_state(pg_url, run_id)[1] == {"text": "fallback answer"}
        late = [c for c in _lines(calls) if c["run"] == run_id]
        assert late and {c["pid"] for c in late} <= {w.pid for w in plain}
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
