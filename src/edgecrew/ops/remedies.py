"""What the supervisor's model and memory actions change before a team runs again: the run's team
snapshot with agents' models swapped (``change_model``, ``fallback_model``), or the model pool's
memory budget (``change_memory_budget`` on a run). No I/O: the supervisor reads the records and the
registry and passes them in.

The one design decision: a change is computed from the snapshot the failed run recorded (never the
team's YAML as it is now) and checked whole before anything is applied, so an action that cannot
apply (no such alias, no fallback left, a budget this process does not hold) raises
:class:`Unfit` with the reason, and the incident escalates with it instead of asking a person to
approve a no-op or running the team again unchanged. A change is planned once, when the action is
decided; its plan (:meth:`ModelChange.plan`, :meth:`BudgetChange.plan`) is stored with the decision and
shown to the person who approves it, and the apply step applies exactly that plan, checked again
(:func:`model_change_as_planned`, :func:`budget_as_planned`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgecrew.errors import EdgecrewError
from edgecrew.models.probe import mib

__all__ = [
    "BudgetChange",
    "ModelChange",
    "Unfit",
    "budget_as_planned",
    "budget_change",
    "model_change",
    "model_change_as_planned",
]

TAG_PREFIX = "tag:"


class Unfit(ValueError):
    """The action cannot apply to this incident; the message says why (it becomes the escalation's)."""


@dataclass(frozen=True)
class ModelChange:
    """The team snapshot to run, and each swapped agent's model: agent -> (reference before, alias after)."""

    snapshot: dict[str, Any]
    swapped: dict[str, tuple[str, str]] = field(default_factory=dict)

    def describe(self) -> str:
        return ", ".join(f"agent {a}: {before} -> {after}" for a, (before, after) in sorted(self.swapped.items()))

    def plan(self) -> dict[str, Any]:
        """What is stored with the decision: the text a person approves and the swaps to apply."""
        return {"change": self.describe(), "swap": {a: list(pair) for a, pair in sorted(self.swapped.items())}}


@dataclass(frozen=True)
class BudgetChange:
    """The model pool's memory budget before and after."""

    before: int
    after: int

    def describe(self) -> str:
        return f"model pool budget {mib(self.before)} -> {mib(self.after)}"

    def plan(self) -> dict[str, Any]:
        """What is stored with the decision: the text a person approves and the budgets."""
        return {"change": self.describe(), "budget": [self.before, self.after]}


def _reference(doc: Mapping[str, Any]) -> str:
    model = doc.get("model", "local")
    return f"{TAG_PREFIX}{model['tag']}" if isinstance(model, Mapping) else str(model)


def _calls_a_model(doc: Mapping[str, Any]) -> bool:
    return not doc.get("tool") and doc.get("template") is None


def model_change(
    snapshot: Mapping[str, Any],
    action: str,
    wanted: str | None,
    *,
    failing_agent: str | None,
    failed_models: Collection[str],
    aliases: Collection[str],
    candidates: Callable[[str], list[str]],
) -> ModelChange:
    """The snapshot with the failing agent's model (every model agent's, when no step names one)
    swapped: ``change_model`` to ``wanted``; ``fallback_model`` to ``wanted`` or, when none is named
    (or it is the model that failed), to the first alias of the agent's chain that did not fail.
    A failing tool or template agent calls no model: swapping the others' would not change it (Unfit).
    ``candidates(ref)`` is the registry's chain of an alias or ``tag:``; raises :class:`Unfit`."""
    agents: Mapping[str, Mapping[str, Any]] = snapshot.get("agents") or {}
    callers = [name for name, doc in agents.items() if _calls_a_model(doc)]
    team = snapshot.get("name", "?")
    if failing_agent is not None and failing_agent in agents and failing_agent not in callers:
        # Another model for the others would not change the step that failed.
        kind = "a tool" if agents[failing_agent].get("tool") else "a template"
        raise Unfit(f"the failing step {failing_agent} of team {team} is {kind} agent: it calls no model")
    targets = [failing_agent] if failing_agent in callers else callers
    if not targets:
        raise Unfit(f"team {team} has no agent that calls a model")
    if wanted and wanted not in aliases:
        raise Unfit(f"no model alias '{wanted}' here; known: {', '.join(sorted(aliases))}")
    if action == "change_model" and not wanted:
        raise Unfit("change_model names no model (params.model)")
    changed = copy.deepcopy(dict(snapshot))
    swapped: dict[str, tuple[str, str]] = {}
    for name in targets:
        before = _reference(agents[name])
        after = wanted if action == "change_model" else _fallback(before, wanted, failed_models, candidates)
        if after is None or after == before:
            continue
        changed["agents"][name]["model"] = after
        swapped[name] = (before, after)
    if not swapped:
        who = ", ".join(targets)
        if action == "change_model":
            raise Unfit(f"agent(s) {who} of team {team} already use model '{wanted}': nothing to change")
        refs = ", ".join(sorted({_reference(agents[n]) for n in targets}))
        raise Unfit(f"model(s) {refs} of agent(s) {who} have no fallback that has not failed already")
    return ModelChange(changed, swapped)


def model_change_as_planned(
    snapshot: Mapping[str, Any], swap: Mapping[str, Collection[str]], *, aliases: Collection[str]
) -> ModelChange:
    """The planned swaps (``agent -> [before, after]``, from :meth:`ModelChange.plan`) applied to the
    snapshot, when they still hold: each agent's model is still ``before`` and ``after`` is still an
    alias here; raises :class:`Unfit` saying what changed since the plan."""
    agents: Mapping[str, Mapping[str, Any]] = snapshot.get("agents") or {}
    changed = copy.deepcopy(dict(snapshot))
    swapped: dict[str, tuple[str, str]] = {}
    for name, (before, after) in swap.items():
        if name not in agents:
            raise Unfit(f"team {snapshot.get('name', '?')} has no agent {name} any more")
        if (now := _reference(agents[name])) != before:
            raise Unfit(f"agent {name} uses model '{now}' now, not '{before}' as planned")
        if after not in aliases:
            raise Unfit(f"model alias '{after}' is gone from the registry since the change was planned")
        changed["agents"][name]["model"] = after
        swapped[name] = (before, after)
    if not swapped:
        raise Unfit("the planned change swaps no model")
    return ModelChange(changed, swapped)


def _fallback(
    before: str, wanted: str | None, failed: Collection[str], candidates: Callable[[str], list[str]]
) -> str | None:
    try:
        chain = candidates(before)
    except EdgecrewError as exc:  # the alias is gone from the registry: only a named model can replace it
        if wanted:
            return wanted
        raise Unfit(f"model '{before}' has no chain to fall back along: {exc}") from None
    # The model that failed: the ones recorded with an error, else the chain's first (the one it called).
    spent = {before, *failed} if failed else {before, *chain[:1]}
    if wanted and wanted not in spent:
        return wanted
    return next((alias for alias in chain if alias not in spent), None)


def budget_change(current: int, wanted: int | None, *, machine: int, remote: bool) -> BudgetChange:
    """The pool budget to set for a run's next attempt, larger than ``current`` (the pool is the
    process's: a smaller one would shrink it for every other run); raises :class:`Unfit` when it cannot
    apply (``remote``: the runs execute on cluster workers, each with its own pool)."""
    if remote:
        raise Unfit(
            "the run executes on cluster workers, whose model pools are their own (EDGECREW_MODEL_MEMORY "
            "where each `edgecrew worker` runs): restart the workers with the memory it needs"
        )
    if not wanted:
        raise Unfit("change_memory_budget names no memory (params.memory_mb)")
    if wanted > machine:
        raise Unfit(f"{mib(wanted)} is more than this machine's memory ({mib(machine)})")
    if wanted == current:
        raise Unfit(f"the model pool's budget is {mib(current)} already: nothing to change")
    if wanted < current:  # the pool is the process's: a smaller one would starve every other run
        raise Unfit(
            f"{mib(wanted)} is less than the model pool's budget ({mib(current)}): a rerun needs more, not less"
        )
    return BudgetChange(current, wanted)


def budget_as_planned(planned: BudgetChange, current: int, *, machine: int, remote: bool) -> BudgetChange:
    """The planned budget change, when it still holds: the pool's budget is still the one planned from
    (or already the one planned to: a replayed apply), and the same checks pass; raises :class:`Unfit`."""
    if current not in (planned.before, planned.after):
        raise Unfit(
            f"the model pool's budget is {mib(current)} now, not {mib(planned.before)} as planned: decide again"
        )
    budget_change(planned.before, planned.after, machine=machine, remote=remote)
    return planned
