"""A run's checklist: a markdown todo list of its work (title, meta, tasks with states, open questions,
notes), the artifact people read to see where a run stands.

The one design decision: the checklist is derived from the run's events and its team, never kept by
hand, so it is right after a restart, the same in the API, the CLI and the UI, and updates live with
the event stream. Its tasks are the team's agents in graph order; a plan an agent produced (an output
with ``steps``) becomes sub-tasks; pending approvals are its open questions, failures and routes its notes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventRecord,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from edgecrew.domain.runs import Outcome
from edgecrew.domain.specs import END, TeamSpec

__all__ = ["Checklist", "ChecklistItem", "checklist"]

State = Literal["pending", "running", "done", "failed", "skipped"]
_BOX = {"pending": "[ ]", "running": "[~]", "done": "[x]", "failed": "[!]", "skipped": "[-]"}


@dataclass
class ChecklistItem:
    text: str
    state: State = "pending"
    detail: str = ""
    children: list[ChecklistItem] = field(default_factory=list)


@dataclass
class Checklist:
    title: str
    meta: dict[str, str]
    items: list[ChecklistItem]
    questions: list[str]
    notes: list[str]

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"- **{k}**: {v}" for k, v in self.meta.items()]
        lines += ["", "## Tasks", ""]
        for item in self.items:
            lines.append(f"- {_BOX[item.state]} {item.text}" + (f": {item.detail}" if item.detail else ""))
            lines += [f"  - {_BOX[c.state]} {c.text}" for c in item.children]
        if self.questions:
            lines += ["", "## Open questions", "", *(f"- {q}" for q in self.questions)]
        if self.notes:
            lines += ["", "## Notes", "", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"


def _order(team: TeamSpec) -> list[str]:
    """The team's agents breadth-first from the start, then any left over."""
    seen, frontier = [team.graph.start], [team.graph.start]
    while frontier:
        nxt = [t for node in frontier for e in team.graph.outgoing(node) for t in e.targets]
        frontier = [t for t in dict.fromkeys(nxt) if t != END and t not in seen]
        seen += frontier
    return seen + [a for a in team.agents if a not in seen]


def checklist(team: TeamSpec, task: str, events: Iterable[EventRecord]) -> Checklist:
    """The checklist of a run of ``team`` on ``task`` after ``events`` (in order)."""
    items = {name: ChecklistItem(_label(team, name)) for name in _order(team)}
    questions: dict[str, str] = {}
    notes: list[str] = []
    meta = {"team": team.name, "status": "queued"}
    for e in events:
        match p := e.payload:
            case RunStarted():
                meta["status"] = "running"
                meta["started"] = dt.datetime.fromtimestamp(e.created_at).strftime("%Y-%m-%d %H:%M:%S")
            case StepStarted() if e.agent in items:
                items[e.agent].state = "running"
            case StepFinished() if e.agent in items:
                item = items[e.agent]
                item.state = "done" if p.outcome == Outcome.FINAL else "failed"
                item.detail = "" if p.outcome == Outcome.FINAL else f"{p.outcome.value}: {p.error or ''}".strip(": ")
                steps = p.output.get("steps") if isinstance(p.output, dict) else None
                if isinstance(steps, list) and item.state == "done":
                    item.children = [ChecklistItem(str(s), "pending") for s in steps]
                if item.state == "failed":
                    notes.append(f"{e.agent} failed ({item.detail})")
            case ApprovalRequested():
                questions[p.approval] = f"approve {e.agent}'s call to `{p.tool}`? ({p.reason})"
            case ApprovalDecided():
                questions.pop(p.approval, None)
                notes.append(f"{'approved' if p.approved else 'denied'}: {e.agent}'s tool call")
            case RunFinished():
                meta["status"] = p.status.value
                if p.error and not any(p.error in n for n in notes):
                    notes.append(p.error)
    if meta["status"] in ("succeeded", "failed", "cancelled"):
        for item in items.values():
            if item.state == "pending":
                item.state = "skipped"  # the run ended without reaching it
            if meta["status"] == "succeeded":
                for child in item.children:
                    child.state = "done"
    return Checklist(task, meta, list(items.values()), list(questions.values()), notes)


def _label(team: TeamSpec, name: str) -> str:
    agent = team.agents.get(name)
    return f"{name} ({agent.role})" if agent is not None and agent.role else name
