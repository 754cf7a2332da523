"""Mission control's forms on a task's page: post a message to its timeline, a verdict on it (or on a
version), or a new code version (a file, or code pasted with a file name).

The one design decision: each form takes what its API route takes and does what it does. The fields
are validated by the API's own request models (``MessageIn``, ``FeedbackIn``, ``CodeTextIn``) and
written by the same calls (``TaskStore.add_message``, ``TaskStore.add_feedback``,
``tasks.versions.add_version``), with the signed-in key's name as author; a problem re-shows the
task's page (400) with every problem in the form it belongs to and what was typed kept.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError

from edgecrew.api.routers.task_schemas import FILENAME_PATTERN, CodeTextIn, FeedbackIn, MessageIn
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import NotFoundError, UserError
from edgecrew.tasks.versions import add_version
from edgecrew.ui.pages import Checked, back, need
from edgecrew.ui.session import Session
from edgecrew.ui.tasks_pages import task_page_response

router = APIRouter(include_in_schema=False)

# A browser counts a line break in a textarea as one character and sends two (CRLF): the forms take
# twice as many and the models count them after folding CRLF to LF, as the browser did.
TEXTAREA = 2
MAX_MESSAGE_CHARS = 100_000  # MessageIn's content
MAX_NOTES_CHARS = 20_000  # FeedbackIn's notes
ROLE = "person"  # a message from the page is a person's, as one from an agent's tool is the agent's


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def _author(session: Session) -> str:
    return session.name[:128]  # the author columns' bound (a key's name has none)


def _problems(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors(include_input=False)]


def _again(
    request: Request, task_id: str, session: Session, form: str, problems: list[str], typed: dict[str, str]
) -> Response:
    return task_page_response(
        request, task_id, session, status_code=400, problems={form: problems}, typed={form: typed}
    )


@router.post("/ui/tasks/{task_id}/messages")
async def post_message(
    request: Request,
    task_id: str,
    session: Checked,
    content: Annotated[str, Form(max_length=TEXTAREA * MAX_MESSAGE_CHARS)] = "",
) -> Response:
    """A message on the task's timeline, as ``POST /tasks/{id}/messages`` adds one (sender: the key's name)."""
    need(session, "runs")  # the API's route asks for the same scope
    content = content.replace("\r\n", "\n")
    try:
        body = MessageIn(sender=_author(session), role=ROLE, content=content)
    except ValidationError as exc:
        return await asyncio.to_thread(
            _again, request, task_id, session, "message", _problems(exc), {"content": content}
        )
    await asyncio.to_thread(_rt(request).tasks.add_message, task_id, body.sender, body.role, body.content)
    return back(f"/ui/tasks/{quote(task_id)}", "message posted")


@router.post("/ui/tasks/{task_id}/feedback")
async def post_feedback(
    request: Request,
    task_id: str,
    session: Checked,
    verdict: Annotated[str, Form(max_length=32)] = "",
    version: Annotated[str, Form(max_length=16)] = "",
    score: Annotated[str, Form(max_length=64)] = "",
    notes: Annotated[str, Form(max_length=TEXTAREA * MAX_NOTES_CHARS)] = "",
) -> Response:
    """A verdict, as ``POST /tasks/{id}/feedback`` adds one (author: the key's name)."""
    need(session, "runs")
    notes = notes.replace("\r\n", "\n")
    typed = {"verdict": verdict, "version": version, "score": score, "notes": notes}
    fields: dict[str, object] = {"verdict": verdict, "notes": notes, "author": _author(session)}
    problems = []
    if version.strip():
        try:
            fields["version"] = int(version)
        except ValueError:
            problems.append(f"version: a version number, not {version!r}")
    if score.strip():
        try:
            fields["score"] = float(score)
        except ValueError:
            problems.append(f"score: a number, not {score!r}")
    body = None
    try:
        body = FeedbackIn.model_validate(fields)
    except ValidationError as exc:
        problems += _problems(exc)
    if body is None or problems:
        return await asyncio.to_thread(_again, request, task_id, session, "feedback", problems, typed)
    store = _rt(request).tasks
    try:
        await asyncio.to_thread(
            store.add_feedback,
            task_id,
            author=body.author or _author(session),
            verdict=body.verdict,
            notes=body.notes,
            score=body.score,
            version=body.version,
        )
    except (NotFoundError, UserError) as exc:  # a version that is not (any more) the task's; an unknown task is 404
        return await asyncio.to_thread(_again, request, task_id, session, "feedback", [str(exc)], typed)
    return back(f"/ui/tasks/{quote(task_id)}", "verdict given")


@router.post("/ui/tasks/{task_id}/code")
async def post_code(
    request: Request,
    task_id: str,
    session: Checked,
    file: Annotated[UploadFile | None, File()] = None,
    filename: Annotated[str, Form(max_length=255)] = "",
    content: Annotated[str, Form()] = "",
) -> Response:
    """The task's next code version, as ``POST /tasks/{id}/code`` adds one: an uploaded file (stored
    under ``filename`` when given), or pasted ``content`` with its ``filename``."""
    need(session, "runs")
    content = content.replace("\r\n", "\n")
    typed = {"filename": filename, "content": content}
    name, data, problems = filename.strip(), b"", []
    if file is not None and file.filename:
        if content.strip():
            problems.append("give a file or paste the code, not both")
        data, name = await file.read(), name or file.filename
        if not re.match(FILENAME_PATTERN, name):
            problems.append("filename: must hold a letter or digit after its last slash")
    elif content.strip():
        try:
            data = CodeTextIn(filename=name, content=content).content.encode("utf-8")
        except ValidationError as exc:
            problems += _problems(exc)
    else:
        problems.append("give a file, or paste the code and its file name")
    if problems:
        return await asyncio.to_thread(_again, request, task_id, session, "code", problems, typed)
    try:
        record = await asyncio.to_thread(add_version, _rt(request).tasks, task_id, name, data, _author(session))
    except UserError as exc:  # the store's own refusal (a name it cannot keep, say)
        return await asyncio.to_thread(_again, request, task_id, session, "code", [str(exc)], typed)
    return back(f"/ui/tasks/{quote(task_id)}", f"version {record.version} added ({record.filename})")
