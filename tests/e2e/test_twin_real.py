"""The built-in twin on the real embedded model (SmolLM2-135M through llama.cpp): two turns of a chat
session, each a run that succeeds with a non-empty answer; the second run's task carries the first
exchange (short-term memory) and its agent recalled the first exchange from long-term memory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.service import RunService
from edgecrew.engine.sessions import ChatSessions

pytest.importorskip("llama_cpp", reason="the embedded model needs the [local] extra (make test installs it)")
pytestmark = pytest.mark.real_model


@pytest.fixture(autouse=True)
def _shutdown(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")  # the e5 model has its own real tests
    yield
    durable.shutdown()


async def test_the_twin_chats_on_smollm2_and_remembers_the_first_turn() -> None:
    rt = bootstrap()
    chats = ChatSessions(RunService(rt))
    session = chats.create("twin")
    first = await chats.say(session.id, "Hello! My name is Ada and I live in Lisbon.")
    assert first.status == "answered", first.error
    assert first.answer is not None and first.answer.content.strip()
    second = await chats.say(session.id, "Where do I live?")
    assert second.status == "answered", second.error
    assert second.answer is not None and second.answer.content.strip()
    assert "user: Hello! My name is Ada and I live in Lisbon." in second.run.task
    steps = [s.agent for s in rt.store.steps(second.run.id)]
    assert steps == ["route", "twin"]
    recalled = [e for e in rt.store.events(second.run.id) if e.type == "memory_recalled"]
    assert recalled and first.memory_id in recalled[0].data["ids"]
    calls = [e for e in rt.store.events(second.run.id) if e.type == "model_called"]
    assert calls and all(e.data["alias"] == "local" for e in calls)


async def test_the_math_expert_sees_the_value_of_the_code_smollm2_writes() -> None:
    # SmolLM2 writes `17 * 23` with no print(): python.run shows the value as a REPL would, so the
    # expert's tool results hold the product instead of nothing (what it answers is up to the model).
    rt = bootstrap()
    chats = ChatSessions(RunService(rt))
    session = chats.create("twin")
    turn = await chats.say(session.id, "Compute 17 * 23 for me")  # words around it: "17 * 23" alone is computed
    assert [s.agent for s in rt.store.steps(turn.run.id)] == ["route", "mathematician"]
    calls = [e.data for e in rt.store.events(turn.run.id) if e.type == "tool_called"]
    assert calls and all(call["tool"] == "python.run" for call in calls)
    # The event keeps the first 500 characters of a result: exit_code and stdout come first.
    ran = [re.match(r'\{"exit_code": (-?\d+), "stdout": "((?:[^"\\]|\\.)*)"', call["result"]) for call in calls]
    results = [(int(m[1]), json.loads(f'"{m[2]}"')) for m in ran if m is not None]
    assert results and all(stdout.strip() for code, stdout in results if code == 0), calls
    assert any("391" in stdout for _, stdout in results), calls
