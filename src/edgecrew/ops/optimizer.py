"""The policy optimizer's tools: the evidence, and applying a proposed change (behind approval).

``policies.evidence`` reads the policies in force, the finished jobs' history (how long each waited,
which rule held it, what it used against what it declared) and the machine's metric history, and
derives *candidate* changes by plain rules, each with its reasons in figures: a threshold that held
jobs back while the machine had room, a memory floor below what jobs really used, a concurrency limit
that queued jobs on an idle CPU. The optimizer team's model only chooses among them (or none): a
small model judges far better than it invents a policy. ``policies.apply`` is risky, so the choice
waits in the approval inbox with the diff and the evidence beside it; applied, it becomes the policy's
newest version (``JobService.apply_policy``) and stays in force until edgecrew.yaml changes it.
"""

from __future__ import annotations

import time
from collections import Counter
from statistics import median
from typing import Annotated, Any

from pydantic import Field

from edgecrew.domain.sizes import parse_size
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ToolError
from edgecrew.specs.jobs import JobFacts, covering
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

MiB = 2**20
HISTORY = 200  # finished jobs read
MIN_JOBS = 3  # a rule needs at least this many jobs behind it


class _Optimizer:
    def __init__(self, rt: Runtime | None) -> None:
        self.rt = rt

    def _jobs(self) -> Any:
        if self.rt is None:
            raise ToolError("the policy tools are not bound to a runtime here")
        from edgecrew.ops import Ops

        return Ops.of(self.rt).jobs

    async def evidence(self) -> dict[str, Any]:
        """The scheduling policies in force, how jobs fared under them, and candidate changes with reasons."""
        return evidence(self._jobs(), self._cpu_p90())

    def _cpu_p90(self) -> float | None:
        from edgecrew.ops import Ops

        assert self.rt is not None
        sampler = Ops.of(self.rt).sampler
        series = getattr(sampler, "series", None)
        if series is None:
            return None
        values = sorted(v for _, v in series("cpu_percent", time.time() - 24 * 3600))
        return values[int(len(values) * 0.9)] if len(values) >= 10 else None

    async def apply(
        self,
        ctx: ToolContext,
        policy: Annotated[str, Field(min_length=1, max_length=64)],
        field: Annotated[str, Field(min_length=1, max_length=64)],
        value: Any,
        reason: Annotated[str, Field(min_length=1, max_length=2000)],
        evidence: Annotated[str, Field(max_length=4000)] = "",
    ) -> dict[str, Any]:
        """Change one field of a scheduling policy (a new version, in force until edgecrew.yaml changes it)."""
        jobs = self._jobs()
        policies = jobs.effective_policies()
        if policy not in policies:
            raise ToolError(f"no policy '{policy}' in force (known: {', '.join(sorted(policies)) or 'none'})")
        current = policies[policy]
        doc = current.doc.model_dump(mode="json")
        if field not in doc or field in ("covers", "windows", "timezone", "description"):
            raise ToolError(f"field '{field}' of a policy cannot be set here; set a threshold or limit")
        before = doc[field]
        doc[field] = value
        try:
            version = jobs.apply_policy(policy, doc, reason, source=f"optimizer (run {ctx.run_id})")
        except Exception as exc:  # UserError: the new doc is not a valid policy
            raise ToolError(str(exc)) from None
        return {
            "summary": f"policy {policy} is now version {version.version}: {field} {before} -> {value}",
            "policy": policy,
            "version": version.version,
            "field": field,
            "before": before,
            "after": value,
        }


def evidence(jobs: Any, cpu_p90: float | None = None) -> dict[str, Any]:
    """The evidence and candidates from a JobService (a pure read; the tool's body)."""
    policies = jobs.effective_policies()
    docs = {name: p.doc for name, p in policies.items()}
    finished = jobs.history(limit=HISTORY)
    stats: dict[str, dict[str, Any]] = {
        name: {
            "jobs": 0,
            "never_started": 0,  # ended (cancelled, past their deadline) while they waited
            "waited": 0,
            "wait_s": [],
            "held_by": Counter(),
            "overran": 0,
            "peak_mib": [],
            "declared_mib": [],
        }
        for name in docs
    }
    for job in finished:
        names = covering(docs, JobFacts(job.name, tuple(job.tags), job.priority))
        held = Counter(
            r.get("kind", "rule")
            for event in jobs.events(job.id)
            if event.kind == "waiting"
            for r in _refusals(event.detail)
            if r.get("policy") in names
        )
        waited = (job.started_at - job.created_at) if job.started_at else None
        peak = (job.usage or {}).get("peak_rss_bytes")
        declared = (job.needs or {}).get("memory_bytes") or 0
        for name in names:
            s = stats[name]
            if job.started_at is None:
                s["never_started"] += 1
            else:
                s["jobs"] += 1
            if waited is not None and waited > 1:
                s["waited"] += 1
                s["wait_s"].append(waited)
            s["held_by"].update(held)
            if peak:
                s["peak_mib"].append(peak / MiB)
                s["declared_mib"].append(declared / MiB)
                if declared and peak > declared:
                    s["overran"] += 1
    summary_lines: list[str] = []
    table: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    for name, s in sorted(stats.items()):
        doc = docs[name]
        wait = round(median(s["wait_s"])) if s["wait_s"] else 0
        summary_lines.append(
            f"{name} (v{policies[name].version.version}): {s['jobs']} finished jobs, {s['waited']} waited "
            f"(median {wait} s)"
            + (f", {s['never_started']} ended before they started" if s["never_started"] else "")
            + (f", held by {dict(s['held_by'])}" if s["held_by"] else "")
        )
        table.append(
            {
                "policy": name,
                "version": policies[name].version.version,
                "jobs": s["jobs"],
                "never_started": s["never_started"],
                "waited": s["waited"],
                "median_wait_s": wait,
                "held_by": dict(s["held_by"]),
                "overran_memory": s["overran"],
            }
        )
        candidates += _candidates(name, doc, s, cpu_p90)
    for i, c in enumerate(candidates, 1):
        c["id"] = i
    summary = "; ".join(summary_lines) or "no policies in force"
    if candidates:
        summary += ". Candidates: " + " ".join(f"{c['id']}. {c['change']} ({c['reason']})" for c in candidates)
    else:
        summary += ". No change is supported by the evidence."
    return {"summary": summary, "policies": table, "candidates": candidates, "cpu_p90_percent": cpu_p90}


def _refusals(detail: Any) -> list[dict[str, Any]]:
    """The refusals a job's "waiting" event recorded (a list of them, or under ``waiting_on``)."""
    found = detail.get("waiting_on") if isinstance(detail, dict) else detail
    return [r for r in found or [] if isinstance(r, dict)]


def _candidates(name: str, doc: Any, s: dict[str, Any], cpu_p90: float | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def add(field: str, before: Any, after: Any, reason: str) -> None:
        found.append(
            {
                "policy": name,
                "field": field,
                "before": before,
                "after": after,
                "change": f"{name}: {field} {before} -> {after}",
                "reason": reason,
            }
        )

    held = s["held_by"]
    if doc.max_load_per_core and held["load"] >= MIN_JOBS and (cpu_p90 is None or cpu_p90 < 80):
        after = round(doc.max_load_per_core * 1.25, 2)
        busy = f"CPU p90 {cpu_p90:.0f}% over 24 h" if cpu_p90 is not None else "no CPU history"
        add(
            "max_load_per_core",
            doc.max_load_per_core,
            after,
            f"the load limit held jobs back {held['load']} times; {busy}",
        )
    if doc.max_concurrent and held["concurrency"] >= MIN_JOBS and (cpu_p90 is None or cpu_p90 < 60):
        add(
            "max_concurrent",
            doc.max_concurrent,
            doc.max_concurrent + 1,
            f"{held['concurrency']} jobs queued on the concurrency limit",
        )
    floor = parse_size(doc.min_free_memory) if doc.min_free_memory is not None else None
    peaks = s["peak_mib"]
    if floor is not None and len(peaks) >= MIN_JOBS:
        top = max(peaks)
        if s["overran"] >= MIN_JOBS and top * MiB > floor:
            why = f"{s['overran']} jobs used more memory than they declared, up to {round(top)} MiB"
            add("min_free_memory", doc.min_free_memory, f"{round(top * 1.2)}MiB", why)
        elif held["memory"] >= MIN_JOBS and top * MiB * 2 < floor:
            why = f"the memory floor held jobs back {held['memory']} times; the most any job used is {round(top)} MiB"
            add("min_free_memory", doc.min_free_memory, f"{round(top * 1.5)}MiB", why)
    return found


def register(registry: ToolRegistry, rt: Runtime | None = None) -> None:
    opt = _Optimizer(rt)
    registry.register(spec_from_function(opt.evidence, name="policies.evidence", timeout_s=30, risk="safe"))
    registry.register(spec_from_function(opt.apply, name="policies.apply", timeout_s=30, risk="risky"))
