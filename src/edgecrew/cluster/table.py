"""The workers table: a worker's advertisement and heartbeat, and the one atomic "declare dead".

Declaring is a conditional UPDATE (``state = 'alive' AND heartbeat_at < now - lease``): when every
live worker's supervisor tries at once, the row lock lets exactly one of them win, and only the
winner asks DBOS to recover the dead worker's workflows. Until it has, the row's ``recovered`` is
``RECOVERING`` (negative), so the supervisor tells "recovered none" from "recovery never finished".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edgecrew.cluster.lease import WorkerInfo
from edgecrew.store import tables as t

__all__ = ["RECOVERING", "WorkerTable"]

RECOVERING = -1  # ``recovered`` of a worker declared dead whose workflows are being recovered
# The workflows an executor runs, in DBOS's table (on the same Postgres database as the workers table).
_PENDING = sa.text("SELECT COUNT(*) FROM dbos.workflow_status WHERE executor_id = :id AND status = 'PENDING'")


def _ended(cutoff: float) -> sa.ColumnElement[bool]:
    """A held lease that is over: a clean stop ends it at once (a worker that stopped with unfinished
    workflows, or one from before workers recorded their own stop: ``stopping``), silence once it is older
    than the lease."""
    return sa.or_(
        t.workers.c.state == "stopping",
        _handed_off(),
        sa.and_(t.workers.c.state == "alive", t.workers.c.heartbeat_at < cutoff),
    )


def _handed_off() -> sa.ColumnElement[bool]:
    """A worker that stopped cleanly leaving unfinished workflows: stopped, recovery not done, and no one
    declared it (a worker cannot recover its own workflows as it exits: a live one does)."""
    return sa.and_(
        t.workers.c.state == "stopped", t.workers.c.recovered == RECOVERING, t.workers.c.declared_by.is_(None)
    )


class WorkerTable:
    """Read and write the workers table of one store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(self, info: WorkerInfo) -> None:
        row = {
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "aliases": list(info.aliases),
            "tags": list(info.tags),
            "memory_bytes": info.memory_bytes,
            "concurrency": info.concurrency,
            "running": 0,
            "state": "alive",
            "started_at": info.started_at,
            "heartbeat_at": info.heartbeat_at,
            "dead_at": None,
            "declared_by": None,
            "recovered": 0,
            "version": info.version or None,
            "config": info.config or None,
        }
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t.workers).where(t.workers.c.id == info.id))
            conn.execute(sa.insert(t.workers).values(**row))

    def heartbeat(self, worker_id: str, now: float, running: int) -> str | None:
        """Renew a live worker's lease; returns its state (``dead``: another worker declared it dead,
        so its workflows already run elsewhere; None: its row is gone)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t.workers)
                .where(t.workers.c.id == worker_id, t.workers.c.state == "alive")
                .values(heartbeat_at=now, running=running)
            )
            state: str | None = conn.execute(
                sa.select(t.workers.c.state).where(t.workers.c.id == worker_id)
            ).scalar_one_or_none()
        return state

    def pending(self, worker_id: str) -> int:
        """How many workflows the worker runs (PENDING under its executor id in DBOS's table), read through
        this engine: DBOS's own calls retry a lost connection for as long as it takes, with a growing backoff,
        so a heartbeat that asked DBOS was silent through a database outage and renewed the lease seconds
        after the database was back, past the others' grace."""
        with self.engine.connect() as conn:
            return int(conn.execute(_PENDING, {"id": worker_id}).scalar_one())

    def stopped(self, worker_id: str, now: float) -> int:
        """A worker that shut down cleanly records its end itself: ``stopped`` at ``now`` (its last heartbeat,
        what status shows), so status says so at once, also of the last worker. Its unfinished workflows
        (still PENDING) are left to a live worker, which recovers them as it would a dead worker's (now, or
        once one starts); returns how many it left."""
        with self.engine.begin() as conn:
            left = int(conn.execute(_PENDING, {"id": worker_id}).scalar_one())
            hit = conn.execute(
                sa.update(t.workers)
                .where(t.workers.c.id == worker_id, t.workers.c.state == "alive")  # not one declared dead meanwhile
                .values(
                    state="stopped",
                    heartbeat_at=now,
                    running=0,
                    dead_at=now,
                    declared_by=None,
                    recovered=RECOVERING if left else 0,
                )
            )
        return left if hit.rowcount else 0

    def declare_dead(self, now: float, lease_s: float, by: str) -> list[str]:
        """Mark every live-marked worker whose lease ran out dead (a stopping one stopped, and take over the
        recovery a stopped one left); returns the ones this call won."""
        cutoff = now - lease_s
        won: list[str] = []
        with self.engine.begin() as conn:
            stale = conn.execute(sa.select(t.workers.c.id).where(_ended(cutoff))).scalars()
            for worker_id in list(stale):
                hit = conn.execute(
                    sa.update(t.workers)
                    .where(t.workers.c.id == worker_id, _ended(cutoff))
                    .values(
                        state=sa.case((t.workers.c.state.in_(("stopping", "stopped")), "stopped"), else_="dead"),
                        dead_at=sa.case((t.workers.c.state == "stopped", t.workers.c.dead_at), else_=now),
                        declared_by=by,
                        recovered=RECOVERING,
                    )
                )
                if hit.rowcount:
                    won.append(worker_id)
        return won

    def recovered(self, worker_id: str, count: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.workers).where(t.workers.c.id == worker_id).values(recovered=count))

    def all(self) -> list[WorkerInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.workers).order_by(t.workers.c.started_at)).mappings().all()
        return [_info(r) for r in rows]

    def prune(self, before: float) -> int:
        """Forget the workers that ended (dead or stopped, their workflows recovered) before ``before``:
        each process that ever joined left a row, and status listed them all for good."""
        with self.engine.begin() as conn:
            gone = conn.execute(
                sa.delete(t.workers).where(
                    t.workers.c.state.in_(("dead", "stopped")),
                    t.workers.c.recovered >= 0,
                    t.workers.c.dead_at < before,
                )
            )
        return int(gone.rowcount or 0)

    def forget(self, worker_ids: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t.workers).where(t.workers.c.id.in_(list(worker_ids))))


def _info(row: sa.RowMapping) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        aliases=tuple(row["aliases"] or ()),
        tags=tuple(row["tags"] or ()),
        heartbeat_at=row["heartbeat_at"],
        started_at=row["started_at"],
        state=row["state"],
        memory_bytes=row["memory_bytes"],
        concurrency=row["concurrency"],
        running=row["running"],
        dead_at=row["dead_at"],
        declared_by=row["declared_by"],
        recovered=row["recovered"],
        version=row["version"] or "",
        config=row["config"] or "",
    )
