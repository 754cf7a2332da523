"""The cluster as the CLI, the API and the UI see it: workers, the models they serve, load, queues.

Read-only, from the workers table and DBOS's ``workflow_status`` table (both on the shared Postgres),
so any process of the cluster (a worker, ``edgecrew serve``, a CLI command) can answer it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from edgecrew.cluster.calls import MODEL_QUEUE_PREFIX
from edgecrew.cluster.lease import alive, disagreements
from edgecrew.cluster.table import WorkerTable
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime

__all__ = ["ClusterService", "ClusterStatus"]


@dataclass(frozen=True)
class ClusterStatus:
    """Workers (with their state), each alias's live workers (``models[].workers``: their ids), and each
    cluster queue's depth."""

    enabled: bool
    lease_s: float
    workers: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what live workers disagree on (version, edgecrew.yaml)

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "lease_s": self.lease_s,
            "workers": self.workers,
            "models": self.models,
            "queues": self.queues,
            "warnings": self.warnings,
        }


class ClusterService:
    """Read the cluster's state (``ClusterService.of(rt).status()``)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.table = WorkerTable(rt.store.engine)

    @classmethod
    def of(cls, rt: Runtime) -> ClusterService:
        return rt.extension(cls, cls)

    def status(self, now: float | None = None) -> ClusterStatus:
        settings = self.rt.settings
        now = time.time() if now is None else now
        lease = settings.cluster_lease_s
        if not settings.cluster_enabled:
            return ClusterStatus(False, lease)
        workers = self.table.all()
        live = alive(workers, now, lease)
        models: dict[str, dict[str, Any]] = {}
        for w in workers:  # every alias a listed worker served, each with the live workers serving it now
            for alias in w.aliases:
                entry = models.setdefault(alias, {"alias": alias, "tags": [], "workers": [], "live_workers": 0})
                entry["tags"] = sorted(set(entry["tags"]) | set(self._tags(alias)))
                if w in live:  # a stopped or dead worker of the last week serves nothing ("1 of 9" said otherwise)
                    entry["workers"].append(w.id)
                    entry["live_workers"] += 1
        return ClusterStatus(
            True,
            lease,
            workers=[w.to_dict(now, lease) for w in workers],
            models=[models[a] for a in sorted(models)],
            queues=self.queue_depths(),
            warnings=disagreements(workers, now, lease),
        )

    def no_worker_warning(self, now: float | None = None) -> str | None:
        """What to tell whoever just queued a run when no live worker would take it (None: one would,
        or the cluster is off): the run is not lost, it waits on the queue for a worker."""
        settings = self.rt.settings
        if not settings.cluster_enabled:
            return None
        now = time.time() if now is None else now
        if alive(self.table.all(), now, settings.cluster_lease_s):
            return None
        return (
            f"no live cluster worker: the run waits on queue {durable.RUNS_QUEUE} until an `edgecrew worker` "
            "starts on this database (see `edgecrew cluster status`)"
        )

    def _tags(self, alias: str) -> tuple[str, ...]:
        try:
            return self.rt.models.definition(alias).tags
        except Exception:  # an alias only another worker's project declares
            return ()

    def queue_depths(self) -> list[dict[str, Any]]:
        """Each cluster queue's workflows waiting (ENQUEUED) and running (PENDING)."""
        query = sa.text(
            "SELECT queue_name, status, COUNT(*) FROM dbos.workflow_status "
            "WHERE (queue_name = :runs OR queue_name LIKE :models) AND status IN ('ENQUEUED', 'PENDING') "
            "GROUP BY queue_name, status"
        )
        depths: dict[str, dict[str, Any]] = {
            durable.RUNS_QUEUE: {"queue": durable.RUNS_QUEUE, "waiting": 0, "running": 0}
        }
        try:
            with self.rt.store.engine.connect() as conn:
                rows = conn.execute(query, {"runs": durable.RUNS_QUEUE, "models": MODEL_QUEUE_PREFIX + "%"}).all()
        except sa.exc.DBAPIError:  # DBOS has not created its tables yet (no worker ever started)
            rows = []
        for name, status, count in rows:
            entry = depths.setdefault(name, {"queue": name, "waiting": 0, "running": 0})
            entry["waiting" if status == "ENQUEUED" else "running"] += int(count)
        return [depths[q] for q in sorted(depths)]
