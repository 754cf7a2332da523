"""The HTTP side of observability: an access-log and request-metrics middleware, and ``GET /metrics``.

The middleware is pure ASGI (streams pass through untouched) and reads what routing left in the
scope once the answer is done: the route template (``/runs/{run_id}``, never the raw path, so the
metric's labels stay bounded), the status, and the API key's id (never the key). It sits inside the
request-id middleware so each line carries the request id; an exception escaping the app counts as
a 500 (the outermost error handler answers it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgecrew.api.deps import Read
from edgecrew.api.metrics import ServerMetrics
from edgecrew.api.problems import PROBLEM_RESPONSES

access_log = logging.getLogger("edgecrew.access")
UNMATCHED = "(unmatched)"  # the route label of requests no route matched (404s of unknown paths)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

router = APIRouter(tags=["health"], responses=PROBLEM_RESPONSES)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
def metrics(request: Request, _: Read) -> Response:
    """Prometheus metrics of this server (text exposition format; needs the `read` scope)."""
    server_metrics: ServerMetrics = request.app.state.metrics
    return Response(generate_latest(server_metrics.registry), media_type=CONTENT_TYPE_LATEST)


class TelemetryMiddleware:
    """One access-log line and one request-metrics observation per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            status = status or 500
            raise
        finally:
            _record(scope, status or 500, time.perf_counter() - started)


def _record(scope: Scope, status: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", None) or UNMATCHED
    method = str(scope.get("method", ""))
    method = method if method in KNOWN_METHODS else "other"  # a label per invented method would never end
    app: Any = scope.get("app")
    server_metrics: ServerMetrics | None = getattr(getattr(app, "state", None), "metrics", None)
    if server_metrics is not None:
        server_metrics.observe_request(route, method, status, seconds)
    principal = scope.get("state", {}).get("principal")
    client = scope.get("client")
    access_log.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "%s %s %d",
        method,
        scope.get("path", ""),
        status,
        extra={
            "method": method,
            "route": route,
            "path": scope.get("path", ""),  # never the query string: it may carry a token
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "key_id": getattr(principal, "key_id", None),
            "client": client[0] if client else None,
        },
    )
