"""Chat sessions on the durable engine and a scripted model: the recent turns are the next run's context,
an earlier session's fact comes back through long-term memory, a retry is the same turn and run, and
an answer nobody waited for is stored on the next read. Also: migration 0014 and the twin's routing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import edgecrew.store.repo as repo_module
from edgecrew.bootstrap import bootstrap
from edgecrew.domain.messages import ModelRequest
from edgecrew.domain.transcript import TURN_STOPS, reply_stops, transcript_task
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService
from edgecrew.engine.sessions import ChatSessions, Replied, Said, Writing
from edgecrew.errors import ConflictError, IdempotencyKeyReused, NotFoundError
from edgecrew.models.scripted import ScriptedModel
from edgecrew.store import repo
from edgecrew.store.repo import RunStore
from edgecrew.store.sessions import ChatSessionRecord, ChatStore


@pytest.fixture(autouse=True)
def _embedder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")  # the e5 model has its own real tests
    yield
    durable.shutdown()


def _last_user_message(req: ModelRequest) -> str:
    return next(m.content for m in reversed(req.messages) if m.role == "user")


def _echo(req: ModelRequest, index: int) -> str:
    """An answer that says which agent answered and echoes the message's last line."""
    message = _last_user_message(req).split("latest message: ")[-1].splitlines()[-1]
    return f"{req.metadata.get('agent')} heard: {message[-80:]}"


def _runtime(model: ScriptedModel | None = None) -> Runtime:
    rt = bootstrap()
    rt.models.register("local", model or ScriptedModel(_echo))
    return rt


def _chat(rt: Runtime, **options: object) -> ChatSessions:
    return ChatSessions(RunService(rt), **options)  # type: ignore[arg-type]


# -- the store ----------------------------------------------------------------------------------------


def test_upgrading_to_0014_keeps_every_row_and_adds_the_chat_tables(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    sa.event.listen(engine, "connect", repo_module._sqlite_pragmas)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(repo_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0013")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (id, team, task, status, spec, created_at, updated_at) "
            "VALUES ('r1', 't', 'x', 'succeeded', '{}', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO projects (id, name, description, created_at, updated_at) VALUES ('p1', 'P', '', 1, 1)"
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0014")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM projects").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM chat_sessions").scalar() == 0
    chats = ChatStore(RunStore(engine))
    session = chats.create("t", "hello")
    first = chats.add_question(session.id, "hi")
    answer, new = chats.add_answer(first, "hello there", "r1")
    again, new_again = chats.add_answer(first, "something else", "r1")
    assert (first.seq, answer.seq, new, new_again, again.content) == (0, 1, True, False, "hello there")
    assert chats.add_question(session.id, "next").seq == 2
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
        assert "chat_turns" not in sa.inspect(conn).get_table_names()


def test_an_unanswered_question_keeps_the_place_of_its_answer(tmp_path: Path) -> None:
    chats = ChatStore(repo.open_store(f"sqlite:///{tmp_path / 'e.db'}"))
    session = chats.create("twin", "")
    q0 = chats.add_question(session.id, "first")
    q1 = chats.add_question(session.id, "second")  # the first was never answered
    chats.add_answer(q0, "late answer", "r0")
    assert [(t.seq, t.role, t.content) for t in chats.turns(session.id)] == [
        (0, "user", "first"),
        (1, "assistant", "late answer"),
        (2, "user", "second"),
    ]
    assert q1.seq == 2
    with pytest.raises(NotFoundError, match="edgecrew chat sessions"):
        chats.get("s-nope")


# -- sessions on the engine ---------------------------------------------------------------------------


async def test_the_recent_turns_are_the_next_runs_context() -> None:
    rt = _runtime()
    chat = _chat(rt)
    session = chat.create("twin")
    first = await chat.say(session.id, "My favourite colour is teal.")
    assert first.status == "answered" and first.answer is not None
    assert first.answer.content == "twin heard: My favourite colour is teal."
    await chat.say(session.id, "Tell me a joke.")
    third = await chat.say(session.id, "What is my favourite colour?")
    assert third.run.task.startswith("Conversation so far:\nuser: My favourite colour is teal.\n")
    assert third.run.task.endswith("Reply to the user's latest message: What is my favourite colour?")
    assert "assistant: twin heard: Tell me a joke." in third.run.task
    turns = chat.turns(session.id)
    assert [(t.seq, t.role) for t in turns] == [(i, "user" if i % 2 == 0 else "assistant") for i in range(6)]
    assert turns[4].run_id == turns[5].run_id == third.run.id
    assert third.run.trigger == {"kind": "chat", "session": session.id, "turn": 4}
    assert chat.get(session.id).title == "My favourite colour is teal."
    # Only the last `recent` turns: with 2, the first exchange is out of the short-term context.
    short = _chat(rt, recent=2)
    fourth = await short.say(session.id, "And my name?")
    assert "teal" not in fourth.run.task and "What is my favourite colour?" in fourth.run.task


async def test_an_earlier_sessions_fact_is_recalled_from_long_term_memory() -> None:
    model = ScriptedModel(_echo)
    rt = _runtime(model)
    chat = _chat(rt)
    before = await chat.say(chat.create("twin").id, "The staging server is called heron-7.")
    assert before.memory_id is not None
    later = chat.create("twin")
    asked = await chat.say(later.id, "Which staging server do we use?")
    assert "heron" not in asked.run.task  # not in the short-term context: a new session
    recalled = [e for e in rt.store.events(asked.run.id) if e.type == "memory_recalled"]
    assert recalled and recalled[0].data["ids"] == [before.memory_id]
    prompt = _last_user_message(model.calls[-1].request)
    assert "The staging server is called heron-7." in prompt and "Memories from earlier runs" in prompt
    # a later turn searches with its own message, not the conversation that leads to it
    again = await chat.say(later.id, "And the production one?")
    assert "Which staging server do we use?" in again.run.task
    [search] = [e for e in rt.store.events(again.run.id) if e.type == "memory_recalled"]
    assert search.data["query"] == "And the production one?"


async def test_a_retry_is_the_same_turn_and_run_and_another_message_waits_its_turn() -> None:
    rt = _runtime(ScriptedModel(_echo, delay=1.0))
    chat = _chat(rt)
    session = chat.create("twin")
    pending = await chat.begin(session.id, "hello")
    again = await chat.begin(session.id, "hello")
    assert (again.run_id, again.question.seq, again.started.created) == (pending.run_id, 0, False)
    with pytest.raises(ConflictError, match="still answering"):
        await chat.begin(session.id, "something else")
    done = await chat.wait(pending)
    assert done.status == "answered"
    assert [t.content for t in chat.turns(session.id)] == ["hello", "twin heard: hello"]
    keyed = await chat.begin(session.id, "with a key", idempotency_key="client-key-1")
    assert (await chat.begin(session.id, "with a key", idempotency_key="client-key-1")).run_id == keyed.run_id
    await chat.wait(keyed)
    # The key again with another message is refused: answering it from the first run dropped the message.
    with pytest.raises(IdempotencyKeyReused, match=keyed.run_id):
        await chat.begin(session.id, "another message", idempotency_key="client-key-1")
    assert [t.content for t in chat.turns(session.id)][-2:] == ["with a key", "twin heard: with a key"]


async def test_an_answer_nobody_waited_for_is_stored_on_the_next_read() -> None:
    rt = _runtime()
    chat = _chat(rt)
    session = chat.create("twin")
    pending = await chat.begin(session.id, "remember me")
    await RunService(rt).follow(pending.run_id)  # followed elsewhere, never stored by this caller
    assert [t.role for t in ChatStore(rt.store).turns(session.id)] == ["user"]
    assert [t.content for t in chat.turns(session.id)] == ["remember me", "twin heard: remember me"]
    assert len(chat.settle(session.id)) == 0  # once only


def _flaky_twin() -> tuple[Runtime, ChatSessions, ChatSessionRecord]:
    """A twin session whose model fails its first call only (a scripted list answers each run alike)."""
    calls = {"n": 0}

    def flaky(req: ModelRequest, index: int) -> str | dict[str, str]:
        calls["n"] += 1
        return {"error": "auth"} if calls["n"] == 1 else "fine now"

    rt = _runtime(ScriptedModel(flaky))
    chat = _chat(rt)
    return rt, chat, chat.create("twin")


async def test_a_failed_run_leaves_the_question_unanswered_and_saying_it_again_retries() -> None:
    _, chat, session = _flaky_twin()
    failed = await chat.say(session.id, "hi")
    assert failed.status == "failed" and failed.answer is None and failed.error and failed.run.id in failed.error
    retried = await chat.say(session.id, "hi")
    assert retried.status == "answered" and retried.run.id != failed.run.id and retried.question.seq == 0
    assert [t.content for t in chat.turns(session.id)] == ["hi", "fine now"]


async def test_a_supervisors_rerun_of_a_failed_message_answers_it_in_the_session() -> None:
    from edgecrew.engine.service import TeamName

    rt, chat, session = _flaky_twin()
    failed = await chat.say(session.id, "hi")
    assert failed.status == "failed"
    # Recorded as the supervisor records a rerun (queued; its incident's workflow starts it).
    trigger = {"kind": "supervisor", "incident": "i1"}
    rerun = RunService(rt).record(TeamName("twin"), failed.run.task, idempotency_key="incident:i1#1", trigger=trigger)
    turn = chat.answer_with(failed.run, rerun.run)
    assert turn is not None and (turn.seq, turn.run_id) == (0, rerun.run.id)
    assert chat.answer_with(failed.run, rerun.run) is None  # once
    # The message again while the rerun works follows the rerun; another message waits its turn.
    again = await chat.begin(session.id, "hi")
    assert (again.run_id, again.started.created) == (rerun.run.id, False)
    with pytest.raises(ConflictError, match=f"run {rerun.run.id} is queued"):
        await chat.begin(session.id, "something else")
    await durable.start_workflow(rerun.run.id)
    done = await chat.wait(again)
    assert done.status == "answered" and done.run.id == rerun.run.id
    assert [(t.content, t.run_id) for t in chat.turns(session.id)] == [("hi", rerun.run.id), ("fine now", rerun.run.id)]
    # An answered message is not taken over by another rerun.
    later = RunService(rt).record(TeamName("twin"), failed.run.task, idempotency_key="incident:i1#2", trigger=trigger)
    assert chat.answer_with(failed.run, later.run) is None
    assert chat.answer_with(done.run, later.run) is None  # a run that is no chat message's


async def test_a_stream_shows_the_text_as_it_is_written_then_the_stored_turn() -> None:
    rt = _runtime(ScriptedModel(["one two three four five six"], delay=0.6))
    chat = _chat(rt)
    session = chat.create("twin")
    # The coder has no tools, so its model streams text (a scripted reply with a delay comes word by word).
    updates = [u async for u in chat.stream(session.id, "count in python", poll_s=0.02)]
    assert isinstance(updates[0], Said) and isinstance(updates[-1], Replied)
    deltas = [u for u in updates if isinstance(u, Writing)]
    assert len(deltas) >= 2 and all(d.agent == "coder" for d in deltas)
    # Live text is polled: its last piece may land after the last look, and the stored turn has it all.
    assert "one two three four five six".startswith("".join(d.delta for d in deltas))
    assert updates[-1].exchange.answer is not None
    assert updates[-1].exchange.answer.content == "one two three four five six"


@pytest.mark.parametrize(
    ("message", "agent"),
    [
        ("Write a python function that reverses a list", "coder"),
        ("Compute 17 * 23 for me", "mathematician"),  # words around it (a bare sum is computed, no model)
        ("How are you today?", "twin"),
    ],
)
async def test_the_twin_routes_coding_and_math_to_experts(message: str, agent: str) -> None:
    rt = _runtime()
    chat = _chat(rt)
    session = chat.create("twin")
    await chat.say(session.id, "I like python and 2 + 2 sums.")  # an earlier turn does not steer the route
    done = await chat.say(session.id, message)
    assert done.status == "answered" and done.answer is not None
    assert done.answer.content.startswith(f"{agent} heard:")
    assert [s.agent for s in rt.store.steps(done.run.id)] == ["route", agent]


@pytest.mark.parametrize(
    "message",
    ["How much free memory and disk does this machine have?", "what's the CPU load?", "Is there enough RAM?"],
)
async def test_the_twin_answers_machine_questions_from_the_real_figures_without_a_model(message: str) -> None:
    rt = _runtime()
    chat = _chat(rt)
    done = await chat.say(chat.create("twin").id, message)
    assert done.status == "answered" and done.answer is not None, done.error
    assert [s.agent for s in rt.store.steps(done.run.id)] == ["route", "machine", "figures"]
    assert not [e for e in rt.store.events(done.run.id) if e.type == "model_called"]
    answer = done.answer.content
    assert answer.startswith("This machine: CPU ") and "GiB free of" in answer and "Disk (where runs work):" in answer
    # a word that only contains one of the keywords stays with the twin
    other = await chat.say(chat.create("twin").id, "Share a ramen recipe with a discount")
    assert [s.agent for s in rt.store.steps(other.run.id)] == ["route", "twin"]


def test_unknown_team_or_session_is_not_found() -> None:
    chat = _chat(_runtime())
    with pytest.raises(NotFoundError):
        chat.create("no-such-team")
    with pytest.raises(NotFoundError):
        asyncio.run(chat.begin("s0000", "hi"))


async def test_a_message_whose_run_cannot_start_is_not_kept() -> None:
    """The session's project was deleted: each message is refused, and none is left as a turn."""
    from edgecrew.projects import ProjectService

    rt = _runtime()
    chat = _chat(rt)
    projects = ProjectService.of(rt)
    session = chat.create("twin", project=projects.create("gone").id)
    projects.delete("gone")
    for text in ("first", "second"):
        with pytest.raises(NotFoundError, match="no project"):
            await chat.say(session.id, text)
    assert chat.turns(session.id) == []


async def test_an_answer_ends_where_the_model_starts_writing_the_transcripts_next_turn() -> None:
    def runs_on(req: ModelRequest, index: int) -> str:
        return "Your name is Ana.\nuser: How much free memory?\nassistant: 2 GiB.\nUser: Thanks"

    model = ScriptedModel(runs_on)
    chat = _chat(_runtime(model))
    session = chat.create("twin")
    first = await chat.say(session.id, "My name is Ana.")
    assert model.calls[-1].request.stop == ()  # no transcript yet: nothing to stop at
    assert first.answer is not None and first.answer.content == runs_on(model.calls[-1].request, 0)
    second = await chat.say(session.id, "What is my name?")
    assert model.calls[-1].request.stop == TURN_STOPS
    assert second.answer is not None and second.answer.content == "Your name is Ana."
    assert [t.content for t in chat.turns(session.id)][-1] == "Your name is Ana."


def test_a_reply_stops_at_a_new_turn_only_where_its_input_holds_a_transcript() -> None:
    task = transcript_task([("user", "hi"), ("assistant", "hello")], "What is my name?")
    assert reply_stops(task) == reply_stops(f"Memories: ...\n\nAnswer this chat.\n{task}") == TURN_STOPS
    assert TURN_STOPS == ("\nuser:", "\nassistant:", "\nUser:", "\nAssistant:")
    assert reply_stops("What is my name?") == reply_stops(transcript_task([], "What is my name?")) == ()
    assert reply_stops("Conversation so far:\nuser: hi") == ()  # no latest message after it
