"""Supervisor incidents and their events in the store (rows only: detection and healing live in
``edgecrew.ops.supervisor``), plus the reads the supervisor's watchers make of other capabilities' rows.

The one design decision: an incident is keyed by what failed (``subject_type`` + ``subject`` is unique)
and its state moves only by conditional update, so several processes watching the same database record
one incident per failure, and a state already ended (healed, escalated) is never overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edgecrew.domain.events import EventRecord
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

__all__ = ["INCIDENT_KINDS", "INCIDENT_STATES", "IncidentEvent", "IncidentRecord", "IncidentStore"]

INCIDENT_STATES = ("open", "healing", "healed", "escalated", "failed")
INCIDENT_KINDS = ("oom", "job_failed", "run_failed", "model", "execution", "tool_errors", "worker_lost")
ENDED = ("healed", "escalated", "failed")


@dataclass(frozen=True)
class IncidentRecord:
    """One incident as the store keeps it."""

    id: str
    kind: str
    subject_type: str
    subject: str
    fingerprint: str
    title: str
    error: str
    diagnosis: dict[str, Any]
    state: str
    action: str | None
    action_params: dict[str, Any] | None
    decided_by: str | None
    reason: str | None
    attempts: int
    follow_up: str | None
    approval_id: str | None
    approval_run: str | None
    regression_path: str | None
    workflow_id: str | None
    created_at: float
    updated_at: float
    resolved_at: float | None

    @property
    def ended(self) -> bool:
        return self.state in ENDED


@dataclass(frozen=True)
class IncidentEvent:
    id: int
    incident_id: str
    kind: str
    detail: dict[str, Any] | None
    at: float


def _incident(row: Any) -> IncidentRecord:
    values = dict(row)
    values["diagnosis"] = dict(values["diagnosis"] or {})
    return IncidentRecord(**values)


class IncidentStore:
    """Incidents and their events, in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.engine = store.engine

    # -- incidents --------------------------------------------------------------------------------------

    def create(self, incident_id: str, **values: Any) -> bool:
        """Record a new incident; False when one for the same subject exists (another process won)."""
        now = time.time()
        row = {"id": incident_id, "state": "open", "attempts": 0, "created_at": now, "updated_at": now, **values}
        try:
            with self.engine.begin() as conn:
                conn.execute(t.incidents.insert().values(**row))
                conn.execute(
                    t.incident_events.insert().values(
                        incident_id=incident_id, kind="detected", detail={"error": values.get("error")}, at=now
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def get(self, incident_id: str) -> IncidentRecord:
        """The incident with this id, or the only one whose id starts with it."""
        row = self.store.row_by_id(t.incidents, incident_id, "incident", "edgecrew incidents list")
        return _incident(row)

    def find(self, subject_type: str, subject: str) -> IncidentRecord | None:
        query = sa.select(t.incidents).where(
            t.incidents.c.subject_type == subject_type, t.incidents.c.subject == subject
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _incident(row) if row else None

    def known_subjects(self, subject_type: str, subjects: Iterable[str]) -> set[str]:
        wanted = list(set(subjects))
        if not wanted:
            return set()
        c = t.incidents.c
        query = sa.select(c.subject).where(c.subject_type == subject_type, c.subject.in_(wanted))
        with self.engine.connect() as conn:
            return {r for (r,) in conn.execute(query)}

    def list_incidents(
        self, *, states: Sequence[str] | None = None, kind: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[IncidentRecord]:
        """Incidents, newest first."""
        query = sa.select(t.incidents)
        if states:
            query = query.where(t.incidents.c.state.in_(list(states)))
        if kind:
            query = query.where(t.incidents.c.kind == kind)
        query = query.order_by(t.incidents.c.created_at.desc(), t.incidents.c.id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_incident(r) for r in conn.execute(query).mappings()]

    def count(self, *, states: Sequence[str] | None = None, kind: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(t.incidents)
        if states:
            query = query.where(t.incidents.c.state.in_(list(states)))
        if kind:
            query = query.where(t.incidents.c.kind == kind)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def same_failure(self, fingerprint: str, before: str) -> list[IncidentRecord]:
        """Earlier incidents of the same failure (same fingerprint), newest first."""
        c = t.incidents.c
        query = (
            sa.select(t.incidents)
            .where(c.fingerprint == fingerprint, c.id != before)
            .order_by(c.created_at.desc())
            .limit(20)
        )
        with self.engine.connect() as conn:
            return [_incident(r) for r in conn.execute(query).mappings()]

    def update(
        self,
        incident_id: str,
        event: str | None = None,
        detail: Any = None,
        *,
        only_from: Sequence[str] = (),
        **values: Any,
    ) -> bool:
        """Set ``values`` (only when the state is one of ``only_from``, if given); ``event`` is recorded
        in the same transaction when the change happened."""
        now = time.time()
        where = [t.incidents.c.id == incident_id]
        if only_from:
            where.append(t.incidents.c.state.in_(list(only_from)))
        if values.get("state") in ENDED and "resolved_at" not in values:
            values["resolved_at"] = now
        with self.engine.begin() as conn:
            done = conn.execute(t.incidents.update().where(*where).values(updated_at=now, **values)).rowcount
            if done and event is not None:
                conn.execute(
                    t.incident_events.insert().values(incident_id=incident_id, kind=event, detail=detail, at=now)
                )
        return bool(done)

    def note(self, incident_id: str, kind: str, detail: Any = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                t.incident_events.insert().values(incident_id=incident_id, kind=kind, detail=detail, at=time.time())
            )

    def events(self, incident_id: str) -> list[IncidentEvent]:
        query = (
            sa.select(t.incident_events)
            .where(t.incident_events.c.incident_id == incident_id)
            .order_by(t.incident_events.c.id)
        )
        with self.engine.connect() as conn:
            return [IncidentEvent(**dict(r)) for r in conn.execute(query).mappings()]

    # -- what the watchers read -------------------------------------------------------------------------

    def failed_jobs(self, since: float, limit: int = 200) -> list[Any]:
        """Failed jobs that are no incident yet, newest first (see :func:`_not_known`)."""
        c = t.jobs.c
        query = (
            sa.select(t.jobs)
            .where(c.state == "failed", c.finished_at >= since, _not_known("job", c.id))
            .order_by(c.finished_at.desc())
            .limit(limit)
        )
        from edgecrew.store.jobs import _job

        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(query).mappings()]

    def failed_runs(self, since: float, limit: int = 200) -> list[dict[str, Any]]:
        """Failed runs that are no incident yet, newest first (see :func:`_not_known`), each with
        ``denied_approval``: the id of an approval a person denied in it (or None)."""
        c, a = t.runs.c, t.approvals.c
        denied = (
            sa.select(sa.func.min(a.id))
            .where(a.run_id == c.id, a.status == "denied")
            .scalar_subquery()
            .label("denied_approval")
        )
        query = (
            sa.select(
                c.id, c.team, c.task, c.status, c.error, c.trigger, c.project, c.finished_at, c.created_at, denied
            )
            .where(c.status == "failed", c.updated_at >= since, _not_known("run", c.id))
            .order_by(c.updated_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def failed_executions(self, since: float, limit: int = 200) -> list[dict[str, Any]]:
        """Executions that failed with no outcome stored (``execution_findings`` says why only those): the
        versions that failed their checks, many in a build loop, never fill the limit."""
        c = t.executions.c
        query = (
            sa.select(t.executions)
            .where(
                c.status == "failed",
                c.checks_total.is_(None),
                c.finished_at >= since,
                _not_known("execution", sa.cast(c.id, sa.String)),
            )
            .order_by(c.finished_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def run_events(self, types: Sequence[str], since: float, limit: int = 5000) -> list[EventRecord]:
        """The newest ``limit`` events of every run, of these types, since ``since`` (oldest first). The
        newest: on a busy box the oldest filled the limit, and a watcher missed the latest failures.
        Newest by time, then id: one type's window is read backwards along ``ix_events_type_created_at``
        and stops at ``limit``, where ordering by id alone sorted every event of the window first."""
        c = t.events.c
        query = (
            sa.select(c.id, c.run_id, c.key, c.type, c.step_key, c.agent, c.data, c.created_at)
            .where(c.type.in_(list(types)), c.created_at >= since)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [EventRecord(**r) for r in reversed(conn.execute(query).mappings().all())]

    def workers(self) -> list[dict[str, Any]] | None:
        """The cluster's workers table (None when this database has none: no cluster)."""
        if "workers" not in sa.inspect(self.engine).get_table_names():
            return None
        with self.engine.connect() as conn:  # through the table, so its JSON columns are decoded
            return [dict(r) for r in conn.execute(sa.select(t.workers)).mappings()]


def _not_known(subject_type: str, subject: Any) -> Any:
    """No incident has this subject yet. A watcher reads at most ``limit`` failures of the lookback: the
    ones already incidents left in (the oldest first) filled it, and a new failure went unseen for as long
    as the lookback, once a client retrying against a model that was down had failed 200 runs."""
    i = t.incidents.c
    return ~sa.exists().where(i.subject_type == subject_type, i.subject == subject)
