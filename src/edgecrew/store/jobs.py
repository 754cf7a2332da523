"""Jobs, their events and policy versions in the store (rows only: the rules live in ``edgecrew.ops.jobs``).

The one design decision: every change of a job's state is a conditional update (``WHERE state IN
...``), so two processes racing for one job (a resumed admission, a cancel) cannot both win: the
claim that starts a job succeeds once, and a cancel never overwrites an ended job.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edgecrew.errors import NotFoundError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

__all__ = ["JOB_STATES", "UNFINISHED", "JobEvent", "JobRecord", "JobStore", "PolicyVersion"]

JOB_STATES = ("queued", "waiting", "running", "cancelling", "succeeded", "failed", "cancelled", "interrupted")
UNFINISHED = ("queued", "waiting", "running", "cancelling")


@dataclass(frozen=True)
class JobRecord:
    """One job as the store keeps it."""

    id: str
    name: str
    kind: str  # command | team
    argv: list[str] | None
    sandbox: bool
    team: str | None
    task: str | None
    needs: dict[str, Any]  # cpu_cores, memory_bytes, gpu_memory_bytes, duration_s (absent: not declared)
    priority: int
    deadline: float | None
    tags: list[str]
    state: str
    reason: str | None
    waiting_on: list[dict[str, Any]] | None
    submitted_by: str | None
    workflow_id: str | None
    executor: str | None
    pid: int | None
    pid_started: float | None
    run_id: str | None
    exit_code: int | None
    usage: dict[str, Any] | None
    created_at: float
    updated_at: float
    allowed_at: float | None
    started_at: float | None
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.state not in UNFINISHED

    @property
    def command(self) -> str:
        """The job as a person reads it: its argv, or its team and task."""
        import shlex

        if self.kind == "team":
            return f"team {self.team}: {self.task}"
        return shlex.join(self.argv or [])


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: str
    kind: str
    detail: dict[str, Any] | None
    at: float


@dataclass(frozen=True)
class PolicyVersion:
    """One version of a policy (doc None: removed from edgecrew.yaml)."""

    policy: str
    version: int
    doc: dict[str, Any] | None
    digest: str | None
    source: str
    reason: str
    created_at: float


def _job(row: Any) -> JobRecord:
    values = dict(row)
    values["sandbox"] = bool(values["sandbox"])
    values["tags"] = list(values["tags"] or [])
    values["needs"] = dict(values["needs"] or {})
    return JobRecord(**values)


class JobStore:
    """Jobs, job events and policy versions, in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.engine = store.engine

    # -- jobs -----------------------------------------------------------------------------------------

    def create(self, job_id: str, **values: Any) -> JobRecord:
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(t.jobs.insert().values(id=job_id, state="queued", created_at=now, updated_at=now, **values))
            conn.execute(t.job_events.insert().values(job_id=job_id, kind="submitted", detail=None, at=now))
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no job '{job_id[:80]}'; `edgecrew jobs list` shows them")
        return _job(row)

    def find(self, given: str) -> JobRecord:
        """The job a person named: by its id, or the only one whose id starts with it (as runs are)."""
        return _job(self.store.row_by_id(t.jobs, given, "job", "edgecrew jobs list"))

    def list_jobs(
        self, *, states: Iterable[str] | None = None, limit: int = 50, offset: int = 0, newest_first: bool = True
    ) -> list[JobRecord]:
        query = sa.select(t.jobs)
        if states is not None:
            query = query.where(t.jobs.c.state.in_(list(states)))
        order = t.jobs.c.created_at.desc() if newest_first else t.jobs.c.created_at
        query = query.order_by(order, t.jobs.c.id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(query).mappings()]

    def count(self, *, states: Iterable[str] | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(t.jobs)
        if states is not None:
            query = query.where(t.jobs.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def transition(
        self,
        job_id: str,
        from_states: Sequence[str],
        event: str | None = None,
        detail: Any = None,
        *,
        unlaunched: bool = False,
        **values: Any,
    ) -> bool:
        """Set ``values`` on the job if its state is one of ``from_states`` (and, with ``unlaunched``, no
        process has started it yet); True when it was. ``event`` (with ``detail``) is recorded in the
        same transaction when the change happened."""
        now = time.time()
        where = [t.jobs.c.id == job_id, t.jobs.c.state.in_(list(from_states))]
        if unlaunched:
            where.append(t.jobs.c.executor.is_(None))
        with self.engine.begin() as conn:
            done = conn.execute(t.jobs.update().where(*where).values(updated_at=now, **values)).rowcount
            if done and event is not None:
                conn.execute(t.job_events.insert().values(job_id=job_id, kind=event, detail=detail, at=now))
        return bool(done)

    def note(self, job_id: str, kind: str, detail: Any = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(t.job_events.insert().values(job_id=job_id, kind=kind, detail=detail, at=time.time()))

    def events(self, job_id: str) -> list[JobEvent]:
        query = sa.select(t.job_events).where(t.job_events.c.job_id == job_id).order_by(t.job_events.c.id)
        with self.engine.connect() as conn:
            return [JobEvent(**dict(r)) for r in conn.execute(query).mappings()]

    # -- policy versions ------------------------------------------------------------------------------

    def policy_versions(self, policy: str | None = None) -> list[PolicyVersion]:
        """Versions oldest first, of one policy or of all."""
        query = sa.select(t.policy_versions).order_by(t.policy_versions.c.policy, t.policy_versions.c.version)
        if policy is not None:
            query = query.where(t.policy_versions.c.policy == policy)
        with self.engine.connect() as conn:
            return [PolicyVersion(**{k: v for k, v in r.items() if k != "id"}) for r in conn.execute(query).mappings()]

    def add_policy_version(
        self, policy: str, doc: dict[str, Any] | None, digest: str | None, source: str, reason: str
    ) -> PolicyVersion:
        """Record the next version of ``policy`` (a concurrent writer of the same number loses with an
        IntegrityError: the caller reads again)."""
        with self.engine.begin() as conn:
            last = conn.execute(
                sa.select(sa.func.max(t.policy_versions.c.version)).where(t.policy_versions.c.policy == policy)
            ).scalar()
            version = int(last or 0) + 1
            conn.execute(
                t.policy_versions.insert().values(
                    policy=policy,
                    version=version,
                    doc=doc,
                    digest=digest,
                    source=source,
                    reason=reason,
                    created_at=time.time(),
                )
            )
        return PolicyVersion(policy, version, doc, digest, source, reason, time.time())
