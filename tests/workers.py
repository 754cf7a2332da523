"""`edgecrew worker` processes for the cluster tests and bench/cluster.py: start one, stop several."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """One `python -m edgecrew worker ARGS` with ``env``, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edgecrew", "worker", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_workers(workers: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the live ones (they stop cleanly), then wait; one that ignores it for 20 s is killed."""
    workers = list(workers)
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=20)
        except subprocess.TimeoutExpired:
            w.kill()
