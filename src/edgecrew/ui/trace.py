"""A run as a trace: its steps with their model and tool calls on one time axis, and a summary.

Everything is derived from the run's events (the same rows the timeline shows), so a trace is right
for a live run, a finished one, and one read after a restart. A model call's event is written when it
ends and carries its latency, so its bar starts ``latency_s`` earlier; a tool call's the same with
``duration_s``. A step still running ends at ``now``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventRecord,
    MemoryRecalled,
    ModelCalled,
    ModelChosen,
    ModelFallback,
    ModelSkipped,
    RunCancelled,
    RunFinished,
    StepFinished,
    StepStarted,
    ToolCalled,
    ToolsSelected,
)
from edgecrew.domain.runs import Outcome

BarKind = Literal["step", "model", "tool", "wait"]


@dataclass
class Call:
    """One model or tool call of a step, with where it lies in time."""

    event: EventRecord
    start: float
    end: float

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class StepTrace:
    """One agent visit: when it ran, how it ended, its calls and how its model was chosen."""

    key: str
    agent: str
    visit: int = 1  # this agent's own visit: 1 for its first (the step key numbers every visit of the run)
    agent_kind: str = "model"
    model: str = ""
    tool: str = ""
    start: float = 0.0
    end: float | None = None
    outcome: str | None = None
    error: str | None = None
    output: object = None
    cancelled: bool = False
    model_calls: list[Call] = field(default_factory=list)
    tool_calls: list[Call] = field(default_factory=list)
    waits: list[Call] = field(default_factory=list)  # approvals: from the request to the decision
    open_wait: EventRecord | None = None  # an approval request no one has decided yet
    routing: list[EventRecord] = field(default_factory=list)  # skips, choices, fallbacks, tool selection
    recalled: list[EventRecord] = field(default_factory=list)

    @property
    def state(self) -> str:
        """running | done | failed | cancelled (what the bar and the graph show)."""
        if self.cancelled:
            return "cancelled"
        if self.end is None:
            return "running"
        return "done" if self.outcome == Outcome.FINAL.value else "failed"

    def duration(self, now: float) -> float:
        return max(0.0, (self.end if self.end is not None else now) - self.start)

    @property
    def prompt_tokens(self) -> int:
        return sum(_model(c).prompt_tokens for c in self.model_calls)

    @property
    def completion_tokens(self) -> int:
        return sum(_model(c).completion_tokens for c in self.model_calls)

    @property
    def cached_tokens(self) -> int:
        return sum(_model(c).cached_tokens for c in self.model_calls)


@dataclass
class Trace:
    start: float
    end: float | None  # None while the run goes on
    steps: list[StepTrace]
    status: str = ""

    def duration(self, now: float) -> float:
        return max(0.0, (self.end if self.end is not None else now) - self.start)

    def step(self, key: str) -> StepTrace | None:
        return next((s for s in self.steps if s.key == key), None)


@dataclass(frozen=True)
class Summary:
    duration_s: float
    steps: int
    model_calls: int
    tool_calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    models: tuple[str, ...]
    failed_calls: int

    @property
    def cached_share(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass(frozen=True)
class Row:
    """One row of the waterfall: a bar placed in percent of the run's time."""

    label: str
    kind: BarKind
    step_key: str
    left: float  # percent
    width: float  # percent
    state: str
    seconds: float
    title: str


def _model(call: Call) -> ModelCalled:
    payload = call.event.payload
    assert isinstance(payload, ModelCalled)
    return payload


def build(events: Iterable[EventRecord], *, created_at: float | None = None) -> Trace:
    """The run's steps from its events, in the order they started."""
    steps: dict[str, StepTrace] = {}
    start: float | None = created_at
    end: float | None = None
    status = ""
    pending: dict[str, EventRecord] = {}  # approval id -> its request
    visits: Counter[str] = Counter()  # an agent's own visits so far
    for e in events:
        start = e.created_at if start is None else min(start, e.created_at)
        p = e.payload
        step = steps.get(e.step_key) if e.step_key else None
        match p:
            case StepStarted() if e.step_key:
                agent = e.agent or ""
                visits[agent] += e.step_key not in steps  # a step's start written again counts once
                steps[e.step_key] = StepTrace(
                    e.step_key,
                    agent,
                    visits[agent],
                    p.agent_kind,
                    p.model,
                    p.tool,
                    start=e.created_at,
                )
            case StepFinished() if step is not None:
                step.end, step.outcome, step.error, step.output = e.created_at, p.outcome.value, p.error, p.output
            case ModelCalled() if step is not None:
                step.model_calls.append(Call(e, e.created_at - (p.latency_s or 0.0), e.created_at))
            case ToolCalled() if step is not None:
                step.tool_calls.append(Call(e, e.created_at - (p.duration_s or 0.0), e.created_at))
            case ApprovalRequested():
                pending[p.approval] = e
            case ApprovalDecided() if p.approval in pending:
                asked = pending.pop(p.approval)
                owner = steps.get(asked.step_key or "")
                if owner is not None:
                    owner.waits.append(Call(asked, asked.created_at, e.created_at))
            case ModelSkipped() | ModelChosen() | ModelFallback() | ToolsSelected() if step is not None:
                step.routing.append(e)
            case MemoryRecalled() if step is not None:
                step.recalled.append(e)
            case RunFinished():
                end, status = e.created_at, p.status.value
            case RunCancelled():
                end, status = e.created_at, "cancelled"
    for asked in pending.values():  # still waiting for a person: the wait runs to the end (or now)
        owner = steps.get(asked.step_key or "")
        if owner is not None and end is not None:
            owner.waits.append(Call(asked, asked.created_at, end))
        elif owner is not None:
            owner.open_wait = asked
    if end is not None:
        for step in steps.values():
            if step.end is None:  # the run ended around it (cancelled, or failed elsewhere)
                step.end, step.cancelled = end, status == "cancelled"
                step.outcome = step.outcome or ("cancelled" if status == "cancelled" else "error")
    ordered = sorted(steps.values(), key=lambda s: s.start)
    return Trace(start if start is not None else 0.0, end, ordered, status)


def summary(trace: Trace, now: float) -> Summary:
    calls = [_model(c) for s in trace.steps for c in s.model_calls]
    return Summary(
        duration_s=trace.duration(now),
        steps=len(trace.steps),
        model_calls=len(calls),
        tool_calls=sum(len(s.tool_calls) for s in trace.steps),
        prompt_tokens=sum(c.prompt_tokens for c in calls),
        completion_tokens=sum(c.completion_tokens for c in calls),
        cached_tokens=sum(c.cached_tokens for c in calls),
        models=tuple(sorted({c.alias for c in calls if c.alias})),
        failed_calls=sum(1 for c in calls if not c.ok),
    )


def rows(trace: Trace, now: float) -> list[Row]:
    """The waterfall: each step, then its model calls, tool calls and approval waits, in time order."""
    total = trace.duration(now) or 1e-9

    def place(label: str, kind: BarKind, key: str, a: float, b: float, state: str, title: str) -> Row:
        left = min(100.0, max(0.0, (a - trace.start) / total * 100))
        width = min(100.0 - left, max(0.0, (b - a) / total * 100))
        return Row(label, kind, key, round(left, 2), round(width, 2), state, max(0.0, b - a), title)

    out: list[Row] = []
    for s in trace.steps:
        end = s.end if s.end is not None else now
        title = f"{s.agent} (visit {s.visit}): {s.state}, {s.duration(now):.2f} s"
        out.append(place(s.agent, "step", s.key, s.start, end, s.state, title))
        children: list[tuple[float, Row]] = []
        for c in s.model_calls:
            m = _model(c)
            state = "done" if m.ok else "failed"
            label = f"model {m.alias or m.requested or '?'}"
            tip = f"{label}: {m.prompt_tokens}→{m.completion_tokens} tokens, {c.duration:.2f} s"
            children.append((c.start, place(label, "model", s.key, c.start, c.end, state, tip)))
        for c in s.tool_calls:
            t = c.event.payload
            assert isinstance(t, ToolCalled)
            label = f"tool {t.tool}"
            state = "failed" if t.is_error else "done"
            tip = f"{label}: {c.duration:.3f} s"
            children.append((c.start, place(label, "tool", s.key, c.start, c.end, state, tip)))
        waits = [*s.waits, *([Call(s.open_wait, s.open_wait.created_at, now)] if s.open_wait else [])]
        for c in waits:
            a = c.event.payload
            assert isinstance(a, ApprovalRequested)
            label = f"approval of {a.tool}"
            tip = f"{label}: waited {c.duration:.1f} s"
            children.append((c.start, place(label, "wait", s.key, c.start, c.end, "wait", tip)))
        out.extend(row for _, row in sorted(children, key=lambda pair: pair[0]))
    return out


def ticks(trace: Trace, now: float, count: int = 4) -> list[tuple[float, str]]:
    """Time-axis marks: (percent, label in seconds)."""
    total = trace.duration(now)
    return [(i * 100 / count, _seconds(total * i / count)) for i in range(count + 1)]


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


def state_of_nodes(trace: Trace, agents: Sequence[str]) -> dict[str, str]:
    """Each agent's state in the graph: its latest visit's (running, done, failed, cancelled); agents
    that never ran are unreached once the run has ended, pending before."""
    states: dict[str, str] = {}
    for s in trace.steps:
        states[s.agent] = s.state
    for name in agents:
        states.setdefault(name, "unreached" if trace.end is not None else "pending")
    return states


@dataclass(frozen=True)
class TimelineItem:
    """A top-level line of the timeline: a run-level event, or one step with its events."""

    event: EventRecord | None = None
    step: StepTrace | None = None
    events: tuple[EventRecord, ...] = ()


def timeline(events: Sequence[EventRecord], built: Trace) -> list[TimelineItem]:
    """Events grouped by the step they belong to, each group where its step started."""
    groups: dict[str, list[EventRecord]] = {}
    order: list[str | EventRecord] = []
    for e in events:
        key = e.step_key
        if key and built.step(key) is not None:
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(e)
        else:
            order.append(e)
    items: list[TimelineItem] = []
    for entry in order:
        if isinstance(entry, str):
            step = built.step(entry)
            assert step is not None
            items.append(TimelineItem(step=step, events=tuple(groups[entry])))
        else:
            items.append(TimelineItem(event=entry))
    return items
