"""The task workspace: tasks (with their acceptance checks and sandbox limits), their code versions
(uploaded, listed, downloaded, deleted, run: see ``routers/executions``), results with raw logs, a
message timeline, evaluator feedback, log files, and ``/stats``.

One upload route takes either a multipart file or JSON text, told apart by ``Content-Type``, so a
coder agent posts code the way its HTTP client finds easiest. Reads need the ``read`` scope,
writes the ``runs`` scope; what is posted without an author is signed with the API key's name.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from edgecrew.api.deps import MAX_ID, Read, RuntimeDep, StartRuns
from edgecrew.api.problems import PROBLEM_JSON, PROBLEM_RESPONSES, PROBLEM_SCHEMA, problem_response
from edgecrew.api.routers import executions
from edgecrew.api.routers.task_schemas import (
    CODE_UPLOAD_BODY,
    FILENAME_PATTERN,
    LOG_FILENAME_MAX,
    LOG_FILENAME_PATTERN,
    CodeOut,
    CodeTextIn,
    FeedbackIn,
    FeedbackOut,
    LogFileOut,
    MessageIn,
    MessageOut,
    ResultIn,
    ResultOut,
    StatsOut,
    TaskChecksBody,
    TaskId,
    TaskIn,
    TaskOut,
    TaskPage,
    TaskPatch,
    TaskStatus,
    TeamScoreOut,
    VersionNo,
)
from edgecrew.api.shapes import Limit, Offset, Page
from edgecrew.errors import NotFoundError, UserError
from edgecrew.store.tasks import TaskStore
from edgecrew.tasks.checks import EMPTY_CHECKS, EMPTY_LIMITS, TaskLimitsJson, parse_checks
from edgecrew.tasks.versions import add_version

router = APIRouter(tags=["tasks"], responses=PROBLEM_RESPONSES)


def get_task_store(rt: RuntimeDep) -> TaskStore:
    return rt.tasks


Tasks = Annotated[TaskStore, Depends(get_task_store)]
# The task store refuses any other name with 400 (a traversal attempt reads as "not a plain file
# name", not as a malformed request), so the document states its rule instead of FastAPI checking it.
LogName = Annotated[
    str,
    Path(
        description="A name from GET /tasks/{task_id}/logs: letters, digits, '.', '_', '-' (no '..').",
        json_schema_extra={"minLength": 1, "maxLength": LOG_FILENAME_MAX, "pattern": LOG_FILENAME_PATTERN},
    ),
]
UPLOAD_FIELDS = frozenset({"file", "filename", "author"})  # what CODE_UPLOAD_BODY declares, and nothing else
DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The raw file, as an attachment.",
        "content": {
            "text/*": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _created(model: TaskOut | CodeOut | ResultOut | MessageOut | FeedbackOut, location: str | None) -> JSONResponse:
    headers = {"Location": location} if location else None
    return JSONResponse(model.model_dump(mode="json"), status_code=201, headers=headers)


def _check_team(rt: RuntimeDep, team: str | None) -> None:
    if team is not None and team not in rt.project.teams:
        raise NotFoundError(f"team: there is no team named {team!r}; GET /teams lists them")


def _checks(body: TaskChecksBody | None, *, patch: bool = False) -> dict[str, Any] | None:
    """The checks as the task keeps them, validated where every writer validates them (a 422 on ``checks``)."""
    if body is None:
        return None
    try:
        return parse_checks(body.model_dump(exclude_none=True), written=True).to_json()
    except UserError as exc:
        hint = " (null removes a task's checks)" if patch and str(exc) == EMPTY_CHECKS else ""
        raise _invalid("checks", f"{exc}{hint}") from None


def _limits(body: TaskLimitsJson | None, *, patch: bool = False) -> dict[str, Any] | None:
    """The limits as the task keeps them (a 422 on ``limits``: ``{}`` too, as ``checks: {}`` is)."""
    if body is None:
        return None
    try:
        return body.parsed().to_json()
    except UserError as exc:
        hint = " (null removes a task's limits)" if patch and str(exc) == EMPTY_LIMITS else ""
        raise _invalid("limits", f"{exc}{hint}") from None


# -- tasks ----------------------------------------------------------------------------------------
@router.post("/tasks", status_code=201, response_model=TaskOut)
def create_task(body: TaskIn, tasks: Tasks, rt: RuntimeDep, principal: StartRuns) -> JSONResponse:
    """Create a task (status ``open``), with the checks its code versions must pass and the sandbox
    limits they run under (both optional)."""
    _check_team(rt, body.team)
    checks, limits = _checks(body.checks), _limits(body.limits)
    record = tasks.create(
        body.title, body.description, body.team, checks=checks, limits=limits, created_by=principal.name
    )
    task = TaskOut.of(record)
    return _created(task, f"/tasks/{task.id}")


@router.get("/tasks", response_model=TaskPage)
def list_tasks(
    tasks: Tasks,
    _: Read,
    status: TaskStatus | None = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TaskOut]:
    """Tasks, newest first, optionally by status and team."""
    items = [TaskOut.of(t) for t in tasks.list_tasks(status=status, team=team, limit=limit, offset=offset)]
    return TaskPage.of(items, tasks.count_tasks(status=status, team=team), limit, offset)


@router.get("/tasks/{task_id}", response_model=TaskOut)
def get_task(task_id: TaskId, tasks: Tasks, _: Read) -> TaskOut:
    return TaskOut.of(tasks.get(task_id))


@router.patch("/tasks/{task_id}", response_model=TaskOut)
def update_task(task_id: TaskId, body: TaskPatch, tasks: Tasks, rt: RuntimeDep, _: StartRuns) -> TaskOut:
    """Change a task's status (open, in_progress, done, failed, cancelled), title, description, team,
    checks, limits or best version (null clears the last four)."""
    changes = body.changes()
    _check_team(rt, changes.get("team"))
    if "checks" in changes:
        changes["checks"] = _checks(changes["checks"], patch=True)
    if "limits" in changes:
        changes["limits"] = _limits(changes["limits"], patch=True)
    return TaskOut.of(tasks.update(task_id, **changes))


# -- code versions --------------------------------------------------------------------------------
@router.post(
    "/tasks/{task_id}/code",
    status_code=201,
    response_model=CodeOut,
    openapi_extra={"requestBody": CODE_UPLOAD_BODY},
    responses={
        415: {
            "description": "The body is neither multipart/form-data nor application/json.",
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
    },
)
async def upload_code(task_id: TaskId, request: Request, tasks: Tasks, principal: StartRuns) -> JSONResponse:
    """Upload the next code version: ``multipart/form-data`` with a ``file`` part (and optional
    ``filename``, ``author`` fields), or JSON ``{filename, content, author}``. Versions count 1, 2, 3…;
    adding one moves an ``open`` task to ``in_progress``, as the CLI and the agents' tool do."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        async with request.form(max_files=1, max_fields=16) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise _invalid("file", "a file part named 'file' is required")
            unknown = sorted(set(form.keys()) - UPLOAD_FIELDS)
            if unknown:
                raise _invalid(unknown[0], "unknown field; send only file, filename and author")
            data = await upload.read()
            named = _form_text(form.get("filename"), "filename", 255)
            if named is not None and not re.match(FILENAME_PATTERN, named):
                raise _invalid("filename", "must hold a letter or digit after its last slash")
            filename = named or upload.filename or ""
            author = _form_text(form.get("author"), "author", 128)
        if not filename:
            raise _invalid("filename", "the file part has no name; send a 'filename' field")
    elif kind == "application/json":
        try:
            text = CodeTextIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
            ) from None
        data, filename, author = text.content.encode("utf-8"), text.filename, text.author
    else:
        raise HTTPException(
            415, "send the code as multipart/form-data (a 'file' part) or as application/json {filename, content}"
        )
    record = await asyncio.to_thread(add_version, tasks, task_id, filename, data, author or principal.name)
    return _created(CodeOut.of(record), f"/tasks/{record.task_id}/code/{record.version}")


@router.get("/tasks/{task_id}/code", response_model=list[CodeOut])
def list_code(task_id: TaskId, tasks: Tasks, _: Read) -> list[CodeOut]:
    """The task's code versions, oldest first."""
    return [CodeOut.of(r) for r in tasks.code_versions(task_id)]


@router.get("/tasks/{task_id}/code/{version}", response_model=CodeOut)
def get_code(task_id: TaskId, version: VersionNo, tasks: Tasks, _: Read) -> CodeOut:
    """A version's metadata: file name, size, SHA-256, language, author."""
    return CodeOut.of(tasks.code_version(task_id, version))


@router.get("/tasks/{task_id}/code/{version}/file", response_class=Response, responses=DOWNLOAD)
def download_code(task_id: TaskId, version: VersionNo, tasks: Tasks, _: Read) -> Response:
    """The version's file, byte for byte, as an attachment."""
    record = tasks.code_version(task_id, version)
    return Response(
        tasks.code_bytes(record),
        media_type=record.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{record.filename}"',
            "ETag": f'"{record.sha256}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.delete("/tasks/{task_id}/code/{version}", status_code=204, response_class=Response)
def delete_code(task_id: TaskId, version: VersionNo, tasks: Tasks, _: StartRuns) -> Response:
    """Delete a version's file and metadata; its number is not reused."""
    tasks.delete_code(task_id, version)
    return Response(status_code=204)


# -- results, messages, feedback ------------------------------------------------------------------
@router.post("/tasks/{task_id}/results", status_code=201, response_model=ResultOut)
def add_result(task_id: TaskId, body: ResultIn, tasks: Tasks, principal: StartRuns) -> JSONResponse:
    """Record a run's metrics (accuracy, loss, runtime_s and any others) and its raw logs."""
    record = tasks.add_result(
        task_id,
        version=body.version,
        accuracy=body.accuracy,
        loss=body.loss,
        runtime_s=body.runtime_s,
        metrics=body.metrics,
        logs=body.logs,
        author=body.author or principal.name,
    )
    return _created(ResultOut.of(record), None)


@router.get("/tasks/{task_id}/results", response_model=list[ResultOut])
def list_results(
    task_id: TaskId, tasks: Tasks, _: Read, version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
) -> list[ResultOut]:
    """Results, oldest first (only those about one code version with ``version``)."""
    return [ResultOut.of(r) for r in tasks.results(task_id, version)]


@router.get("/tasks/{task_id}/results/latest", response_model=ResultOut)
def latest_result(task_id: TaskId, tasks: Tasks, _: Read) -> ResultOut:
    """The most recent result (404 when there is none yet)."""
    return ResultOut.of(tasks.latest_result(task_id))


@router.post("/tasks/{task_id}/messages", status_code=201, response_model=MessageOut)
def add_message(task_id: TaskId, body: MessageIn, tasks: Tasks, _: StartRuns) -> JSONResponse:
    """Append a message to the task's timeline."""
    record = tasks.add_message(task_id, body.sender, body.role, body.content)
    return _created(MessageOut.of(record), None)


@router.get("/tasks/{task_id}/messages", response_model=list[MessageOut])
def list_messages(
    task_id: TaskId,
    tasks: Tasks,
    _: Read,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Only messages with a larger id (for polling).")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[MessageOut]:
    """The timeline, oldest first."""
    return [MessageOut.of(m) for m in tasks.messages(task_id, after=after, limit=limit)]


@router.post("/tasks/{task_id}/feedback", status_code=201, response_model=FeedbackOut)
def add_feedback(task_id: TaskId, body: FeedbackIn, tasks: Tasks, principal: StartRuns) -> JSONResponse:
    """An evaluator's verdict (accepted, needs_changes, rejected), optionally about a code version."""
    record = tasks.add_feedback(
        task_id,
        author=body.author or principal.name,
        verdict=body.verdict,
        notes=body.notes,
        score=body.score,
        version=body.version,
    )
    return _created(FeedbackOut.of(record), None)


@router.get("/tasks/{task_id}/feedback", response_model=list[FeedbackOut])
def list_feedback(
    task_id: TaskId,
    tasks: Tasks,
    _: Read,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Only feedback with a larger id (for polling).")] = 0,
) -> list[FeedbackOut]:
    """Feedback, oldest first; a coder polls it with ``after``."""
    return [FeedbackOut.of(f) for f in tasks.feedback(task_id, version=version, after=after)]


# -- log files and stats --------------------------------------------------------------------------
@router.get("/tasks/{task_id}/logs", response_model=list[LogFileOut])
def list_logs(task_id: TaskId, tasks: Tasks, _: Read) -> list[LogFileOut]:
    """The task's log files, oldest first, each with its first 50 lines."""
    return [LogFileOut.of(task_id, f) for f in tasks.log_files(task_id)]


@router.get(
    "/tasks/{task_id}/logs/{filename}",
    response_class=FileResponse,
    responses={**DOWNLOAD, 400: problem_response(400, "The name is not a plain file name (see its pattern).")},
)
def download_log(task_id: TaskId, filename: LogName, tasks: Tasks, _: Read) -> FileResponse:
    """A log file as an attachment (a name with folders or ``..`` is refused)."""
    path = tasks.log_path(task_id, filename)
    return FileResponse(
        path, media_type="text/plain; charset=utf-8", filename=path.name, headers={"X-Content-Type-Options": "nosniff"}
    )


@router.get("/stats", response_model=StatsOut)
def stats(tasks: Tasks, runner: executions.Executions, _: Read) -> StatsOut:
    """Counts across the workspace (tasks by status, versions, results, messages, feedback), average
    accuracy and runtime over results, runs by status, executions by status and how many run now, and
    a scoreboard per team (tasks done and failed, versions per accepted task, time per finished task)."""
    runner.recover()  # a row whose process is gone reads interrupted, as the executions' own reads do
    s = tasks.stats()
    teams = [TeamScoreOut(**score.__dict__) for score in s.teams]
    return StatsOut(tasks=s.tasks, executions_running=s.executions_running, **{**s.__dict__, "teams": teams})


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _form_text(value: object, field: str, max_length: int) -> str | None:
    """A text field of the form as the document declares it: absent, or 1 to ``max_length`` characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise _invalid(field, f"must be text of 1 to {max_length} characters (leave the field out instead)")
    return value


router.include_router(executions.router)  # running code versions: one router, one tag, one set of problems
