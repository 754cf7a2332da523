"""Several machines on one Postgres: `edgecrew worker` processes, their leases, and model routing.

DBOS's queues and recovery are the distributed engine (team runs on ``edgecrew.cluster.runs``, model
calls on ``edgecrew.cluster.model.<alias>``); this package adds only what DBOS leaves to its users:
which worker serves which model (a heartbeated row in the workers table), when a silent worker is
dead (its lease), and asking DBOS to recover a dead executor's workflows on the live ones.
Without ``EDGECREW_CLUSTER`` nothing here runs: ``edgecrew serve`` and ``edgecrew run`` stay alone.
"""

from __future__ import annotations

from edgecrew.cluster.lease import WorkerInfo, alive, expired, serving
from edgecrew.cluster.service import ClusterService, ClusterStatus
from edgecrew.cluster.worker import ClusterWorker, served_aliases

__all__ = [
    "ClusterService",
    "ClusterStatus",
    "ClusterWorker",
    "WorkerInfo",
    "alive",
    "expired",
    "served_aliases",
    "serving",
]
