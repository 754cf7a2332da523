"""Real `edgecrew worker` processes on a real Postgres: a kill -9 of the worker running a team run hands
the run to another worker within the lease (+30 s) without repeating a finished model call; a step
whose model only one worker serves runs on that worker, also when another worker runs the team; and
`edgecrew serve` in front of two workers: a run over the API (queued before any worker, with a
warning) finishes on a worker, GET /cluster lists them, a chat message is answered, and a kill -9 of
a worker is a worker_lost incident that serve's supervisor heals. Calls are counted across processes
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
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests import pg
from tests.api.live import ServerProcess, create_key
from tests.api.test_checklist_live import sign_in
from tests.conftest import write
from tests.teams import CHAIN as TEAM_CHAIN
from tests.workers import start_worker, stop_workers

pytestmark = pytest.mark.skipif(not pg.available(), reason="needs the Debian postgresql server binaries")

LEASE_S = 6.0  # a worker starved a few seconds on a loaded 2-core box must not be declared dead

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
      buddy: [{text: "noted", delay: 0.1}]
  coder:
    backend: scripted
    record: calls.jsonl
    tags: [coding]
    fallbacks: [fast]
    replies_by_agent:
      x: [{text: "expert answer", delay: 0.3}]
  lone:
    backend: scripted
    record: calls.jsonl
    replies_by_agent:
      y: [{text: "lone answer"}]
"""

CHAIN = TEAM_CHAIN.replace("model: fake", "model: fast")  # tests/teams.py's chain on this file's model

LONE = """
name: lone
agents:
  y: {model: lone, system: answer}
graph: {start: y, edges: [{from: y, to: end}]}
"""

PAL = """
name: pal
agents:
  buddy: {model: fast, system: chat with the user}
graph: {start: buddy, edges: [{from: buddy, to: end}]}
"""

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


def _cluster_env(url: str, project_dir: Path, home: Path) -> dict[str, str]:
    """This file's project in ``project_dir``, and the environment of a cluster process on ``url``."""
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "chain.yaml", CHAIN)
    write(project_dir / "teams" / "expert.yaml", EXPERT)
    write(project_dir / "teams" / "pal.yaml", PAL)
    write(project_dir / "teams" / "lone.yaml", LONE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        EDGECREW_HOME=str(home),
        EDGECREW_PROJECT=str(project_dir),
        EDGECREW_DATABASE_URL=url,
        EDGECREW_CLUSTER="1",
        EDGECREW_CLUSTER_LEASE_S=str(LEASE_S),
        EDGECREW_CLUSTER_HEARTBEAT_S="0.5",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def cluster_env(pg_url: str, project_dir: Path, edgecrew_home: Path) -> Iterator[dict[str, str]]:
    yield _cluster_env(pg_url, project_dir, edgecrew_home)
    engine = _engine(pg_url)
    with engine.begin() as conn:  # the next test starts with an empty cluster and no queued work
        conn.execute(sa.text("DELETE FROM workers"))
        conn.execute(sa.text("DELETE FROM dbos.workflow_status"))
    engine.dispose()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


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


def _cluster_status(env: dict[str, str]) -> dict[str, Any]:
    """What `edgecrew cluster status --json` says."""
    shown = subprocess.run(
        [sys.executable, "-m", "edgecrew", "cluster", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    status: dict[str, Any] = json.loads(shown.stdout)
    return status


def _run_state(url: str, run_id: str) -> tuple[str, object]:
    engine = _engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, output FROM runs WHERE id = :i"), {"i": run_id}).one()
    engine.dispose()
    return str(row[0]), row[1]


def _runs_elsewhere(url: str, expert_pid: int) -> tuple[int, int]:
    """(team runs that a worker other than the expert ran, model calls sent to another worker's queue)."""
    engine = _engine(url)
    with engine.connect() as conn:
        elsewhere = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM dbos.workflow_status s JOIN workers w ON w.id = s.executor_id "
                "WHERE s.name = 'edgecrew.team_run' AND w.pid <> :p"
            ),
            {"p": expert_pid},
        ).scalar_one()
        remote = conn.execute(
            sa.text("SELECT COUNT(*) FROM dbos.workflow_status WHERE name = 'edgecrew.cluster.model_call'")
        ).scalar_one()
    engine.dispose()
    return int(elsewhere), int(remote)


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
    workers = [start_worker(cluster_env, logs) for _ in range(3)]
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
        # The survivor said so in its log, a line with its time and level (as `edgecrew serve` logs).
        said = [json.loads(line) for line in logs.read_text().splitlines() if line.startswith("{")]
        death = [e for e in said if f":{victim.pid}:" in e.get("message", "") and "is dead" in e["message"]]
        assert death and death[0]["level"] == "warning" and death[0]["timestamp"], said[-5:]

        status = _cluster_status(cluster_env)
        states = Counter(w["state"] for w in status["workers"])
        assert states == {"alive": 2, "dead": 1}
        assert any(q["queue"] == "edgecrew.cluster.runs" for q in status["queues"])
        # Every worker recorded its version and project configuration, and they agree.
        assert all(w["version"] and w["config"] for w in status["workers"]) and status["warnings"] == []
        # `runs show` names the worker that ran it last (not the process that queued it), and where its files are.
        shown = subprocess.run(
            [sys.executable, "-m", "edgecrew", "runs", "show", run_id],
            env={**cluster_env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "ran by: " in shown.stdout, shown.stdout
        ran_by = shown.stdout.split("ran by: ")[1].split()[0]
        assert ran_by in {w["id"] for w in status["workers"] if w["state"] == "alive"}, (ran_by, status["workers"])
    finally:
        stop_workers(workers)


def test_a_tag_only_one_worker_serves_runs_there_and_falls_back_when_it_dies(
    cluster_env: dict[str, str], project_dir: Path, tmp_path: Path, pg_url: str
) -> None:
    logs = tmp_path / "workers.log"
    plain = [start_worker(cluster_env, logs, "--models", "fast") for _ in range(2)]
    expert = start_worker(cluster_env, logs, "--models", "fast,coder")
    workers = [*plain, expert]
    try:
        _wait(lambda: _live_workers(pg_url) == 3, "three live workers", 90, logs)
        calls = project_dir / "calls.jsonl"
        # Runs land on any worker; the expert call always on the expert. Runs go on until a plain
        # worker has run one (each lands there with odds of about 2 in 3), so routing is what put
        # that run's call on the expert: a plain worker calling it itself would show its own pid.
        for i in range(12):
            run_id = _submit(cluster_env, "expert", f"write code {i}")
            _wait(lambda r=run_id: _run_state(pg_url, r)[0] == "succeeded", "the expert run", 60, logs)
            assert _run_state(pg_url, run_id)[1] == {"text": "expert answer"}
            elsewhere, remote = _runs_elsewhere(pg_url, expert.pid)
            if elsewhere >= 1 and i >= 2:
                break
        assert elsewhere >= 1, "no plain worker took a run in 12 tries: routing was never put to the test"
        x_calls = [c for c in _lines(calls) if c["agent"] == "x"]
        assert x_calls and {c["pid"] for c in x_calls} == {expert.pid}
        assert remote == elsewhere  # each run a plain worker ran sent its call to the expert's queue

        expert.send_signal(signal.SIGKILL)
        expert.wait(timeout=10)
        run_id = _submit(cluster_env, "expert", "write code without the expert")
        _wait(lambda: _run_state(pg_url, run_id)[0] == "succeeded", "the fallback run", LEASE_S + 30, logs)
        assert _run_state(pg_url, run_id)[1] == {"text": "fallback answer"}
        late = [c for c in _lines(calls) if c["run"] == run_id]
        assert late and {c["pid"] for c in late} <= {w.pid for w in plain}

        # A model no live worker serves (and no fallback): the call fails, naming it; the worker that ran
        # the step loaded it itself instead (told `--models fast`) while its events said it was skipped.
        run_id = _submit(cluster_env, "lone", "answer alone")
        _wait(lambda: _run_state(pg_url, run_id)[0] in ("succeeded", "failed"), "the run to end", 60, logs)
        assert not [c for c in _lines(calls) if c["run"] == run_id]
        engine = _engine(pg_url)
        with engine.connect() as conn:
            status, error = conn.execute(sa.text("SELECT status, error FROM runs WHERE id = :i"), {"i": run_id}).one()
        engine.dispose()
        assert status == "failed" and "no live worker in the cluster serves model 'lone'" in error, (status, error)
        assert "this worker serves fast" in error
    finally:
        stop_workers(workers)


def _run_with_task(http: httpx.Client, task: str) -> dict[str, Any] | None:
    items = http.get("/runs", params={"team": "chain", "limit": 200}).json()["items"]
    return next((r for r in items if r["task"] == task), None)


def _alive(status: dict[str, Any], n: int) -> dict[str, Any] | None:
    return status if sum(w["state"] == "alive" for w in status["workers"]) == n else None


def test_serve_with_two_workers_runs_chats_and_heals_a_lost_worker(
    cluster_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> None:
    env = {
        **cluster_env,
        "EDGECREW_SUPERVISOR_INTERVAL_S": "0.5",
        "EDGECREW_MEMORY_EMBEDDER": "hashing",
        "EDGECREW_SAMPLE_INTERVAL_S": "0",
    }
    logs = tmp_path / "workers.log"
    key = create_key(env, "admin", "admin")
    headers = {"Authorization": f"Bearer {key}"}
    server = ServerProcess(project_dir, env).start()
    workers: list[subprocess.Popen[bytes]] = []
    calls = project_dir / "calls.jsonl"
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            # No worker yet: the run is queued, and the answer says it waits for one.
            queued = http.post("/runs", json={"team": "chain", "task": "through the API"})
            assert queued.status_code == 201, queued.text
            assert queued.headers["X-Edgecrew-Warning"].startswith("no live cluster worker: the run waits on queue")
            run_id = queued.json()["id"]
            cli = subprocess.Popen(
                [sys.executable, "-m", "edgecrew", "run", "chain", "from the CLI", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # Its run recorded (and so its warning printed) before any worker starts. The module's
            # database keeps earlier tests' runs, so look for this run by its task, not by a count.
            _wait(lambda: _run_with_task(http, "from the CLI"), "the CLI's run", 60)

            workers = [start_worker(env, logs) for _ in range(2)]
            status = _wait(lambda: _alive(http.get("/cluster").json(), 2), "GET /cluster: two live workers", 90, logs)
            assert status["enabled"] and {w["pid"] for w in status["workers"]} == {w.pid for w in workers}
            _wait(lambda: http.get(f"/runs/{run_id}").json()["status"] == "succeeded", "the run", 60, logs)
            pids = {w.pid for w in workers}
            ran_on = {c["pid"] for c in _lines(calls) if c["run"] == run_id}
            assert ran_on and ran_on <= pids  # on the workers, not in serve
            sign_in(http, key)
            out, err = cli.communicate(timeout=90)  # `edgecrew run` said so too, then followed the run to its end
            assert cli.returncode == 0 and json.loads(out)["status"] == "succeeded", out + err
            assert "warning: no live cluster worker: the run waits on queue" in err, err
            page = http.get("/ui/cluster")
            assert page.status_code == 200 and all(str(w["id"]) in page.text for w in status["workers"])
            assert "<td>2 live</td>" in page.text  # each model's live workers, said as such

            session = http.post("/sessions", json={"team": "pal"}).json()["id"]
            said = http.post(f"/sessions/{session}/messages", json={"content": "hello"})
            assert said.status_code == 200, said.text
            assert (said.json()["status"], said.json()["answer"]["content"]) == ("answered", "noted")
            assert {c["pid"] for c in _lines(calls) if c["agent"] == "buddy"} <= pids

            victim = workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)

            def settled() -> dict[str, Any] | None:
                found = http.get("/incidents", params={"kind": "worker_lost"}).json()["items"]
                return found[0] if found and found[0]["state"] in ("healed", "escalated") else None

            incident = _wait(settled, "serve's supervisor to settle the lost worker", LEASE_S + 30, logs)
            victim_id = next(w["id"] for w in status["workers"] if w["pid"] == victim.pid)
            assert incident["state"] == "healed" and incident["action"] == "await_recovery", incident
            assert incident["subject"].startswith(f"{victim_id}@")
            now = {w["pid"]: w["state"] for w in http.get("/cluster").json()["workers"]}
            assert now == {victim.pid: "dead", workers[1].pid: "alive"}
    finally:
        stop_workers(workers)
        server.stop()


def _worker_rows(url: str) -> dict[int, tuple[str, int, str | None, str]]:
    """Each worker's (state, recovered, declared_by, id) by pid."""
    engine = _engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT pid, state, recovered, declared_by, id FROM workers")).all()
    engine.dispose()
    return {int(r[0]): (str(r[1]), int(r[2]), r[3], str(r[4])) for r in rows}


def test_a_cleanly_stopped_worker_records_its_stop_even_the_last_one(
    cluster_env: dict[str, str], project_dir: Path, tmp_path: Path, pg_url: str
) -> None:
    """SIGTERM of the only worker, mid-run: it showed `stopping` until another live worker marked it, for
    good while none was left. It now records `stopped` as it exits, and the run it left waits, PENDING,
    for the next worker, which recovers it and runs it to its end; that worker's own stop, with nothing
    left to run, is final at once. GET /cluster's models then count no worker: none is live."""
    logs = tmp_path / "workers.log"
    first = start_worker(cluster_env, logs)
    workers = [first]
    try:
        _wait(lambda: _live_workers(pg_url) == 1, "a live worker", 90, logs)
        run_id = _submit(cluster_env, "chain", "stop mid-run")
        calls = project_dir / "calls.jsonl"
        _wait(
            lambda: [c for c in _lines(calls) if c["run"] == run_id and c["agent"] == "b" and c["phase"] == "start"],
            "agent b's call",
            60,
            logs,
        )
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        state, recovered, declared_by, first_id = _worker_rows(pg_url)[first.pid]
        assert (state, recovered, declared_by) == ("stopped", -1, None)  # its run waits for a live worker
        said = logs.read_text()
        assert f"worker {first_id} stopped leaving 1 unfinished workflow(s)" in said, said[-2000:]
        assert _run_state(pg_url, run_id)[0] == "running"

        second = start_worker(cluster_env, logs)
        workers.append(second)
        _wait(lambda: _run_state(pg_url, run_id)[0] == "succeeded", "the run to end on the next worker", 90, logs)
        rows = _worker_rows(pg_url)
        assert rows[first.pid][:3] == ("stopped", 1, rows[second.pid][3])  # recovered once, by the next worker
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        status = _cluster_status(cluster_env)
        assert {w["pid"]: (w["state"], w["recovered"]) for w in status["workers"]} == {
            first.pid: ("stopped", 1),
            second.pid: ("stopped", 0),
        }
        assert status["models"] and all((m["workers"], m["live_workers"]) == ([], 0) for m in status["models"])
    finally:
        stop_workers(workers)


def test_a_database_outage_longer_than_a_lease_loses_no_worker(
    project_dir: Path, edgecrew_home: Path, tmp_path: Path
) -> None:
    """Postgres stopped for longer than a lease and the failover's grace: serve's supervisor, back first,
    called every worker lost and escalated them ("no live worker is left"), a worker still waiting out
    DBOS's growing retry backoff was declared dead by the other and exited, and neither worker's log said
    a word about the database. Now every process gives the others a lease to renew theirs, and each
    worker, and serve's supervisor, says once that it lost the database and once that it is back."""
    with pg.pausable_postgres_server() as database:
        env = {
            **_cluster_env(database.url, project_dir, edgecrew_home),
            "EDGECREW_SUPERVISOR_INTERVAL_S": "0.5",
            "EDGECREW_MEMORY_EMBEDDER": "hashing",
            "EDGECREW_SAMPLE_INTERVAL_S": "0",
        }
        key = create_key(env, "admin", "admin")
        server = ServerProcess(project_dir, env).start()
        logs = [tmp_path / "first.log", tmp_path / "second.log"]
        workers = [start_worker(env, log) for log in logs]

        def cluster(http: httpx.Client) -> dict[str, Any] | None:
            try:
                answer = http.get("/cluster")
            except httpx.HTTPError:
                return None
            return answer.json() if answer.status_code == 200 else None

        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
                _wait(lambda: _alive(cluster(http) or {"workers": []}, 2), "two live workers", 90, logs[0])
                database.stop()
                time.sleep(2 * LEASE_S + 3)  # past a lease and the failover's grace
                database.start()
                _wait(lambda: _alive(cluster(http) or {"workers": []}, 2), "both workers back", 60, logs[1])
                time.sleep(2 * LEASE_S)  # past every grace: a worker still silent would be lost by now
                lost = http.get("/incidents", params={"kind": "worker_lost"}).json()["items"]
                assert lost == [], lost
                assert [w.poll() for w in workers] == [None, None]
                assert _alive(cluster(http) or {"workers": []}, 2), cluster(http)
        finally:
            stop_workers(workers)
            server.stop()
        served = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
        for log in logs:
            said = [json.loads(line)["message"] for line in log.read_text().splitlines() if line.startswith("{")]
            gone = [m for m in said if "lost the database" in m]
            back = [m for m in said if "reached the database again" in m]
            assert len(gone) == 1 and len(back) == 1, said
            assert "connection" in gone[0].lower() and said.index(gone[0]) < said.index(back[0])
        # serve's supervisor says it too, once each, instead of six watcher tracebacks a scan.
        failed = [r["message"] for r in served if "exception" in r or r["level"] == "error"]
        assert failed == [], failed[:6]
        said = [r["message"] for r in served]
        gone = [m for m in said if m.startswith("the supervisor lost the database (")]
        back = [m for m in said if m.startswith("the supervisor reached the database again after")]
        assert len(gone) == 1 and len(back) == 1, said
        assert "connection" in gone[0].lower() and "\n" not in gone[0] and said.index(gone[0]) < said.index(back[0])
