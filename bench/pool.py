"""Model pool: two local models alternating, resident vs reloaded, and swap-aware vs FIFO queueing.

Both parts use the engine's pool (``edgecrew.engine.runtime.build_pool``) over a ``ModelRegistry`` with
the two built-in aliases, ``local`` (SmolLM2-135M) and ``local-gemma`` (Gemma-3-270M), whose footprints
are measured once up front (RSS growth over a load) and then declared, so the budgets below fit
exactly what they are meant to fit. Decoding is greedy.

1. Alternating calls (local, local-gemma, local, ...), one at a time, in two pools side by side:
   one whose budget fits both models (after the first call of each, every call finds its model
   resident) and one whose budget fits only one (every call evicts the other model and loads its
   own). Figure: median latency per call, wall clock around ``pool.use(alias)`` and the request,
   reloaded / resident (target: >= 5x). Calls go to the two pools in turn, so drift hits both, and
   both pools receive the same requests. Two workloads, each measured and reported:
   - ``question``: a one-line question, no system prompt, no tools: what a reload costs
     when there is nothing to lose but the load itself (the prefix cache saves only the chat
     template's first tokens);
   - ``team``: the first model call of each agent of bench/prefix_reuse.py's 4-agent team (system
     prompt with the team handbook, twelve tools, the task and the previous agent's output), built
     by the engine, replies constrained to a tool call: a reload also throws away the KV state of the
     ~1k-token prefix every agent shares, which a resident model keeps.
   Both generate up to ``--max-tokens`` (8) tokens: the pool does not change what generation costs,
   and the same requests go to both pools. (A tool call cut off at max_tokens fails validation; the
   call is timed all the same.)

2. A budget that fits one model, and a queue of concurrent requests: K for each model, submitted
   interleaved (local, local-gemma, local, ...) all at once. With ``resident_first=True`` (the
   default) the pool serves requests for the resident model before those that need a swap (within
   its fairness bound); with ``resident_first=False`` it is plain FIFO. Figures: loads, evictions
   (swaps) and total time for the batch, and the order in which the requests were served.
   ``build_pool`` takes no ``resident_first`` argument, so the attribute is set on the pool it returns.

    .venv/bin/python bench/pool.py [--calls 12] [--per-model 4] [--max-tokens 8] [--workloads question,team]
                                   [--threads 1] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ALIASES = ("local", "local-gemma")
QUESTIONS = [
    "Name a colour.",
    "Say hello.",
    "What is 2 plus 2?",
    "Name a fruit.",
    "Name an animal.",
    "What day comes after Monday?",
    "Name a country.",
    "Say goodbye.",
    "Name a planet.",
    "What is the opposite of hot?",
    "Name a tree.",
    "Name a month.",
]


def make_registry(data_dir: Path, threads: int, footprints: dict[str, int] | None) -> Any:
    from edgecrew.models.registry import BUILTIN_MODELS, ModelRegistry

    defs = {}
    for alias in ALIASES:
        d = replace(BUILTIN_MODELS[alias], threads=threads)
        if footprints is not None:
            d = replace(d, memory_bytes=footprints[alias])
        defs[alias] = d
    return ModelRegistry(defs, data_dir=data_dir)


def measure_footprints(data_dir: Path, threads: int) -> dict[str, int]:
    """RSS growth over one load of each model (the GGUF is assembled first, outside the measure)."""
    import psutil

    registry = make_registry(data_dir, threads, None)
    process = psutil.Process()
    footprints = {}
    for alias in ALIASES:
        registry.gguf_path(registry.definition(alias))  # local-gemma: join its chunks now, not in a load
        model: Any = registry.build(registry.definition(alias))
        before = process.memory_info().rss
        model.load()
        footprints[alias] = max(process.memory_info().rss - before, 1)
        model.close()
    return footprints


def request(i: int, max_tokens: int) -> Any:
    """Workload ``question``: a one-line question, no system prompt, no tools."""
    from edgecrew.domain.messages import Message, ModelRequest

    return ModelRequest(
        messages=(Message("user", QUESTIONS[i % len(QUESTIONS)]),), max_tokens=max_tokens, temperature=0.0
    )


def team_requests(calls: int, max_tokens: int) -> list[Any]:
    """Workload ``team``: the requests the agents of bench/prefix_reuse.py's team send.

    Call i is agent a(i mod 4)'s first model call, built by the engine (``system_prompt``: the team's
    handbook and the agent's line; the twelve tools; ``context_for``: the task and the previous
    agent's output, which names the call so no two user messages are alike). Every request shares
    the ~1k-token tool list and handbook; a resident model keeps that prefix's KV state, a reloaded
    one evaluates it again.
    """
    from prefix_reuse import AGENTS, TASK, team_yaml
    from tool_calls import tool_definitions

    from edgecrew.domain.messages import Message, ModelRequest
    from edgecrew.engine.agent import system_prompt
    from edgecrew.engine.graph import context_for
    from edgecrew.specs.loader import load_team_text

    team = load_team_text(team_yaml("local", 1, max_tokens, 1), "pool-team.yaml")
    tools = tool_definitions()
    out = []
    for i in range(calls):
        name = AGENTS[i % len(AGENTS)][0]
        prev, prev_role, _ = AGENTS[(i - 1) % len(AGENTS)]
        board = {prev: (prev_role, {"text": f"Draft {i}: three days, twelve people, 9000 euros; details to follow."})}
        messages = (Message("system", system_prompt(team.agents[name])), Message("user", context_for(TASK, board)))
        out.append(ModelRequest(messages=messages, tools=tools, max_tokens=max_tokens))
    return out


async def call(pool: Any, alias: str, req: Any, served: list[str] | None = None) -> float:
    from edgecrew.errors import InvalidOutputError

    started = time.perf_counter()
    async with pool.use(alias) as model:
        if served is not None:
            served.append(alias)
        with contextlib.suppress(InvalidOutputError):  # generated, then rejected (a call cut off at max_tokens)
            await model.request(req)
    return time.perf_counter() - started


def counts(pool: Any) -> dict[str, int]:
    state = pool.state()
    return {"loads": state.loads, "evictions": state.evictions, "waits": state.waits}


async def alternating(registry: Any, budgets: dict[str, int], requests: list[Any]) -> dict[str, Any]:
    """``requests[0]`` warms each model up; the rest are the timed calls, alternating models."""
    from edgecrew.engine.runtime import build_pool

    pools = {mode: build_pool(registry, budget) for mode, budget in budgets.items()}
    seconds: dict[str, list[float]] = {mode: [] for mode in pools}
    try:
        for pool in pools.values():  # warm-up: one call per model (resident: loads both)
            for alias in ALIASES:
                await call(pool, alias, requests[0])
        for i, req in enumerate(requests[1:]):
            alias = ALIASES[i % len(ALIASES)]
            for mode, pool in pools.items():
                seconds[mode].append(await call(pool, alias, req))
        result: dict[str, Any] = {}
        for mode, pool in pools.items():
            per_model = {
                alias: round(1000 * statistics.median(seconds[mode][i::2]), 1) for i, alias in enumerate(ALIASES)
            }
            result[mode] = {
                "p50_ms": round(1000 * statistics.median(seconds[mode]), 1),
                "mean_ms": round(1000 * statistics.fmean(seconds[mode]), 1),
                "p50_ms_by_model": per_model,
                **counts(pool),
            }
    finally:
        for pool in pools.values():
            await pool.aclose()
    result["ratio_p50"] = round(result["reload"]["p50_ms"] / result["resident"]["p50_ms"], 2)
    return result


async def queued(registry: Any, budget: int, per_model: int, max_tokens: int, resident_first: bool) -> dict[str, Any]:
    from edgecrew.engine.runtime import build_pool

    pool = build_pool(registry, budget)
    pool.resident_first = resident_first  # build_pool has no parameter for it
    served: list[str] = []
    order = [ALIASES[i % len(ALIASES)] for i in range(per_model * len(ALIASES))]
    try:
        started = time.perf_counter()
        latencies = await asyncio.gather(
            *(call(pool, alias, request(i, max_tokens), served) for i, alias in enumerate(order))
        )
        total = time.perf_counter() - started
        return {
            "total_s": round(total, 2),
            "p50_latency_s": round(statistics.median(latencies), 2),
            "max_latency_s": round(max(latencies), 2),
            **counts(pool),
            "served": "".join("L" if a == "local" else "G" for a in served),
        }
    finally:
        await pool.aclose()


async def measure(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    footprints = measure_footprints(data_dir, args.threads)
    registry = make_registry(data_dir, args.threads, footprints)
    both, biggest = sum(footprints.values()), max(footprints.values())
    one = min(int(biggest * 1.25), (biggest + both) // 2)  # fits either model alone, never both
    budgets = {"resident": int(both * 1.5), "reload": one}
    n = args.calls + 1  # the first request warms the models up
    workloads = {
        "question": lambda: [request(i, args.max_tokens) for i in range(n)],
        "team": lambda: team_requests(n, args.max_tokens),
    }
    part1 = {name: await alternating(registry, budgets, workloads[name]()) for name in args.workloads}
    part2 = {}
    for rounds in range(args.rounds):  # alternate which policy goes first
        for mode in ("resident_first", "fifo") if rounds % 2 == 0 else ("fifo", "resident_first"):
            run = await queued(registry, one, args.per_model, args.max_tokens, mode == "resident_first")
            part2.setdefault(mode, []).append(run)
    summary2: dict[str, Any] = {}
    for mode, runs in part2.items():
        summary2[mode] = {**runs[0], "total_s": round(statistics.median(r["total_s"] for r in runs), 2)}
    summary2["time_ratio"] = round(summary2["fifo"]["total_s"] / summary2["resident_first"]["total_s"], 2)
    return {
        "footprints_mib": {a: round(f / 2**20, 1) for a, f in footprints.items()},
        "budgets_mib": {k: round(v / 2**20, 1) for k, v in budgets.items()},
        "alternating": part1,
        "queue": summary2,
        "queue_runs": part2,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12, help="timed alternating calls per pool (12)")
    parser.add_argument("--per-model", type=int, default=4, help="concurrent requests per model in part 2 (4)")
    parser.add_argument("--rounds", type=int, default=2, help="part 2 runs per policy, alternating order (2)")
    parser.add_argument("--max-tokens", type=int, default=8, help="max_tokens per request (8)")
    parser.add_argument(
        "--workloads", default="question,team", help="part 1 workloads, comma-separated (question,team)"
    )
    parser.add_argument("--threads", type=int, default=1, help="n_threads of both models (1)")
    parser.add_argument("--data-dir", type=Path, help="where local-gemma's GGUF is assembled (a temp dir)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.calls, args.per_model, args.rounds, args.threads, args.max_tokens) < 1:
        parser.error("every count must be at least 1")
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(args.workloads) - {"question", "team"})
    if unknown or not args.workloads:
        parser.error(f"--workloads takes question and/or team, not {', '.join(unknown) or 'nothing'}")

    from importlib.metadata import version

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-") as tmp:
        r = asyncio.run(measure(args.data_dir or Path(tmp), args))
    wall = time.perf_counter() - started
    meta = {
        "benchmark": "pool",
        "anchor": "reload on every call (budget fits one) / plain FIFO queue",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "edgecrew": version("edgecrew"),
        "calls": args.calls,
        "per_model": args.per_model,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "target": "reload p50 / resident p50 >= 5x",
        "wall_s": round(wall, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": r}, indent=2))
        return 0
    a, q = r["alternating"], r["queue"]
    fp = r["footprints_mib"]
    print(
        f"edgecrew {meta['edgecrew']} model pool, local (SmolLM2-135M, {fp['local']} MiB) and local-gemma "
        f"(Gemma-3-270M, {fp['local-gemma']} MiB), {args.threads} thread(s), max_tokens {args.max_tokens}, "
        f"Python {meta['python']}"
    )
    for workload, m in a.items():
        title = f"alternating, {workload}"
        head = f"{title:>24}  {'p50 ms':>8}  {'local':>8}  {'gemma':>8}  {'loads':>5}  {'evictions':>9}"
        print(head)
        print("-" * len(head))
        for mode, label in (("resident", "resident (fits both)"), ("reload", "reload (fits one)")):
            row = m[mode]
            by = row["p50_ms_by_model"]
            print(
                f"{label:>24}  {row['p50_ms']:>8.1f}  {by['local']:>8.1f}  {by['local-gemma']:>8.1f}  "
                f"{row['loads']:>5}  {row['evictions']:>9}"
            )
        print(f"{workload}: reload / resident (p50) {m['ratio_p50']:.2f}x (target >= 5x)")
    print(f"budgets {r['budgets_mib']} MiB")
    head = f"{'queue, fits one':>24}  {'total s':>8}  {'p50 s':>6}  {'loads':>5}  {'evictions':>9}  served"
    print(head)
    print("-" * len(head))
    for mode in ("resident_first", "fifo"):
        m = q[mode]
        print(
            f"{mode:>24}  {m['total_s']:>8.2f}  {m['p50_latency_s']:>6.2f}  {m['loads']:>5}  {m['evictions']:>9}  "
            f"{m['served']}"
        )
    print(
        f"{args.per_model} requests per model submitted at once, interleaved; fifo / resident_first time: "
        f"{q['time_ratio']:.2f}x; wall {wall:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
