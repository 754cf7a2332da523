"""The metric sampler's rows: host metrics (one row per sample time per metric name) and process
rows (the busiest processes of each sample, and the process trees asked to be tracked).

Every row carries its host, so several machines can share one Postgres; a series is one range scan
of the ``(name, host, at)`` index, and retention is one range delete on ``at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore


@dataclass(frozen=True)
class ProcessRow:
    """One process (``kind="process"``, ``label`` its name) or tracked tree (``kind="tracked"``) in a sample."""

    kind: Literal["process", "tracked"]
    label: str
    pid: int
    rss_bytes: float
    cpu_percent: float
    processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "pid": self.pid,
            "rss_bytes": int(self.rss_bytes),
            "cpu_percent": round(self.cpu_percent, 1),
            "processes": self.processes,
        }


@dataclass(frozen=True)
class Sample:
    """One sample of one host as stored."""

    host: str
    at: float
    metrics: dict[str, float]
    processes: list[ProcessRow]

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "at": self.at,
            "metrics": dict(self.metrics),
            "processes": [p.to_dict() for p in self.processes if p.kind == "process"],
            "tracked": [p.to_dict() for p in self.processes if p.kind == "tracked"],
        }


class SampleStore:
    """Metric and process samples, over the run store's engine."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def write(self, sample: Sample) -> None:
        """Record one sample (its metrics and process rows) in one transaction."""
        metric_rows = [
            {"host": sample.host, "at": sample.at, "name": name, "value": float(value)}
            for name, value in sample.metrics.items()
        ]
        process_rows = [
            {
                "host": sample.host,
                "at": sample.at,
                "kind": p.kind,
                "label": p.label[:255],
                "pid": p.pid,
                "rss_bytes": float(p.rss_bytes),
                "cpu_percent": float(p.cpu_percent),
                "processes": p.processes,
            }
            for p in sample.processes
        ]
        with self.store.transaction() as conn:
            if metric_rows:
                conn.execute(t.metric_samples.insert(), metric_rows)
            if process_rows:
                conn.execute(t.process_samples.insert(), process_rows)

    def series(self, name: str, host: str, since: float, until: float | None = None) -> list[tuple[float, float]]:
        """(time, value) of one metric of one host, oldest first."""
        c = t.metric_samples.c
        query = sa.select(c.at, c.value).where(c.name == name, c.host == host, c.at >= since)
        if until is not None:
            query = query.where(c.at <= until)
        with self.store.engine.connect() as conn:
            return [(float(at), float(value)) for at, value in conn.execute(query.order_by(c.at))]

    def latest(self, host: str, *, since: float | None = None) -> Sample | None:
        """The newest sample of ``host`` (taken at or after ``since`` when given)."""
        c = t.metric_samples.c
        newest = sa.select(sa.func.max(c.at)).where(c.host == host)
        if since is not None:
            newest = newest.where(c.at >= since)
        with self.store.engine.connect() as conn:
            at = conn.execute(newest).scalar()
            if at is None:
                return None
            metrics = {
                str(name): float(value)
                for name, value in conn.execute(sa.select(c.name, c.value).where(c.host == host, c.at == at))
            }
            p = t.process_samples.c
            rows = conn.execute(
                sa.select(p.kind, p.label, p.pid, p.rss_bytes, p.cpu_percent, p.processes)
                .where(p.host == host, p.at == at)
                .order_by(p.id)
            ).all()
        processes = [ProcessRow(r.kind, r.label, r.pid, r.rss_bytes, r.cpu_percent, r.processes) for r in rows]
        return Sample(host, float(at), metrics, processes)

    def top(
        self, host: str, resource: Literal["memory", "cpu"], since: float, limit: int, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Processes and tracked trees by their peak RSS (``memory``) or CPU (``cpu``) in the window."""
        p = t.process_samples.c
        peak_rss, peak_cpu = sa.func.max(p.rss_bytes), sa.func.max(p.cpu_percent)
        query = (
            sa.select(
                p.kind,
                p.label,
                p.pid,
                peak_rss.label("peak_rss"),
                peak_cpu.label("peak_cpu"),
                sa.func.avg(p.cpu_percent).label("avg_cpu"),
                sa.func.count().label("samples"),
                sa.func.min(p.at).label("first_seen"),
                sa.func.max(p.at).label("last_seen"),
            )
            .where(p.host == host, p.at >= since)
            .group_by(p.kind, p.label, p.pid)
            .order_by((peak_rss if resource == "memory" else peak_cpu).desc(), p.label)
            .limit(limit)
        )
        if until is not None:
            query = query.where(p.at <= until)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "kind": r.kind,
                "label": r.label,
                "pid": r.pid,
                "peak_rss_bytes": int(r.peak_rss),
                "peak_cpu_percent": round(float(r.peak_cpu), 1),
                "avg_cpu_percent": round(float(r.avg_cpu), 1),
                "samples": int(r.samples),
                "first_seen": float(r.first_seen),
                "last_seen": float(r.last_seen),
            }
            for r in rows
        ]

    def count(self, host: str, since: float) -> int:
        """How many samples ``host`` took since ``since``."""
        c = t.metric_samples.c
        query = sa.select(sa.func.count(sa.distinct(c.at))).where(c.host == host, c.at >= since)
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def prune(self, before: float) -> int:
        """Delete every row (of every host) older than ``before``; how many went."""
        with self.store.transaction() as conn:
            gone = conn.execute(t.metric_samples.delete().where(t.metric_samples.c.at < before)).rowcount
            gone += conn.execute(t.process_samples.delete().where(t.process_samples.c.at < before)).rowcount
        return int(gone)
