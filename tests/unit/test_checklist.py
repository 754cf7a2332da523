"""A run's checklist, derived from its events: states follow the steps, a plan becomes sub-tasks that
follow the agents and tools they name (or the run, when they name none), a ReAct agent's tool calls are
sub-items of its task, pending approvals are open questions, and unreached agents end as skipped."""

from __future__ import annotations

from typing import Any

from edgecrew.domain.checklist import checklist
from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    EventRecord,
    RunCancelled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
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
    assert now.meta["status"] == "waiting_approval"  # as the run's own status says
    assert checklist(TEAM, "write a note", events[:4]).meta["status"] == "running"
    markdown = now.to_markdown()
    # the steps name no agent or tool: in progress while later agents work, done only if the run succeeds
    assert markdown.startswith("# write a note\n") and "- [x] planner\n  - [~] outline" in markdown
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
    assert [c.state for c in ended.items[0].children] == ["pending", "pending"]  # never claimed done
    assert "denied: writer's call to `files.write`" in ended.notes and any("writer failed" in n for n in ended.notes)


def test_a_decision_note_names_the_tool_the_persons_note_and_edited_arguments() -> None:
    """Before: "approved: writer's tool call" whatever was approved: an edited call looked like the one
    the agent asked for, and a denial's reason was not told."""
    asked = {"path": "draft.md", "content": "x"}
    events = [
        record(1, RunStarted(team="pwr", task="t", agents=("planner", "writer", "critic"))),
        record(2, StepStarted(visit=1), "writer"),
        record(3, ApprovalRequested(approval="a1", tool="files.write", arguments=asked, reason="save"), "writer"),
        record(4, ApprovalDecided(approval="a1", approved=True, arguments={**asked, "path": "final.md"}), "writer"),
        record(5, ApprovalRequested(approval="a2", tool="files.write", arguments=asked, reason="again"), "writer"),
        record(6, ApprovalDecided(approval="a2", approved=True, arguments=asked, note="fine"), "writer"),
        record(7, ApprovalRequested(approval="a3", tool="files.write", arguments=asked, reason="once more"), "writer"),
        record(8, ApprovalDecided(approval="a3", approved=False, arguments=asked, note="not on Fridays"), "writer"),
    ]
    assert checklist(TEAM, "write a note", events).notes == [
        'approved: writer\'s call to `files.write`, its arguments edited to {"path": "final.md", "content": "x"}',
        "approved: writer's call to `files.write` (fine)",
        "denied: writer's call to `files.write` (not on Fridays)",
    ]


ONE = "graph: {{start: {0}, edges: [{{from: {0}, to: end}}]}}\n"


def states(items: list[Any]) -> list[tuple[str, str]]:
    return [(c.text, c.state) for c in items]


def test_plan_steps_that_name_an_agent_or_a_tool_follow_it_as_the_run_goes() -> None:
    plan = ["writer drafts the note", "save it with files.write", "polish the wording"]
    events = [
        record(1, RunStarted(team="pwr", task="t", agents=("planner", "writer", "critic"))),
        record(2, StepStarted(visit=0), "planner"),
        record(3, StepFinished(outcome=Outcome.FINAL, output={"steps": plan}), "planner"),
    ]
    steps = checklist(TEAM, "t", events).items[0].children
    assert states(steps) == [(plan[0], "pending"), (plan[1], "pending"), (plan[2], "pending")]

    events.append(record(4, StepStarted(visit=1), "writer"))
    steps = checklist(TEAM, "t", events).items[0].children
    assert states(steps) == [(plan[0], "running"), (plan[1], "running"), (plan[2], "running")]

    events.append(record(5, ToolCalled(tool="files.write", arguments={"path": "n.md"}), "writer"))
    steps = checklist(TEAM, "t", events).items[0].children
    assert states(steps) == [(plan[0], "running"), (plan[1], "done"), (plan[2], "running")]

    events.append(record(6, StepFinished(outcome=Outcome.FINAL, output={"text": "draft"}), "writer"))
    steps = checklist(TEAM, "t", events).items[0].children
    assert states(steps) == [(plan[0], "done"), (plan[1], "done"), (plan[2], "running")]

    events.append(record(7, RunFinished(status=RunStatus.SUCCEEDED)))
    steps = checklist(TEAM, "t", events).items[0].children
    assert [s.state for s in steps] == ["done", "done", "done"]


def test_a_react_agents_tool_calls_are_sub_items_of_its_task() -> None:
    solo = load_team_text(
        "name: solo\nagents:\n  op: {model: fake, system: operate, tools: [files.write, files.read]}\n"
        + ONE.format("op")
    )
    events = [
        record(1, RunStarted(team="solo", task="t", agents=("op",))),
        record(2, StepStarted(visit=0), "op"),
    ]
    assert checklist(solo, "t", events).items[0].children == []
    events.append(record(3, ToolCalled(tool="files.write", arguments={"path": "a"}), "op"))
    now = checklist(solo, "t", events)
    assert now.items[0].state == "running" and states(now.items[0].children) == [("`files.write`", "done")]
    events.append(record(4, ToolCalled(tool="files.read", is_error=True, result="no such file: b\nmore"), "op"))
    now = checklist(solo, "t", events)
    assert states(now.items[0].children) == [("`files.write`", "done"), ("`files.read`", "failed")]
    assert now.items[0].children[1].detail == "no such file: b"
    assert "  - [!] `files.read`: no such file: b" in now.to_markdown()


def test_a_tool_agents_own_call_is_its_task_not_a_sub_item() -> None:
    team = load_team_text(
        "name: t\nagents:\n  w: {tool: files.write, arguments: {path: a.md, content: hi}}\n" + ONE.format("w")
    )
    events = [
        record(1, RunStarted(team="t", task="t", agents=("w",))),
        record(2, StepStarted(visit=0, agent_kind="tool", tool="files.write"), "w"),
        record(3, ToolCalled(tool="files.write", arguments={"path": "a.md"}), "w"),
        record(4, StepFinished(outcome=Outcome.FINAL, output={"path": "a.md"}), "w"),
    ]
    done = checklist(team, "t", events)
    assert [(i.text, i.state, i.children) for i in done.items] == [("w", "done", [])]


def test_a_cancelled_run_stops_the_running_task_and_skips_the_rest() -> None:
    events = [
        record(1, RunStarted(team="pwr", task="t", agents=("planner", "writer", "critic"))),
        record(2, StepStarted(visit=0), "planner"),
        record(3, RunCancelled(reason="cancelled by user")),
    ]
    done = checklist(TEAM, "write a note", events)
    assert [(i.text, i.state) for i in done.items] == [
        ("planner", "failed"),
        ("writer", "skipped"),
        ("critic", "skipped"),
    ]
    assert done.meta["status"] == "cancelled" and done.items[0].detail == "stopped: the run cancelled"
    assert "cancelled: cancelled by user" in done.notes
    # The step's own end, written after the cancel (stopped at its next call), says no more than that.
    ended = checklist(TEAM, "write a note", [*events, record(4, StepFinished(outcome=Outcome.CANCELLED), "planner")])
    assert ended.items == done.items and ended.notes == done.notes


BRANCHES = load_team_text(
    "name: br\nagents:\n"
    + "".join(f"  {a}: {{tool: files.write, arguments: {{path: a.md, content: hi}}}}\n" for a in "cdefg")
    + "  answer: {template: done}\n"
    + "graph:\n  start: c\n  edges:\n"
    + "    - {from: c, to: d, when: 'ok == True'}\n    - {from: c, to: answer}\n"  # a fall-through to the end
    + "    - {from: d, to: e, when: 'ok == True'}\n    - {from: d, to: f, when: 'ok == False'}\n"
    + "    - {from: e, to: g}\n    - {from: f, to: g}\n    - {from: g, to: answer}\n    - {from: answer, to: end}\n"
)


def test_tasks_follow_the_graph_and_a_failure_is_told_once() -> None:
    events = [
        record(1, RunStarted(team="br", task="t", agents=(*"cdefg", "answer"))),
        record(2, StepFinished(outcome=Outcome.FINAL, output={"ok": True}), "c"),
        record(3, StepFinished(outcome=Outcome.FINAL, output={"note": "validated offline, not applied\nmore"}), "d"),
        record(4, StepFinished(outcome=Outcome.TOOL_ERRORS, error="'k8s.apply' failed: connection refused\nmore"), "e"),
        record(
            5,
            RunFinished(
                status=RunStatus.FAILED,
                error="agent 'e' (e#0) ended with tool_errors: 'k8s.apply' failed: connection refused\nmore",
            ),
        ),
    ]
    done = checklist(BRANCHES, "t", events)
    # each agent before those it leads to, branches as the edges list them, the fall-through target last
    assert [i.text for i in done.items] == ["c", "d", "e", "f", "g", "answer"]
    assert done.items[1].detail == "validated offline, not applied"  # a finished step's own note
    assert done.items[2].detail == "tool_errors: 'k8s.apply' failed: connection refused"
    assert done.notes == ["e failed"]  # not the run's error again, which repeats the step's
    assert done.to_markdown().count("connection refused") == 1


def test_only_a_tool_agents_note_becomes_its_detail() -> None:
    """A model or template agent's output follows its own schema: a ``note`` field there is data."""
    events = [
        record(1, RunStarted(team="br", task="t", agents=(*"cdefg", "answer"))),
        record(2, StepFinished(outcome=Outcome.FINAL, output={"ok": True, "note": "applied offline"}), "c"),
        record(3, StepFinished(outcome=Outcome.FINAL, output={"text": "done", "note": "a template's field"}), "answer"),
    ]
    done = checklist(BRANCHES, "t", events)
    assert [(i.text, i.detail) for i in done.items if i.state == "done"] == [("c", "applied offline"), ("answer", "")]
    written = [
        record(1, RunStarted(team="pwr", task="t", agents=("planner", "writer", "critic"))),
        record(2, StepFinished(outcome=Outcome.FINAL, output={"title": "Bees", "note": "keep it short"}), "writer"),
    ]
    assert [i.detail for i in checklist(TEAM, "t", written).items] == ["", "", ""]
