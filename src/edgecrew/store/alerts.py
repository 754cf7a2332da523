"""Alert rules' states and their firing/resolved events, and the model calls the model rules read.

The one design decision: a state row carries a ``version``, and every change is a compare-and-set on
it (``UPDATE ... WHERE version = seen``), with the event row written in the same transaction. Two
edgecrew processes that evaluate one rule at once may both decide it fires; only the one whose update
matched records the event and announces it, the other learns it lost and stays quiet. A state is
keyed by the project whose rule it is, its rule and its scope, and an event records its project: two
projects sharing the data dir may both have a rule of one name, and each has its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edgecrew.domain.events import ModelCalled, parse_event
from edgecrew.domain.runs import EventType
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

ALERT_STATES = ("ok", "pending", "firing", "resolved")


@dataclass(frozen=True)
class AlertStateRecord:
    rule: str
    scope: str  # the host for sampler rules, "" for rules every process sees alike
    state: str  # ok | pending | firing | resolved
    value: float | None
    since: float
    updated_at: float
    error: str | None
    version: int
    project: str  # the project dir whose rule it is


@dataclass(frozen=True)
class AlertEventRecord:
    id: int
    rule: str
    scope: str
    kind: str  # firing | resolved
    severity: str
    value: float | None
    threshold: float
    comparison: str
    source: str
    description: str
    at: float
    delivery: dict[str, str] | None
    reason: str | None = None  # why, when it is not the value (a rule removed while it fired)
    project: str | None = None  # the project dir whose rule it is (None: recorded before it was kept)


class AlertStore:
    """Alert states and events, over the run store's engine."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    # -- states -----------------------------------------------------------------------------------
    def state(self, rule: str, scope: str, now: float | None = None, *, project: str) -> AlertStateRecord:
        """``project``'s state of the rule, created as ``ok`` the first time it is asked for; a state
        recorded before states had a project (project ``''``) is claimed, with its events, instead."""
        c = t.alert_states.c
        query = sa.select(t.alert_states).where(c.project == project, c.rule == rule, c.scope == scope)
        with self.store.transaction() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                claim = (
                    t.alert_states.update()
                    .where(c.project == "", c.rule == rule, c.scope == scope)
                    .values(project=project)
                )
                if conn.execute(claim).rowcount == 1:
                    e = t.alert_events.c
                    conn.execute(
                        t.alert_events.update()
                        .where(e.project.is_(None), e.rule == rule, e.scope == scope)
                        .values(project=project)
                    )
                else:
                    at = time.time() if now is None else now
                    fresh = {"rule": rule, "scope": scope, "state": "ok", "since": at, "updated_at": at, "version": 0}
                    self._insert_missing(conn, {**fresh, "project": project})
                row = conn.execute(query).mappings().one()
        return AlertStateRecord(**dict(row))

    def _insert_missing(self, conn: sa.Connection, row: dict[str, Any]) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        insert: Any = postgresql.insert if self.store.engine.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(t.alert_states).values(**row).on_conflict_do_nothing(index_elements=["project", "rule", "scope"])
        )

    def states(self, project: str | None = None) -> list[AlertStateRecord]:
        """The states of ``project``'s rules (None: of every project)."""
        c = t.alert_states.c
        query = sa.select(t.alert_states).order_by(c.rule, c.scope, c.project)
        if project is not None:
            query = query.where(c.project == project)
        with self.store.engine.connect() as conn:
            return [AlertStateRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def compare_and_set(
        self,
        seen: AlertStateRecord,
        *,
        state: str,
        since: float,
        value: float | None,
        error: str | None,
        now: float,
        event: dict[str, Any] | None = None,
    ) -> tuple[bool, int | None]:
        """Move the rule from ``seen`` to ``state``; (False, None) when another process moved it first.
        With ``event`` (kind, severity, threshold, comparison, source, description, optionally reason),
        the event row (of ``seen``'s project) is written in the same transaction and its id returned."""
        if state not in ALERT_STATES:
            raise ValueError(f"unknown alert state {state!r}")
        c = t.alert_states.c
        values: dict[str, Any] = {"state": state, "since": since, "value": value, "error": error, "updated_at": now}
        update = (
            t.alert_states.update()
            .where(c.project == seen.project, c.rule == seen.rule, c.scope == seen.scope, c.version == seen.version)
            .values(**values, version=seen.version + 1)
        )
        with self.store.transaction() as conn:
            if conn.execute(update).rowcount != 1:
                return False, None
            if event is None:
                return True, None
            row = {**event, "project": seen.project, "rule": seen.rule, "scope": seen.scope, "value": value, "at": now}
            inserted = conn.execute(t.alert_events.insert().values(**row).returning(t.alert_events.c.id))
            return True, int(inserted.scalar_one())

    # -- events -----------------------------------------------------------------------------------
    def set_delivery(self, event_id: int, delivery: dict[str, str]) -> None:
        with self.store.transaction() as conn:
            conn.execute(t.alert_events.update().where(t.alert_events.c.id == event_id).values(delivery=delivery))

    def event(self, event_id: int) -> AlertEventRecord:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.alert_events).where(t.alert_events.c.id == event_id)).mappings().one()
        return AlertEventRecord(**dict(row))

    def history(
        self, *, limit: int = 50, offset: int = 0, rule: str | None = None, project: str | None = None
    ) -> list[AlertEventRecord]:
        """Firings and resolutions (of ``project``'s rules, and those of no known project), newest first."""
        c = t.alert_events.c
        query = sa.select(t.alert_events).order_by(c.at.desc(), c.id.desc()).limit(limit).offset(offset)
        with self.store.engine.connect() as conn:
            return [AlertEventRecord(**dict(r)) for r in conn.execute(_events_of(query, rule, project)).mappings()]

    def last_event(self, rule: str, scope: str, kind: str, *, project: str) -> AlertEventRecord | None:
        """The newest event of this kind of ``project``'s rule in this scope."""
        c = t.alert_events.c
        query = sa.select(t.alert_events).where(c.scope == scope, c.kind == kind)
        query = _events_of(query, rule, project).order_by(c.at.desc(), c.id.desc()).limit(1)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else AlertEventRecord(**dict(row))

    def count(self, *, rule: str | None = None, project: str | None = None) -> int:
        query = _events_of(sa.select(sa.func.count()).select_from(t.alert_events), rule, project)
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # -- what model rules read --------------------------------------------------------------------
    def model_calls(self, since: float, until: float | None = None) -> list[ModelCalled]:
        """The model calls recorded (as run events) in the window, oldest first."""
        c = t.events.c
        query = sa.select(c.data).where(c.type == EventType.MODEL_CALLED.value, c.created_at >= since)
        if until is not None:
            query = query.where(c.created_at <= until)
        with self.store.engine.connect() as conn:
            payloads = [
                parse_event(EventType.MODEL_CALLED.value, data)
                for (data,) in conn.execute(query.order_by(c.created_at, c.id))  # along ix_events_type_created_at
            ]
        return [p for p in payloads if isinstance(p, ModelCalled)]


def _events_of(query: Any, rule: str | None, project: str | None) -> Any:
    """``query`` narrowed to the events of ``rule`` (None: any) of ``project`` (None: any project), those
    recorded before events had a project included."""
    c = t.alert_events.c
    if rule is not None:
        query = query.where(c.rule == rule)
    if project is not None:
        query = query.where(sa.or_(c.project == project, c.project.is_(None)))
    return query
