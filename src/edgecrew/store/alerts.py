"""Alert rules' states and their firing/resolved events, and the model calls the model rules read.

The one design decision: a state row carries a ``version``, and every change is a compare-and-set on
it (``UPDATE ... WHERE version = seen``), with the event row written in the same transaction. Two
edgecrew processes that evaluate one rule at once may both decide it fires; only the one whose update
matched records the event and announces it, the other learns it lost and stays quiet.
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
    project: str | None = None  # the project dir whose rule it is (None: recorded before it was kept)


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


class AlertStore:
    """Alert states and events, over the run store's engine."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    # -- states -----------------------------------------------------------------------------------
    def state(self, rule: str, scope: str, now: float | None = None, project: str | None = None) -> AlertStateRecord:
        """The rule's state, created as ``ok`` (of ``project``) the first time it is asked for."""
        c = t.alert_states.c
        query = sa.select(t.alert_states).where(c.rule == rule, c.scope == scope)
        with self.store.transaction() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                at = time.time() if now is None else now
                fresh = {"rule": rule, "scope": scope, "state": "ok", "since": at, "updated_at": at, "version": 0}
                fresh["project"] = project
                self._insert_missing(conn, fresh)
                row = conn.execute(query).mappings().one()
        return AlertStateRecord(**dict(row))

    def _insert_missing(self, conn: sa.Connection, row: dict[str, Any]) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        insert: Any = postgresql.insert if self.store.engine.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(t.alert_states).values(**row).on_conflict_do_nothing(index_elements=["rule", "scope"]))

    def states(self) -> list[AlertStateRecord]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t.alert_states).order_by(t.alert_states.c.rule, t.alert_states.c.scope))
            return [AlertStateRecord(**dict(r)) for r in rows.mappings()]

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
        project: str | None = None,
    ) -> tuple[bool, int | None]:
        """Move the rule from ``seen`` to ``state`` (recording ``project`` as the rule's, when given);
        (False, None) when another process moved it first. With ``event`` (kind, severity, threshold,
        comparison, source, description, optionally reason), the event row is written in the same
        transaction and its id returned."""
        if state not in ALERT_STATES:
            raise ValueError(f"unknown alert state {state!r}")
        c = t.alert_states.c
        values: dict[str, Any] = {"state": state, "since": since, "value": value, "error": error, "updated_at": now}
        if project is not None:
            values["project"] = project
        update = (
            t.alert_states.update()
            .where(c.rule == seen.rule, c.scope == seen.scope, c.version == seen.version)
            .values(**values, version=seen.version + 1)
        )
        with self.store.transaction() as conn:
            if conn.execute(update).rowcount != 1:
                return False, None
            if event is None:
                return True, None
            row = {**event, "rule": seen.rule, "scope": seen.scope, "value": value, "at": now}
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

    def history(self, *, limit: int = 50, offset: int = 0, rule: str | None = None) -> list[AlertEventRecord]:
        """Firings and resolutions, newest first."""
        c = t.alert_events.c
        query = sa.select(t.alert_events).order_by(c.at.desc(), c.id.desc()).limit(limit).offset(offset)
        if rule is not None:
            query = query.where(c.rule == rule)
        with self.store.engine.connect() as conn:
            return [AlertEventRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def last_event(self, rule: str, scope: str, kind: str) -> AlertEventRecord | None:
        """The newest event of this kind of the rule in this scope."""
        c = t.alert_events.c
        query = (
            sa.select(t.alert_events)
            .where(c.rule == rule, c.scope == scope, c.kind == kind)
            .order_by(c.at.desc(), c.id.desc())
            .limit(1)
        )
        with self.store.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else AlertEventRecord(**dict(row))

    def count(self, *, rule: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(t.alert_events)
        if rule is not None:
            query = query.where(t.alert_events.c.rule == rule)
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
                parse_event(EventType.MODEL_CALLED.value, data) for (data,) in conn.execute(query.order_by(c.id))
            ]
        return [p for p in payloads if isinstance(p, ModelCalled)]
