"""Usage alerts: the ``alerts:`` rules of edgecrew.yaml with where each stands (ok, pending, firing,
resolved; the value last seen and since when), and the history of firings and resolutions.

Read-only: rules change in edgecrew.yaml, and the servers evaluate them on their own schedule.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from edgecrew.api.deps import OpsDep, Read
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.api.shapes import Limit, Offset, Page
from edgecrew.ops.alerts import AlertStatus
from edgecrew.specs.routines import ROUTINE_NAME
from edgecrew.store.alerts import AlertEventRecord

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=PROBLEM_RESPONSES)


class AlertOut(BaseModel):
    """One rule and where it stands."""

    name: str
    kind: str = Field(description="metric, promql or model_calls: what the rule watches.")
    source: str = Field(description="What it watches in one line, e.g. metric:memory_available_bytes.")
    comparison: str = Field(description="above or below.")
    threshold: float
    for_s: float = Field(description="How long the condition must hold before the rule fires.")
    severity: str
    description: str
    state: str = Field(description="ok, pending, firing or resolved.")
    value: float | None = Field(description="The value last seen; null when there was none.")
    since: datetime | None = Field(description="When the rule entered its state; null before its first evaluation.")
    updated_at: datetime | None = None
    host: str | None = Field(description="The machine a sampler rule's state is of; null for shared rules.")
    error: str | None = Field(description="Why the last evaluation saw no value.")

    @classmethod
    def of(cls, s: AlertStatus) -> AlertOut:
        r = s.rule
        return cls(
            name=s.name,
            kind=r.kind,
            source=r.source,
            comparison=r.comparison,
            threshold=r.threshold,
            for_s=r.for_s,
            severity=r.severity,
            description=r.description,
            state=s.state,
            value=s.value,
            since=_time(s.since),
            updated_at=_time(s.updated_at),
            host=s.scope or None,
            error=s.error,
        )


class AlertEventOut(BaseModel):
    """A firing or a resolution, with the value that caused it and how its webhooks went."""

    id: int
    rule: str
    kind: str = Field(description="firing or resolved.")
    severity: str
    value: float | None
    threshold: float
    comparison: str
    source: str
    description: str
    host: str | None
    at: datetime
    delivery: dict[str, str] | None = Field(description="Per webhook URL: delivered, or why it failed.")
    reason: str | None = Field(
        default=None, description="Why, when it is not the value: e.g. the rule was removed while it fired."
    )

    @classmethod
    def of(cls, e: AlertEventRecord) -> AlertEventOut:
        return cls(
            id=e.id,
            rule=e.rule,
            kind=e.kind,
            severity=e.severity,
            value=e.value,
            threshold=e.threshold,
            comparison=e.comparison,
            source=e.source,
            description=e.description,
            host=e.scope or None,
            at=datetime.fromtimestamp(e.at, UTC),
            delivery=e.delivery,
            reason=e.reason,
        )


def _time(ts: float) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None


@router.get("", response_model=list[AlertOut])
async def list_alerts(ops: OpsDep, _: Read) -> list[AlertOut]:
    """Every alert rule with its state, the value last seen and since when."""
    states = await asyncio.to_thread(ops.alerts.states)
    return [AlertOut.of(s) for s in states]


@router.get("/history", response_model=Page[AlertEventOut])
async def alert_history(
    ops: OpsDep,
    _: Read,
    limit: Limit = 50,
    offset: Offset = 0,
    rule: Annotated[
        str | None, Query(pattern=ROUTINE_NAME, max_length=64, description="Only this rule's events.")
    ] = None,
) -> Page[AlertEventOut]:
    """Firings and resolutions, newest first."""

    def read() -> tuple[list[AlertEventRecord], int]:
        total = ops.alerts.count_history(rule)
        if rule is not None and total == 0:
            ops.alerts.rule(rule)  # a 404 for a name that is neither a rule nor in the history
        return ops.alerts.history(limit, offset, rule), total

    events, total = await asyncio.to_thread(read)
    return Page.of([AlertEventOut.of(e) for e in events], total, limit, offset)
