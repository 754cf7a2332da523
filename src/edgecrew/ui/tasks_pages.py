"""Mission control's task pages: tasks with the teams' scoreboard, a task (versions, results charted
over versions, verdicts, messages, executions) that follows the runs working on it, a code version,
and a live execution with its logs.

The live task page polls the store rather than the run's events: the writers (task tools in a
`edgecrew run` process, executions, the REST API) share nothing but the database."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import escape
from sse_starlette import EventSourceResponse, ServerSentEvent

from edgecrew.api.deps import MAX_ID
from edgecrew.api.routers.executions import ExecutionId, LogStream, follow, offsets_of, read_from
from edgecrew.api.routers.task_schemas import VersionNo
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import EdgecrewError, UserError
from edgecrew.store.taskfiles import LogFile
from edgecrew.store.tasks import (
    TASK_STATUSES,
    CodeRecord,
    ExecutionRecord,
    FeedbackRecord,
    MessageRecord,
    ResultRecord,
    TaskRecord,
    TaskStore,
)
from edgecrew.tasks.checks import TaskChecks, parse_checks
from edgecrew.ui import views
from edgecrew.ui.pages import Checked, Viewer, back, need, page, templates
from edgecrew.ui.session import Session

router = APIRouter(include_in_schema=False)


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


# -- tasks ------------------------------------------------------------------------------------------


def _tasks(request: Request) -> TaskStore:
    rt = _rt(request)
    return rt.tasks


TASKS_PER_PAGE = 50


@router.get("/ui/tasks")
def tasks_page(
    request: Request,
    session: Viewer,
    status: Annotated[str | None, Query(max_length=32)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """Tasks, newest first, a page of ``TASKS_PER_PAGE`` at a time, optionally of one status."""
    store = _tasks(request)
    notice = ""
    if status and status not in TASK_STATUSES:  # a hand-edited address: say so, not "No bogus tasks"
        notice, status = f"no task status {status!r}; one of {', '.join(TASK_STATUSES)}", None
    tasks = store.list_tasks(status=status or None, limit=TASKS_PER_PAGE, offset=offset)
    total = store.count_tasks(status=status or None)
    scores = store.stats().teams
    return page(
        request,
        "tasks.html",
        session,
        tasks=tasks,
        status=status or "",
        statuses=TASK_STATUSES,
        scores=scores,
        notice=notice,
        offset=offset,
        total=total,
        per_page=TASKS_PER_PAGE,
        query=urlencode({"status": status} if status else {}),
    )


@dataclass(frozen=True)
class _TaskView:
    """What a task's page shows that runs and executions change, read at one moment."""

    task: TaskRecord
    versions: list[CodeRecord]
    results: list[ResultRecord]
    feedback: list[FeedbackRecord]
    messages: list[MessageRecord]
    logs: list[LogFile]
    executions: list[ExecutionRecord]  # oldest first

    @property
    def settled(self) -> bool:
        """Nothing works on the task any more: it is finished and none of its executions runs."""
        return self.task.status in SETTLED and all(e.finished for e in self.executions)

    def fingerprints(self) -> dict[str, Hashable]:
        """Per live section, what its fragment depends on (a section is re-sent when this changes)."""
        task = self.task
        return {
            "status": (task.status, task.best_version),
            "versions": tuple((v.version, v.sha256, v.author) for v in self.versions),
            "executions": tuple((e.id, e.status, e.checks_passed, e.reason) for e in self.executions),
            "results": tuple(r.id for r in self.results),
            "feedback": tuple(f.id for f in self.feedback),
            "messages": tuple(m.id for m in self.messages),
            "logs": tuple((f.filename, f.size) for f in self.logs),
        }

    def context(self) -> dict[str, Any]:
        """The templates' variables for the live sections."""
        charts = {}
        for metric in ("accuracy", "loss", "runtime_s"):
            points = [(f"v{r.version}" if r.version else f"#{r.id}", getattr(r, metric)) for r in self.results]
            charts[metric] = views.line_chart([(k, float(v)) for k, v in points if v is not None], title=metric)
        return {
            "task": self.task,
            "versions": self.versions,
            "results": self.results,
            "charts": charts,
            "feedback": self.feedback,
            "messages": self.messages,
            "logs": self.logs,
            "executions": list(reversed(self.executions))[:EXECUTIONS_SHOWN],  # the latest
            "executions_total": len(self.executions),
        }


SETTLED = ("done", "failed", "cancelled")
EXECUTIONS_SHOWN = 50
LIVE_SECTIONS = ("status", "versions", "executions", "results", "feedback", "messages", "logs")
LIVE_POLL_S = 1.0


def _read_task(rt: Runtime, task_id: str) -> _TaskView:
    store = rt.tasks
    return _TaskView(
        task=store.get(task_id),
        versions=store.code_versions(task_id),
        results=store.results(task_id),
        feedback=store.feedback(task_id),
        messages=store.messages(task_id, latest=True),  # a busy timeline: its end, not its first 500
        logs=store.log_files(task_id),
        executions=rt.executions.list(task_id),
    )


def _digest(fingerprints: dict[str, Hashable]) -> str:
    return hashlib.blake2b(repr(fingerprints).encode(), digest_size=8).hexdigest()


@router.get("/ui/tasks/{task_id}")
def task_page(request: Request, task_id: str, session: Viewer, notice: str = "") -> HTMLResponse:
    return task_page_response(request, task_id, session, notice=notice)


def task_page_response(
    request: Request,
    task_id: str,
    session: Session,
    *,
    notice: str = "",
    status_code: int = 200,
    problems: dict[str, list[str]] | None = None,
    typed: dict[str, dict[str, str]] | None = None,
) -> HTMLResponse:
    """The task's page; ``problems`` and ``typed``: per form of the page (``message``, ``feedback``,
    ``code``), what was wrong with what was sent and what was typed, shown in that form again."""
    view = _read_task(_rt(request), task_id)
    checks: TaskChecks | None
    try:
        checks = parse_checks(view.task.checks)
    except UserError:
        checks = None  # shown raw: the page still renders a task whose stored checks are invalid
    return page(
        request,
        "task.html",
        session,
        status_code=status_code,
        **view.context(),
        checks=checks,
        live=not view.settled,
        digest=_digest(view.fingerprints()),
        notice=notice,
        problems=problems or {},
        typed=typed or {},
    )


@router.get("/ui/tasks/{task_id}/stream")
async def task_stream(
    request: Request, task_id: str, session: Viewer, seen: Annotated[str, Query(max_length=32)] = ""
) -> EventSourceResponse:
    """The task's sections, re-rendered as a run or an execution changes them (``seen``: the digest
    of what the page shows, so an unchanged page gets nothing at first)."""
    rt = _rt(request)
    await asyncio.to_thread(rt.tasks.get, task_id)  # an unknown task is a 404, not an empty stream
    since = request.headers.get("last-event-id") or seen
    return EventSourceResponse(_task_fragments(rt, task_id, since, session), ping=15)


async def _task_fragments(rt: Runtime, task_id: str, since: str, session: Session) -> AsyncIterator[ServerSentEvent]:
    """Polls the task's rows (a run may work on it from another process: the store is the one
    truth), sends each section whose fingerprint changed, and ``done`` once the task is settled."""
    shown: dict[str, Hashable] | None = None
    while True:
        view = await asyncio.to_thread(_read_task, rt, task_id)
        keys = view.fingerprints()
        digest = _digest(keys)
        if shown is None and digest == since:
            shown = keys  # the page already shows this state
        changed = [name for name in LIVE_SECTIONS if shown is None or shown[name] != keys[name]]
        if changed:
            context = view.context() | {"session": session}
            for name in changed:
                html = templates.get_template(f"_task_{name}.html").render(**context)
                yield ServerSentEvent(data=html, event=name, id=digest)
        shown = keys
        if view.settled:
            yield ServerSentEvent(data="done", event="done", id=digest)
            return
        await asyncio.sleep(LIVE_POLL_S)


@router.get("/ui/tasks/{task_id}/code/{version}")
def code_page(request: Request, task_id: str, version: VersionNo, session: Viewer) -> HTMLResponse:
    store = _tasks(request)
    record = store.code_version(task_id, version)
    data = store.code_bytes(record)
    text, cut = views.shown_text(data, len(data))  # at most views.SHOWN_BYTES of it
    shown, styles = views.highlighted(record.filename, text)
    return page(
        request,
        "code.html",
        session,
        task=store.get(task_id),
        record=record,
        code=text,
        cut=cut,
        shown_kib=views.SHOWN_BYTES // 1024,
        highlighted=shown,
        styles=styles,
        versions=store.code_versions(task_id),
    )


@router.get("/ui/tasks/{task_id}/code/{version}/raw")
def code_raw(request: Request, task_id: str, version: VersionNo, session: Viewer) -> Response:
    store = _tasks(request)
    record = store.code_version(task_id, version)
    return Response(
        store.code_bytes(record),
        media_type=record.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{record.filename}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/ui/tasks/{task_id}/logs/{filename}")
def task_log(request: Request, task_id: str, filename: str, session: Viewer) -> Response:
    """A log file whole (the page shows its first lines), as GET /tasks/{id}/logs/{filename} gives it."""
    path = _tasks(request).log_path(task_id, filename)
    return FileResponse(
        path,
        media_type="text/plain; charset=utf-8",
        filename=path.name,
        content_disposition_type="inline",
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.post("/ui/tasks/{task_id}/code/{version}/run")
async def run_version(request: Request, task_id: str, version: VersionNo, session: Checked) -> Response:
    """Start an execution of the version and go to its page (it runs in this server's background)."""
    need(session, "runs")
    try:
        record = await _rt(request).executions.start(task_id, version, agent=session.name)
    except EdgecrewError as exc:
        return back(f"/ui/tasks/{quote(task_id)}", str(exc))
    return RedirectResponse(f"/ui/executions/{record.id}", status_code=303)


LOG_SHOWN = 256 * 1024  # bytes of a log a page shows (its end); the raw link has it all


def _log_view(path: Path) -> dict[str, Any]:
    data, size = read_from(path)
    return {"text": data[-LOG_SHOWN:].decode("utf-8", errors="replace"), "size": size, "clipped": size > LOG_SHOWN}


@router.get("/ui/executions/{execution_id}")
def execution_page(request: Request, execution_id: ExecutionId, session: Viewer, notice: str = "") -> HTMLResponse:
    rt = _rt(request)
    record = rt.executions.get(execution_id)
    stdout, stderr = rt.executions.log_paths(record.id)
    return page(
        request,
        "execution.html",
        session,
        execution=record,
        task=rt.tasks.get(record.task_id),
        stdout=_log_view(stdout),
        stderr=_log_view(stderr),
        notice=notice,
    )


@router.get("/ui/executions/{execution_id}/stream")
async def execution_stream(
    request: Request,
    execution_id: ExecutionId,
    session: Viewer,
    stdout: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    stderr: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> EventSourceResponse:
    rt = _rt(request)
    record = await asyncio.to_thread(rt.executions.get, execution_id)
    resumed = request.headers.get("last-event-id")
    start = offsets_of(resumed) if resumed else (stdout, stderr)
    return EventSourceResponse(_execution_fragments(rt, record.id, start), ping=15)


async def _execution_fragments(
    rt: Runtime, execution_id: int, start: tuple[int, int]
) -> AsyncIterator[ServerSentEvent]:
    """Log text as it is appended (escaped, for the page's two <pre>), the status badge when it
    changes, ``done`` at the end (the page closes the stream and reloads once)."""
    async for update in follow(rt.executions, execution_id, start):
        if update.kind == "log":
            text = update.text.replace("\r\n", "\n").replace("\r", "\n")
            yield ServerSentEvent(data=str(escape(text)), event=update.stream, id=update.id)
        else:
            badge = templates.get_template("_execution_status.html").render(execution=update.record)
            yield ServerSentEvent(data=badge.replace("\n", " "), event="status", id=update.id)
    yield ServerSentEvent(data="done", event="done")


@router.post("/ui/executions/{execution_id}/cancel")
async def cancel_execution(request: Request, execution_id: ExecutionId, session: Checked) -> Response:
    need(session, "runs")
    try:
        await _rt(request).executions.cancel(execution_id)
    except EdgecrewError as exc:
        return back(f"/ui/executions/{execution_id}", str(exc))
    return back(f"/ui/executions/{execution_id}", "cancelled")


@router.get("/ui/executions/{execution_id}/log/{stream}")
def execution_log(request: Request, execution_id: ExecutionId, stream: LogStream, session: Viewer) -> Response:
    stdout, stderr = _rt(request).executions.log_paths(execution_id)
    data, _size = read_from(stdout if stream == "stdout" else stderr)
    return Response(data, media_type="text/plain; charset=utf-8", headers={"X-Content-Type-Options": "nosniff"})
