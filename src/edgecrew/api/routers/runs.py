"""Runs: start (idempotent with ``Idempotency-Key``), list, get, cancel, resume, and their events
as JSON or as a resumable Server-Sent Events stream (``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from edgecrew.api.deps import MAX_ID, Read, RunsDep, StartRuns, resume_point
from edgecrew.api.problems import PROBLEM_RESPONSES, problem, problem_response
from edgecrew.api.shapes import Limit, Offset, Out, Page, sse_stream
from edgecrew.context import request_id as current_request_id
from edgecrew.domain.runs import EventType, RunStatus
from edgecrew.engine.service import TASK_MAX_CHARS, TASK_PATTERN, RunService, Started, TeamName
from edgecrew.errors import IdempotencyKeyReused

router = APIRouter(prefix="/runs", tags=["runs"], responses=PROBLEM_RESPONSES)
log = logging.getLogger("edgecrew.cluster")
POLL_S = 0.25
STOP_GRACE_S = 1.0  # a stream gets this long to end by itself on shutdown (uvicorn allows 5 s in all)


class StartRun(BaseModel):
    team: str = Field(min_length=1, max_length=200, description="A team name (see GET /teams).")
    task: str = Field(
        min_length=1,
        max_length=TASK_MAX_CHARS,
        pattern=TASK_PATTERN,  # a visible character: the run use case refuses the same tasks
        description="What the team should do (not only whitespace or control characters).",
    )
    project: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A project (name or id) whose files and memory the run uses.",
    )


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
    # What started the run when no person did, e.g. {"kind": "routine", "routine": "nightly", "firing": "..."}
    trigger: dict[str, Any] | None = None
    # Where the run's files are (a repository platform-copilot made, files.write's files), as
    # `edgecrew runs show` and `run --json` say: answers name them relative to it.
    workspace: str | None = None


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


class RunProjectOut(BaseModel):
    id: str
    name: str


class RunDetail(RunOut):
    steps: list[StepOut]
    # The project the run works in (its files at project/, its memory), as POST /runs's `project` gave it
    project: RunProjectOut | None = None


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


@router.post(
    "",
    status_code=201,
    response_model=RunOut,
    responses={
        200: {"model": RunOut, "description": "A retry: the run this Idempotency-Key started before."},
        409: problem_response(409, "The Idempotency-Key already started a run with another team or task."),
    },
)
async def start_run(
    body: StartRun,
    runs: RunsDep,
    _: StartRuns,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Start a team run. The answer comes at once; follow the run with GET /runs/{id}/events. A header
    X-Edgecrew-Warning (one a warning) says what may go wrong: on a cluster with no live worker, that
    the run waits for one; what `edgecrew validate` warns of in the team's spec."""
    try:
        # A name, never a path; a retry with the same key answers with its run before the team is loaded.
        started = await runs.start(
            TeamName(body.team),
            body.task,
            request_id=current_request_id.get(),
            idempotency_key=idempotency_key,
            project=body.project,
        )
    except IdempotencyKeyReused as exc:
        # 409, not 422: the body is valid; it conflicts with what the key already stands for.
        return problem(409, str(exc), title="Idempotency key reused", instance="/runs")
    return started_response(started)


WARNING_HEADER = "X-Edgecrew-Warning"
_R = TypeVar("_R", bound=Response)
IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=256,
        description="Start the run at most once: a retry with the same key returns the first run (200).",
    ),
]


def started_response(started: Started) -> JSONResponse:
    """The answer to a request that started a run: 201 with its Location and a warning header for each
    of its notices (no live worker on the cluster's queue, what `edgecrew validate` warns of in the
    team's spec: the run goes on all the same), or 200 for a retry that found the run already started."""
    out = RunOut.of(started.run).model_dump(mode="json")
    if not started.created:
        return JSONResponse(out, status_code=200)
    response = JSONResponse(out, status_code=201, headers={"Location": f"/runs/{started.run.id}"})
    return with_warnings(response, started.notices)


def with_warnings(response: _R, notices: Iterable[str]) -> _R:
    """``response`` with one ``X-Edgecrew-Warning`` header a notice (in Latin-1, as headers must be)."""
    for notice in notices:
        response.headers.append(WARNING_HEADER, notice.encode("latin-1", "replace").decode("latin-1"))
    return response


@router.get("", response_model=RunPage)
def list_runs(
    runs: RunsDep,
    _: Read,
    status: RunStatus | None = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[RunOut]:
    """Runs, newest first, optionally by status and team."""
    state = status.value if status else None
    items = [RunOut.of(r) for r in runs.list_runs(limit=limit, offset=offset, status=state, team=team)]
    return RunPage.of(items, runs.count_runs(status=state, team=team), limit, offset)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: str, runs: RunsDep, _: Read) -> RunDetail:
    """A run with its agent steps (a unique id prefix is enough)."""
    from edgecrew.projects import ProjectService

    run = runs.get(run_id)
    works_in = ProjectService.of(runs.rt).project_of_run(run.id)
    return RunDetail(
        **RunOut.of(run).model_dump(),
        steps=[StepOut.of(s) for s in runs.steps(run.id)],
        project=RunProjectOut(id=works_in.id, name=works_in.name) if works_in else None,
    )


class ChecklistItemOut(BaseModel):
    text: str
    state: Literal["pending", "running", "done", "failed", "skipped"]
    detail: str
    children: list[ChecklistItemOut]


class ChecklistOut(BaseModel):
    """A run's checklist: its agents' work with states, open questions (pending approvals) and notes."""

    title: str
    meta: dict[str, str]
    items: list[ChecklistItemOut]
    questions: list[str]
    notes: list[str]
    markdown: str


@router.get("/{run_id}/checklist", response_model=ChecklistOut)
def run_checklist(run_id: str, runs: RunsDep, _: Read) -> ChecklistOut:
    """The run's checklist, derived from its events (follow GET /runs/{id}/events to see it change)."""
    found = runs.checklist(run_id)
    return ChecklistOut.model_validate({**dataclasses.asdict(found), "markdown": found.to_markdown()})


@router.post("/{run_id}/cancel", response_model=RunOut)
async def cancel_run(run_id: str, runs: RunsDep, _: StartRuns) -> RunOut:
    """Stop a run at its next step (409 when it already ended)."""
    return RunOut.of(await asyncio.to_thread(runs.cancel, run_id))


@router.post("/{run_id}/resume", response_model=RunOut)
async def resume_run(run_id: str, runs: RunsDep, _: StartRuns) -> RunOut:
    """Continue an interrupted run from its last finished step in this server (409 when it ended)."""
    run, _how, _recovery = await runs.resume(run_id)
    return RunOut.of(await asyncio.to_thread(runs.get, run.id))


@router.get(
    "/{run_id}/events",
    response_model=list[EventOut],
    responses={200: {"content": sse_stream([t.value for t in EventType], "JSON: the event, as the list answers it")}},
)
async def run_events(
    run_id: str,
    request: Request,
    runs: RunsDep,
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
    run = await asyncio.to_thread(runs.get, run_id)
    after = resume_point(after, last_event_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        events = await asyncio.to_thread(runs.event_page, run.id, after, limit)
        return JSONResponse([EventOut.of(e).model_dump(mode="json") for e in events])
    stopping = anyio.Event()  # set by sse-starlette when the server shuts down
    return EventSourceResponse(
        _stream(runs, run.id, after, stopping),
        ping=15,
        send_timeout=30,
        shutdown_event=stopping,
        shutdown_grace_period=STOP_GRACE_S,
    )


async def _stream(runs: RunService, run_id: str, after: int, stopping: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    """The run's events from ``after`` on, until its end event, or until the server stops: then the
    stream ends cleanly (not cut mid-response) and the client resumes elsewhere with Last-Event-ID."""
    async for batch in runs.events(run_id, after, stop=stopping, poll_s=POLL_S):
        for event in batch:
            yield ServerSentEvent(
                data=json.dumps(EventOut.of(event).model_dump(mode="json")), event=event.type, id=str(event.id)
            )
    if stopping.is_set():
        yield ServerSentEvent(comment="the server is stopping; reconnect with Last-Event-ID to go on")
