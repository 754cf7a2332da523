"""A2A: every team but the internal ones is an A2A agent at ``/a2a/{team}/``, on the protocol of the
official a2a-sdk (1.0).

The routes: the agent cards (``/a2a/`` and ``/a2a/{team}/.well-known/agent-card.json``) and each
team's JSON-RPC endpoint ``/a2a/{team}/``. The agents behind them, and the SDK they are built on, are in
:mod:`edgecrew.api.a2a_agents`, imported on the first A2A request: a server that nobody calls over
A2A never pays for the SDK's imports (~0.3 s on a small CPU). The design (the run is the task, auth by
API key scope per method) is described there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from edgecrew.api.auth import authorize
from edgecrew.api.deps import Read, get_runtime
from edgecrew.domain.specs import TeamSpec
from edgecrew.engine.chat import internal_team
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService, TeamName
from edgecrew.errors import NotFoundError, SpecError

if TYPE_CHECKING:
    from edgecrew.api.a2a_agents import A2AAgents

# JSON-RPC methods that start or stop work; every other method (GetTask, ListTasks, SubscribeToTask,
# the push-config reads, an unknown or missing method) needs ``read``.
RUNS_METHODS = frozenset(
    {
        "SendMessage",
        "SendStreamingMessage",
        "CancelTask",
        "CreateTaskPushNotificationConfig",
        "DeleteTaskPushNotificationConfig",
    }
)

router = APIRouter(prefix="/a2a", tags=["a2a"], include_in_schema=False)


class LazyAgents:
    """The app's A2A agents, made (and the SDK imported) on the first request that needs them, and
    closed when the app stops."""

    def __init__(self) -> None:
        self._agents: A2AAgents | None = None

    def get(self) -> A2AAgents:
        if self._agents is None:
            from edgecrew.api.a2a_agents import A2AAgents

            self._agents = A2AAgents()
        return self._agents

    async def aclose(self) -> None:
        if self._agents is not None:
            await self._agents.aclose()


def _agents(request: Request) -> A2AAgents:
    lazy: LazyAgents = request.app.state.a2a
    return lazy.get()


def _endpoint(request: Request, team: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/a2a/{quote(team, safe='')}/"


def _load(rt: Runtime, team: str) -> TeamSpec:
    """The team an A2A path names: 404 for an unknown or an internal team, 422 for an invalid spec."""
    spec = RunService(rt).load_team(TeamName(team))
    if why := internal_team(spec, "serve over A2A"):
        raise NotFoundError(f"{why}; GET /a2a/ lists the teams served")
    return spec


def _valid_teams(rt: Runtime) -> list[TeamSpec]:
    specs = []
    for name in sorted(rt.project.teams):
        with contextlib.suppress(SpecError, NotFoundError):  # an invalid or an internal team is not served
            specs.append(_load(rt, name))
    return specs


async def _method(request: Request) -> str | None:
    """The JSON-RPC method a request names (None when its body is not a JSON-RPC object)."""
    try:
        body = await request.json()  # kept by the request: the SDK reads it again from there
    except ValueError:
        return None
    method = body.get("method") if isinstance(body, dict) else None
    return method if isinstance(method, str) else None


@router.get("/")
async def list_agent_cards(request: Request, _: Read) -> JSONResponse:
    """The agent card of every valid team but the internal ones (edgecrew starts those itself)."""
    from edgecrew.api.a2a_agents import card_json

    specs = await asyncio.to_thread(_valid_teams, get_runtime(request))
    return JSONResponse({"agents": [card_json(spec, _endpoint(request, spec.name)) for spec in specs]})


@router.get("/{team}/.well-known/agent-card.json")
async def agent_card(team: str, request: Request, _: Read) -> JSONResponse:
    """A team's agent card."""
    from edgecrew.api.a2a_agents import card_json

    spec = await asyncio.to_thread(_load, get_runtime(request), team)
    return JSONResponse(card_json(spec, _endpoint(request, spec.name)))


@router.post("/{team}/")
async def json_rpc(team: str, request: Request) -> Response:
    """A team's A2A JSON-RPC endpoint (the SDK's), once the key holds the scope its method needs."""
    method = await _method(request)
    await authorize(request, "runs" if method in RUNS_METHODS else "read")
    rt = get_runtime(request)
    spec = await asyncio.to_thread(_load, rt, team)
    return await _agents(request).of(rt, spec).endpoint(request)


def mount_a2a(app: FastAPI) -> None:
    """Serve every team of the app's project as an A2A agent under ``/a2a/{team}/`` (once per app)."""
    if isinstance(getattr(app.state, "a2a", None), LazyAgents):
        return
    agents = LazyAgents()
    app.state.a2a = agents
    app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[Any]:
        async with inner(running) as state:
            try:
                yield state
            finally:  # before the engine stops: the followers end while their runs can still be read
                await agents.aclose()

    app.router.lifespan_context = lifespan
