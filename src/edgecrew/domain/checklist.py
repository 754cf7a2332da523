"""A run's checklist: a markdown todo list of its work (title, meta, tasks with states, open questions,
notes), the artifact people read to see where a run stands.

The one design decision: the checklist is derived from the run's events and its team, never kept by
hand, so it is right after a restart, the same in the API, the CLI and the UI, and updates live with
the event stream. Its tasks are the team's agents in graph order; pending approvals are its open
questions, failures and denials its notes. A failed task's detail is its error's first line, told once
(not again as a note or as the run's error); a finished tool agent's detail is its tool result's
``note``, when it has one (k8s.apply's "validated offline, not applied: ..."). A model or template
agent's output is its own schema's, so a ``note`` field there is data, not a caveat.

Sub-tasks change only on a signal the events carry, never on a guess:

- a tool call of a model agent (a ReAct agent) is a sub-task of that agent, done or failed as the call
  ended, so a one-agent run's checklist moves with each call;
- a plan an agent produced (an output with ``steps``) becomes sub-tasks. A step that names a later
  agent (``writer``) or a tool (``repo.create``) follows that agent's state, or that tool's calls made
  after the plan. A step that names neither has no honest per-step signal: it is "running" while
  later agents work, done only when the run succeeds, and back to open when the run ends otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventRecord,
    RunCancelled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
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
            lines += [f"  - {_BOX[c.state]} {c.text}" + (f": {c.detail}" if c.detail else "") for c in item.children]
        if self.questions:
            lines += ["", "## Open questions", "", *(f"- {q}" for q in self.questions)]
        if self.notes:
            lines += ["", "## Notes", "", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"


def _order(team: TeamSpec) -> list[str]:
    """The team's agents in graph order, then any left over: each agent before every agent it leads to
    (a depth-first reverse postorder, so a loop's way back does not count), siblings as the edges list
    them. Breadth-first would list a fall-through target (``check_name -> answer``) before the branch
    that reaches it later (``repo -> ... -> answer``)."""
    done: list[str] = []
    seen = {team.graph.start}
    stack = [(team.graph.start, iter(_children(team, team.graph.start)))]
    while stack:  # iterative: a long chain of agents must not hit the recursion limit
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            done.append(node)
            stack.pop()
        elif child not in seen:
            seen.add(child)
            stack.append((child, iter(_children(team, child))))
    order = done[::-1]
    return order + [a for a in team.agents if a not in order]


def _children(team: TeamSpec, node: str) -> list[str]:
    """``node``'s targets, last first: the reversed postorder then lists them as the edges do."""
    targets = [t for e in team.graph.outgoing(node) for t in e.targets if t != END]
    return list(dict.fromkeys(targets))[::-1]


@dataclass
class _Plan:
    """A plan's steps and the position in the event stream after which its signals count."""

    agent: str
    steps: list[ChecklistItem]
    after: int  # index of the StepFinished that made it


def checklist(team: TeamSpec, task: str, events: Iterable[EventRecord]) -> Checklist:
    """The checklist of a run of ``team`` on ``task`` after ``events`` (in order)."""
    items = {name: ChecklistItem(_label(team, name)) for name in _order(team)}
    calls: dict[str, list[ChecklistItem]] = {name: [] for name in items}  # model agents' tool calls
    plans: dict[str, _Plan] = {}
    tool_log: list[tuple[int, str, bool]] = []  # (position, tool, failed) of every tool call
    started: list[tuple[int, str]] = []  # (position, agent) of every step that started
    questions: dict[str, str] = {}
    requested: dict[str, ApprovalRequested] = {}  # by approval id: what a decision was asked about
    notes: list[str] = []
    failures: list[str] = []  # the errors of the steps that failed
    meta = {"team": team.name, "status": "queued"}
    for i, e in enumerate(events):
        match p := e.payload:
            case RunStarted():
                meta["status"] = "running"
                meta["started"] = dt.datetime.fromtimestamp(e.created_at).strftime("%Y-%m-%d %H:%M:%S")
            case StepStarted() if e.agent in items:
                items[e.agent].state = "running"
                started.append((i, e.agent))
            case ToolCalled() if e.agent is not None:
                tool_log.append((i, p.tool, p.is_error))
                agent = team.agents.get(e.agent)
                if e.agent in calls and agent is not None and not agent.tool:  # a tool agent's call is its task
                    detail = _first_line(p.result) if p.is_error else ""
                    calls[e.agent].append(ChecklistItem(f"`{p.tool}`", "failed" if p.is_error else "done", detail))
            case StepFinished() if e.agent in items and p.outcome == Outcome.CANCELLED:
                pass  # its run's cancel stopped it: told below as any task the run's end stopped, not a failure
            case StepFinished() if e.agent in items:
                item = items[e.agent]
                item.state = "done" if p.outcome == Outcome.FINAL else "failed"
                output = p.output if isinstance(p.output, dict) else {}
                agent = team.agents.get(e.agent)
                tool_agent = agent is not None and bool(agent.tool)
                note = output.get("note") if item.state == "done" and tool_agent else None  # a tool's caveat
                item.detail = _first_line(note) if isinstance(note, str) else ""
                if tool_agent and item.state == "done" and output.get("denied") is True:
                    item.state = "skipped"  # a person denied its call and the team went on (on_denied: continue)
                steps = output.get("steps")
                if isinstance(steps, list) and item.state == "done":
                    plans[e.agent] = _Plan(e.agent, [ChecklistItem(str(s), "pending") for s in steps], i)
                if item.state == "failed":
                    item.detail = _first_line(f"{p.outcome.value}: {p.error or ''}".strip(": "))
                    notes.append(f"{e.agent} failed")  # why is the item's detail: said once
                    failures.append(p.error or "")
            case ApprovalRequested():
                questions[p.approval] = f"approve {e.agent}'s call to `{p.tool}`? ({p.reason})"
                requested[p.approval] = p
            case ApprovalDecided():
                questions.pop(p.approval, None)
                notes.append(_decision(e.agent, p, requested.get(p.approval)))
            case RunFinished():
                meta["status"] = p.status.value
                # the run's error usually repeats a failed step's ("agent 'x' (k) ended with ...: <error>")
                if p.error and not any(f and f in p.error for f in failures) and not any(p.error in n for n in notes):
                    notes.append(_first_line(p.error))
            case RunCancelled():
                meta["status"] = "cancelled"
                notes.append(f"cancelled: {p.reason}" if p.reason else "cancelled")
    if meta["status"] == "running" and questions:  # as the run's own status says while a person decides
        meta["status"] = "waiting_approval"
    ended = meta["status"] in ("succeeded", "failed", "cancelled")
    if ended:
        for item in items.values():
            if item.state == "pending":
                item.state = "skipped"  # the run ended without reaching it
            elif item.state == "running":  # the run ended around it (cancelled, or failed elsewhere)
                item.state, item.detail = "failed", item.detail or f"stopped: the run {meta['status']}"
    for name, plan in plans.items():
        later = any(i > plan.after and a != name for i, a in started)
        for step in plan.steps:
            step.state = _step_state(step.text, plan, items, tool_log, later, meta["status"], ended)
    for name, item in items.items():
        item.children = (plans[name].steps if name in plans else []) + calls[name]
    return Checklist(task, meta, list(items.values()), list(questions.values()), notes)


def _step_state(
    text: str,
    plan: _Plan,
    items: dict[str, ChecklistItem],
    tool_log: list[tuple[int, str, bool]],
    later: bool,
    status: str,
    ended: bool,
) -> State:
    """A plan step's state from the one signal it names: a later agent, a tool called after the plan,
    or (naming neither) whether later agents are working and how the run ended."""
    words = text.lower()
    for name, item in items.items():
        if name != plan.agent and _names(words, name):
            return item.state
    for _, tool, failed in reversed([t for t in tool_log if t[0] > plan.after]):
        if _names(words, tool):
            return "failed" if failed else "done"
    if status == "succeeded":
        return "done"
    if ended or not later:
        return "pending"
    return "running"


def _names(text: str, name: str) -> bool:
    """Whether ``text`` (lowercased) names ``name`` as a whole word (``repo`` is not in ``repo.create``)."""
    return re.search(rf"(?<![\w.-]){re.escape(name.lower())}(?![\w-]|\.\w)", text) is not None


def _decision(agent: str | None, decided: ApprovalDecided, asked: ApprovalRequested | None) -> str:
    """A person's decision as a note: the call, the arguments it ran with when a person edited them, and
    the person's note (a denial's reason)."""
    what = f"{agent}'s call to `{asked.tool}`" if asked is not None else f"{agent}'s tool call"
    note = f"{'approved' if decided.approved else 'denied'}: {what}"
    if asked is not None and decided.approved and decided.arguments != asked.arguments:
        edited = json.dumps(decided.arguments, ensure_ascii=False)
        note += f", its arguments edited to {edited if len(edited) <= 300 else edited[:297] + '...'}"
    return note + (f" ({_first_line(decided.note)})" if decided.note and decided.note.strip() else "")


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    return line[:117] + "..." if len(line) > 120 else line


def _label(team: TeamSpec, name: str) -> str:
    agent = team.agents.get(name)
    return f"{name} ({agent.role})" if agent is not None and agent.role else name
