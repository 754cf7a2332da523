"""Cluster benchmark: team runs per minute with 1, 2 and 3 `edgecrew worker`s on one Postgres, and the
time from a worker's kill -9 to its run resuming on another worker.

The model is scripted with a fixed simulated latency (``--latency``, 50 ms), so throughput measures how
DBOS's queues spread runs over workers (each worker runs ``--per-worker`` runs at once); the anchor is
one worker, and the figure is the ratio to it. Each figure is the median of ``--repeats`` rounds (the
workers of a size stay up across its rounds; each failover round has fresh workers), every round's
value printed too. Needs the Debian postgresql server binaries (tests/pg.py).
Run: .venv/bin/python bench/cluster.py [--runs 24] [--latency 0.05] [--per-worker 2] [--repeats 3]
[--json] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import pg  # noqa: E402
from tests.workers import start_worker, stop_workers  # noqa: E402

TEAM = """
name: chain
agents:
  a: {model: sim, system: first}
  b: {model: sim, system: second}
  c: {model: sim, system: third}
graph:
  start: a
  edges:
    - {from: a, to: b}
    - {from: b, to: c}
    - {from: c, to: end}
"""

SUBMIT = """
import asyncio, sys
from edgecrew.bootstrap import bootstrap
from edgecrew.settings import get_settings
from edgecrew.engine.service import RunService, TeamName
from edgecrew.engine import durable
async def main():
    rt = bootstrap(get_settings())
    service = RunService(rt)
    for i in range(int(sys.argv[1])):
        s = await service.start(TeamName(sys.argv[2]), f"task {i}")
        print(s.run.id, flush=True)
    durable.shutdown()
asyncio.run(main())
"""


def project(root: Path, latency: float, slow: float) -> Path:
    proj = root / "project"
    (proj / "teams").mkdir(parents=True)
    (proj / "edgecrew.yaml").write_text(
        "models:\n"
        "  sim:\n"
        "    backend: scripted\n"
        "    record: calls.jsonl\n"
        "    cycle: true\n"
        f"    replies: [{{text: done, delay: {latency}}}]\n"
        "  slow:\n"
        "    backend: scripted\n"
        "    record: calls.jsonl\n"
        "    cycle: true\n"
        f"    replies: [{{text: done, delay: {slow}}}]\n"
    )
    (proj / "teams" / "chain.yaml").write_text(TEAM)
    (proj / "teams" / "slow.yaml").write_text(TEAM.replace("name: chain", "name: slow").replace("sim", "slow"))
    return proj


def engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def scalar(db: sa.Engine, query: str, **params: object) -> object:
    with db.connect() as conn:
        return conn.execute(sa.text(query), params).scalar()


def start_workers(env: dict[str, str], n: int, log: Path) -> list[subprocess.Popen[bytes]]:
    return [start_worker(env, log) for _ in range(n)]


def reset(db: sa.Engine) -> None:
    with db.begin() as conn:
        conn.execute(sa.text("DELETE FROM workers"))
    with db.begin() as conn, contextlib.suppress(sa.exc.ProgrammingError):  # DBOS's tables may not exist yet
        conn.execute(sa.text("DELETE FROM dbos.workflow_status"))


def succeeded(db: sa.Engine) -> int:
    return int(scalar(db, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") or 0)


def throughput(env: dict[str, str], db: sa.Engine, n: int, runs: int, repeats: int, log: Path) -> list[float]:
    """Runs per minute with ``n`` workers, one figure per round of ``runs`` runs."""
    workers = start_workers(env, n, log)
    figures = []
    try:
        wait(lambda: scalar(db, "SELECT COUNT(*) FROM workers WHERE state = 'alive'") == n, 90, f"{n} workers")
        for _ in range(repeats):
            before = succeeded(db)
            since = time.time()
            done = subprocess.run(
                [sys.executable, "-c", SUBMIT, str(runs), "chain"], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            wait(lambda b=before: succeeded(db) - b >= runs, 600, "the runs")
            # From the first run recorded to the last one finished: the submitter's start-up is not counted.
            first = float(scalar(db, "SELECT MIN(created_at) FROM runs WHERE created_at >= :s", s=since) or 0)
            last = float(scalar(db, "SELECT MAX(finished_at) FROM runs WHERE created_at >= :s", s=since) or 0)
            figures.append(runs / ((last - first) / 60))
        return figures
    finally:
        stop_workers(workers)
        reset(db)


def failover(env: dict[str, str], db: sa.Engine, proj: Path, log: Path, lease: float) -> float:
    """Seconds from the kill -9 of the worker running a slow run to that run's next call on the other."""
    workers = start_workers(env, 2, log)
    calls = proj / "calls.jsonl"
    try:
        wait(lambda: scalar(db, "SELECT COUNT(*) FROM workers WHERE state = 'alive'") == 2, 90, "2 workers")
        offset = calls.stat().st_size if calls.exists() else 0
        done = subprocess.run([sys.executable, "-c", SUBMIT, "1", "slow"], env=env, capture_output=True, text=True)
        run_id = done.stdout.split()[-1]

        def first_call() -> dict[str, object] | None:
            text = calls.read_text()[offset:] if calls.exists() else ""
            return next((json.loads(line) for line in text.splitlines() if run_id in line), None)

        victim_pid = wait(first_call, 60, "the slow run's first call")["pid"]
        victim = next(w for w in workers if w.pid == victim_pid)
        victim.send_signal(signal.SIGKILL)
        killed = time.time()

        def resumed_call() -> float | None:
            text = calls.read_text()[offset:]
            for line in text.splitlines():
                entry = json.loads(line)
                if entry["run"] == run_id and entry["pid"] != victim_pid and entry["phase"] == "start":
                    return time.time()
            return None

        resumed_at = wait(resumed_call, lease + 60, "the run resuming elsewhere")
        wait(lambda: scalar(db, "SELECT status FROM runs WHERE id = :i", i=run_id) == "succeeded", 60, "the run")
        return float(resumed_at - killed)
    finally:
        stop_workers(workers)
        reset(db)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--per-worker", type=int, default=2)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="rounds per figure; the figure is their median")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="4 runs, one round, a 0.5 s slow run (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeats = 4, 1
    root = Path(tempfile.mkdtemp(prefix="edgecrew-bench-cluster-"))
    proj = project(root, args.latency, slow=0.5 if args.quick else 1.0)
    log = root / "workers.log"
    with pg.postgres_server() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECREW_")}
        env.update(
            EDGECREW_HOME=str(root / "home"),
            EDGECREW_PROJECT=str(proj),
            EDGECREW_DATABASE_URL=url,
            EDGECREW_CLUSTER="1",
            EDGECREW_WORKER_RUNS=str(args.per_worker),
            EDGECREW_CLUSTER_LEASE_S=str(args.lease),
            EDGECREW_CLUSTER_HEARTBEAT_S="0.5",
            EDGECREW_LOG_FORMAT="off",
        )
        # One submit first, so the store's and DBOS's tables exist before the timed rounds.
        subprocess.run([sys.executable, "-c", SUBMIT, "0", "chain"], env=env, check=True, capture_output=True)
        db = engine(url)
        samples = {n: throughput(env, db, n, args.runs, args.repeats, log) for n in (1, 2, 3)}
        failovers = [failover(env, db, proj, log, args.lease) for _ in range(args.repeats)]
        db.dispose()
    per_minute = {n: statistics.median(v) for n, v in samples.items()}
    result = {
        "latency_s": args.latency,
        "runs": args.runs,
        "per_worker": args.per_worker,
        "repeats": args.repeats,
        "runs_per_minute": {str(n): round(v, 1) for n, v in per_minute.items()},
        "ratio_to_1": {str(n): round(v / per_minute[1], 2) for n, v in per_minute.items()},
        "runs_per_minute_rounds": {str(n): [round(x, 1) for x in v] for n, v in samples.items()},
        "kill_to_resume_s": round(statistics.median(failovers), 2),
        "kill_to_resume_rounds": [round(x, 2) for x in failovers],
        "lease_s": args.lease,
    }
    if args.json:
        print(json.dumps(result))
        return
    for n, v in per_minute.items():
        rounds = ", ".join(f"{x:.1f}" for x in samples[n])
        print(f"{n} worker(s): {v:7.1f} runs/min median  ({v / per_minute[1]:.2f}x one worker; rounds {rounds})")
    rounds = ", ".join(f"{x:.2f}" for x in failovers)
    print(f"kill -9 to resume elsewhere: {result['kill_to_resume_s']} s median (lease {args.lease} s; rounds {rounds})")


if __name__ == "__main__":
    main()
