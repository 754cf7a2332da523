"""/sessions: chat sessions with a team, their turns, and messages answered by runs of the team.

``POST /sessions/{id}/messages`` stores the message, starts the run that answers it (its task is the
session's recent turns and the message) and waits for it: 200 with the answer, or with ``status:
failed`` and the run's error (the message itself was taken); 202 with ``status: pending`` when the run
waits for an approval or ``wait`` seconds pass (the answer is stored when the run ends, and shows in
``GET /sessions/{id}``). ``?stream=true`` answers with Server-Sent Events instead: ``turn`` (the message
stored, its run id), ``delta`` (text a model is writing), ``answer`` (as the JSON answer), then
``done``. Reads need the ``read`` scope, the rest ``runs``. Everything goes through
:class:`ChatSessions` (never the store).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from edgecrew.api.deps import Read, RunsDep, StartRuns
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.api.routers.runs import with_warnings
from edgecrew.api.shapes import Limit, Offset, Out, Page, sse_stream
from edgecrew.context import request_id as current_request_id
from edgecrew.domain.runs import RunStatus
from edgecrew.engine.service import TASK_PATTERN
from edgecrew.engine.sessions import MAX_MESSAGE, ChatSessions, Exchange, Replied, Said, Writing

router = APIRouter(prefix="/sessions", tags=["sessions"], responses=PROBLEM_RESPONSES)

SESSION_PATTERN = r"^s[0-9a-f]{1,31}$"
SessionId = Annotated[str, Path(min_length=2, max_length=32, pattern=SESSION_PATTERN, description="A session's id.")]
KEEPALIVE_S = 10


def sessions_of(runs: RunsDep) -> ChatSessions:
    return ChatSessions(runs)


# -- shapes ---------------------------------------------------------------------------------------------
class SessionIn(BaseModel):
    # A first message sent here ({"team": "twin", "message": "hi"}) was dropped without a word.
    model_config = ConfigDict(extra="forbid")

    team: str = Field(min_length=1, max_length=200, description="The team to talk to (see GET /teams), e.g. twin.")
    title: str | None = Field(default=None, max_length=200, description="Default: the first message.")
    project: str | None = Field(
        default=None, min_length=1, max_length=200, description="A project (name or id) the session's runs work in."
    )


class SessionOut(Out):
    id: str
    team: str
    title: str
    project: str | None = None
    created_at: float
    updated_at: float


class SessionPage(Page[SessionOut]):
    pass


class TurnOut(Out):
    seq: int = Field(description="The turn's place: a message at 2k, its answer at 2k+1.")
    role: Literal["user", "assistant"]
    content: str
    run_id: str | None = None
    created_at: float
    run_failed: bool = Field(
        default=False,
        description="An answer whose run failed: it says why (the team's `failed_when`), the work was not done.",
    )


class SessionDetail(SessionOut):
    turns: list[TurnOut]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(
        min_length=1,
        max_length=MAX_MESSAGE,
        pattern=TASK_PATTERN,
        description="What you say (not only whitespace or control characters).",
    )


class WaitingCallOut(BaseModel):
    id: str = Field(description="The approval's id.")
    tool: str
    agent: str
    arguments: dict[str, Any]


class ExchangeOut(BaseModel):
    session_id: str
    run_id: str
    status: Literal["answered", "pending", "failed"] = Field(
        description="`failed` whenever the answering run failed, also when it left an answer that says why "
        "(the team's `failed_when`): that answer is in `answer` and kept as the turn's."
    )
    question: TurnOut
    answer: TurnOut | None = None
    error: str | None = Field(default=None, description="Why the run failed, when it did.")
    run_status: RunStatus = Field(
        description="The answering run's status: `waiting_approval` while a person decides one of its calls "
        "(`approvals` names them), `queued` or `running` while it works."
    )
    approvals: list[WaitingCallOut] = Field(
        default=[],
        description="While the run waits for a person: each call waiting, to decide with "
        "POST /approvals/{id}/approve or /deny; then say nothing new: the answer comes to this session.",
    )

    @classmethod
    def of(cls, exchange: Exchange) -> ExchangeOut:
        return cls(
            session_id=exchange.session_id,
            run_id=exchange.run.id,
            run_status=exchange.run.status,
            status=exchange.status,  # type: ignore[arg-type]
            question=TurnOut.of(exchange.question),
            answer=TurnOut.of(exchange.answer) if exchange.answer is not None else None,
            error=exchange.error,
            approvals=[
                WaitingCallOut(id=a.id, tool=a.tool, agent=a.agent, arguments=a.arguments)
                for a in (exchange.waiting.approvals if exchange.waiting is not None else ())
            ],
        )


# -- routes ---------------------------------------------------------------------------------------------
@router.post("", status_code=201, response_model=SessionOut)
async def create_session(body: SessionIn, runs: RunsDep, _: StartRuns) -> JSONResponse:
    """Start a session with a team; its messages go to ``POST /sessions/{id}/messages``."""
    made = await asyncio.to_thread(sessions_of(runs).create, body.team, body.title, body.project)
    out = SessionOut.of(made).model_dump(mode="json")
    return JSONResponse(out, status_code=201, headers={"Location": f"/sessions/{made.id}"})


@router.get("", response_model=SessionPage)
async def list_sessions(
    runs: RunsDep,
    _: Read,
    limit: Limit = 20,
    offset: Offset = 0,
    team: Annotated[str | None, Query(min_length=1, max_length=200, description="Only this team's.")] = None,
) -> SessionPage:
    """Sessions, the most recently active first."""
    chats = sessions_of(runs)
    found = await asyncio.to_thread(chats.list_sessions, limit=limit, offset=offset, team=team)
    total = await asyncio.to_thread(chats.count, team=team)
    return SessionPage.of([SessionOut.of(s) for s in found], total, limit, offset)  # type: ignore[return-value]


@router.get("/{session_id}", response_model=SessionDetail)
async def get_session(session_id: SessionId, runs: RunsDep, _: Read) -> SessionDetail:
    """A session with its turns (answers of runs that ended since are stored first)."""
    chats = sessions_of(runs)
    turns = await asyncio.to_thread(chats.turns, session_id)
    session = await asyncio.to_thread(chats.get, session_id)
    failed = await asyncio.to_thread(chats.failed_answers, turns)
    shown = [
        TurnOut.of(t).model_copy(update={"run_failed": t.role == "assistant" and t.run_id in failed}) for t in turns
    ]
    return SessionDetail(**SessionOut.of(session).model_dump(), turns=shown)


@router.post(
    "/{session_id}/messages",
    response_model=ExchangeOut,
    responses={
        200: {
            "content": sse_stream(
                ("turn", "delta", "answer", "done"),
                "JSON: the question's turn (turn), a piece of the reply (delta), the exchange (answer); [DONE]",
            )
        },
        202: {"model": ExchangeOut, "description": "Not answered yet: the run waits for an approval, or runs on."},
    },
)
async def post_message(
    session_id: SessionId,
    body: MessageIn,
    runs: RunsDep,
    _: StartRuns,
    stream: Annotated[bool, Query(description="Answer with Server-Sent Events (turn, delta, answer, done).")] = False,
    wait: Annotated[float, Query(ge=0, le=600, description="Seconds to wait for the answer before a 202.")] = 120,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=256, description="Say it at most once: a retry with the same key answers from it."),
    ] = None,
) -> Response:
    """Say something: the session's team answers with the recent turns as context."""
    chats = sessions_of(runs)
    pending = await chats.begin(
        session_id, body.content, request_id=current_request_id.get(), idempotency_key=idempotency_key
    )
    if stream:
        response: Response = EventSourceResponse(
            _events(chats, Said(pending), wait), ping=KEEPALIVE_S, headers={"X-Run-ID": pending.run_id}
        )
    else:
        exchange = await chats.wait(pending, timeout_s=wait)
        out = ExchangeOut.of(exchange)
        status = 202 if out.status == "pending" else 200
        response = JSONResponse(out.model_dump(mode="json"), status_code=status, headers={"X-Run-ID": pending.run_id})
    # As POST /runs says it: on a cluster with no live worker the run (and so the answer) waits on its queue.
    return with_warnings(response, pending.started.notices)


async def _events(chats: ChatSessions, said: Said, wait: float) -> AsyncIterator[ServerSentEvent]:
    pending = said.pending
    yield ServerSentEvent(data=TurnOut.of(pending.question).model_dump_json(), event="turn")
    updates = chats.watch(pending.session.id, pending.run_id, timeout_s=wait, handle=pending.started.handle)
    async for update in updates:
        if isinstance(update, Writing):
            data = {"text": update.delta, "agent": update.agent, "call": update.call_key}
            yield ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event="delta")
        elif isinstance(update, Replied):
            yield ServerSentEvent(data=ExchangeOut.of(update.exchange).model_dump_json(), event="answer")
    yield ServerSentEvent(data="[DONE]", event="done")
