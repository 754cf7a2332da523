"""Mission control's alerts page: each rule of edgecrew.yaml's ``alerts:`` with what it watches, its
state (firing rules first), the value last seen and since when, and the recent firings and
resolutions with how their webhooks went. Read-only: rules change in edgecrew.yaml."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from edgecrew.ops import Ops
from edgecrew.ops.alerts import shown
from edgecrew.ui.pages import Viewer, page

router = APIRouter(include_in_schema=False)
HISTORY_SHOWN = 50
_ORDER = {"firing": 0, "pending": 1, "resolved": 2, "ok": 3}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "–"


@router.get("/ui/alerts")
async def alerts_page(request: Request, session: Viewer, notice: str = "") -> HTMLResponse:
    alerts = Ops.of(request.app.state.rt).alerts

    def read() -> tuple[list[Any], list[Any]]:
        states = sorted(alerts.states(), key=lambda s: (_ORDER.get(s.state, 9), s.name))
        return states, alerts.history(HISTORY_SHOWN)

    states, history = await asyncio.to_thread(read)
    return page(request, "alerts.html", session, states=states, history=history, when=_when, value=shown, notice=notice)
