"""Chat sessions and their turns in the store (tables ``chat_sessions`` and ``chat_turns``, migration 0014).

The one design decision: a turn's place is fixed when its question is stored. A user turn takes an even
``seq`` (2k) and its answer the odd one after it (2k+1), so storing an answer is an insert at a known
key: a retry, or a second process settling the same run, finds the row there and changes nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from edgecrew.errors import ConflictError, NotFoundError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

__all__ = ["ChatSessionRecord", "ChatStore", "ChatTurnRecord"]


@dataclass(frozen=True)
class ChatSessionRecord:
    """A conversation with a team."""

    id: str
    team: str
    title: str
    project: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChatTurnRecord:
    """One turn of a session: the user's message (even ``seq``) or the answer to it (the next, odd one)."""

    session_id: str
    seq: int
    role: str  # user | assistant
    content: str
    run_id: str | None
    created_at: float


def new_session_id() -> str:
    return "s" + uuid.uuid4().hex[:15]


class ChatStore:
    """Sessions and turns, in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    # -- sessions ---------------------------------------------------------------------------------
    def create(self, team: str, title: str, project: str | None = None) -> ChatSessionRecord:
        now = time.time()
        record = ChatSessionRecord(new_session_id(), team, title, project, now, now)
        with self.store.transaction() as conn:
            conn.execute(t.chat_sessions.insert().values(**record.__dict__))
        return record

    def get(self, session_id: str) -> ChatSessionRecord:
        """A session by its full id (no prefixes: ids travel in URLs and headers whole)."""
        with self.store.transaction() as conn:
            row = conn.execute(sa.select(t.chat_sessions).where(t.chat_sessions.c.id == session_id)).first()
        if row is None:
            raise NotFoundError(f"no chat session '{session_id}'; see `edgecrew chat sessions` or GET /sessions")
        return ChatSessionRecord(**row._mapping)

    def find(self, *, limit: int = 20, offset: int = 0, team: str | None = None) -> list[ChatSessionRecord]:
        """Sessions, the most recently active first."""
        query = sa.select(t.chat_sessions).order_by(t.chat_sessions.c.updated_at.desc(), t.chat_sessions.c.id)
        if team is not None:
            query = query.where(t.chat_sessions.c.team == team)
        with self.store.transaction() as conn:
            return [ChatSessionRecord(**r._mapping) for r in conn.execute(query.limit(limit).offset(offset))]

    def count(self, *, team: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(t.chat_sessions)
        if team is not None:
            query = query.where(t.chat_sessions.c.team == team)
        with self.store.transaction() as conn:
            return int(conn.execute(query).scalar_one())

    def update(self, session_id: str, *, title: str | None = None) -> None:
        """Mark the session active now (and retitle it when ``title`` is given)."""
        values: dict[str, object] = {"updated_at": time.time()}
        if title is not None:
            values["title"] = title
        with self.store.transaction() as conn:
            conn.execute(t.chat_sessions.update().where(t.chat_sessions.c.id == session_id).values(**values))

    # -- turns ------------------------------------------------------------------------------------
    def turns(self, session_id: str, *, before: int | None = None) -> list[ChatTurnRecord]:
        """The session's turns in order (those with ``seq`` below ``before`` when given)."""
        query = sa.select(t.chat_turns).where(t.chat_turns.c.session_id == session_id)
        if before is not None:
            query = query.where(t.chat_turns.c.seq < before)
        with self.store.transaction() as conn:
            return [ChatTurnRecord(**r._mapping) for r in conn.execute(query.order_by(t.chat_turns.c.seq))]

    def turn(self, session_id: str, seq: int) -> ChatTurnRecord | None:
        query = sa.select(t.chat_turns).where(t.chat_turns.c.session_id == session_id, t.chat_turns.c.seq == seq)
        with self.store.transaction() as conn:
            row = conn.execute(query).first()
        return ChatTurnRecord(**row._mapping) if row is not None else None

    def turn_of_run(self, session_id: str, run_id: str) -> ChatTurnRecord | None:
        """The user turn that ``run_id`` answers."""
        query = sa.select(t.chat_turns).where(
            t.chat_turns.c.session_id == session_id, t.chat_turns.c.run_id == run_id, t.chat_turns.c.role == "user"
        )
        with self.store.transaction() as conn:
            row = conn.execute(query.order_by(t.chat_turns.c.seq.desc())).first()
        return ChatTurnRecord(**row._mapping) if row is not None else None

    def add_question(self, session_id: str, content: str) -> ChatTurnRecord:
        """Store a user turn at the next even ``seq`` (a concurrent writer's turn makes this one try the next)."""
        for _ in range(20):
            with self.store.transaction() as conn:
                top = conn.execute(
                    sa.select(sa.func.max(t.chat_turns.c.seq)).where(t.chat_turns.c.session_id == session_id)
                ).scalar()
            seq = 0 if top is None else (top // 2 + 1) * 2
            record = ChatTurnRecord(session_id, seq, "user", content, None, time.time())
            try:
                with self.store.transaction() as conn:
                    conn.execute(t.chat_turns.insert().values(**record.__dict__))
            except sa.exc.IntegrityError:
                continue
            return record
        raise ConflictError(f"could not store a turn in chat session {session_id}: too many writers at once")

    def remove_question(self, question: ChatTurnRecord) -> None:
        """Take back a user turn no run answers (its run could not start), so it is not context later."""
        c = t.chat_turns.c
        with self.store.transaction() as conn:
            conn.execute(
                t.chat_turns.delete().where(
                    c.session_id == question.session_id, c.seq == question.seq, c.role == "user", c.run_id.is_(None)
                )
            )

    def add_answer(self, question: ChatTurnRecord, content: str, run_id: str) -> tuple[ChatTurnRecord, bool]:
        """Store the answer to ``question`` (at its ``seq`` + 1); returns it and whether it is new."""
        record = ChatTurnRecord(question.session_id, question.seq + 1, "assistant", content, run_id, time.time())
        try:
            with self.store.transaction() as conn:
                conn.execute(t.chat_turns.insert().values(**record.__dict__))
        except sa.exc.IntegrityError:
            existing = self.turn(question.session_id, question.seq + 1)
            if existing is None:
                raise
            return existing, False
        return record, True

    def replace_run(self, session_id: str, seq: int, old: str | None, new: str) -> bool:
        """Name ``new`` as the run that answers the user turn ``seq`` if it still names ``old``; whether it did."""
        c = t.chat_turns.c
        with self.store.transaction() as conn:
            named = c.run_id.is_(None) if old is None else c.run_id == old
            done = conn.execute(
                t.chat_turns.update()
                .where(c.session_id == session_id, c.seq == seq, c.role == "user", named)
                .values(run_id=new)
            )
        return bool(done.rowcount)

    def set_run(self, session_id: str, seq: int, run_id: str) -> None:
        """Name the run that answers the user turn ``seq``."""
        with self.store.transaction() as conn:
            conn.execute(
                t.chat_turns.update()
                .where(t.chat_turns.c.session_id == session_id, t.chat_turns.c.seq == seq)
                .values(run_id=run_id)
            )
