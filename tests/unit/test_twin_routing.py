"""The twin's router (a template, no model): which expert the latest message goes to. Keywords count as
whole words, so everyday words that contain one (a description, a transcript, to resolve) stay with the
twin; a date is no sum; and a question that opens with a machine word reaches the real figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgecrew
from edgecrew.domain.templating import render_text
from edgecrew.domain.transcript import transcript_task
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
        ("What is 17 * 23?", "math"),
        ("what is 6*7", "math"),
        ("What is 10 - 3?", "math"),
        ("12/4 please", "math"),
        ("Calculate 15 percent of 80", "math"),
        ("Solve x^2 = 9", "math"),
        ("How much free memory and disk does this machine have?", "machine"),
        ("Is there enough RAM?", "machine"),
        ("How are you today?", "chat"),
    ],
)
def test_the_router_sends_each_message_to_its_expert(message: str, expert: str) -> None:
    assert route(message) == expert


def test_only_the_latest_message_routes() -> None:
    assert route("How are you today?", [("user", "write python code for 2 + 2"), ("assistant", "ok")]) == "chat"
