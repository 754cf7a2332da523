"""Liveness and readiness (no key needed: load balancers and supervisors call these)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from edgecrew.engine.service import RunService
from edgecrew.version import __version__

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/health", response_model=Health)
def health() -> Health:
    """The process is up."""
    return Health(status="ok", version=__version__)


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request) -> JSONResponse:
    """The store answers and the durable engine is running: the server can take runs."""
    checks: dict[str, str] = {}
    rt = request.app.state.rt
    try:
        await asyncio.to_thread(RunService(rt).count_runs)
        checks["store"] = "ok"
    except Exception as exc:  # any store failure means not ready; the type is enough to say why
        checks["store"] = f"failing: {type(exc).__name__}"
    checks["engine"] = "ok" if request.app.state.engine_ready else "starting"
    ok = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ok else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
