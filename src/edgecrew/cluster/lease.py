"""Leases: which workers count as alive, from their last heartbeat and a clock that is passed in.

Pure functions over worker rows, so the rule is tested with a fed-in clock and the same rule is
used by the supervisor (declare dead), by routing (who serves an alias) and by the status page.
A worker is alive while ``now - heartbeat_at <= lease_s`` and no one declared it dead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["WorkerInfo", "alive", "disagreements", "expired", "serving"]


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
    state: str = "alive"  # alive | dead | stopped (stopping: a worker from before workers recorded their own stop)
    memory_bytes: int | None = None
    concurrency: int = 1
    running: int = 0
    dead_at: float | None = None
    declared_by: str | None = None
    recovered: int = 0
    version: str = ""  # its edgecrew version ("": a worker from before it was recorded)
    config: str = ""  # a digest of its project's edgecrew.yaml (its models, tools, plugins); "" without one
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
            "version": self.version or None,
            "config": self.config or None,
        }


def alive(workers: Iterable[WorkerInfo], now: float, lease_s: float) -> list[WorkerInfo]:
    """The workers whose lease holds at ``now``."""
    return [w for w in workers if w.is_alive(now, lease_s)]


def expired(workers: Iterable[WorkerInfo], now: float, lease_s: float) -> list[WorkerInfo]:
    """The workers whose lease is over at ``now``: a live one silent longer than the lease, and one that
    stopped cleanly leaving unfinished workflows (at once): the ones to declare dead (a stopped one stays
    stopped) and whose workflows to recover."""
    return [
        w
        for w in workers
        if w.state == "stopping"
        or (w.state == "stopped" and w.recovered < 0 and w.declared_by is None)
        or (w.state == "alive" and now - w.heartbeat_at > lease_s)
    ]


def serving(workers: Iterable[WorkerInfo], alias: str, now: float, lease_s: float) -> list[WorkerInfo]:
    """The live workers that advertise ``alias``, least loaded first."""
    found = [w for w in alive(workers, now, lease_s) if alias in w.aliases]
    return sorted(found, key=lambda w: (w.running / max(w.concurrency, 1), w.id))


def disagreements(workers: Iterable[WorkerInfo], now: float, lease_s: float) -> list[str]:
    """What the live workers disagree on that makes a run depend on which worker takes it: the edgecrew
    version (a run replayed on another version may take another path) and the project's edgecrew.yaml
    (an alias names another model, a tool another plugin). Empty when they agree (or before a worker
    recorded either: an older worker's empty field is left out)."""
    live = alive(workers, now, lease_s)
    found: list[str] = []
    for what, fix, field_name in (
        ("edgecrew versions", "install one version on every machine", "version"),
        ("project configurations (edgecrew.yaml)", "give every worker the same project", "config"),
    ):
        groups: dict[str, list[str]] = {}
        for w in live:
            if value := str(getattr(w, field_name)):
                groups.setdefault(value, []).append(w.id)
        if len(groups) > 1:
            each = "; ".join(f"{key} on {', '.join(ids)}" for key, ids in sorted(groups.items()))
            found.append(
                f"live workers run different {what}: {each}; a run's result depends on which worker takes it ({fix})"
            )
    return found
