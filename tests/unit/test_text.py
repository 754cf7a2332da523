"""Small wording helpers shared by the CLI, the TUI and the supervisor's messages."""

from __future__ import annotations

from edgecrew.domain.text import counted, with_article


def test_a_noun_gets_its_indefinite_article() -> None:
    assert [with_article(n) for n in ("run", "execution", "job", "incident", "model")] == [
        "a run",
        "an execution",
        "a job",
        "an incident",
        "a model",
    ]


def test_what_started_a_run_is_said_in_words() -> None:
    from edgecrew.domain.runs import started_by

    assert started_by(None) is None and started_by({}) is None
    assert started_by({"kind": "routine", "routine": "nightly", "manual": True}) == "routine nightly, fired by hand"
    assert started_by({"kind": "job", "job": "j1"}) == "job j1"
    assert started_by({"kind": "chat", "session": "s1", "turn": 3}) == "chat session s1 (turn 3)"
    changed = {"kind": "supervisor", "incident": "i1", "action": "fallback_model", "change": "local -> local-gemma"}
    assert started_by(changed) == (
        "the supervisor, automatically, for incident i1: fallback_model (local -> local-gemma)"
    )
    assert started_by({"kind": "from_step", "run": "r1", "step": "v002.writer"}).startswith("run r1, from its step")


def test_a_count_names_its_noun_in_the_singular_only_for_one() -> None:
    assert [counted(n, "edge") for n in (0, 1, 2, 1.5)] == ["0 edges", "1 edge", "2 edges", "1.5 edges"]
