"""In-memory fakes of the engine's ports, so graph and turn logic run in milliseconds without DBOS.

:class:`FakeTurnIO` is a :class:`~edgecrew.engine.agent.TurnIO`: a model (a ScriptedModel built from
a list of replies, or any ChatModel) answers, plain functions are the tools. :class:`FakeTurnRunner`
is a :class:`~edgecrew.engine.graph.TurnRunner` that runs each visit as a plain ``run_agent`` on one
FakeTurnIO (several at once, like the durable fan-out). The one design decision: the fakes reuse the
real model routing (:func:`call_with_fallback`), permission checks and tool execution, and replace
only what DBOS adds (recorded steps, events, approvals by people), so what they record is what the
durable engine would have done; tests read it from their plain lists.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from edgecrew.domain.events import RoutingEvent, ToolsSelected
from edgecrew.domain.messages import ModelRequest, ToolCall, ToolDefinition
from edgecrew.domain.specs import AgentSpec, Edge, TeamSpec
from edgecrew.engine.agent import CallResult, Observation, TurnInput, TurnResult
from edgecrew.engine.fixed import run_agent
from edgecrew.engine.graph import GraphResult, Visit, run_graph
from edgecrew.engine.routing import RoutedCall, call_with_fallback
from edgecrew.engine.toolcall import execute_tool
from edgecrew.errors import EdgecrewError
from edgecrew.models.base import ChatModel
from edgecrew.models.registry import TAG_PREFIX, ModelRegistry
from edgecrew.models.scripted import Reply, ReplyFunction, ScriptedModel
from edgecrew.tools.base import ToolContext, ToolFunction, ToolRegistry, ToolSpec, spec_from_function
from edgecrew.tools.permissions import FilePolicy, needs_approval, refusal


@dataclass(frozen=True)
class Deny:
    """An approver's denial with the person's note (``False`` denies with none)."""

    note: str


# Decides a risky tool call the way a person would: True approves it, False or Deny(note) denies it.
# It may take its time (await).
Approver = Callable[[AgentSpec, ToolCall], Awaitable[bool | Deny]]


@dataclass(frozen=True)
class ModelCallRecord:
    """One model call a turn made, with the time it was given and what came back."""

    key: str
    agent: str
    request: ModelRequest
    timeout_s: float
    result: CallResult


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call a turn made, with the time it was given and what the agent read."""

    key: str
    agent: str
    call: ToolCall
    timeout_s: float
    observation: Observation


class FakeTurnIO:
    """TurnIO in memory: one model answers every agent, plain functions are the tools; every call is recorded."""

    def __init__(
        self,
        model: ChatModel | Sequence[Reply] | Mapping[str, Sequence[Reply]] | ReplyFunction,
        tools: Iterable[ToolFunction | ToolSpec] | ToolRegistry = (),
        *,
        approve: Approver | None = None,
        workspace: Path | None = None,
        memory_block: str | None = None,
    ) -> None:
        self.model: ChatModel = model if isinstance(model, ChatModel) else ScriptedModel(model)
        self.tools = tools if isinstance(tools, ToolRegistry) else _registry(tools)
        self.approve = approve
        self.workspace = workspace  # where file tools work; None for tests without them
        self.models = ModelRegistry()
        self.model_calls: list[ModelCallRecord] = []
        self.tool_calls: list[ToolCallRecord] = []
        self.approvals: list[tuple[str, str, bool]] = []  # (agent, tool, approved)
        self.events: list[RoutingEvent] = []  # routing's model_skipped / model_fallback / ...
        self.checkpoints: list[str] = []
        self.approved_tools: set[str] = set()  # the "once" policy, as DurableIO keeps it
        self.selections: list[tuple[str, ToolsSelected]] = []  # tool retrieval's choices, by model call key
        self.memory_block = memory_block  # what automatic recall gives an agent with memory.recall
        self.recalls: list[tuple[str, str]] = []  # (key, query) of each recall

    @property
    def requests(self) -> list[ModelRequest]:
        return [c.request for c in self.model_calls]

    @asynccontextmanager
    async def use(self, alias: str) -> AsyncIterator[ChatModel]:
        """The model source routing asks: the one model, whatever the alias."""
        yield self.model

    async def call_model(self, key: str, agent: AgentSpec, request: ModelRequest, timeout_s: float) -> CallResult:
        if not agent.model.startswith(TAG_PREFIX) and agent.model not in self.models.aliases():
            self.models.register(agent.model, self.model)
        try:
            routed = await call_with_fallback(self.models, self, agent.model, request, timeout_s, self.events.append)
        except EdgecrewError as exc:  # an unknown tag
            routed = RoutedCall(error=str(exc), kind="error")
        except Exception as exc:  # a model's own bug fails this call, as in the durable step
            routed = RoutedCall(error=f"model '{agent.model}' failed: {type(exc).__name__}: {exc}", kind="error")
        result = CallResult(response=routed.response, error=routed.error, kind=routed.kind)
        self.model_calls.append(ModelCallRecord(key, agent.name, request, timeout_s, result))
        return result

    async def call_tool(self, key: str, agent: AgentSpec, call: ToolCall, timeout_s: float, reason: str) -> Observation:
        observation = await self._observe(agent, call, timeout_s)
        self.tool_calls.append(ToolCallRecord(key, agent.name, call, timeout_s, observation))
        return observation

    async def _observe(self, agent: AgentSpec, call: ToolCall, timeout_s: float) -> Observation:
        spec = self.tools.find(call.name)
        waited_s = 0.0
        allowed = spec is not None and refusal(agent.name, agent.tools, spec, call.name) is None
        if spec is not None and allowed and needs_approval(spec, agent.approval, self.approved_tools, call.arguments):
            asked = time.monotonic()
            decided = await self.approve(agent, call) if self.approve is not None else True
            waited_s = time.monotonic() - asked
            approved = decided is True
            self.approvals.append((agent.name, spec.name, approved))
            if not approved:
                note = decided.note if isinstance(decided, Deny) else ""
                said = f"error: a person denied this call to '{spec.name}'" + (f": {note}" if note else "")
                return Observation(said, True, waited_s, denied=note)
            self.approved_tools.add(spec.name)
        files = FilePolicy(agent.file_read, agent.file_write)
        if self.workspace is None:  # a folder of its own, made only when a tool is actually called
            self.workspace = Path(tempfile.mkdtemp(prefix="edgecrew-fake-"))
        context = ToolContext(run_id="fake", agent=agent.name, workspace=self.workspace, files=files)
        content, is_error = await execute_tool(self.tools, call, agent.tools, context, timeout_s)
        return Observation(content, is_error, waited_s)

    def tool_definitions(self, agent: AgentSpec) -> list[ToolDefinition]:
        return [spec.definition() for name in agent.tools if (spec := self.tools.find(name)) is not None]

    def canonical_tool(self, name: str) -> str:
        return self.tools.canonical(name)

    def checkpoint(self, name: str) -> None:
        self.checkpoints.append(name)

    def tools_selected(self, key: str, agent: AgentSpec, selected: ToolsSelected) -> None:
        self.selections.append((key, selected))

    async def recall_memory(self, key: str, agent: AgentSpec, query: str) -> str | None:
        self.recalls.append((key, query))
        return self.memory_block


@dataclass(frozen=True)
class TurnRecord:
    """One visit's turn: the context it started from and how it ended."""

    visit: Visit
    turn: TurnInput
    result: TurnResult

    @property
    def context(self) -> str:
        return self.turn.context


@dataclass(frozen=True)
class RouteRecord:
    """The route taken after one visit."""

    key: str
    agent: str
    edge: str | None  # the edge's label; None when the agent has no outgoing edge
    targets: tuple[str, ...]


class FakeTurnRunner:
    """TurnRunner in memory: each visit is ``run_turn`` on one FakeTurnIO; turns, routes and hints are recorded."""

    def __init__(self, team: TeamSpec, io: FakeTurnIO, run_id: str = "fake") -> None:
        self.team, self.io, self.run_id = team, io, run_id
        self.turns: list[TurnRecord] = []  # in the order they finished
        self.batches: list[list[str]] = []  # visit keys of each frontier run together
        self.routes: list[RouteRecord] = []
        self.preloads: list[list[str]] = []

    async def run(self, task: str) -> GraphResult:
        """Run the team's graph on ``task`` to its end."""
        return await run_graph(self.team, task, self)

    @property
    def path(self) -> list[str]:
        """The agents that ran, in visit order."""
        return [t.visit.agent for t in sorted(self.turns, key=lambda t: t.visit.index)]

    def context(self, key: str) -> str:
        """The user message the visit ``key`` (e.g. ``v001.b``) started from."""
        return next(t.context for t in self.turns if t.visit.key == key)

    async def run_turns(self, visits: Sequence[tuple[Visit, TurnInput]]) -> list[TurnResult]:
        self.batches.append([visit.key for visit, _ in visits])
        return list(await asyncio.gather(*(self._turn(visit, turn) for visit, turn in visits)))

    async def _turn(self, visit: Visit, turn: TurnInput) -> TurnResult:
        agent = self.team.agents[visit.agent]
        metadata = {"run": self.run_id, "team": self.team.name, "agent": agent.name}
        result = await run_agent(agent, turn, self.io, visit.key, metadata)
        self.turns.append(TurnRecord(visit, turn, result))
        return result

    def route_taken(self, visit: Visit, edge: Edge | None, targets: Sequence[str]) -> None:
        self.routes.append(RouteRecord(visit.key, visit.agent, edge.label() if edge else None, tuple(targets)))

    def preload(self, agents: Sequence[str]) -> None:
        self.preloads.append(list(agents))


def _registry(tools: Iterable[ToolFunction | ToolSpec]) -> ToolRegistry:
    registry = ToolRegistry()
    for item in tools:
        registry.register(item if isinstance(item, ToolSpec) else spec_from_function(item))
    return registry
