"""Leases: which workers count as alive, from their last heartbeat and a clock that is passed in.

Pure functions over worker rows, so the rule is tested with a fed-in clock and the same rule is
used by the supervisor (declare dead), by routing (who serves an alias) and by the status page.
A worker is alive while ``now - heartbeat_at <= lease_s`` and no one declared it dead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["WorkerInfo", "alive", "expired", "serving"]


@dataclass(frozen=True)
class WorkerInfo:
    """One row of the workers table: what a worker advertises and when it last said so."""

    id: str  # its DBOS executor id
    host: str
    pid: int
    aliases: tuple[str, ...]
    tags: tuple[str, ...]
    heartbeat_at: float
    started_at: float
    state: str = "alive"  # alive | dead | stopped
    memory_bytes: int | None = None
    concurrency: int = 1
    running: int = 0
    dead_at: float | None = None
    declared_by: str | None = None
    recovered: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def is_alive(self, now: float, lease_s: float) -> bool:
        return self.state == "alive" and now - self.heartbeat_at <= lease_s

    def to_dict(self, now: float, lease_s: float) -> dict[str, object]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "aliases": list(self.aliases),
            "tags": list(self.tags),
            "memory_bytes": self.memory_bytes,
            "concurrency": self.concurrency,
            "running": self.running if self.state == "alive" else 0,  # a dead worker's work went elsewhere
            "state": self.state if self.state != "alive" or self.is_alive(now, lease_s) else "silent",
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "heartbeat_age_s": round(now - self.heartbeat_at, 2),
            "dead_at": self.dead_at,
            "declared_by": self.declared_by,
            "recovered": self.recovered if self.recovered >= 0 else None,  # None: recovery under way
        }


def alive(workers: Iterable[WorkerInfo], now: float, lease_s: float) -> list[WorkerInfo]:
    """The workers whose lease holds at ``now``."""
    return [w for w in workers if w.is_alive(now, lease_s)]


def expired(workers: Iterable[WorkerInfo], now: float, lease_s: float) -> list[WorkerInfo]:
    """The workers whose lease is over at ``now``: a live one silent longer than the lease, and one that
    stopped cleanly (at once): the ones to declare dead (a stopping one: stopped) and whose workflows to
    recover."""
    return [w for w in workers if w.state == "stopping" or (w.state == "alive" and now - w.heartbeat_at > lease_s)]


def serving(workers: Iterable[WorkerInfo], alias: str, now: float, lease_s: float) -> list[WorkerInfo]:
    """The live workers that advertise ``alias``, least loaded first."""
    found = [w for w in alive(workers, now, lease_s) if alias in w.aliases]
    return sorted(found, key=lambda w: (w.running / max(w.concurrency, 1), w.id))
