"""A run's checklist, derived from its events: states follow the steps, a plan becomes sub-tasks,
pending approvals are open questions, and unreached agents end as skipped."""

from __future__ import annotations

from typing import Any

from edgecrew.domain.checklist import checklist
from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    EventRecord,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from edgecrew.domain.runs import Outcome, RunStatus
from edgecrew.specs.loader import load_team_text
from tests.teams import CRITIC, PLANNER, REVISE, WRITER

TEAM = load_team_text(
    "name: pwr\nagents:\n"
    + PLANNER
    + WRITER
    + CRITIC
    + "graph:\n  start: planner\n  edges:\n    - {from: planner, to: writer}\n    - {from: writer, to: critic}\n"
    + REVISE
)


def record(i: int, event: Event, agent: str | None = None) -> EventRecord:
    data: dict[str, Any] = event.to_data()
    return EventRecord(i, "r1", f"k{i}", event.kind.value, None, agent, data, 1_700_000_000.0 + i)


def test_states_follow_the_steps_and_the_plan_becomes_sub_tasks() -> None:
    events = [
        record(1, RunStarted(team="pwr", task="t", agents=("planner", "writer", "critic"))),
        record(2, StepStarted(visit=0), "planner"),
        record(3, StepFinished(outcome=Outcome.FINAL, output={"steps": ["outline", "draft"]}), "planner"),
        record(4, StepStarted(visit=1), "writer"),
        record(5, ApprovalRequested(approval="a1", tool="files.write", reason="save the draft"), "writer"),
    ]
    now = checklist(TEAM, "write a note", events)
    assert [(i.text, i.state) for i in now.items] == [("planner", "done"), ("writer", "running"), ("critic", "pending")]
    assert [c.text for c in now.items[0].children] == ["outline", "draft"]
    assert now.questions == ["approve writer's call to `files.write`? (save the draft)"]
    markdown = now.to_markdown()
    assert markdown.startswith("# write a note\n") and "- [x] planner\n  - [ ] outline" in markdown
    assert "- [~] writer" in markdown and "## Open questions" in markdown

    events += [
        record(6, ApprovalDecided(approval="a1", approved=False), "writer"),
        record(7, StepFinished(outcome=Outcome.TOOL_ERRORS, error="denied"), "writer"),
        record(8, RunFinished(status=RunStatus.FAILED, error="agent 'writer' ended with tool_errors")),
    ]
    ended = checklist(TEAM, "write a note", events)
    assert [(i.text, i.state) for i in ended.items] == [
        ("planner", "done"),
        ("writer", "failed"),
        ("critic", "skipped"),
    ]
    assert ended.questions == [] and ended.meta["status"] == "failed"
    assert "denied: writer's tool call" in ended.notes and any("writer failed" in n for n in ended.notes)
