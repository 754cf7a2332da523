"""Concurrency: 1, 10 and 100 team runs at once on a 50 ms model, edgecrew vs LangGraph, SQLite and Postgres.

Every run is the same 3-agent chain (a1 -> a2 -> a3 -> end); every model call takes a fixed 50 ms
(edgecrew: ``ScriptedModel(delay=0.05)``, an ``asyncio.sleep``; the anchor: the same sleep inside
each LangGraph node). A *batch* at level C starts C runs at once and waits for all of them; the
figures are runs per second (runs / wall time of the batches), p50/p99 step latency (one agent
turn: edgecrew's ``step_started`` to ``step_finished`` event; LangGraph's node start to the next
node's start, or to the end of the run for the last node, so its checkpoint write is in it) and
CPU per step.

The one design decision: each engine runs in a worker process of its own, driven batch by batch
from here, so CPU time is each engine's own (``getrusage(RUSAGE_SELF)`` of its process over its
batches: every thread, DBOS's background threads and in-process SQLite included; a Postgres
server's CPU is measured apart, from its processes' ``/proc`` counters). Batches alternate between
the engines (edgecrew first in even rounds, LangGraph first in odd ones) so drift on a shared
machine hits both alike.

- edgecrew: ``RunService.start`` then the workflow's result, its store and DBOS system database on
  SQLite files (``synchronous=FULL``) or on one Postgres database.
- Anchor: LangGraph with ``AsyncSqliteSaver`` on a SQLite file, or ``AsyncPostgresSaver`` on a
  ``psycopg_pool.AsyncConnectionPool`` (10 connections) on a database of the same server,
  ``ainvoke(..., durability="sync")``.
- Postgres: a throwaway server (tests/pg.py: Debian's binaries, ``fsync=off``), one per run of
  this script.

    .venv/bin/python bench/concurrency.py [--levels 1,10,100] [--rounds 3] [--min-runs 20]
                                          [--dbs sqlite,postgres] [--delay 0.05] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import itertools
import json
import operator
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

REPO = Path(__file__).resolve().parent.parent
REPLY = "done"
TASK = "pass the baton down the chain"
AGENTS = 3
TEAM = f"""name: chain{AGENTS}
agents:
{chr(10).join(f"  a{i}: {{model: fake, system: step {i}}}" for i in range(1, AGENTS + 1))}
graph:
  start: a1
  edges:
{chr(10).join(f"    - {{from: a{i}, to: a{i + 1}}}" for i in range(1, AGENTS))}
    - {{from: a{AGENTS}, to: end}}
"""


IDLE_S = 2.0  # seconds each worker sits idle, to measure its background CPU


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- workers (each in its own process) -------------------------------------------------------------


class EdgecrewWorker:
    def __init__(self, root: Path, db_url: str | None, delay: float) -> None:
        os.environ["EDGECREW_HOME"] = str(root / "home")
        os.environ["EDGECREW_PROJECT"] = str(root / "project")
        os.environ.setdefault("EDGECREW_DBOS_LOG_LEVEL", "ERROR")
        if db_url:
            os.environ["EDGECREW_DATABASE_URL"] = db_url
        (root / "project" / "teams").mkdir(parents=True, exist_ok=True)
        self.team_path = root / "project" / "teams" / f"chain{AGENTS}.yaml"
        self.team_path.write_text(TEAM)

        from edgecrew.bootstrap import bootstrap
        from edgecrew.engine.service import RunService
        from edgecrew.models.scripted import ScriptedModel

        self.rt = bootstrap()
        # a reply function, not a list: a list's script keeps every call key it saw (grows with runs)
        self.model = ScriptedModel(lambda _req, _i: REPLY, delay=delay)
        self.rt.models.register("fake", self.model)
        self.svc = RunService(self.rt)

    async def one(self) -> str:
        from edgecrew.engine.service import TeamFile

        begun = await self.svc.start(TeamFile(self.team_path), TASK)
        await begun.handle.get_result()
        return str(begun.run.id)

    async def batch(self, c: int) -> dict[str, Any]:
        cpu0, t0 = cpu_s(), time.perf_counter()
        run_ids = await asyncio.gather(*(self.one() for _ in range(c)))
        wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
        self.model.calls.clear()
        steps: list[float] = []
        failed = 0
        for run_id in run_ids:  # read after the clock stops: not part of the measured window
            if self.rt.store.get_run(run_id).status.value != "succeeded":
                failed += 1
            started: dict[str, float] = {}
            for e in self.rt.store.events(run_id):
                if e.type == "step_started" and e.step_key:
                    started[e.step_key] = e.created_at
                elif e.type == "step_finished" and e.step_key in started:
                    steps.append(e.created_at - started[e.step_key])
        return {"wall_s": wall, "cpu_s": cpu, "runs": c, "failed": failed, "step_s": steps}

    def close(self) -> None:
        from edgecrew.engine import durable

        durable.shutdown()
        self.rt.store.close()


CURRENT_THREAD: contextvars.ContextVar[str] = contextvars.ContextVar("thread")


class ChainState(TypedDict):
    task: str
    messages: Annotated[list[dict[str, str]], operator.add]


class LangGraphWorker:
    def __init__(self, root: Path, db_url: str | None, delay: float) -> None:
        self.root, self.db_url, self.delay = root, db_url, delay
        self.starts: dict[str, list[float]] = {}

    async def setup(self) -> None:
        from langgraph.graph import END, START, StateGraph

        if self.db_url:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool

            self.pool = AsyncConnectionPool(
                self.db_url,
                min_size=1,
                max_size=10,
                open=False,
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            )
            await self.pool.open()
            self.saver: Any = AsyncPostgresSaver(self.pool)  # type: ignore[arg-type]
        else:
            import aiosqlite
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            self.conn = await aiosqlite.connect(self.root / "langgraph.sqlite")
            self.saver = AsyncSqliteSaver(self.conn)
        await self.saver.setup()
        builder = StateGraph(ChainState)
        for i in range(1, AGENTS + 1):
            builder.add_node(f"a{i}", self.node(f"a{i}", f"step {i}"))
        builder.add_edge(START, "a1")
        for i in range(1, AGENTS):
            builder.add_edge(f"a{i}", f"a{i + 1}")
        builder.add_edge(f"a{AGENTS}", END)
        self.graph = builder.compile(checkpointer=self.saver)

    def node(self, name: str, system: str) -> Any:
        async def call(state: ChainState) -> dict[str, Any]:
            self.starts[CURRENT_THREAD.get()].append(time.time())  # the context is copied into node tasks
            _prompt = [{"role": "system", "content": system}, {"role": "user", "content": state["task"]}]
            await asyncio.sleep(self.delay)  # the model call
            return {"messages": [{"role": "assistant", "content": REPLY, "name": name}]}

        return call

    async def one(self) -> tuple[list[float], bool]:
        thread = uuid.uuid4().hex
        self.starts[thread] = []
        CURRENT_THREAD.set(thread)
        state = await self.graph.ainvoke(
            {"task": TASK, "messages": []}, {"configurable": {"thread_id": thread}}, durability="sync"
        )
        marks = [*self.starts.pop(thread), time.time()]
        ok = len(state["messages"]) == AGENTS and state["messages"][-1]["content"] == REPLY
        return [b - a for a, b in itertools.pairwise(marks)], ok

    async def batch(self, c: int) -> dict[str, Any]:
        cpu0, t0 = cpu_s(), time.perf_counter()
        done = await asyncio.gather(*(self.one() for _ in range(c)))
        wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
        steps = [s for run_steps, _ in done for s in run_steps]
        return {"wall_s": wall, "cpu_s": cpu, "runs": c, "failed": sum(not ok for _, ok in done), "step_s": steps}

    async def aclose(self) -> None:
        if self.db_url:
            await self.pool.close()
        else:
            await self.conn.close()


async def worker_main(engine: str, root: Path, db_url: str | None, delay: float) -> None:
    """Answer one JSON line per command read from stdin: {"batch": C} or {"quit": true}."""
    root.mkdir(parents=True, exist_ok=True)
    ec: EdgecrewWorker | None = None
    lg: LangGraphWorker | None = None
    if engine == "edgecrew":
        ec = EdgecrewWorker(root, db_url, delay)
    else:
        lg = LangGraphWorker(root, db_url, delay)
        await lg.setup()
    reply: dict[str, Any] = {"ready": True}
    loop = asyncio.get_running_loop()
    try:
        while True:
            print(json.dumps(reply), flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            command = json.loads(line) if line.strip() else {"quit": True}
            if command.get("quit"):
                break
            if "idle" in command:  # CPU of an engine doing nothing: its background threads
                cpu0 = cpu_s()
                await asyncio.sleep(float(command["idle"]))
                reply = {"cpu_s": cpu_s() - cpu0}
                continue
            c = int(command["batch"])
            reply = await (ec.batch(c) if ec is not None else lg.batch(c))  # type: ignore[union-attr]
    finally:
        if ec is not None:
            ec.close()
        if lg is not None:
            await lg.aclose()


# -- driver ----------------------------------------------------------------------------------------


class Worker:
    """A worker process and its pipe."""

    def __init__(self, engine: str, root: Path, db_url: str | None, delay: float) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine, "--root", str(root)]
        cmd += ["--delay", str(delay)] + (["--db-url", db_url] if db_url else [])
        self.engine = engine
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.engine} worker exited (code {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def batch(self, c: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"batch": c}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def idle(self, seconds: float) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"idle": seconds}) + "\n")
        self.proc.stdin.flush()
        return float(self._read()["cpu_s"])

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.write('{"quit": true}\n')
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class PostgresCpu:
    """CPU seconds of a Postgres server: the postmaster, its live children, and its reaped ones."""

    def __init__(self, port: int) -> None:
        import psutil

        self.master = next(
            p for p in psutil.process_iter(["name", "cmdline"]) if f"-p {port}" in " ".join(p.info["cmdline"] or [])
        )

    def total(self) -> float:
        import psutil

        t = self.master.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self.master.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                c = child.cpu_times()
                total += c.user + c.system
        return total


@contextlib.contextmanager
def database(kind: str) -> Iterator[tuple[str | None, str | None, PostgresCpu | None]]:
    """(edgecrew's URL, LangGraph's URL, server CPU meter); None URLs mean SQLite files."""
    if kind == "sqlite":
        yield None, None, None
        return
    sys.path.insert(0, str(REPO))
    from tests.pg import available, postgres_server

    if not available():
        raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    import psycopg

    with postgres_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE langgraph")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        yield url, url.rsplit("/", 1)[0] + "/langgraph", PostgresCpu(port)


ANCHOR_MISSING = "langgraph-checkpoint-postgres is not installed (pip install langgraph-checkpoint-postgres)"


def postgres_anchor() -> bool:
    """Whether LangGraph's Postgres saver can be imported (it is not a dependency of edgecrew)."""
    import importlib.util

    return importlib.util.find_spec("langgraph.checkpoint.postgres") is not None


def batches_for(c: int, min_runs: int) -> int:
    return max(1, -(-min_runs // c))


def measure(db: str, levels: list[int], rounds: int, min_runs: int, delay: float, root: Path) -> list[dict[str, Any]]:
    engines: tuple[str, ...] = ("edgecrew", "langgraph")
    if db == "postgres" and not postgres_anchor():
        engines = ("edgecrew",)  # the anchor's saver is not installed: edgecrew alone
    acc: dict[tuple[str, int], dict[str, Any]] = {
        (e, c): {"wall_s": 0.0, "cpu_s": 0.0, "db_cpu_s": 0.0, "runs": 0, "failed": 0, "step_s": []}
        for e in engines
        for c in levels
    }
    with database(db) as (ec_url, lg_url, pg_cpu):
        urls = {"edgecrew": ec_url, "langgraph": lg_url}
        workers = {e: Worker(e, root / db / e, urls[e], delay) for e in engines}
        try:
            for w in workers.values():  # warm-up: DBOS is busy just after launch, pools fill
                w.batch(min(10, max(levels)))
            idle_ms_per_s = {e: round(1000 * w.idle(IDLE_S) / IDLE_S, 2) for e, w in workers.items()}
            for r in range(rounds):
                order = engines if r % 2 == 0 else engines[::-1]
                for c in levels:
                    for _ in range(batches_for(c, min_runs)):
                        for e in order:
                            db0 = pg_cpu.total() if pg_cpu else 0.0
                            got = workers[e].batch(c)
                            a = acc[(e, c)]
                            a["db_cpu_s"] += (pg_cpu.total() - db0) if pg_cpu else 0.0
                            for k in ("wall_s", "cpu_s", "runs", "failed"):
                                a[k] += got[k]
                            a["step_s"].extend(got["step_s"])
        finally:
            for w in workers.values():
                w.close()
    rows = []
    for c in levels:
        row: dict[str, Any] = {"db": db, "concurrent": c, "idle_cpu_ms_per_s": idle_ms_per_s}
        for e in engines:
            a = acc[(e, c)]
            steps = sorted(a["step_s"])
            n = len(steps)
            row[e] = {
                "runs": a["runs"],
                "failed": a["failed"],
                "steps": n,
                "runs_per_s": round(a["runs"] / a["wall_s"], 2),
                "step_p50_ms": round(1000 * statistics.median(steps), 1),
                "step_p99_ms": round(1000 * steps[min(n - 1, int(0.99 * n))], 1),
                "cpu_ms_per_step": round(1000 * a["cpu_s"] / n, 2),
                "db_cpu_ms_per_step": round(1000 * a["db_cpu_s"] / n, 2) if db == "postgres" else None,
            }
        if "langgraph" not in row:
            row["langgraph"] = row["ratio"] = None
            rows.append(row)
            continue
        e, g = row["edgecrew"], row["langgraph"]
        row["ratio"] = {
            "runs_per_s": round(e["runs_per_s"] / g["runs_per_s"], 2),
            "step_p50": round(e["step_p50_ms"] / g["step_p50_ms"], 2),
            "step_p99": round(e["step_p99_ms"] / g["step_p99_ms"], 2),
            "cpu_per_step": round(e["cpu_ms_per_step"] / g["cpu_ms_per_step"], 2),
        }
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'db':<8} {'C':>4}  {'engine':<9} {'runs/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/step':>11} "
        f"{'db CPU ms/step':>14} {'failed':>6}"
    )
    out = [head, "-" * len(head)]
    seen: set[str] = set()
    for r in rows:
        if r["db"] not in seen:
            seen.add(r["db"])
            i = r["idle_cpu_ms_per_s"]
            out.append(
                f"{r['db']:<8} idle: CPU ms per second of doing nothing: "
                + ", ".join(f"{'LangGraph' if k == 'langgraph' else k} {v:.1f}" for k, v in i.items())
            )
        for e in ("edgecrew", "langgraph"):
            s = r[e]
            if s is None:
                out.append(f"{r['db']:<8} {r['concurrent']:>4}  {e:<9} not measured: {ANCHOR_MISSING}")
                continue
            dbc = "-" if s["db_cpu_ms_per_step"] is None else f"{s['db_cpu_ms_per_step']:.2f}"
            out.append(
                f"{r['db']:<8} {r['concurrent']:>4}  {e:<9} {s['runs_per_s']:>7.2f} {s['step_p50_ms']:>7.1f} "
                f"{s['step_p99_ms']:>7.1f} {s['cpu_ms_per_step']:>11.2f} {dbc:>14} {s['failed']:>6}"
            )
        q = r["ratio"]
        if q is None:
            continue
        out.append(
            f"{'':<8} {'':>4}  {'ratio':<9} {q['runs_per_s']:>6.2f}x {q['step_p50']:>6.2f}x {q['step_p99']:>6.2f}x "
            f"{q['cpu_per_step']:>10.2f}x"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,100", help="concurrent runs per batch (1,10,100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every level (3)")
    parser.add_argument("--min-runs", type=int, default=20, help="runs per level and engine in a round (20)")
    parser.add_argument("--dbs", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per model call (0.05)")
    parser.add_argument("--quick", action="store_true", help="smoke test: levels 1,5, 1 round, 4 runs, SQLite")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--worker", choices=("edgecrew", "langgraph"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(args.worker, args.root, args.db_url, args.delay))
        return 0
    if args.quick:
        args.levels, args.rounds, args.min_runs, args.dbs = "1,5", 1, 4, "sqlite"
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    dbs = [x.strip() for x in args.dbs.split(",") if x.strip()]

    from importlib.metadata import version

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-conc-") as tmp:
        for db in dbs:
            rows += measure(db, levels, args.rounds, args.min_runs, args.delay, Path(tmp))
    wall = time.perf_counter() - started
    meta = {
        "benchmark": "concurrency",
        "anchor": "langgraph ainvoke(durability=sync) + AsyncSqliteSaver / AsyncPostgresSaver(pool of 10)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "edgecrew": version("edgecrew"),
        "dbos": version("dbos"),
        "langgraph": version("langgraph"),
        "agents": AGENTS,
        "delay_s": args.delay,
        "rounds": args.rounds,
        "min_runs": args.min_runs,
        "wall_s": round(wall, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": rows}, indent=2))
    else:
        print(
            f"edgecrew {meta['edgecrew']} (DBOS {meta['dbos']}) vs LangGraph {meta['langgraph']}, "
            f"{AGENTS}-agent chains, "
            f"{args.delay * 1000:.0f} ms per model call, {args.rounds} rounds x >= {args.min_runs} runs per level, "
            f"Python {meta['python']}, {meta['cpus']} CPUs"
        )
        print(table(rows))
        print(
            "ratio = edgecrew / LangGraph (runs/s: higher is better for edgecrew; the rest: lower is). CPU: each "
            "engine's process (all threads, in-process SQLite); db CPU: the Postgres server's processes. "
            f"wall {wall:.1f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
