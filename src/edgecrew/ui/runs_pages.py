"""Mission control's runs list: filters kept in the URL, search, duration and tokens per run."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService
from edgecrew.ui.pages import Viewer, page

router = APIRouter(include_in_schema=False)


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


@router.get("/ui/runs")
def runs_page(
    request: Request,
    session: Viewer,
    status: Annotated[str | None, Query(max_length=32)] = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """Runs, filtered by status, team and text (task or output), every filter in the URL."""
    rt = _rt(request)
    svc = RunService(rt)
    status, team, q = status or None, team or None, (q or "").strip() or None
    runs = svc.list_runs(limit=50, offset=offset, status=status, team=team, text=q)
    total = svc.count_runs(status=status, team=team, text=q)
    filters = {k: v for k, v in (("status", status), ("team", team), ("q", q)) if v}
    return page(
        request,
        "runs.html",
        session,
        runs=runs,
        usage=svc.usage_by_run([r.id for r in runs]),
        total=total,
        offset=offset,
        status=status or "",
        team=team or "",
        q=q or "",
        teams=sorted(rt.project.teams),
        query=urlencode(filters),
        filtered=bool(filters),
    )
