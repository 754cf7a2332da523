"""Mission control's routines page: each routine's schedule, state, next and last firings, its
latest runs, and pause / resume / run-now buttons (plain form posts, as elsewhere)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgecrew.context import request_id as current_request_id
from edgecrew.errors import EdgecrewError
from edgecrew.ops import Ops
from edgecrew.ui.pages import Checked, Viewer, back, need, page

router = APIRouter(include_in_schema=False)


def _ops(request: Request) -> Ops:
    return Ops.of(request.app.state.rt)


@router.get("/ui/routines")
async def routines_page(request: Request, session: Viewer, notice: str = "") -> HTMLResponse:
    routines = _ops(request).routines
    states = await asyncio.to_thread(routines.states)
    recent = {s.name: await asyncio.to_thread(routines.runs, s.name, 5) for s in states}
    return page(request, "routines.html", session, routines=states, recent=recent, notice=notice)


@router.post("/ui/routines/{name}/{action}")
async def change_routine(request: Request, name: str, action: str, session: Checked) -> Response:
    need(session, "runs")
    routines = _ops(request).routines
    try:
        if action == "pause":
            await asyncio.to_thread(routines.pause, name)
            return back("/ui/routines", f"routine {name} paused")
        if action == "resume":
            await asyncio.to_thread(routines.resume, name)
            return back("/ui/routines", f"routine {name} resumed")
        if action == "trigger":
            started = await routines.trigger(name, request_id=current_request_id.get())
            return RedirectResponse(f"/ui/runs/{started.run.id}", status_code=303)
    except EdgecrewError as exc:
        return back("/ui/routines", str(exc))
    return back("/ui/routines", f"unknown action '{action}'; use pause, resume or trigger")
