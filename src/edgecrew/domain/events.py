"""Typed run events: one frozen model per :class:`EventType`, built by emitters and read by readers.

Every state change of a run is an event row whose ``data`` is one of these models as a JSON object.
The one design decision: a model stores exactly the fields its emitter set (pydantic's
``exclude_unset``), so the JSON keeps the shape it always had (a failed model call has no
``backend``, a run the stream failed has no ``visits``), while a reader gets a default for any field
an emitter, or an older version, left out. Unknown keys are ignored, and a row of an unknown kind,
or one that no longer validates, reads as :class:`UnknownEvent` instead of failing its reader.
"""

from __future__ import annotations

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
    content: str = ""
    error: str | None = None
    fallbacks: tuple[FallbackAttempt, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


class ToolCalled(Event):
    kind = EventType.TOOL_CALLED
    tool: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    is_error: bool = False
    result: str = ""
    duration_s: float | None = None


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
