"""Small wording helpers shared by the CLI, the TUI and the supervisor's messages."""

from __future__ import annotations

from edgecrew.domain.text import with_article


def test_a_noun_gets_its_indefinite_article() -> None:
    assert [with_article(n) for n in ("run", "execution", "job", "incident", "model")] == [
        "a run",
        "an execution",
        "a job",
        "an incident",
        "a model",
    ]
