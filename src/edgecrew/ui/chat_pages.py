"""Mission control's chat: the sessions list (start one with a team) and a session's page, whose form
sends a message and whose reply streams in as the model writes it.

Sending is a plain form post (it works without JavaScript): it stores the message, starts the run that
answers it and redirects to the session's page. While that run works the page reads one SSE stream of
the text being written (:class:`~edgecrew.engine.live.LiveText`, through :meth:`ChatSessions.watch`),
which ends with ``done``; the page then reloads once and shows the stored turn. A run that waits for an
approval is not streamed (the page says where to give it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from html import escape
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from edgecrew.context import request_id as current_request_id
from edgecrew.domain.runs import RunStatus
from edgecrew.engine.chat import ChatService
from edgecrew.engine.service import RunService
from edgecrew.engine.sessions import MAX_MESSAGE, ChatSessions, Replied, Writing
from edgecrew.errors import EdgecrewError
from edgecrew.ui.pages import Checked, Viewer, back, need, page

router = APIRouter(include_in_schema=False)
SessionId = Annotated[str, PathParam(min_length=2, max_length=32, pattern=r"^s[0-9a-f]{1,31}$")]


def _chats(request: Request) -> ChatSessions:
    return ChatSessions(RunService(request.app.state.rt))


@router.get("/ui/chat")
async def chat_home(request: Request, session: Viewer, notice: str = "") -> HTMLResponse:
    chats = _chats(request)
    found = await asyncio.to_thread(chats.list_sessions, limit=100)
    teams = await asyncio.to_thread(ChatService(chats.runs).teams)  # internal teams are not offered
    return page(request, "chat.html", session, sessions=found, teams=teams, notice=notice)


@router.post("/ui/chat")
async def start_chat(
    request: Request, session: Checked, team: Annotated[str, Form(min_length=1, max_length=200)]
) -> Response:
    need(session, "runs")
    try:
        made = await asyncio.to_thread(_chats(request).create, team)
    except EdgecrewError as exc:
        return back("/ui/chat", str(exc))
    return RedirectResponse(f"/ui/chat/{made.id}", status_code=303)


@router.get("/ui/chat/{session_id}")
async def chat_session(request: Request, session_id: SessionId, session: Viewer, notice: str = "") -> HTMLResponse:
    chats = _chats(request)
    turns = await asyncio.to_thread(chats.turns, session_id)
    chat = await asyncio.to_thread(chats.get, session_id)
    answered = {t.seq - 1 for t in turns if t.role == "assistant"}
    waiting = next((t for t in reversed(turns) if t.role == "user" and t.seq not in answered and t.run_id), None)
    run = await asyncio.to_thread(RunService(chats.rt).get, waiting.run_id) if waiting and waiting.run_id else None
    failed_answers = await asyncio.to_thread(chats.failed_answers, turns)
    # A run that waits for an approval is not streamed: its stream would end at once (nothing is being
    # written) and the page, reloading when a stream ends, would reload itself without end.
    approval = run is not None and run.status == RunStatus.WAITING_APPROVAL
    return page(
        request,
        "chat_session.html",
        session,
        chat=chat,
        turns=turns,
        waiting=waiting if run is not None and not run.status.terminal and not approval else None,
        approval=waiting if approval else None,
        failed=waiting if run is not None and run.status.terminal else None,
        failed_run=run,
        failed_answers=failed_answers,
        max_message=MAX_MESSAGE,
        notice=notice,
    )


@router.post("/ui/chat/{session_id}")
async def say(
    request: Request,
    session_id: SessionId,
    session: Checked,
    content: Annotated[str, Form(max_length=MAX_MESSAGE)] = "",
) -> Response:
    need(session, "runs")
    text = content.replace("\r\n", "\n").replace("\r", "\n")  # a form sends its lines with CRLF; the API, LF
    try:
        pending = await _chats(request).begin(session_id, text, request_id=current_request_id.get())
    except EdgecrewError as exc:
        return back(f"/ui/chat/{session_id}", str(exc))
    # e.g. a cluster with no live worker: the answer waits until one takes the run
    return back(f"/ui/chat/{session_id}", "; ".join(pending.started.notices))


@router.get("/ui/chat/{session_id}/stream")
async def chat_stream(
    request: Request,
    session_id: SessionId,
    session: Viewer,
    run: Annotated[str, Query(min_length=1, max_length=64)],
) -> EventSourceResponse:
    chats = _chats(request)
    await asyncio.to_thread(chats.question_of, session_id, run)  # 404 before the stream opens
    return EventSourceResponse(_live(chats, session_id, run), ping=15)


async def _live(chats: ChatSessions, session_id: str, run_id: str) -> AsyncIterator[ServerSentEvent]:
    """The reply as it is written (the whole text so far each time), then ``done``."""
    texts: dict[str, str] = {}
    async for update in chats.watch(session_id, run_id, poll_s=0.2):
        if isinstance(update, Writing):
            texts[update.call_key] = update.text
            html = "".join(f'<p class="writing">{escape(t)}</p>' for t in texts.values())
            yield ServerSentEvent(data=html.replace("\n", "<br>"), event="live")
        elif isinstance(update, Replied):
            yield ServerSentEvent(data=update.exchange.status, event="done")
