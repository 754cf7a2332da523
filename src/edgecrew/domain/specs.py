"""Agents, teams and their graph as frozen domain objects.

A graph node is an agent; ``end`` is the terminal node. An edge with several targets fans out (the
targets run in parallel); an edge with several sources is a join (its target runs once all sources
have finished). Every cycle must contain an edge with ``max_loops``, so every run terminates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edgecrew.domain.conditions import Condition
from edgecrew.errors import SpecIssue

END = "end"


@dataclass(frozen=True)
class Limits:
    """Budgets of one agent turn."""

    max_steps: int = 6  # model calls per turn (each tool round-trip costs one)
    max_tokens: int = 512  # completion tokens per model call
    timeout_s: float = 300.0  # wall-clock seconds per turn
    max_tool_errors: int = 3  # failed tool calls per turn before it ends with tool_errors


AgentKind = Literal["model", "tool", "template"]
OnDenied = Literal["fail", "continue"]  # what a tool agent does when a person denies its call


@dataclass(frozen=True)
class Example:
    """A solved example for an agent's prompt: what it is given, and the answer it should give."""

    input: str
    output: str | Mapping[str, Any]  # text, or an object valid against the agent's output_schema


@dataclass(frozen=True)
class MemoryRecallSpec:
    """Automatic recall: the ``recall`` memories closest to the agent's input, from these scopes, go into
    its system prompt (0: off)."""

    recall: int = 0
    scopes: tuple[str, ...] = ("project", "team", "agent")


@dataclass(frozen=True)
class AgentSpec:
    """One agent: who it is, which model it uses, what it may call and what it must return.

    ``kind`` is ``model`` (a model turn, with tools), ``tool`` (one call of ``tool`` with ``arguments``
    rendered from the task and earlier outputs, no model) or ``template`` (``template`` rendered, no model).
    """

    name: str
    system: str
    model: str = "local"
    temperature: float | None = None  # its model calls' sampling temperature (None: the model alias decides)
    role: str = ""
    tools: tuple[str, ...] = ()
    output_schema: Mapping[str, Any] | None = None
    limits: Limits = Limits()
    plan_first: bool = True
    preamble: str = ""  # the team's shared preamble, placed first in the system prompt
    file_read: tuple[str, ...] = ("**",)  # workspace path globs the agent's file tools may read
    file_write: tuple[str, ...] = ("**",)  # ...and write
    approval: str = "always"  # the team's approval policy for risky tools: always | once | never
    kind: AgentKind = "model"
    tool: str = ""  # a tool agent's tool (also its only allowed tool)
    arguments: Mapping[str, Any] = field(default_factory=dict)  # a tool agent's arguments, as templates
    on_denied: OnDenied = "fail"  # a tool agent whose call a person denied: fails the run, or continues
    template: str = ""  # a template agent's template
    input: str = ""  # a model agent's user message as a template ("": the task and every earlier output)
    examples: tuple[Example, ...] = ()  # solved examples, placed after the system prompt
    tools_per_step: int = 0  # offer the model only this many tools, the most relevant to its input (0: all)
    memory: MemoryRecallSpec = MemoryRecallSpec()  # long-term memories recalled into the system prompt


@dataclass(frozen=True)
class Edge:
    """A transition between agents, taken when ``when`` holds on the source's output; a failure edge
    (``on_failure``) instead when the source's turn fails, ``when`` reading ``outcome`` and ``error``."""

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    when: Condition | None = None
    max_loops: int | None = None
    index: int = 0  # position in the spec: routing tries edges in this order
    on_failure: bool = False

    @property
    def is_join(self) -> bool:
        return len(self.sources) > 1

    def label(self) -> str:
        src = self.sources[0] if len(self.sources) == 1 else "[" + ", ".join(self.sources) + "]"
        dst = self.targets[0] if len(self.targets) == 1 else "[" + ", ".join(self.targets) + "]"
        cond = f" when {self.when.source}" if self.when else ""
        return f"{src} -> {dst}{' on failure' if self.on_failure else ''}{cond}"


@dataclass(frozen=True)
class Graph:
    start: str
    edges: tuple[Edge, ...]

    def outgoing(self, node: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if node in e.sources)


@dataclass(frozen=True)
class TeamSpec:
    """A team: its agents, its graph and where it was loaded from."""

    name: str
    agents: Mapping[str, AgentSpec]
    graph: Graph
    description: str = ""
    example: str = ""  # a task as people give it one (the run form shows it)
    max_visits: int = 50  # safety net on total agent turns per run
    output: str | None = None  # the agent whose latest output is the run's answer
    failed_when: Condition | None = None  # on the answer: the run fails though every agent finished
    needs_project: bool = False  # its runs must work in a project (refused without; a routine naming none: invalid)
    internal: bool = False  # started by edgecrew itself (the supervisor), never offered for chat
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)  # the validated document, snapshotted per run
    # What validation warned of (a node that may dead-end, a condition that cannot hold): the team runs.
    warnings: tuple[SpecIssue, ...] = field(default=(), compare=False)
