"""Engine overhead per run: durable N-agent chains on a zero-latency model, edgecrew vs LangGraph.

Both sides run the same chains (agent1 -> agent2 -> ... -> end) in this one process, on SQLite
files in the same temporary folder, with a model that answers at once, so what is measured is
the orchestration and persistence cost alone. edgecrew runs the team as a DBOS workflow (each model
call recorded in the store's call journal with its event, plus its run/step/message/event rows); the
anchor is LangGraph with a file-backed ``SqliteSaver`` and ``durability="sync"`` (each node's
checkpoint written before the next node starts, the same promise edgecrew makes). Both sides commit
with SQLite's ``synchronous=FULL`` (``--synchronous normal``: both with NORMAL). edgecrew's time runs
from ``RunService.start`` to the workflow's result; LangGraph's is one ``graph.invoke``.

Runs go round-robin (each chain length, edgecrew then LangGraph), after warm-up runs of every
configuration, so drift on a shared machine hits every figure alike.

    .venv/bin/python bench/overhead.py [--runs N] [--warmup N] [--lengths 3,10] [--synchronous full|normal] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

REPLY = "done"  # every agent's (and every LangGraph node's) fixed answer
TASK = "pass the baton down the chain"


# -- edgecrew --------------------------------------------------------------------------------------


def chain_yaml(n: int) -> str:
    lines = [f"name: chain{n}", "agents:"]
    lines += [f"  a{i}: {{model: fake, system: step {i}}}" for i in range(1, n + 1)]
    lines += ["graph:", "  start: a1", "  edges:"]
    lines += [f"    - {{from: a{i}, to: a{i + 1}}}" for i in range(1, n)]
    lines += [f"    - {{from: a{n}, to: end}}"]
    return "\n".join(lines) + "\n"


class EdgecrewBench:
    """edgecrew in this process, its home and project in ``root``."""

    def __init__(self, root: Path, synchronous: str = "full") -> None:
        os.environ["EDGECREW_HOME"] = str(root / "home")
        os.environ["EDGECREW_STORE_SYNCHRONOUS"] = synchronous
        os.environ["EDGECREW_PROJECT"] = str(root / "project")
        os.environ.setdefault("EDGECREW_DBOS_LOG_LEVEL", "ERROR")
        (root / "project" / "teams").mkdir(parents=True, exist_ok=True)

        from edgecrew.bootstrap import bootstrap
        from edgecrew.engine.service import RunService
        from edgecrew.models.scripted import ScriptedModel
        from edgecrew.settings import reset_settings

        reset_settings()
        self.rt = bootstrap()
        self.model = ScriptedModel([REPLY], cycle=True)
        self.rt.models.register("fake", self.model)
        self.svc = RunService(self.rt)
        self.teams = root / "project" / "teams"

    def team_file(self, n: int) -> str:
        path = self.teams / f"chain{n}.yaml"
        path.write_text(chain_yaml(n))
        return str(path)

    async def run(self, team_file: str) -> float:
        """One run to its end; returns its seconds and checks that it succeeded."""
        started = time.perf_counter()
        from edgecrew.engine.service import TeamFile

        begun = await self.svc.start(TeamFile(Path(team_file)), TASK)
        run_id, result = begun.run.id, await begun.handle.get_result()
        elapsed = time.perf_counter() - started
        self.model.calls.clear()  # the fake records every request; keep memory flat
        status = self.rt.store.get_run(run_id).status.value
        if status != "succeeded" or result.get("output") != {"text": REPLY}:
            raise RuntimeError(f"edgecrew run {run_id} ended {status}: {result}")
        return elapsed

    def close(self) -> None:
        from edgecrew.engine import durable

        durable.shutdown()
        self.rt.store.close()


# -- LangGraph (the anchor) ------------------------------------------------------------------------


class ChainState(TypedDict):
    task: str
    messages: Annotated[list[dict[str, str]], operator.add]


def fake_model(messages: list[dict[str, str]]) -> dict[str, str]:
    """The anchor's zero-latency model: a plain function with a fixed reply."""
    return {"role": "assistant", "content": REPLY}


def node(name: str, system: str) -> Any:  # a LangGraph node (its _Node protocol wants the name "state")
    def call(state: ChainState) -> dict[str, Any]:
        prompt = [{"role": "system", "content": system}, {"role": "user", "content": state["task"]}, *state["messages"]]
        reply = fake_model(prompt)
        return {"messages": [{**reply, "name": name}]}

    return call


class LangGraphBench:
    """LangGraph chains checkpointed by ``SqliteSaver`` to a file in ``root``."""

    def __init__(self, root: Path, synchronous: str = "full") -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver

        self.conn = sqlite3.connect(root / "langgraph.sqlite", check_same_thread=False)
        self.saver = SqliteSaver(self.conn)
        self.saver.setup()  # WAL; SQLite's default synchronous is FULL
        self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")

    def graph(self, n: int) -> Any:
        from langgraph.graph import END, START, StateGraph

        builder = StateGraph(ChainState)
        for i in range(1, n + 1):
            builder.add_node(f"a{i}", node(f"a{i}", f"step {i}"))
        builder.add_edge(START, "a1")
        for i in range(1, n):
            builder.add_edge(f"a{i}", f"a{i + 1}")
        builder.add_edge(f"a{n}", END)
        return builder.compile(checkpointer=self.saver)

    def run(self, graph: Any, n: int) -> float:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        started = time.perf_counter()
        state = graph.invoke({"task": TASK, "messages": []}, config, durability="sync")
        elapsed = time.perf_counter() - started
        if len(state["messages"]) != n or state["messages"][-1]["content"] != REPLY:
            raise RuntimeError(f"LangGraph chain of {n} ended with {state}")
        return elapsed

    def close(self) -> None:
        self.conn.close()


# -- driver ----------------------------------------------------------------------------------------


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    stats = {
        "mean_ms": statistics.fmean(ms),
        "p50_ms": statistics.median(ms),
        "p90_ms": statistics.quantiles(ms, n=10)[-1] if len(ms) > 1 else ms[0],
        "min_ms": min(ms),
    }
    return {k: round(v, 3) for k, v in stats.items()}


async def measure(
    lengths: list[int], runs: int, warmup: int, root: Path, synchronous: str = "full"
) -> list[dict[str, Any]]:
    ec = EdgecrewBench(root, synchronous)
    lg = LangGraphBench(root, synchronous)
    rows: list[dict[str, Any]] = []
    try:
        configs = [(n, ec.team_file(n), lg.graph(n)) for n in lengths]
        for _ in range(warmup):  # every config, before any timing: DBOS is busy just after launch
            for n, team_file, graph in configs:
                await ec.run(team_file)
                lg.run(graph, n)
        times: dict[int, tuple[list[float], list[float]]] = {n: ([], []) for n in lengths}
        for _ in range(runs):  # round-robin over configs and engines, so drift hits all alike
            for n, team_file, graph in configs:
                times[n][0].append(await ec.run(team_file))
                times[n][1].append(lg.run(graph, n))
        for n in lengths:
            e, g = summary(times[n][0]), summary(times[n][1])
            rows.append(
                {
                    "nodes": n,
                    "runs": runs,
                    "edgecrew": e,
                    "langgraph": g,
                    "ratio_mean": round(e["mean_ms"] / g["mean_ms"], 3),
                    "ratio_p50": round(e["p50_ms"] / g["p50_ms"], 3),
                }
            )
    finally:
        ec.close()
        lg.close()
    return rows


def per_node(rows: list[dict[str, Any]]) -> dict[str, float | None] | None:
    """Cost of one more node (p50), from the shortest and the longest chain: the fixed cost drops out."""
    if len(rows) < 2 or rows[0]["nodes"] == rows[-1]["nodes"]:
        return None
    short, long = rows[0], rows[-1]
    extra = long["nodes"] - short["nodes"]
    e = (long["edgecrew"]["p50_ms"] - short["edgecrew"]["p50_ms"]) / extra
    g = (long["langgraph"]["p50_ms"] - short["langgraph"]["p50_ms"]) / extra
    return {"edgecrew_ms": round(e, 3), "langgraph_ms": round(g, 3), "ratio": round(e / g, 3) if g > 0 else None}


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'nodes':>5}  {'edgecrew ms/run':>15}  {'p50':>7}  {'LangGraph ms/run':>16}  {'p50':>7}  "
        f"{'ratio':>6}  {'ratio p50':>9}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        e, g = r["edgecrew"], r["langgraph"]
        out.append(
            f"{r['nodes']:>5}  {e['mean_ms']:>15.2f}  {e['p50_ms']:>7.2f}  {g['mean_ms']:>16.2f}  "
            f"{g['p50_ms']:>7.2f}  {r['ratio_mean']:>5.2f}x  {r['ratio_p50']:>8.2f}x"
        )
    marginal = per_node(rows)
    if marginal is not None:
        out.append(
            f"one more node (p50, {rows[0]['nodes']} -> {rows[-1]['nodes']}): edgecrew "
            f"{marginal['edgecrew_ms']:.2f} ms, LangGraph {marginal['langgraph_ms']:.2f} ms"
            + (f" ({marginal['ratio']:.2f}x)" if marginal["ratio"] is not None else "")
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per chain length and engine (50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first (10)")
    parser.add_argument("--lengths", default="3,10", help="chain lengths, comma-separated (3,10)")
    parser.add_argument(
        "--synchronous", choices=("full", "normal"), default="full", help="SQLite commits, both sides (full)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    if args.runs < 1 or not lengths or min(lengths) < 1:
        parser.error("--runs and every chain length must be at least 1")

    from importlib.metadata import version

    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-") as tmp:
        started = time.perf_counter()
        rows = asyncio.run(measure(lengths, args.runs, args.warmup, Path(tmp), args.synchronous))
        wall = time.perf_counter() - started
    meta = {
        "benchmark": "overhead",
        "anchor": "langgraph+SqliteSaver(durability=sync)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "edgecrew": version("edgecrew"),
        "langgraph": version("langgraph"),
        "dbos": version("dbos"),
        "runs": args.runs,
        "warmup": args.warmup,
        "synchronous": args.synchronous,
        "wall_s": round(wall, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": rows, "per_node": per_node(rows)}, indent=2))
    else:
        print(
            f"edgecrew {meta['edgecrew']} (DBOS {meta['dbos']}) vs LangGraph {meta['langgraph']} + SqliteSaver, "
            f"zero-latency model, {args.runs} runs after {args.warmup} warm-up, Python {meta['python']}, "
            f"{meta['cpus']} CPUs, synchronous={args.synchronous.upper()}"
        )
        print(table(rows))
        print(f"ratio = edgecrew / LangGraph (lower is better for edgecrew); wall {wall:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
