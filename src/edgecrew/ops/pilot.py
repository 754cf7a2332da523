"""EdgePilot's backend step: a typed plan in, facts out (the tool ``pilot.execute``).

The planner (a model, constrained to :data:`PLAN_SCHEMA`) says *what* to look at; this tool does the
looking, through the same tools an agent could call (``scheduler.can_run``, ``scheduler.suggest_window``,
``metrics.summary``, ``metrics.top``), so every figure comes from the machine. Sizes the question itself
states ("a 4 GB job") win over the planner's numbers: a 135M model picks the right action far more
often than it copies a number right. Each fact carries its tool's one-line ``summary`` as its
statement; ``figures`` lists every number the facts contain, so a later check can reject an answer
that states a figure the facts do not. ``run_task`` is never executed here: it comes back as a
proposal for a ``jobs.submit`` step, which goes through the approval gate.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgecrew.domain.sizes import find_size
from edgecrew.domain.templating import figures
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

Action = Literal["report", "can_run", "suggest_window", "top_usage", "run_task"]
Window = Literal["15m", "1h", "6h", "24h", "7d"]
MiB = 2**20
# A size written with a minus ("a -4 GB job"); "a 4-8 GB job" is a range, not a negative size.
# CPU cores a question names ("on 2 cores", "4 CPUs", "0.5 CPU cores"); none named: 1 is assumed, and said.
_CORES = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)?)\s*(?:cpu\s*cores?|v?cpus?|cores?)\b", re.IGNORECASE)
_NEGATIVE = re.compile(r"(?<![\w.])-\s*\d+(?:[.,]\d+)*\s*[kmgt]i?b\b", re.IGNORECASE)

# The planner's output: the same shape the tool takes (kept small: a 135M model fills it).
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "action": {"enum": ["report", "can_run", "suggest_window", "top_usage", "run_task"]},
                    "memory_mb": {"type": "number", "minimum": 0},
                    "window": {"enum": ["15m", "1h", "6h", "24h", "7d"]},
                    "resource": {"enum": ["memory", "cpu"]},
                },
                "required": ["action"],
            },
        }
    },
    "required": ["steps"],
}


class PlanStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Action
    memory_mb: Annotated[float, Field(ge=0)] | None = None
    window: Window | None = None
    resource: Literal["memory", "cpu"] | None = None
    command: str | None = None  # run_task: what to run (a proposal; never run here)


class _Pilot:
    def __init__(self, rt: Runtime | None) -> None:
        self.rt = rt

    async def execute(
        self, ctx: ToolContext, steps: Annotated[list[PlanStep], Field(min_length=1, max_length=5)], question: str = ""
    ) -> dict[str, Any]:
        """Carry out a plan's steps against this machine's live figures and return the facts."""
        if self.rt is None:
            raise ToolError("pilot.execute is not bound to a runtime here")
        asked = find_size(question)
        negative = _NEGATIVE.search(question)
        unsized = bool(question.strip()) and asked is None  # say once that the size was assumed
        named_cores = _CORES.search(question)
        cores = float(named_cores.group(1).replace(",", ".")) if named_cores else 1.0
        facts: list[dict[str, Any]] = []
        proposal: dict[str, Any] | None = None
        for given in steps:
            step = given if isinstance(given, PlanStep) else PlanStep.model_validate(given)
            memory_mb = round(asked / MiB) if asked is not None else step.memory_mb
            if negative is not None and step.action in ("can_run", "suggest_window", "run_task"):
                # Nothing is asked of the scheduler, and no job is proposed, for a negative size (said once).
                statement = (
                    f"A job cannot need a negative amount of memory ({negative.group(0).strip()}); "
                    "ask again with the size it needs, e.g. 4 GB."
                )
                if any(f["statement"] == statement for f in facts):
                    statement = ""
                facts.append({"action": step.action, "tool": None, "result": None, "statement": statement})
                continue
            if step.action == "run_task":
                command = step.command or _quoted(question)
                argv, unreadable = _argv(command)
                never = self._never_here(memory_mb or 0, cores) if argv else ""
                if unreadable:  # nothing goes to jobs.submit: the answer must not speak of an approval
                    note = (f"Nothing was submitted: the command `{command}` cannot be read ({unreadable}); "
                            "write it whole in backticks, e.g. `./backup.sh`.")  # fmt: skip
                elif never:  # jobs.submit would refuse it after a person approved it
                    argv, note = [], f"Nothing was submitted: it can never run here: {never}."
                elif command:
                    note = "Submitting the job needs a person's approval (jobs.submit)."
                else:
                    note = "No command to submit: write it in backticks, e.g. `./backup.sh`."
                proposal = {"command": command, "argv": argv, "memory_mb": memory_mb or 0, "cpu_cores": cores,
                            "note": note}  # fmt: skip
                facts.append({"action": "run_task", "tool": None, "result": proposal, "statement": proposal["note"]})
                continue
            tool, arguments = _call_for(step, memory_mb, cores)
            result = await self._call(ctx, tool, arguments)
            if step.action == "can_run" and isinstance(result, dict) and "fits" in result:
                result = self._with_policies(result)
            statement = _statement(step.action, arguments, result)
            if unsized and "memory_mb" in arguments:
                assumed = _mib(arguments["memory_mb"])
                statement += f" (The question names no size with a unit, e.g. 4 GB, so {assumed} MiB is assumed.)"
                unsized = False
            if named_cores is None and "CPU cores," in str(result.get("reason") if isinstance(result, dict) else ""):
                statement += " (The question names no CPU cores, so 1 is assumed.)"  # the core held it back
            facts.append({"action": step.action, "tool": tool, "result": result, "statement": statement})
        statements = [f["statement"] for f in facts if f["statement"]]
        summary = " ".join(statements) or "no facts were gathered"
        return {"summary": summary, "facts": facts, "figures": sorted(set(figures(str(facts)))), "run_task": proposal}

    def _never_here(self, memory_mb: float, cores: float) -> str:
        """Why a job of this size could never start on this machine ("" when it could)."""
        from edgecrew.ops import Ops
        from edgecrew.ops.job_tools import bigger_than_machine
        from edgecrew.ops.jobs import JobNeeds

        assert self.rt is not None
        return bigger_than_machine(JobNeeds(cores, int(memory_mb * MiB)), Ops.of(self.rt).jobs.facts())

    def _with_policies(self, verdict: dict[str, Any]) -> dict[str, Any]:
        """``scheduler.can_run``'s verdict (the machine's room) with the job policies' say: a job the
        policies hold back does not start now, however much room there is."""
        from datetime import UTC, datetime

        from edgecrew.ops import Ops
        from edgecrew.specs.jobs import JobFacts, evaluate

        assert self.rt is not None
        jobs = Ops.of(self.rt).jobs
        policies = {name: p.doc for name, p in jobs.effective_policies().items()}
        judged = evaluate(policies, JobFacts("asked"), jobs.facts(), datetime.now(UTC))
        held = [f"{r.policy}: {r.reason}" for r in judged]
        if not held:
            return verdict
        reasons = ([] if verdict["fits"] else [str(verdict.get("reason"))]) + [f"policy {h}" for h in held]
        return {**verdict, "fits": False, "reason": "; ".join(reasons), "held_by_policies": held}

    async def _call(self, ctx: ToolContext, tool: str, arguments: dict[str, Any]) -> Any:
        assert self.rt is not None
        spec = self.rt.tools.find(tool)
        if spec is None:
            return {"summary": f"{tool} is not available on this installation", "error": True}
        try:
            return await spec.call(arguments, ctx)
        except ToolError as exc:
            return {"summary": f"{tool} failed: {exc}", "error": True}


def _mib(value: float) -> str:
    """MiB as the facts write them: whole when whole ("3814697", never "3.8147e+06")."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _quoted(question: str) -> str:
    """A command written in backticks in the question ("Start `./backup.sh`"), else ""."""
    match = re.search(r"`([^`]+)`", question)
    return match.group(1) if match else ""


def _argv(command: str) -> tuple[list[str], str]:
    """The command's words, and why it cannot be split into them ("" when it can)."""
    import shlex

    try:
        return shlex.split(command), ""
    except ValueError as exc:  # an unclosed quote: no command a person meant
        return [], str(exc)


def _statement(action: str, arguments: dict[str, Any], result: Any) -> str:
    """One exact sentence per fact, for people and for the summarizer (a 135M model)."""
    if not isinstance(result, dict):
        return ""
    if action == "can_run" and "fits" in result:
        verdict = "fits now" if result["fits"] else "does not fit now"
        reason = "" if result["fits"] else f": {result.get('reason')}"
        return (
            f"A job needing {_mib(arguments['memory_mb'])} MiB {verdict}{reason} "
            f"({result.get('free_memory_mb')} MiB of memory free for jobs within edgecrew's memory budget, "
            f"{result.get('free_cpu_cores')} CPU cores free)."
        )
    summary = str(result.get("summary") or "")
    if result.get("source") == "sampler" and result.get("note"):  # asked of Prometheus, answered by the sampler
        summary = f"{summary} ({str(result['note']).rstrip('.')}.)"
    if action == "suggest_window":
        shown = [
            (
                f"at {_clock(w.get('start'))}"
                if w.get("start") == w.get("end")  # one start time, not a span
                else f"{_clock(w.get('start'))} to {_clock(w.get('end'))}"
            )
            + (f" (about {w['expected_free_memory_mb']} MiB available)" if "expected_free_memory_mb" in w else "")
            for w in (result.get("windows") or [])[:2]
            if isinstance(w, dict)
        ]
        if shown:
            summary = f"{summary.rstrip('.')}. Windows: {'; '.join(shown)}."
    return summary


def _clock(value: Any) -> str:
    """An ISO time as local "YYYY-MM-DD HH:MM" (what a person reads in an answer)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


def _call_for(step: PlanStep, memory_mb: float | None, cores: float) -> tuple[str, dict[str, Any]]:
    window = step.window or "1h"
    if step.action == "can_run":
        return "scheduler.can_run", {"memory_mb": memory_mb if memory_mb is not None else 2048, "cpu_cores": cores}
    if step.action == "suggest_window":
        return "scheduler.suggest_window", {"memory_mb": memory_mb if memory_mb is not None else 2048,
                                            "cpu_cores": cores}  # fmt: skip
    if step.action == "top_usage":
        return "metrics.top", {"resource": step.resource or "memory", "window": window}
    return "metrics.summary", {"window": window}


def register(registry: ToolRegistry, rt: Runtime | None = None) -> None:
    pilot = _Pilot(rt)
    registry.register(spec_from_function(pilot.execute, name="pilot.execute", timeout_s=60, risk="safe"))
