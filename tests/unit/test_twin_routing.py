"""The twin's router (a template, no model): which expert the latest message goes to. Keywords count as
whole words, so everyday words that contain one (a description, a transcript, to resolve) stay with the
twin; a date is no sum; and a question that opens with a machine word reaches the real figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgecrew
from edgecrew.bootstrap import bootstrap
from edgecrew.domain.templating import render_text
from edgecrew.domain.transcript import transcript_task
from edgecrew.engine import durable
from edgecrew.engine.service import RunService
from edgecrew.engine.sessions import ChatSessions
from edgecrew.specs.loader import load_team_text

TWIN = load_team_text((Path(edgecrew.__file__).parent / "teams" / "twin.yaml").read_text(encoding="utf-8"))


def route(message: str, earlier: list[tuple[str, str]] | None = None) -> str:
    task = transcript_task(earlier, message) if earlier else message
    template = TWIN.agents["route"].template
    assert template is not None
    expert: str = json.loads(render_text(template, {"task": task, "outputs": {}}))["expert"]
    return expert


@pytest.mark.parametrize(
    ("message", "expert"),
    [
        # everyday words that only contain a keyword
        ("Give me a description of Lisbon", "chat"),
        ("Summarise the transcript of our call", "chat"),
        ("My prescription ran out, what should I do?", "chat"),
        ("How do I resolve a fight with my sister?", "chat"),
        ("My computer feels slow today", "chat"),
        # dates and times are no sums
        ("What happened on 2024-12-07?", "chat"),
        ("Remind me about 12/07/2024 at 10:30", "chat"),
        # a machine word first in the message
        ("cpu load now?", "machine"),
        ("disk space left?", "machine"),
        ("RAM usage", "machine"),
        # what already went to the experts still does
        ("Write a python function that reverses a list", "coding"),
        ("Why does this code raise a traceback?", "coding"),
        ("def add(a, b): what is wrong here", "coding"),
        ("What is 17 * 23?", "arithmetic"),  # only arithmetic: computed, no model
        ("what is 6*7", "arithmetic"),
        ("What is 10 - 3?", "arithmetic"),
        ("12/4 please", "arithmetic"),
        ("how much is 6 x 7", "arithmetic"),
        ("(2+3)^2", "arithmetic"),
        ("what is 2**10", "arithmetic"),
        ("Calculate 15 percent of 80", "math"),  # words: the math expert
        ("Solve x^2 = 9", "math"),
        ("What is 2 + 2 in base 3?", "math"),
        ("what is (1+2", "math"),  # unbalanced: not computed as written
        ("2024-12-07", "chat"),  # a date alone is no sum either
        ("How much free memory and disk does this machine have?", "machine"),
        ("Is there enough RAM?", "machine"),
        ("How are you today?", "chat"),
    ],
)
def test_the_router_sends_each_message_to_its_expert(message: str, expert: str) -> None:
    assert route(message) == expert


def test_only_the_latest_message_routes() -> None:
    assert route("How are you today?", [("user", "write python code for 2 + 2"), ("assistant", "ok")]) == "chat"


@pytest.mark.parametrize(
    ("message", "expression"),
    [("What is 17 * 23?", "17 * 23"), ("how much is 6 x 7", "6 * 7"), ("(2+3)^2", "(2+3)**2"), ("12/4 please", "12/4")],
)
def test_an_arithmetic_message_routes_with_its_python_expression(message: str, expression: str) -> None:
    template = TWIN.agents["route"].template
    assert template is not None
    assert json.loads(render_text(template, {"task": message, "outputs": {}}))["expression"] == expression


async def test_a_message_that_is_only_arithmetic_is_computed_in_the_sandbox_with_no_model() -> None:
    # SmolLM2 as the math expert ran 17*23, saw 391 and answered something else: a message that is only
    # arithmetic is now Python's to compute (the sandbox), and its answer is rendered, no model.
    rt = bootstrap()
    try:
        chats = ChatSessions(RunService(rt))
        session = chats.create("twin")
        for message, answer in [("What is 17 * 23?", "17 * 23 = 391"), ("1/0", "I could not compute 1/0: "
                                "ZeroDivisionError: division by zero")]:  # fmt: skip
            turn = await chats.say(session.id, message)
            assert turn.run.status == "succeeded" and turn.answer is not None and turn.answer.content == answer, turn
            assert [s.agent for s in rt.store.steps(turn.run.id)] == ["route", "calculate", "result"]
            assert not [e for e in rt.store.events(turn.run.id) if e.type == "model_called"]
    finally:
        durable.shutdown()
