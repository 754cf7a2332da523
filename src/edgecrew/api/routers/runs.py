"""Runs: start (idempotent with ``Idempotency-Key``), list, get, cancel, resume, and their events
as JSON or as a resumable Server-Sent Events stream (``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from edgecrew.api.deps import MAX_ID, Read, RunsDep, RuntimeDep, StartRuns, resume_point
from edgecrew.api.problems import PROBLEM_RESPONSES, problem
from edgecrew.api.shapes import Limit, Offset, Out, Page
from edgecrew.context import request_id as current_request_id
from edgecrew.domain.runs import RunStatus
from edgecrew.engine.service import DuplicateRunError, watch_events

router = APIRouter(prefix="/runs", tags=["runs"], responses=PROBLEM_RESPONSES)
POLL_S = 0.25
STOP_GRACE_S = 1.0  # a stream gets this long to end by itself on shutdown (uvicorn allows 5 s in all)


class StartRun(BaseModel):
    team: str = Field(min_length=1, max_length=200, description="A team name (see GET /teams).")
    task: str = Field(min_length=1, max_length=20000, description="What the team should do.")


class RunOut(Out):
    id: str
    team: str
    task: str
    status: RunStatus
    output: Any = None
    error: str | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    request_id: str | None = None


class StepOut(Out):
    key: str
    agent: str
    visit: int
    status: str
    outcome: str | None
    output: Any = None
    error: str | None
    model_calls: int
    tool_calls: int
    prompt_tokens: int
    completion_tokens: int
    started_at: float
    finished_at: float | None


class RunDetail(RunOut):
    steps: list[StepOut]


class RunPage(Page[RunOut]):
    """Runs, newest first."""


class EventOut(Out):
    id: int
    run_id: str
    type: str
    step_key: str | None
    agent: str | None
    data: dict[str, Any]
    created_at: float
    request_id: str | None = None


@router.post("", status_code=201, response_model=RunOut, responses={200: {"model": RunOut}})
async def start_run(
    body: StartRun,
    runs: RunsDep,
    _: StartRuns,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=256,
            description="Start the run at most once: a retry with the same key returns the first run (200).",
        ),
    ] = None,
) -> Any:
    """Start a team run. The answer comes at once; follow the run with GET /runs/{id}/events."""
    try:
        if idempotency_key is not None:  # a retry answers with its run even if the team changed since
            earlier = await asyncio.to_thread(runs.rt.store.run_by_idempotency_key, idempotency_key)
            if earlier is not None:
                raise DuplicateRunError(earlier)
        spec = await asyncio.to_thread(runs.rt.load_named_team, body.team)  # a name, never a path
        run_id, _handle = await runs.start_spec(
            spec, body.task, request_id=current_request_id.get(), idempotency_key=idempotency_key
        )
    except DuplicateRunError as dup:
        if (dup.run.team, dup.run.task) != (body.team, body.task):
            return problem(
                422,
                f"Idempotency-Key was first used for run {dup.run.id} with another team or task; use a new key",
                title="Idempotency key reused",
            )
        return JSONResponse(RunOut.of(dup.run).model_dump(mode="json"), status_code=200)
    run = await asyncio.to_thread(runs.rt.store.get_run, run_id)
    return JSONResponse(
        RunOut.of(run).model_dump(mode="json"), status_code=201, headers={"Location": f"/runs/{run_id}"}
    )


@router.get("", response_model=RunPage)
def list_runs(
    rt: RuntimeDep,
    _: Read,
    status: RunStatus | None = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[RunOut]:
    """Runs, newest first, optionally by status and team."""
    state = status.value if status else None
    items = [RunOut.of(r) for r in rt.store.list_runs(limit=limit, offset=offset, status=state, team=team)]
    return RunPage.of(items, rt.store.count_runs(status=state, team=team), limit, offset)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: str, rt: RuntimeDep, _: Read) -> RunDetail:
    """A run with its agent steps (a unique id prefix is enough)."""
    run = rt.store.get_run(run_id)
    return RunDetail(**RunOut.of(run).model_dump(), steps=[StepOut.of(s) for s in rt.store.steps(run.id)])


@router.post("/{run_id}/cancel", response_model=RunOut)
async def cancel_run(run_id: str, runs: RunsDep, _: StartRuns) -> RunOut:
    """Stop a run at its next step (409 when it already ended)."""
    return RunOut.of(await asyncio.to_thread(runs.cancel, run_id))


@router.post("/{run_id}/resume", response_model=RunOut)
async def resume_run(run_id: str, runs: RunsDep, _: StartRuns) -> RunOut:
    """Continue an interrupted run from its last finished step in this server (409 when it ended)."""
    run, _how, _recovery = await runs.resume(run_id)
    return RunOut.of(await asyncio.to_thread(runs.rt.store.get_run, run.id))


@router.get(
    "/{run_id}/events",
    response_model=list[EventOut],
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def run_events(
    run_id: str,
    request: Request,
    rt: RuntimeDep,
    _: Read,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Only events with a larger id.")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=5000, description="JSON form: at most this many; ask again with after=<last id>.")
    ] = 1000,
    last_event_id: Annotated[
        str | None, Header(description="SSE resume point (sent by EventSource on reconnect).")
    ] = None,
) -> Response:
    """The run's events. With ``Accept: text/event-stream`` a live stream that ends with the run
    (each event's ``id`` is its resume point); otherwise the events so far as JSON."""
    run = await asyncio.to_thread(rt.store.get_run, run_id)
    after = resume_point(after, last_event_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        events = await asyncio.to_thread(rt.store.events, run.id, after_id=after, limit=limit)
        return JSONResponse([EventOut.of(e).model_dump(mode="json") for e in events])
    stopping = anyio.Event()  # set by sse-starlette when the server shuts down
    return EventSourceResponse(
        _stream(rt, run.id, after, stopping),
        ping=15,
        send_timeout=30,
        shutdown_event=stopping,
        shutdown_grace_period=STOP_GRACE_S,
    )


async def _stream(rt: Any, run_id: str, after: int, stopping: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    """The run's events from ``after`` on, until its end event, or until the server stops: then the
    stream ends cleanly (not cut mid-response) and the client resumes elsewhere with Last-Event-ID."""
    async for batch in watch_events(rt.store, run_id, after, stop=stopping, poll_s=POLL_S):
        for event in batch:
            yield ServerSentEvent(
                data=json.dumps(EventOut.of(event).model_dump(mode="json")), event=event.type, id=str(event.id)
            )
    if stopping.is_set():
        yield ServerSentEvent(comment="the server is stopping; reconnect with Last-Event-ID to go on")
