"""Mission control's cluster page: each worker's state, models, load and heartbeat, and the queues."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from edgecrew.cluster import ClusterService
from edgecrew.ui.pages import Viewer, page

router = APIRouter(include_in_schema=False)


@router.get("/ui/cluster")
async def cluster_page(request: Request, session: Viewer) -> HTMLResponse:
    found = await asyncio.to_thread(ClusterService.of(request.app.state.rt).status)
    return page(request, "cluster.html", session, cluster=found)
