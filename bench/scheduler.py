"""Scheduler: jobs admitted per second, and the delay from "policy allows" to "job started".

Both run edgecrew's real admission path in this process, as `edgecrew serve` runs it: a temp home with
SQLite, DBOS launched on this project's job queue, ``JobService.submit`` (a row, then a workflow on
the queue), the admission workflow (a check step, durable sleeps, a claim), the launch step that
records the start and then starts the command as a plain child process.

1. Admission rate: ``--jobs`` trivial jobs (``true``) submitted at once under an always-open policy;
   figure: jobs per second from the first submit to the last start (``started_at``), and to the last
   end. Anchor: the same commands started directly with ``subprocess.Popen``, all at once, then waited.
2. Allow-to-start delay: ``--waiting`` jobs submitted under a policy whose window opens a few seconds
   later (``HH:MM:SS``, computed from the clock); figure: each job's ``started_at`` minus the window's
   opening, p50 and p95. Anchor: an asyncio task per command that sleeps until the same opening and
   then starts it with ``subprocess.Popen`` (what a scheduler that knew the time and did nothing durable
   would do).

    .venv/bin/python bench/scheduler.py [--jobs 50] [--waiting 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def _project(root: Path, opens: datetime) -> None:
    end = opens + timedelta(hours=1)
    (root / "project").mkdir(parents=True)
    (root / "project" / "edgecrew.yaml").write_text(
        "policies:\n"
        "  always:\n"
        "    covers: {tags: [now]}\n"
        "    windows: [{start: '00:00', end: '00:00'}]\n"
        "  later:\n"
        "    covers: {tags: [later]}\n"
        f"    windows: [{{start: '{opens:%H:%M:%S}', end: '{end:%H:%M:%S}'}}]\n"
    )


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _until_done(jobs: Any, ids: list[str], timeout: float = 300) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [jobs.get(i) for i in ids]
        if all(j.finished for j in found):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(not j.finished for j in found)} jobs did not end")
        await asyncio.sleep(0.05)


def _anchor_rate(n: int) -> dict[str, float]:
    started = time.time()
    procs = [subprocess.Popen(["true"]) for _ in range(n)]
    last_start = time.time()
    for p in procs:
        p.wait()
    ended = time.time()
    return {"per_s_started": n / max(last_start - started, 1e-9), "per_s_ended": n / (ended - started)}


async def _anchor_delay(n: int, opens: float) -> list[float]:
    async def one() -> float:
        await asyncio.sleep(max(0.0, opens - time.time()))
        proc = subprocess.Popen(["true"])
        at = time.time()
        await asyncio.to_thread(proc.wait)
        return at - opens

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="edgecrew-bench-scheduler-"))
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.lead_s + 6)
    _project(root, opens)
    os.environ.update(EDGECREW_HOME=str(root / "home"), EDGECREW_PROJECT=str(root / "project"))
    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine import durable
    from edgecrew.ops import Ops

    rt = bootstrap()
    ops = Ops.of(rt)
    durable.launch(rt, queues=ops.queues())
    jobs = ops.jobs
    await jobs.start()
    try:
        # 2 first (its window opens at a fixed time): submit the waiting jobs, then measure 1 meanwhile.
        waiting = [(await jobs.submit(argv=["true"], tags=["later"])).id for _ in range(args.waiting)]
        first = time.time()
        ids = [(await jobs.submit(argv=["true"], tags=["now"])).id for _ in range(args.jobs)]
        submitted = time.time()
        done = await _until_done(jobs, ids)
        anchor = _anchor_rate(args.jobs)
        last_start = max(j.started_at for j in done)
        last_end = max(j.finished_at for j in done)
        if time.time() > opens.timestamp() - 1:
            raise SystemExit(f"part 1 outran the window ({args.lead_s} s lead): rerun with a larger --lead-s")
        delays_anchor = await _anchor_delay(args.waiting, opens.timestamp())
        waited = await _until_done(jobs, waiting)
    finally:
        await jobs.stop()
        durable.shutdown()
    failed = [j for j in done + waited if j.state != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs did not succeed: {failed[0].reason}")
    delays = [j.started_at - opens.timestamp() for j in waited]
    early = [d for d in delays if d < 0]
    rate = {
        "jobs": args.jobs,
        "submit_per_s": args.jobs / (submitted - first),
        "admitted_per_s": args.jobs / (last_start - first),
        "ended_per_s": args.jobs / (last_end - first),
        "anchor_started_per_s": anchor["per_s_started"],
        "anchor_ended_per_s": anchor["per_s_ended"],
    }
    rate["ratio_anchor_over_edgecrew"] = rate["anchor_ended_per_s"] / rate["ended_per_s"]
    delay = {
        "jobs": args.waiting,
        "p50_s": statistics.median(delays),
        "p95_s": _quantile(delays, 0.95),
        "started_before_window": len(early),
        "anchor_p50_s": statistics.median(delays_anchor),
        "anchor_p95_s": _quantile(delays_anchor, 0.95),
    }
    delay["ratio_p50"] = delay["p50_s"] / max(delay["anchor_p50_s"], 1e-6)
    return {"machine": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "admission": rate, "allow_to_start": delay}  # fmt: skip


def _print(result: dict[str, Any]) -> None:
    a, d = result["admission"], result["allow_to_start"]
    print(f"{result['machine']}, {result['cpus']} CPUs, Python {result['python']}")
    print(f"admission, {a['jobs']} trivial jobs at once under an always-open policy:")
    print(f"  submitted {a['submit_per_s']:.0f}/s; admitted and started {a['admitted_per_s']:.1f}/s; "
          f"ended {a['ended_per_s']:.1f}/s")  # fmt: skip
    print(f"  anchor (subprocess.Popen, all at once): started {a['anchor_started_per_s']:.0f}/s, "
          f"ended {a['anchor_ended_per_s']:.0f}/s; ratio {a['ratio_anchor_over_edgecrew']:.1f}x")  # fmt: skip
    print(f"allow-to-start delay, {d['jobs']} jobs waiting for a window to open:")
    print(f"  edgecrew p50 {d['p50_s'] * 1000:.0f} ms, p95 {d['p95_s'] * 1000:.0f} ms "
          f"(started before the window: {d['started_before_window']})")  # fmt: skip
    print(f"  anchor (sleep until the opening, then Popen) p50 {d['anchor_p50_s'] * 1000:.1f} ms, "
          f"p95 {d['anchor_p95_s'] * 1000:.1f} ms; ratio of p50s {d['ratio_p50']:.0f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50, help="trivial jobs submitted at once (part 1)")
    parser.add_argument("--waiting", type=int, default=20, help="jobs waiting for a window (part 2)")
    parser.add_argument("--lead-s", type=float, default=20.0, help="seconds part 1 may take before the window opens")
    parser.add_argument("--json", action="store_true")
    parsed = parser.parse_args()
    outcome = asyncio.run(main(parsed))
    print(json.dumps(outcome, indent=2)) if parsed.json else _print(outcome)
