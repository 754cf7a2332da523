"""Where an edgecrew run's time goes: cProfile of N-node chains on the zero-latency model of
overhead.py (the same EdgecrewBench), the top functions by cumulative time.

Read the call counts (commits per node, events per node) more than the times: a profiler slows
Python code, not the disk.

    .venv/bin/python bench/profile_overhead.py [--nodes 10] [--runs 20] [--warmup 5] [--top 60]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import overhead


async def main(args: argparse.Namespace) -> None:
    bench = overhead.EdgecrewBench(Path(tempfile.mkdtemp(prefix="edgecrew-profile-")))
    team = bench.team_file(args.nodes)
    for _ in range(args.warmup):
        await bench.run(team)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(args.runs):
        await bench.run(team)
    profiler.disable()
    per_run = (time.perf_counter() - started) / args.runs * 1000
    bench.close()
    print(f"{args.runs} runs of {args.nodes} nodes: {per_run:.1f} ms a run with the profiler on")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--top", type=int, default=60)
    asyncio.run(main(parser.parse_args()))
