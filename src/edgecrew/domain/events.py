"""Typed run events: one frozen model per :class:`EventType`, built by emitters and read by readers.

Every state change of a run is an event row whose ``data`` is one of these models as a JSON object.
The one design decision: a model stores exactly the fields its emitter set (pydantic's
``exclude_unset``), so the JSON keeps the shape it always had (a failed model call has no
``backend``, a run the stream failed has no ``visits``), while a reader gets a default for any field
an emitter, or an older version, left out. Unknown keys are ignored, and a row of an unknown kind,
or one that no longer validates, reads as :class:`UnknownEvent` instead of failing its reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from edgecrew.domain.runs import EventType, Outcome, RunStatus


def _from() -> Any:
    """A ``from_`` field: "from" is a keyword, so it is ``from_`` in Python and "from" when stored."""
    return Field(default="", validation_alias=AliasChoices("from", "from_"), serialization_alias="from")


class Event(BaseModel):
    """The payload of one run event; each kind is a subclass naming its :class:`EventType`."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    kind: ClassVar[EventType]

    def to_data(self) -> dict[str, Any]:
        """The stored JSON object: the fields the emitter set, under their stored names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class RunCreated(Event):
    kind = EventType.RUN_CREATED
    team: str = ""
    task: str = ""


class RunStarted(Event):
    kind = EventType.RUN_STARTED
    team: str = ""
    task: str = ""
    agents: tuple[str, ...] = ()
    executor: str = ""  # the process running it from here (a cluster worker's id), written again on a resume
    workspace: str = ""  # where its files are, on that process's machine


class RunResumed(Event):
    kind = EventType.RUN_RESUMED
    executor: str = ""  # the process that resumed it ("": the cluster's queue hands it to a live worker)
    lost_worker: str = ""  # on a cluster: the worker that died running it


class StepStarted(Event):
    kind = EventType.STEP_STARTED
    visit: int = 0
    model: str = ""  # a model agent's model; empty for tool and template agents
    role: str = ""
    agent_kind: str = "model"  # model | tool | template
    tool: str = ""  # a tool agent's tool


class FallbackAttempt(BaseModel):
    """A model that failed a call before the next one in its chain was tried."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    alias: str = ""
    error: str = ""


class ModelCalled(Event):
    """One routed model call: what answered and its usage, or the error when none did."""

    kind = EventType.MODEL_CALLED
    alias: str = ""
    requested: str = ""
    backend: str = ""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float | None = None
    ttft_s: float | None = None
    tokens_per_s: float = 0.0
    tool_calls: tuple[str, ...] = ()
    content: str = ""  # the reply, or a preview of a long one (:func:`previewed`)
    content_truncated: bool = False
    content_chars: int | None = None
    error: str | None = None
    fallbacks: tuple[FallbackAttempt, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


RESULT_PREVIEW_CHARS = 500
"""The most characters of a tool's result (a model's reply) a ``tool_called`` (``model_called``) event keeps."""


class ToolCalled(Event):
    """One tool call: the tool, its arguments, and its result, or a preview of it when it is long.

    ``result`` is the observation the agent read when it has at most :data:`RESULT_PREVIEW_CHARS`
    characters. A longer one is cut so it stays what it was (:func:`preview_result`): a JSON result stays
    valid JSON, text stays text (its first characters); ``result_truncated`` says so and ``result_chars``
    is the whole result's length (both only on a cut result: a short one's event keeps its shape).

    The whole result, as the agent read it, is in the call journal: the ``calls`` row of the run and the
    event's key without its ``.tool`` suffix, ``output["content"]`` (``RunStore.recorded_call``; in a
    cluster, whose calls are DBOS steps, in DBOS's output of that step); and, once the step has ended, in
    its conversation (``RunStore.messages(run, step_key)``: the ``tool`` message of the call). A tool's
    result over ``MAX_OBSERVATION_CHARS`` (engine/toolcall.py) was cut before the agent read it."""

    kind = EventType.TOOL_CALLED
    tool: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    is_error: bool = False
    result: str = ""
    result_truncated: bool = False
    result_chars: int | None = None
    duration_s: float | None = None

    @classmethod
    def of_result(cls, content: str, **fields: Any) -> ToolCalled:
        """The event of a call whose observation is ``content``: the preview of a long one, marked cut."""
        return cls(**previewed(content, "result"), **fields)


def previewed(content: str, name: str) -> dict[str, Any]:
    """The fields an event keeps of ``content`` under ``name``: all of it when it is short; else its
    :func:`preview_result`, with ``<name>_truncated`` and ``<name>_chars`` (the whole length) set."""
    preview = preview_result(content)
    if preview == content:
        return {name: content}
    return {name: preview, f"{name}_truncated": True, f"{name}_chars": len(content)}


# How a JSON result is shrunk, step by step until it fits: (longest string, most items of a list or
# object, deepest container shown; a deeper one reads as a count of its items).
_PREVIEW_STEPS = (
    (200, 20, 8), (120, 12, 6), (80, 8, 5), (50, 5, 4), (30, 4, 3), (20, 3, 3), (10, 2, 2), (5, 1, 1)
)  # fmt: skip
_LONGEST_NUMBER = 40  # an integer of more digits reads as a string of its first ones


def preview_result(content: str, limit: int = RESULT_PREVIEW_CHARS) -> str:
    """``content`` itself when it has at most ``limit`` characters; else a cut of it in ``limit``.

    Of a JSON value (what a tool returns that is not text), a JSON text of the same shape: long strings
    cut (ending in "…"), long lists and objects cut to their first items (the rest counted: a last item
    "… N more" in a list, a key "…" with "N more keys" in an object), containers deeper than a few levels
    counted. Of anything else (text, an error, a JSON text already cut), its first ``limit`` characters."""
    if len(content) <= limit:
        return content
    try:
        value = json.loads(content, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return content[:limit]
    for longest, items, depth in _PREVIEW_STEPS:
        text = json.dumps(_shrunk(value, longest, items, depth), ensure_ascii=False)
        if len(text) <= limit:
            return text
    return content[:limit]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python reads them, a JSON reader does not


def _shrunk(value: Any, longest: int, items: int, depth: int) -> Any:
    """``value`` with its strings cut to ``longest``, its containers to ``items`` and ``depth`` levels."""
    if isinstance(value, str):
        return value if len(value) <= longest else value[:longest] + "…"
    if isinstance(value, int) and not isinstance(value, bool) and len(digits := str(value)) > _LONGEST_NUMBER:
        return digits[:_LONGEST_NUMBER] + "…"
    if isinstance(value, list):
        if depth <= 0:
            return f"[{len(value)} items]"
        out = [_shrunk(v, longest, items, depth - 1) for v in value[:items]]
        return out + ([f"… {len(value) - items} more"] if len(value) > items else [])
    if isinstance(value, dict):
        if depth <= 0:
            return f"{{{len(value)} keys}}"
        shown: dict[str, Any] = {}
        for key, v in list(value.items())[:items]:
            shown.setdefault(_shrunk(key, longest, items, depth), _shrunk(v, longest, items, depth - 1))
        if len(value) > items:
            shown["…"] = f"{len(value) - items} more keys"
        return shown
    return value


class ApprovalRequested(Event):
    kind = EventType.APPROVAL_REQUESTED
    approval: str = ""
    tool: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""


class ApprovalDecided(Event):
    kind = EventType.APPROVAL_DECIDED
    approval: str = ""
    approved: bool = False
    arguments: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None


class RouteTaken(Event):
    kind = EventType.ROUTE_TAKEN
    from_: str = _from()
    to: tuple[str, ...] = ()
    edge: str | None = None


class ToolsSelected(Event):
    """The tools one model call was offered, when the agent's ``tools_per_step`` narrowed them."""

    kind = EventType.TOOLS_SELECTED
    tools: tuple[str, ...] = ()  # offered, most relevant first
    scores: tuple[float, ...] = ()  # their BM25 scores against the step's input
    allowed: int = 0  # how many tools the agent may call in all


class MemoryRecalled(Event):
    """Automatic recall put the memories closest to an agent's input into its system prompt."""

    kind = EventType.MEMORY_RECALLED
    query: str = ""
    scopes: tuple[str, ...] = ()
    ids: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    backend: str = ""  # how the index searched (sqlite-vec, pgvector, exact)
    note: str | None = None
    error: str | None = None  # recall failed: the turn went on without memories


class FeedbackGiven(Event):
    """A person rated the run's answer (the row, with the comment and any correction, is in run_feedback)."""

    kind = EventType.FEEDBACK_GIVEN
    feedback: int = 0  # the row's id
    rating: int = 0  # +1 up, -1 down
    comment: str = ""
    corrected: bool = False  # they gave the answer they wanted
    author: str = ""
    via: str = ""  # cli | api | ui | v1


class StepFinished(Event):
    kind = EventType.STEP_FINISHED
    outcome: Outcome
    output: Any = None
    error: str | None = None
    copied_from: str = ""  # a run started from a later step copied this output from that run
    model_calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RunFinished(Event):
    kind = EventType.RUN_FINISHED
    status: RunStatus
    output: Any = None
    error: str | None = None
    visits: int = 0


class RunCancelled(Event):
    kind = EventType.RUN_CANCELLED
    reason: str = ""


class ModelSkipped(Event):
    """Routing passed over a candidate model that lacks a capability the call needs."""

    kind = EventType.MODEL_SKIPPED
    alias: str = ""
    reason: str = ""


class ModelChosen(Event):
    """Routing sent the call to a model other than the one named (a tag, or a fallback)."""

    kind = EventType.MODEL_CHOSEN
    requested: str = ""
    alias: str = ""
    attempt: int = 1


class ModelFallback(Event):
    """A model failed the call and routing hands it to the next one in the chain."""

    kind = EventType.MODEL_FALLBACK
    from_: str = _from()
    to: str = ""
    error: str = ""


RoutingEvent = ModelSkipped | ModelChosen | ModelFallback
"""What model routing reports while it picks a model for one call."""

EVENT_MODELS: tuple[type[Event], ...] = (
    RunCreated,
    RunStarted,
    RunResumed,
    StepStarted,
    ModelCalled,
    ToolCalled,
    ApprovalRequested,
    ApprovalDecided,
    RouteTaken,
    ToolsSelected,
    MemoryRecalled,
    FeedbackGiven,
    StepFinished,
    RunFinished,
    RunCancelled,
    ModelSkipped,
    ModelChosen,
    ModelFallback,
)
_BY_KIND: dict[str, type[Event]] = {m.kind.value: m for m in EVENT_MODELS}


@dataclass(frozen=True)
class UnknownEvent:
    """A stored event no model reads: a kind this version does not know, or data that fails its model."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why its model refused it, when it has one


Payload = Event | UnknownEvent


def parse_event(kind: str, data: Mapping[str, Any]) -> Payload:
    """The typed payload of a stored event (never raises: see :class:`UnknownEvent`)."""
    model = _BY_KIND.get(kind)
    if model is None:
        return UnknownEvent(kind, dict(data))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return UnknownEvent(kind, dict(data), problem=str(exc))


@dataclass(frozen=True)
class EventRecord:
    """One stored event row of a run; ``payload`` is its typed :class:`Event`."""

    id: int
    run_id: str
    key: str
    type: str
    step_key: str | None
    agent: str | None
    data: dict[str, Any]
    created_at: float
    request_id: str | None = None

    @cached_property
    def payload(self) -> Payload:
        """The typed event (parsed once): read its attributes, never ``data``'s keys."""
        return parse_event(self.type, self.data)
