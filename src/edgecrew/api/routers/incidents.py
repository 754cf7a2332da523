"""The supervisor's incidents: each failure it saw, its diagnosis, the action it took (and whether a
person approved it), how it ended, and the regression case of one it could not heal.

Read-only: the supervisor heals on its own; a risky action waits in ``/approvals`` like any other.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from edgecrew.api.deps import OpsDep, Read
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.api.shapes import Limit, Offset, Page
from edgecrew.store.incidents import INCIDENT_KINDS, INCIDENT_STATES, IncidentEvent, IncidentRecord

router = APIRouter(prefix="/incidents", tags=["incidents"], responses=PROBLEM_RESPONSES)


class IncidentOut(BaseModel):
    """One incident and where it stands."""

    id: str
    kind: str = Field(description="oom, job_failed, run_failed, model, execution, tool_errors or worker_lost.")
    subject_type: str = Field(description="What failed: job, run, execution, model, tool or worker.")
    subject: str
    title: str
    error: str
    state: str = Field(description="open, healing, healed, escalated or failed.")
    action: str | None = Field(description="The action decided (retry, retry_with_more_memory, ..., escalate).")
    action_params: dict[str, Any] | None
    decided_by: str | None = Field(description="rule, model, duplicate, or supervisor (no model answered: escalated).")
    reason: str | None
    attempts: int
    follow_up: str | None = Field(description="What the action started: job:<id> or run:<id>.")
    approval_id: str | None = Field(description="A risky action's approval (see /approvals).")
    approval_run: str | None
    regression_path: str | None = Field(description="The regression case written when it was not healed.")
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, i: IncidentRecord) -> IncidentOut:
        values = {k: getattr(i, k) for k in cls.model_fields if k not in ("created_at", "updated_at", "resolved_at")}
        return cls(
            **values,
            created_at=_time(i.created_at),
            updated_at=_time(i.updated_at),
            resolved_at=_time(i.resolved_at) if i.resolved_at else None,
        )


class IncidentEventOut(BaseModel):
    kind: str
    detail: Any = None
    at: datetime

    @classmethod
    def of(cls, e: IncidentEvent) -> IncidentEventOut:
        return cls(kind=e.kind, detail=e.detail, at=_time(e.at))


class IncidentDetail(IncidentOut):
    """An incident with its diagnosis (events, last log lines, resource figures) and its history."""

    fingerprint: str
    diagnosis: dict[str, Any]
    events: list[IncidentEventOut]


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@router.get("", response_model=Page[IncidentOut])
async def list_incidents(
    ops: OpsDep,
    _: Read,
    limit: Limit = 50,
    offset: Offset = 0,
    state: Annotated[
        str | None, Query(pattern="^(" + "|".join(INCIDENT_STATES) + ")$", description="Only this state.")
    ] = None,
    kind: Annotated[
        str | None, Query(pattern="^(" + "|".join(INCIDENT_KINDS) + ")$", description="Only this kind.")
    ] = None,
) -> Page[IncidentOut]:
    """Incidents, newest first."""
    sup = ops.supervisor

    def read() -> tuple[list[IncidentRecord], int]:
        return sup.list_incidents(state=state, kind=kind, limit=limit, offset=offset), sup.count(state=state, kind=kind)

    found, total = await asyncio.to_thread(read)
    return Page.of([IncidentOut.of(i) for i in found], total, limit, offset)


@router.get("/{incident_id}", response_model=IncidentDetail)
async def get_incident(
    ops: OpsDep, _: Read, incident_id: Annotated[str, Path(min_length=1, max_length=32, pattern="^[A-Za-z0-9]+$")]
) -> IncidentDetail:
    """One incident (or the only one whose id starts with this), with its diagnosis and history."""
    sup = ops.supervisor

    def read() -> tuple[IncidentRecord, list[IncidentEvent]]:
        found = sup.get(incident_id)
        return found, sup.events(found.id)

    found, events = await asyncio.to_thread(read)
    base = IncidentOut.of(found).model_dump()
    return IncidentDetail(
        **base,
        fingerprint=found.fingerprint,
        diagnosis=found.diagnosis,
        events=[IncidentEventOut.of(e) for e in events],
    )
