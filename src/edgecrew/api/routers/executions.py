"""Executions of a task's code versions: start one (202: it runs in the server's background), list
them, read one's status, metrics and logs, follow it live over Server-Sent Events, cancel it.

The one design decision: following an execution polls its row and its two log files (the service
appends the program's output to them as it prints it), so it works alike for an execution of this
server and for one another process runs (``edgecrew tasks run``); a live event's id is the two
files' byte offsets, so a client that reconnects with ``Last-Event-ID`` gets only what it has not
seen. ``follow`` yields typed updates that the API sends as JSON and mission control as HTML.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, computed_field
from sse_starlette import EventSourceResponse, ServerSentEvent

from edgecrew.api.deps import MAX_ID, Read, RuntimeDep, StartRuns
from edgecrew.api.problems import PROBLEM_RESPONSES, problem_response
from edgecrew.api.routers.task_schemas import TaskId, VersionNo
from edgecrew.api.shapes import Out
from edgecrew.store.tasks import ExecutionRecord
from edgecrew.tasks.executions import ExecutionService

router = APIRouter(tags=["tasks"], responses=PROBLEM_RESPONSES)
POLL_S = 0.5
ORPHAN_CHECK_S = 2.0  # how often a follower asks whether the process running the execution is still there
STOP_GRACE_S = 1.0
CHUNK = 64 * 1024
MAX_CHUNKS = 16  # per file and poll: a huge log reaches a follower in steps, not in one read
ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "killed", "interrupted"]
LogStream = Literal["stdout", "stderr"]
ExecutionId = Annotated[int, Path(ge=1, le=MAX_ID, description="An execution id (from its start or the list).")]
_UTF8 = codecs.getincrementaldecoder("utf-8")  # a chunk may end inside a character
_OFFSETS = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})")


def get_executions(rt: RuntimeDep) -> ExecutionService:
    return rt.executions


Executions = Annotated[ExecutionService, Depends(get_executions)]


class ExecutionOut(Out):
    """One run of a code version in the sandbox against the task's checks."""

    id: int
    task_id: str
    version: int
    status: ExecutionStatus
    reason: str | None = Field(description="Why it failed or stopped (the first failed check); null otherwise.")
    exit_code: int | None
    run_id: str | None = Field(description="The team run whose agent started it, if one did.")
    agent: str | None = Field(description="Who started it: an agent, or an API key's name.")
    created_at: float
    started_at: float | None
    finished_at: float | None
    metrics: dict[str, float] | None = Field(description="The program's last JSON line's numbers, with runtime_s.")
    checks_passed: int | None
    checks_total: int | None
    result_id: int | None = Field(description="The result it stored (GET /tasks/{task_id}/results).")

    @computed_field(description="Where its stdout log is.")  # type: ignore[prop-decorator]
    @property
    def stdout(self) -> str:
        return f"/executions/{self.id}/logs?stream=stdout"

    @computed_field(description="Where its stderr log is.")  # type: ignore[prop-decorator]
    @property
    def stderr(self) -> str:
        return f"/executions/{self.id}/logs?stream=stderr"


# What one live event is (OpenAPI before 3.2 describes each event of a stream with `schema`).
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["status", "log", "end"]},
        "data": {
            "type": "string",
            "description": "JSON: an execution (status, end) or {stream, text} (log).",
        },
        "id": {"type": "string", "description": "The stdout and stderr byte offsets, as <stdout>.<stderr>."},
    },
}
LOCATION = {"Location": {"description": "The execution's own URL.", "schema": {"type": "string"}}}
LOG_HEADERS = {
    "X-Log-Size": {"description": "The log's size in bytes now (the next offset).", "schema": {"type": "integer"}},
    "X-Execution-Status": {"description": "The execution's status now.", "schema": {"type": "string"}},
}


# -- routes ---------------------------------------------------------------------------------------
@router.post(
    "/tasks/{task_id}/versions/{version}/executions",
    status_code=202,
    response_model=ExecutionOut,
    responses={202: {"description": "Queued; it runs in the background.", "headers": LOCATION}},
)
async def start_execution(
    task_id: TaskId, version: VersionNo, executions: Executions, principal: StartRuns
) -> JSONResponse:
    """Run a code version in the sandbox with the task's checks and limits. The answer comes at
    once (status ``queued``); follow it with GET /executions/{id}/events or poll GET /executions/{id}."""
    record = await executions.start(task_id, version, agent=principal.name)
    body = ExecutionOut.of(record).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers={"Location": f"/executions/{record.id}"})


@router.get("/tasks/{task_id}/executions", response_model=list[ExecutionOut])
def list_executions(
    task_id: TaskId,
    executions: Executions,
    _: Read,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this version's.")] = None,
) -> list[ExecutionOut]:
    """The task's executions, oldest first."""
    return [ExecutionOut.of(r) for r in executions.list(task_id, version=version)]


@router.get("/executions/{execution_id}", response_model=ExecutionOut)
def get_execution(execution_id: ExecutionId, executions: Executions, _: Read) -> ExecutionOut:
    """An execution: status, reason, checks passed of total, metrics, the result it stored."""
    return ExecutionOut.of(executions.get(execution_id))


@router.get(
    "/executions/{execution_id}/logs",
    response_class=Response,
    responses={
        200: {
            "description": "The log from `offset` on (empty before the execution starts).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "headers": LOG_HEADERS,
        }
    },
)
def execution_logs(
    execution_id: ExecutionId,
    executions: Executions,
    _: Read,
    stream: LogStream = "stdout",
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Skip this many bytes (X-Log-Size of a last read).")] = 0,
) -> Response:
    """The execution's stdout or stderr log as text; poll with ``offset`` to read only what is new."""
    record = executions.get(execution_id)
    stdout, stderr = executions.log_paths(record.id)
    data, size = read_from(stdout if stream == "stdout" else stderr, offset)
    return Response(
        data,
        media_type="text/plain; charset=utf-8",
        headers={"X-Log-Size": str(size), "X-Execution-Status": record.status, "X-Content-Type-Options": "nosniff"},
    )


@router.get(
    "/executions/{execution_id}/events",
    response_model=ExecutionOut,
    responses={
        200: {
            "description": "JSON: the execution now. With Accept: text/event-stream: the live stream.",
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
        }
    },
)
async def execution_events(
    execution_id: ExecutionId,
    request: Request,
    executions: Executions,
    _: Read,
    last_event_id: Annotated[
        str | None, Header(max_length=64, description="SSE resume point (sent by EventSource on reconnect).")
    ] = None,
) -> Response:
    """Follow an execution. With ``Accept: text/event-stream`` a live stream: ``status`` when its
    status changes (the execution as JSON), ``log`` as its logs grow (``{stream, text}``), and
    ``end`` with the final execution, after which the stream closes; otherwise the execution as JSON."""
    record = await asyncio.to_thread(executions.get, execution_id)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return JSONResponse(ExecutionOut.of(record).model_dump(mode="json"))
    stopping = anyio.Event()  # set by sse-starlette when the server shuts down
    return EventSourceResponse(
        _events(executions, record.id, offsets_of(last_event_id), stopping),
        ping=15,
        send_timeout=30,
        shutdown_event=stopping,
        shutdown_grace_period=STOP_GRACE_S,
    )


@router.post(
    "/executions/{execution_id}/cancel",
    response_model=ExecutionOut,
    responses={409: problem_response(409, "It has already ended, or another process runs it.")},
)
async def cancel_execution(execution_id: ExecutionId, executions: Executions, _: StartRuns) -> ExecutionOut:
    """Stop an execution (its sandbox is killed): status ``killed``."""
    return ExecutionOut.of(await executions.cancel(execution_id))


async def _events(
    executions: ExecutionService, execution_id: int, offsets: tuple[int, int], stopping: anyio.Event
) -> AsyncIterator[ServerSentEvent]:
    async for update in follow(executions, execution_id, offsets, stop=stopping):
        if update.kind == "log":
            data = json.dumps({"stream": update.stream, "text": update.text})
        else:
            data = json.dumps(ExecutionOut.of(update.record).model_dump(mode="json"))
        yield ServerSentEvent(data=data, event=update.kind, id=update.id)
    if stopping.is_set():
        yield ServerSentEvent(comment="the server is stopping; reconnect with Last-Event-ID to go on")


# -- following an execution ----------------------------------------------------------------------
@dataclass(frozen=True)
class Update:
    """One thing that happened to a followed execution: ``status`` (it changed), ``log`` (text was
    appended to ``stream``) or ``end`` (the final record); ``id`` is where a follower resumes."""

    kind: Literal["status", "log", "end"]
    record: ExecutionRecord
    id: str
    stream: LogStream | None = None
    text: str = ""


@dataclass
class _Tail:
    """Reads what was appended to a log file since the last read, as text."""

    stream: LogStream
    path: FilePath
    offset: int
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )

    def read(self) -> list[tuple[str, int]]:
        """New text in chunks, each with the offset after it."""
        chunks: list[tuple[str, int]] = []
        try:
            with self.path.open("rb") as log:
                log.seek(min(self.offset, log.seek(0, 2)))
                while len(chunks) < MAX_CHUNKS and (block := log.read(CHUNK)):
                    self.offset = log.tell()
                    text = self._decoder.decode(block)
                    if text:
                        chunks.append((text, self.offset))
        except FileNotFoundError:  # not started yet
            pass
        return chunks


async def follow(
    executions: ExecutionService,
    execution_id: int,
    offsets: tuple[int, int] = (0, 0),
    *,
    stop: anyio.Event | None = None,
    poll_s: float = POLL_S,
) -> AsyncIterator[Update]:
    """An execution's updates from the log offsets ``offsets`` on, until its ``end`` (or ``stop``).

    An execution whose process died without ending it is marked interrupted here (``recover``), so
    a follower never waits for a process that is gone."""
    stdout, stderr = await asyncio.to_thread(executions.log_paths, execution_id)
    tails = (_Tail("stdout", stdout, offsets[0]), _Tail("stderr", stderr, offsets[1]))
    shown, waited, next_check = None, 0.0, 0.0
    while stop is None or not stop.is_set():
        # The row first: logs read after it shows an end are complete (they are written before it).
        record = await asyncio.to_thread(executions.get, execution_id)
        if not record.finished and record.status != shown:
            shown = record.status
            yield Update("status", record, f"{tails[0].offset}.{tails[1].offset}")
        for tail in tails:
            for text, offset in await asyncio.to_thread(tail.read):
                where = (offset, tails[1].offset) if tail is tails[0] else (tails[0].offset, offset)
                yield Update("log", record, f"{where[0]}.{where[1]}", tail.stream, text)
        if record.finished:
            yield Update("end", record, f"{tails[0].offset}.{tails[1].offset}")
            return
        if waited >= next_check:
            next_check = waited + ORPHAN_CHECK_S
            if record.executor != executions.executor and not executions.executor_alive(record.executor):
                await asyncio.to_thread(executions.recover)
                continue
        with anyio.move_on_after(poll_s):
            if stop is not None:
                await stop.wait()
            else:
                await anyio.sleep(poll_s)
        waited += poll_s


def offsets_of(last_event_id: str | None) -> tuple[int, int]:
    """Where a live stream resumes: the offsets of ``Last-Event-ID`` (one that is not ours: the start)."""
    found = _OFFSETS.fullmatch((last_event_id or "").strip())
    return (int(found[1]), int(found[2])) if found else (0, 0)


def read_from(path: FilePath, offset: int = 0) -> tuple[bytes, int]:
    """A log's bytes from ``offset`` on and its size (nothing and 0 before it exists)."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, 2)
            log.seek(min(offset, size))
            return log.read(), size
    except FileNotFoundError:
        return b"", 0
