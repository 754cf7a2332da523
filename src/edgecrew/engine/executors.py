"""Who is running what: an executor id per edgecrew process, and whether its process still lives.

The id is ``host:pid:start-time`` so a recycled pid is never mistaken for the process that died.
"""

from __future__ import annotations

import socket
from functools import lru_cache

import psutil


@lru_cache(maxsize=1)
def executor_id() -> str:
    proc = psutil.Process()
    return f"{socket.gethostname()}:{proc.pid}:{int(proc.create_time())}"


def executor_alive(executor: str | None) -> bool:
    """Whether the process behind an executor id still runs (other hosts' executors count as alive)."""
    if not executor or executor == "local":
        return False
    host, _, rest = executor.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's executor: its own restart recovers its runs
    try:
        proc = psutil.Process(int(pid_text))
        # A killed process stays a zombie until reaped (forever in a container without init).
        return int(proc.create_time()) == int(started) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False
