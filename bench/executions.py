"""Executions: how many task code versions this machine runs per minute, and what the sandbox costs.

1. Start-up cost per process: ``run_sandboxed("python", "pass")`` (the best tier this machine has:
   bubblewrap namespaces, Landlock, rlimits, a supervisor) beside the anchor, a plain
   ``python -c pass`` child process started the same way edgecrew would without a sandbox
   (``asyncio.create_subprocess_exec``). Figure: median wall time of each and the ratio.
2. Executions per minute: ``ExecutionService.run`` on a real SQLite store, a version that adds two
   numbers and a task with three stdin/stdout checks (so one execution is three sandboxed processes,
   the result row and two log files), one after another and with ``--parallel`` at once. Anchor: the
   same three checks as plain child processes with the output compared in Python, nothing stored.

Each figure is taken after one untimed warm-up of what it times (the sandbox's first run probes the
kernel and loads the launcher, the store's first execution opens its files), so the first round's
one-off costs do not land in the rates.

    .venv/bin/python bench/executions.py [--rounds 20] [--parallel 2] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgecrew.engine.executors import executor_alive, executor_id
from edgecrew.store.repo import open_store
from edgecrew.store.tasks import TaskStore
from edgecrew.tasks import ExecutionService, parse_checks
from edgecrew.tools.sandbox import SandboxLimits, run_sandboxed, sandbox_tier

CODE = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"
CASES = [("2 3", "5"), ("10 -4", "6"), ("0 0", "0")]


async def plain(code: str, stdin: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        code,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(stdin.encode() if stdin is not None else None)
    return out.decode()


async def startup(rounds: int, work: Path) -> dict[str, float]:
    await run_sandboxed("python", "pass", workdir=work / "warm-up")
    await plain("pass")
    sandboxed, bare = [], []
    for i in range(rounds):  # interleaved, so drift hits both alike
        started = time.perf_counter()
        await run_sandboxed("python", "pass", workdir=work / f"s{i}")
        sandboxed.append(time.perf_counter() - started)
        started = time.perf_counter()
        await plain("pass")
        bare.append(time.perf_counter() - started)
    s, b = statistics.median(sandboxed), statistics.median(bare)
    return {"sandboxed_ms": s * 1000, "plain_ms": b * 1000, "ratio": s / b}


async def executions(rounds: int, parallel: int, work: Path) -> dict[str, float]:
    tasks = TaskStore(open_store(f"sqlite:///{work / 'store.db'}"), work / "tasks")
    service = ExecutionService(
        tasks,
        executor=executor_id(),
        executor_alive=executor_alive,
        limits=SandboxLimits(wall_s=10, cpu_s=5),
        max_parallel=parallel,
    )
    checks = parse_checks({"io": [{"input": i, "expected": e} for i, e in CASES]}).to_json()
    task = tasks.create("add", "add two numbers", checks=checks)
    version = tasks.add_code(task.id, "solution.py", CODE.encode()).version

    async def one() -> None:
        record = await service.run(task.id, version)
        assert record.status == "succeeded", record.reason

    async def anchor() -> None:
        for stdin, expected in CASES:
            assert (await plain(CODE, stdin)).strip() == expected

    figures: dict[str, float] = {}
    for name, job in (("edgecrew", one), ("plain", anchor)):
        await job()  # warm-up, untimed
        started = time.perf_counter()
        for _ in range(rounds):
            await job()
        figures[f"{name}_per_min"] = 60 * rounds / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(0, rounds, parallel):
            await asyncio.gather(*(job() for _ in range(parallel)))
        figures[f"{name}_per_min_parallel"] = 60 * rounds / (time.perf_counter() - started)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 rounds, 2 at once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.parallel = 2, 2
    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-exec-") as folder:
        work = Path(folder)
        start = await startup(args.rounds, work)
        per_min = await executions(args.rounds, args.parallel, work)
    tier = sandbox_tier()
    result: dict[str, Any] = {"tier": tier.name, "startup": start, "executions": per_min, "rounds": args.rounds}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"edgecrew executions, sandbox tier {tier.name} ({', '.join(tier.isolation)}), {args.rounds} rounds,")
    print(f"Python {platform.python_version()}, {platform.machine()}")
    print(
        f"start-up per process (median): sandboxed {start['sandboxed_ms']:.1f} ms, "
        f"plain python -c pass {start['plain_ms']:.1f} ms, ratio {start['ratio']:.2f}x"
    )
    print(f"executions of a version with {len(CASES)} checks, per minute:")
    print(
        f"  one at a time:   edgecrew {per_min['edgecrew_per_min']:.0f}, plain children "
        f"{per_min['plain_per_min']:.0f} ({per_min['plain_per_min'] / per_min['edgecrew_per_min']:.2f}x)"
    )
    print(
        f"  {args.parallel} at once:       edgecrew {per_min['edgecrew_per_min_parallel']:.0f}, plain children "
        f"{per_min['plain_per_min_parallel']:.0f} "
        f"({per_min['plain_per_min_parallel'] / per_min['edgecrew_per_min_parallel']:.2f}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
