"""Mission control's incidents page: the failures the supervisor saw (open and escalated first), the
action it took and who chose it (a rule, the model), the approval a risky one waits for, how each
ended and its regression case; one incident with its diagnosis and history. Read-only."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from edgecrew.errors import UserError
from edgecrew.ops import Ops
from edgecrew.store.incidents import INCIDENT_STATES
from edgecrew.ui.pages import Viewer, page

router = APIRouter(include_in_schema=False)
SHOWN = 100
_ORDER = {"open": 0, "healing": 1, "escalated": 2, "failed": 3, "healed": 4}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "–"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


@router.get("/ui/incidents")
async def incidents_page(request: Request, session: Viewer, state: str = "") -> HTMLResponse:
    if state and state not in INCIDENT_STATES:  # a hand-edited address: it said "no incidents in state bogus"
        raise UserError(f"no incident state {state[:40]!r}; one of {', '.join(INCIDENT_STATES)}")
    sup = Ops.of(request.app.state.rt).supervisor
    found = await asyncio.to_thread(sup.list_incidents, state=state or None, limit=SHOWN)
    found.sort(key=lambda i: (_ORDER.get(i.state, 9), -i.created_at))
    return page(
        request,
        "incidents.html",
        session,
        incidents=found,
        incident=None,
        events=[],
        when=_when,
        pretty=_pretty,
        state=state,
    )


@router.get("/ui/incidents/{incident_id}")
async def incident_page(request: Request, session: Viewer, incident_id: str) -> HTMLResponse:
    sup = Ops.of(request.app.state.rt).supervisor

    def read() -> tuple[Any, list[Any]]:
        found = sup.get(incident_id)
        return found, sup.events(found.id)

    found, events = await asyncio.to_thread(read)
    return page(
        request,
        "incidents.html",
        session,
        incidents=[],
        incident=found,
        events=events,
        when=_when,
        pretty=_pretty,
        state="",
    )
