"""Chat sessions: multi-turn conversations with a team, each message answered by one ordinary run.

The one design decision: a session holds turns, never a live process. A message is stored as a user
turn *before* its run starts; the run's task is the session's recent turns (short-term memory) and the
message, and the run is started and followed through :class:`RunService` like any other (idempotency
key ``chat-<session>-<seq>``), so a retry finds the same run and a restarted server resumes it. The
answer is stored when the run ends, by whoever sees it end first (the caller that waits, a stream, or
the next read of the session: :meth:`ChatSessions.settle`), at a place fixed in advance, so storing it
twice is a no-op. Each stored exchange is also remembered in long-term memory (the team's scope, or the
session's project), where the team's agents' automatic recall (``memory: {recall: N}``) finds it in
later turns and later sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio

from edgecrew.domain.events import EventRecord
from edgecrew.domain.runs import RunStatus
from edgecrew.domain.specs import TeamSpec
from edgecrew.engine.approvals import ApprovalService, Waiting
from edgecrew.engine.chat import (
    ChatMessage,
    ChatService,
    answer_text,
    compose_task,
    has_answer,
    internal_team,
    run_failure,
)
from edgecrew.engine.live import LiveText
from edgecrew.engine.service import TASK_MAX_CHARS, RunService, Started, TeamName, require_project, settle
from edgecrew.errors import ConflictError, EdgecrewError, IdempotencyKeyReused, NotFoundError, UserError
from edgecrew.projects import ProjectService
from edgecrew.store.repo import RunRecord
from edgecrew.store.sessions import ChatSessionRecord, ChatStore, ChatTurnRecord

__all__ = [
    "MAX_MESSAGE",
    "RECENT_TURNS",
    "ChatSessions",
    "ChatUpdate",
    "Exchange",
    "Pending",
    "Replied",
    "Said",
    "Writing",
    "check_message",
]

RECENT_TURNS = 6  # turns put in a run's task (short-term memory); EDGECREW_CHAT_RECENT_TURNS changes it
MAX_MESSAGE = TASK_MAX_CHARS  # characters of one message: as long as a task of POST /runs
TURN_CHARS = 1_500  # of each earlier turn, in the task: small models have small contexts
MEMORY_CHARS = 1_500  # of the question and of the answer, in the exchange remembered
TITLE_CHARS = 60


@dataclass(frozen=True)
class Pending:
    """A message stored and its run started (or found again: ``started.created`` False)."""

    session: ChatSessionRecord
    question: ChatTurnRecord
    started: Started

    @property
    def run_id(self) -> str:
        return self.started.run.id


@dataclass(frozen=True)
class Exchange:
    """A message and what became of it: answered, still pending (waiting for an approval, or not waited
    for long enough) or failed (the run's error). A failed run whose answer says why (the team's
    ``failed_when``) is failed with that answer: the conversation goes on from it, and nobody reads it as
    work done."""

    session_id: str
    question: ChatTurnRecord
    answer: ChatTurnRecord | None
    run: RunRecord
    memory_id: int | None = None  # the memory this exchange was remembered as (None: not now)
    waiting: Waiting | None = None  # the calls a person decides before the run goes on (waiting_approval)

    @property
    def status(self) -> str:
        if self.run.status.terminal and self.run.status != RunStatus.SUCCEEDED:
            return "failed"
        return "answered" if self.answer is not None else "pending"

    @property
    def error(self) -> str | None:
        if self.status != "failed":
            return None
        if self.answer is not None:  # the answer says why: this says only that the run failed, and on what
            return f"run {self.run.id} {self.run.status.value}: {self.run.error or 'no error was recorded'}"
        return run_failure(self.run)


@dataclass(frozen=True)
class Said:
    """A stream's first update: the message is stored and its run started."""

    pending: Pending


@dataclass(frozen=True)
class Writing:
    """Text a model of the run is writing now: ``delta`` is new since the last update of this call."""

    run_id: str
    call_key: str
    agent: str
    delta: str
    text: str  # the call's text so far


@dataclass(frozen=True)
class Replied:
    """A stream's last update: how the message ended."""

    exchange: Exchange


ChatUpdate = Said | Writing | Replied


def check_message(text: str) -> None:
    """Refuse a message no run can answer (empty, or longer than a task may be)."""
    if not text.strip():
        raise UserError("the message is empty; say something")
    if len(text) > MAX_MESSAGE:
        raise UserError(f"a message is at most {MAX_MESSAGE} characters ({len(text)} given)")


class ChatSessions:
    """Create, list and read chat sessions, and answer their messages with runs of their team."""

    def __init__(self, runs: RunService, *, recent: int | None = None, remember: bool = True) -> None:
        self.runs = runs
        self.rt = runs.rt
        self.store = ChatStore(runs.rt.store)
        configured = getattr(self.rt.settings, "chat_recent_turns", RECENT_TURNS)
        self.recent = max(0, int(configured if recent is None else recent))
        self.remember = remember

    # -- sessions ---------------------------------------------------------------------------------
    def create(self, team: str, title: str | None = None, project: str | None = None) -> ChatSessionRecord:
        """A new session with ``team`` (a project or built-in team: NotFoundError / SpecError say why not)."""
        spec = self.runs.load_team(TeamName(team))
        if why := internal_team(spec):
            raise UserError(f"{why}; start a session with one of: {', '.join(ChatService(self.runs).teams())}")
        if project:
            project = ProjectService.of(self.rt).get(project).id
        require_project(spec, project or None)  # every message's run would be refused
        return self.store.create(spec.name, " ".join((title or "").split())[:200], project or None)

    def get(self, session_id: str) -> ChatSessionRecord:
        return self.store.get(session_id)

    def list_sessions(self, *, limit: int = 20, offset: int = 0, team: str | None = None) -> list[ChatSessionRecord]:
        """Sessions, the most recently active first."""
        return self.store.find(limit=limit, offset=offset, team=team)

    def count(self, *, team: str | None = None) -> int:
        return self.store.count(team=team)

    def turns(self, session_id: str) -> list[ChatTurnRecord]:
        """The session's turns in order, with the answers of runs that ended since stored first."""
        self.settle(session_id)
        return self.store.turns(session_id)

    def failed_answers(self, turns: Sequence[ChatTurnRecord]) -> set[str]:
        """The runs of ``turns``' answers that failed: each such answer says why (the team's ``failed_when``)."""
        failed = set()
        for turn in turns:
            if turn.role != "assistant" or turn.run_id is None:
                continue
            try:
                if self.rt.store.run_status(turn.run_id) == RunStatus.FAILED:
                    failed.add(turn.run_id)
            except NotFoundError:  # a run deleted since: its answer stands as it was
                continue
        return failed

    def settle(self, session_id: str) -> list[ChatTurnRecord]:
        """Store the answer of every run of the session that ended with one while nobody waited; returns them."""
        session = self.store.get(session_id)
        turns = self.store.turns(session.id)
        answered = {t.seq - 1 for t in turns if t.role == "assistant"}
        stored: list[ChatTurnRecord] = []
        for question in turns:
            if question.role != "user" or question.run_id is None or question.seq in answered:
                continue
            try:
                run = self.rt.store.get_run(question.run_id)
            except NotFoundError:
                continue
            if has_answer(run):
                answer, _ = self._answer(session, question, run)
                stored.append(answer)
        return stored

    def answer_with(self, failed: RunRecord, rerun: RunRecord) -> ChatTurnRecord | None:
        """Let ``rerun`` (the supervisor's run of ``failed`` again) answer the message ``failed`` was started
        for: its turn names the rerun, so the session follows it and stores its answer like any other.
        Only while the message has no answer and the run its turn names has ended with none (a retry of
        the person's own that still runs, or has answered, stands); returns the turn, or None. The failed
        run stays as it was: the rerun's trigger names the incident, and the incident that run."""
        trigger = failed.trigger or {}
        session_id, seq = trigger.get("session"), trigger.get("turn")
        if trigger.get("kind") != "chat" or not isinstance(session_id, str) or not isinstance(seq, int):
            return None
        question = self.store.turn(session_id, seq)
        if question is None or question.role != "user" or self.store.turn(session_id, seq + 1) is not None:
            return None
        current = self._run_or_none(question.run_id)
        if current is not None and (current.id == rerun.id or not current.status.terminal or has_answer(current)):
            return None
        if not self.store.replace_run(session_id, seq, question.run_id, rerun.id):
            return None  # a retry of the person's named another run meanwhile
        self.store.update(session_id)
        return replace(question, run_id=rerun.id)

    # -- messages ---------------------------------------------------------------------------------
    async def say(
        self,
        session_id: str,
        text: str,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
        on_event: Callable[[EventRecord], None] | None = None,
    ) -> Exchange:
        """Store ``text``, run the team on it and the recent turns, and store the answer."""
        pending = await self.begin(session_id, text, request_id=request_id, idempotency_key=idempotency_key)
        return await self.wait(pending, timeout_s=timeout_s, on_event=on_event)

    async def begin(
        self,
        session_id: str,
        text: str,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        team: TeamSpec | None = None,
    ) -> Pending:
        """Store the message as a user turn and start the run that answers it.

        Idempotent: the same message again while the last one is unanswered is a retry of it (its run is
        followed, or started again after a failure); ``idempotency_key`` names a run this session started
        before. Another message while a run still works is a ConflictError.
        """
        check_message(text)
        session = await asyncio.to_thread(self.store.get, session_id)
        await asyncio.to_thread(self.settle, session.id)
        if idempotency_key is not None:
            again = await asyncio.to_thread(self._by_key, session, idempotency_key, text, team)
            if again is not None:
                return again
        question, key, added = await asyncio.to_thread(self._question, session, text)
        key = idempotency_key or key
        context = await asyncio.to_thread(self.store.turns, session.id, before=question.seq)
        try:
            started = await self.runs.start(
                team or TeamName(session.team),
                self.task(context, text),
                request_id=request_id,
                idempotency_key=key,
                trigger={"kind": "chat", "session": session.id, "turn": question.seq},
                project=session.project,
            )
        except EdgecrewError:  # refused (its team or project is gone, say): the message is not kept
            if added:
                await asyncio.to_thread(self.store.remove_question, question)
            raise
        await asyncio.to_thread(self.store.set_run, session.id, question.seq, started.run.id)
        title = " ".join(text.split())[:TITLE_CHARS] if not session.title else None
        await asyncio.to_thread(self.store.update, session.id, title=title)
        return Pending(session, replace(question, run_id=started.run.id), started)

    def task(self, earlier: Sequence[ChatTurnRecord], text: str) -> str:
        """The run's task: the last ``recent`` turns as a transcript, then the new message."""
        shown = list(earlier)[-self.recent :] if self.recent else []
        messages = [ChatMessage(t.role, _clip(t.content, TURN_CHARS)) for t in shown]
        return compose_task([*messages, ChatMessage("user", text)])

    def _question(self, session: ChatSessionRecord, text: str) -> tuple[ChatTurnRecord, str, bool]:
        """The user turn for ``text`` (the unanswered last one when it says the same), its run's key and
        whether the turn is new."""
        turns = self.store.turns(session.id)
        last = turns[-1] if turns else None
        if last is not None and last.role == "user":
            run = self._run_or_none(last.run_id)
            if run is not None and not run.status.terminal and last.content != text:
                raise ConflictError(
                    f"chat session {session.id} is still answering its last message (run {run.id} is "
                    f"{run.status.value}); wait for it, or cancel the run, before saying something else"
                )
            if last.content == text:  # a retry: the same turn, its run found again or started anew
                if run is not None and not run.status.terminal and run.idempotency_key:
                    return last, run.idempotency_key, False  # its own key: a supervisor's rerun has another
                if run is None or not run.status.terminal:
                    return last, f"chat-{session.id}-{last.seq}", False
                return last, f"chat-{session.id}-{last.seq}-after-{run.id}", False
        question = self.store.add_question(session.id, text)
        return question, f"chat-{session.id}-{question.seq}", True

    def _by_key(self, session: ChatSessionRecord, key: str, text: str, team: TeamSpec | None) -> Pending | None:
        """The message this session's ``key`` already started a run for; IdempotencyKeyReused when it said
        something else (or to another agent): answering it with the first message's answer dropped it."""
        run = self.rt.store.run_by_idempotency_key(key)
        if run is None or (run.trigger or {}).get("session") != session.id:
            return None
        question = self.store.turn_of_run(session.id, run.id)
        if question is None:
            return None
        if question.content != text or run.team != (team.name if team is not None else session.team):
            raise IdempotencyKeyReused(run.id)
        return Pending(session, question, Started(run, False))

    def _run_or_none(self, run_id: str | None) -> RunRecord | None:
        if run_id is None:
            return None
        try:
            return self.rt.store.get_run(run_id)
        except NotFoundError:
            return None

    async def wait(
        self,
        pending: Pending,
        *,
        timeout_s: float | None = None,
        on_event: Callable[[EventRecord], None] | None = None,
    ) -> Exchange:
        """Follow the message's run until it ends (or waits for an approval, or ``timeout_s`` passes),
        then store its answer."""
        run = await self._follow(pending.run_id, timeout_s=timeout_s, on_event=on_event)
        if run.status.terminal:
            await settle(pending.started.handle)
        return await asyncio.to_thread(self._exchange, pending.session, pending.question, run)

    async def stream(
        self,
        session_id: str,
        text: str,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
        poll_s: float = 0.1,
    ) -> AsyncIterator[ChatUpdate]:
        """Like :meth:`say`, as updates: :class:`Said`, the text being written (:class:`Writing`), then
        :class:`Replied`."""
        pending = await self.begin(session_id, text, request_id=request_id, idempotency_key=idempotency_key)
        yield Said(pending)
        watching = self.watch(
            pending.session.id, pending.run_id, timeout_s=timeout_s, poll_s=poll_s, handle=pending.started.handle
        )
        async for update in watching:
            yield update

    def question_of(self, session_id: str, run_id: str) -> tuple[ChatSessionRecord, ChatTurnRecord]:
        """The session and its message that ``run_id`` answers (NotFoundError: none, or no such session)."""
        session = self.store.get(session_id)
        question = self.store.turn_of_run(session.id, run_id)
        if question is None:
            raise NotFoundError(f"run {run_id} answers no message of chat session {session.id}")
        return session, question

    async def watch(
        self,
        session_id: str,
        run_id: str,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.1,
        handle: Any = None,
    ) -> AsyncIterator[Writing | Replied]:
        """The text a run of the session's is writing, as it grows, then :class:`Replied`. Live text
        exists only in the process that runs the model call (see :class:`LiveText`); elsewhere the
        stream is just the reply. ``handle``: the run's workflow, when this process started it."""
        session, question = await asyncio.to_thread(self.question_of, session_id, run_id)
        live = LiveText.of(self.rt)
        following = asyncio.ensure_future(self._follow(run_id, timeout_s=timeout_s))
        sent: dict[str, int] = {}
        try:
            while True:
                ended = following.done()
                for call in live.of_run(run_id):
                    if not call.plain:  # JSON for a schema (a planner's, a router's): the answer comes later
                        continue
                    start = sent.get(call.call_key, 0)
                    start = 0 if start > len(call.text) else start  # the live buffer keeps the tail only
                    if len(call.text) > start:
                        sent[call.call_key] = len(call.text)
                        yield Writing(run_id, call.call_key, call.agent, call.text[start:], call.text)
                if ended:
                    break
                await asyncio.wait({following}, timeout=poll_s)
            run = following.result()
        finally:
            following.cancel()
        if run.status.terminal:
            await settle(handle)
        yield Replied(await asyncio.to_thread(self._exchange, session, question, run))

    async def begin_v1(
        self,
        session_id: str,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Pending:
        """A ``/v1/chat/completions`` request bound to a session: its last (user) message is the session's
        next turn and the session's recent turns are the context (the request's earlier messages are not
        read). ``model`` must be the session's team, or ``team/agent`` of it."""
        session = await asyncio.to_thread(self.store.get, session_id)
        team, slash, _agent = model.partition("/")
        if team != session.team:
            raise ConflictError(f"chat session {session.id} talks to team '{session.team}', not '{model}'")
        if not messages or messages[-1].role != "user":
            raise UserError("the last message must come from the user: it is the session's next turn")
        spec = await asyncio.to_thread(ChatService(self.runs).team_for, model) if slash else None
        return await self.begin(
            session.id, messages[-1].content, request_id=request_id, idempotency_key=idempotency_key, team=spec
        )

    # -- answers ----------------------------------------------------------------------------------
    async def _follow(
        self, run_id: str, *, timeout_s: float | None = None, on_event: Callable[[EventRecord], None] | None = None
    ) -> RunRecord:
        """Read the run's events until it ends, waits for an approval, or ``timeout_s`` passes."""
        stop = anyio.Event()

        async def until_waiting() -> None:
            while not stop.is_set():
                with anyio.move_on_after(0.5):
                    await stop.wait()
                run = await asyncio.to_thread(self.rt.store.get_run, run_id)
                if run.status == RunStatus.WAITING_APPROVAL:
                    stop.set()

        with anyio.move_on_after(float("inf") if timeout_s is None else timeout_s):
            async with anyio.create_task_group() as group:
                group.start_soon(until_waiting)
                async for batch in self.runs.events(run_id, stop=stop):
                    for event in batch:
                        if on_event is not None:
                            on_event(event)
                stop.set()
        return await asyncio.to_thread(self.rt.store.get_run, run_id)

    def _exchange(self, session: ChatSessionRecord, question: ChatTurnRecord, run: RunRecord) -> Exchange:
        if not has_answer(run):  # a run whose answer says its work failed still answers: it says what to do
            waiting = None
            if run.status == RunStatus.WAITING_APPROVAL:  # which calls, and how to decide them
                waiting = ApprovalService(self.rt).waiting(run.id)
            return Exchange(session.id, question, None, run, waiting=waiting)
        answer, memory_id = self._answer(session, question, run)
        return Exchange(session.id, question, answer, run, memory_id)

    def _answer(
        self, session: ChatSessionRecord, question: ChatTurnRecord, run: RunRecord
    ) -> tuple[ChatTurnRecord, int | None]:
        """Store the run's answer to ``question`` (once) and remember the exchange (once)."""
        answer, new = self.store.add_answer(question, answer_text(run.output), run.id)
        if not new:
            return answer, None
        self.store.update(session.id)
        return answer, self._remember(session, question, answer)

    def _remember(self, session: ChatSessionRecord, question: ChatTurnRecord, answer: ChatTurnRecord) -> int | None:
        """Remember the exchange where the team's agents recall from: the session's project, else the team.

        Best effort: an answer is worth more than its memory (an embedder that fails leaves it out).
        """
        if not self.remember:
            return None
        from edgecrew.memory import MemoryService

        day = datetime.fromtimestamp(question.created_at, UTC).strftime("%Y-%m-%d")
        text = (
            f"In a chat with {session.team} on {day}, the user said: {_clip(question.content, MEMORY_CHARS)}\n"
            f"The answer was: {_clip(answer.content, MEMORY_CHARS)}"
        )
        scope: Any = "project" if session.project else "team"
        try:
            return MemoryService.of(self.rt).remember(
                text,
                scope,
                session.project or session.team,
                run=answer.run_id,
                tags=("chat", f"session:{session.id}"),
            )
        except Exception:  # the embedder or the index failed: the turn stands without its memory
            return None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
