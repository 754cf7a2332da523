"""Walking a team's graph: which agents run next, from the outputs already recorded.

Routing is a pure function of the graph, the recorded outputs and the loop counters, so a replayed
run takes exactly the same path. A frontier of several agents (fan-out) runs in parallel; a join
edge schedules its target once every source has arrived. Edges are tried in spec order and the
first that matches wins; a bounded edge that has used up its ``max_loops`` no longer matches.

A turn that fails (any outcome but final; a cancel excepted) fails the run, unless its agent has
failure edges (``on_failure``): then the failure, ``{"outcome": ..., "error": ...}``, stands as the
agent's output, which the failure edges route (and the next agent reads) as any output, so a small
model's bad answer can go to a fixer, a simpler agent, or the same agent again under ``max_loops``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edgecrew.domain.runs import ANSWER_SAYS_FAILED, Outcome
from edgecrew.domain.specs import END, Edge, TeamSpec
from edgecrew.engine.agent import TurnInput, TurnResult
from edgecrew.errors import RunError

MAX_CONTEXT_CHARS = 1500  # per earlier output shown to the next agent; small models have small windows


@dataclass(frozen=True)
class Visit:
    """One turn of one agent in a run; ``key`` names it in steps, events and durable step ids."""

    agent: str
    index: int

    @property
    def key(self) -> str:
        return f"v{self.index:03d}.{self.agent}"


def step_key_of(call_key: str) -> str:
    """The key of the visit a call key belongs to: 'v007.manifests' for 'v007.manifests.m0.t0' (agent
    names hold no '.'; cutting at '.m' cut an agent named 'manifests' or 'mailer' to 'v007')."""
    return ".".join(call_key.split(".", 2)[:2])


class TurnRunner(Protocol):
    async def run_turns(self, visits: Sequence[tuple[Visit, TurnInput]]) -> list[TurnResult]:
        """Run the visits (in parallel when several) and return their results in order."""
        ...

    def route_taken(self, visit: Visit, edge: Edge | None, targets: Sequence[str]) -> None: ...

    def preload(self, agents: Sequence[str]) -> None:
        """A hint: these agents may run next (their models can load while the current ones work)."""
        ...


@dataclass
class GraphResult:
    ok: bool
    output: Any = None
    error: str | None = None
    visits: int = 0


class NoRouteError(RunError):
    """No edge leaves the agent for its output (the team's graph has a gap): the run fails."""


def route(
    team: TeamSpec, agent: str, output: dict[str, Any], loops: Counter[int], *, failed: bool = False
) -> tuple[Edge | None, list[str]]:
    """The edge taken from ``agent`` and its targets (of its failure edges when its turn ``failed``); a
    node without outgoing edges ends the run."""
    edges = [e for e in team.graph.outgoing(agent) if e.on_failure == failed]
    if not edges and not failed:
        return None, [END]
    for edge in edges:
        if edge.when is not None and not edge.when.evaluate(output):
            continue
        if edge.max_loops is not None:
            if loops[edge.index] >= edge.max_loops:
                continue
            loops[edge.index] += 1
        return edge, list(edge.targets)
    if failed:
        raise NoRouteError(f"no failure edge from '{agent}' matched {json.dumps(output)[:200]}")
    raise NoRouteError(
        f"no edge from '{agent}' matched its output {json.dumps(output)[:200]}; "
        "add an edge without 'when' as the default"
    )


def _handles_failure(team: TeamSpec, agent: str) -> bool:
    return any(e.on_failure for e in team.graph.outgoing(agent))


def successors(team: TeamSpec, agents: Sequence[str]) -> list[str]:
    """Every agent an edge from ``agents`` may lead to, in edge order (a failure edge's only if it fails)."""
    found = [t for a in agents for e in team.graph.outgoing(a) if not e.on_failure for t in e.targets if t != END]
    return list(dict.fromkeys(found))


def context_for(task: str, board: dict[str, tuple[str, dict[str, Any]]]) -> str:
    """The user message an agent sees: the task, then the latest output of each agent so far."""
    parts = [f"Task: {task}"]
    for agent, (role, output) in board.items():
        text = output["text"] if set(output) == {"text"} else json.dumps(output, ensure_ascii=False)
        if len(text) > MAX_CONTEXT_CHARS:
            text = text[:MAX_CONTEXT_CHARS] + " [...]"
        label = f"{agent} ({role})" if role else agent
        parts.append(f"Output of {label}:\n{text}")
    return "\n\n".join(parts)


async def run_graph(team: TeamSpec, task: str, runner: TurnRunner) -> GraphResult:
    frontier = [team.graph.start]
    board: dict[str, tuple[str, dict[str, Any]]] = {}
    loops: Counter[int] = Counter()
    arrivals: dict[int, set[str]] = {}
    finals: dict[str, dict[str, Any]] = {}
    visits = 0
    while frontier:
        if visits + len(frontier) > team.max_visits:
            return GraphResult(False, error=f"run exceeded the team's max_visits ({team.max_visits})", visits=visits)
        batch = [Visit(agent, visits + i) for i, agent in enumerate(frontier)]
        visits += len(batch)
        outputs = {agent: output for agent, (_, output) in board.items()}
        turn = TurnInput(context_for(task, board), task, outputs)
        runner.preload(successors(team, frontier))
        results = await runner.run_turns([(visit, turn) for visit in batch])
        upcoming: list[str] = []
        for visit, result in zip(batch, results, strict=True):
            output: dict[str, Any] = result.output
            failed = result.outcome != Outcome.FINAL
            if failed:
                failure = f"agent '{visit.agent}' ({visit.key}) ended with {result.outcome.value}: {result.error}"
                if result.outcome == Outcome.CANCELLED or not _handles_failure(team, visit.agent):
                    return GraphResult(False, output=result.output, visits=visits, error=failure)
                output = {"outcome": result.outcome.value, "error": result.error or ""}
            board.pop(visit.agent, None)  # re-insert so the board is ordered by recency
            board[visit.agent] = (team.agents[visit.agent].role, output)
            try:
                edge, targets = route(team, visit.agent, output, loops, failed=failed)
            except NoRouteError as exc:
                error = f"{failure} ({exc})" if failed else str(exc)
                return GraphResult(False, output=result.output, error=error, visits=visits)
            runner.route_taken(visit, edge, targets)
            for target in targets:
                if target == END:
                    finals[visit.agent] = output
                elif edge is not None and edge.is_join:
                    arrived = arrivals.setdefault(edge.index, set())
                    arrived.add(visit.agent)
                    if arrived >= set(edge.sources):
                        arrived.clear()
                        upcoming.append(target)
                else:
                    upcoming.append(target)
        frontier = list(dict.fromkeys(upcoming))
    waiting = {e.index: a for e in team.graph.edges if (a := arrivals.get(e.index))}
    if waiting:
        edge = next(e for e in team.graph.edges if e.index in waiting)
        missing = sorted(set(edge.sources) - waiting[edge.index])
        return GraphResult(
            False,
            error=f"join into '{edge.targets[0]}' never completed: still waiting for {', '.join(missing)} "
            "(a condition routed it elsewhere)",
            visits=visits,
        )
    if team.output is not None and team.output in board:
        answer: Any = board[team.output][1]
    else:
        answer = next(iter(finals.values())) if len(finals) == 1 else finals
    if team.failed_when is not None and isinstance(answer, dict) and team.failed_when.evaluate(answer):
        # Every agent finished, and the answer says the work did not succeed (a task that failed its checks).
        error = f"{ANSWER_SAYS_FAILED} (failed_when: {team.failed_when.source})"
        return GraphResult(False, output=answer, error=error, visits=visits)
    return GraphResult(True, output=answer, visits=visits)
