"""The supervisor's judgement, with no I/O: what counts as an incident, its fingerprint, the rule table
that heals the known cases, the schema a model's answer must fit, and the regression case of a
failure that could not be healed.

The one design decision: every function here takes the records and the clock it judges, so detection
and the rules are tested with fed-in rows in milliseconds, and the supervisor (``ops/supervisor.py``)
only reads rows, calls these and acts. Rules come first and the model second: a known case (a job
that ran out of memory, a model that timed out) heals the same way every time, whatever a small
model would have said; the model is asked only about failures no rule knows, and its answer is
checked against :data:`ACTION_SCHEMA` and its parameters against :data:`ACTION_PARAMS` (a bad answer
escalates). What a person decided (a denied approval, a cancelled execution) and a code version its
checks judged are not failures to heal: they are never findings.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgecrew.domain.events import EventRecord, ModelCalled, StepFinished, ToolCalled
from edgecrew.domain.runs import ANSWER_SAYS_FAILED
from edgecrew.errors import validation_problem

__all__ = [
    "ACTIONS",
    "ACTION_PARAMS",
    "ACTION_SCHEMA",
    "ACTION_TEAM",
    "AWAIT_RECOVERY",
    "RISKY",
    "SAFE",
    "ActionChoice",
    "Decision",
    "Finding",
    "RegressionCase",
    "RuleLimits",
    "WorkerOutcome",
    "WorkersSight",
    "classify_job",
    "execution_findings",
    "failed_models",
    "fingerprint",
    "job_findings",
    "load_regression",
    "model_findings",
    "normalize_error",
    "param_problem",
    "parse_choice",
    "regression_case",
    "rule_for",
    "run_findings",
    "tool_findings",
    "worker_findings",
    "worker_recovery",
]

ACTIONS = (
    "retry",
    "retry_with_more_memory",
    "restart_worker",
    "change_model",
    "change_memory_budget",
    "fallback_model",
    "cancel",
    "escalate",
)
# The rules' own action for a lost worker (the model never chooses it): wait for the cluster's failover.
AWAIT_RECOVERY = "await_recovery"
SAFE = frozenset({"retry", "retry_with_more_memory", "fallback_model", AWAIT_RECOVERY})
# The parameters each action the model may choose takes (escalate acts on nothing: its parameters are not read).
ACTION_PARAMS: dict[str, tuple[str, ...]] = {
    "retry": (),
    "retry_with_more_memory": ("memory_mb",),
    "restart_worker": ("worker",),
    "change_model": ("model",),
    "change_memory_budget": ("memory_mb",),
    "fallback_model": ("model",),
    "cancel": (),
}
RISKY = frozenset({"restart_worker", "change_model", "change_memory_budget", "cancel"})
OOM_MARKERS = ("memoryerror", "cannot allocate memory", "out of memory", "std::bad_alloc", "oom-kill", "oom killer")
TRANSIENT_MARKERS = (
    "did not answer within",
    "timed out",
    "timeout",
    "connection refused",
    "connection reset",
    "temporarily unavailable",
    "http 503",
    "http 502",
    "http 429",
    "rate limit",
)
LOG_LINES = 20
ACTION_TEAM = "supervisor-action"  # the built-in team whose run holds a risky action for approval


class ActionChoice(BaseModel):
    """What the model must answer: one action, why, and its parameters."""

    model_config = ConfigDict(extra="forbid")
    action: Literal[
        "retry",
        "retry_with_more_memory",
        "restart_worker",
        "change_model",
        "change_memory_budget",
        "fallback_model",
        "cancel",
        "escalate",
    ]
    reason: str = Field(min_length=1, max_length=2000)
    params: dict[str, Any] = Field(default_factory=dict)


ACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"enum": list(ACTIONS)},
        "reason": {"type": "string"},
        "params": {
            "type": "object",
            "properties": {
                "memory_mb": {"type": "integer"},
                "model": {"type": "string"},
                "worker": {"type": "string"},
            },
        },
    },
    "required": ["action", "reason", "params"],
}


@dataclass(frozen=True)
class Finding:
    """One failure a watcher saw: what failed, how, and what the diagnosis holds."""

    kind: str  # oom | job_failed | run_failed | model | execution | tool_errors | worker_lost
    subject_type: str  # job | run | execution | model | tool | worker
    subject: str
    title: str
    error: str
    diagnosis: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.subject_type, self.error)


@dataclass(frozen=True)
class Decision:
    """The action to take on an incident, who chose it and why."""

    action: str
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    decided_by: str = "rule"  # rule | model | duplicate | supervisor (no model answered)

    @property
    def risky(self) -> bool:
        return self.action in RISKY

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "params": self.params, "decided_by": self.decided_by}

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Decision:
        return cls(str(data["action"]), str(data["reason"]), dict(data.get("params") or {}), str(data["decided_by"]))


@dataclass(frozen=True)
class RuleLimits:
    """The rule table's knobs (from settings)."""

    memory_factor: float = 2.0
    memory_cap_bytes: int = 8 * 2**30
    max_attempts: int = 2
    default_memory_bytes: int = 512 * 2**20  # a sandboxed job that declared none runs under this


# -- fingerprints ------------------------------------------------------------------------------------


def normalize_error(error: str) -> str:
    """The error as a class of failures: its last meaningful line, lower-case, with ids, numbers, paths
    and quoted values replaced, so two runs of the same failure share a fingerprint."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    text = (lines[-1] if lines else "").lower()
    text = re.sub(r"(/[\w.@-]+)+", "<path>", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "<value>", text)
    text = re.sub(r"\b[0-9a-f]{8,}\b", "<id>", text)
    text = re.sub(r"\b[a-z]?\d+(\.\d+)?\b", "<n>", text)
    return re.sub(r"\s+", " ", text)[:300]


def fingerprint(kind: str, subject_type: str, error: str) -> str:
    return hashlib.sha256(f"{kind}|{subject_type}|{normalize_error(error)}".encode()).hexdigest()[:32]


def _tail(text: str, lines: int = LOG_LINES) -> list[str]:
    return [line[:500] for line in text.splitlines()[-lines:]]


# -- detection ---------------------------------------------------------------------------------------


def classify_job(reason: str, stderr: str, peak_rss: int | None, limit: int | None) -> str:
    """``oom`` when the job ran out of memory (an allocation failed under its limit, or it was killed
    with its resident set at the limit), else ``job_failed``."""
    text = f"{reason}\n{stderr[-4000:]}".lower()
    if any(marker in text for marker in OOM_MARKERS):
        return "oom"
    if "sigkill" in text and peak_rss and limit and peak_rss >= 0.9 * limit:
        return "oom"
    return "job_failed"


def job_findings(jobs: Iterable[Any], logs: Mapping[str, tuple[str, str]], default_limit: int) -> list[Finding]:
    """Failed jobs (``JobRecord``s) as findings; ``logs`` maps a job id to its (stdout, stderr). Jobs the
    supervisor submitted itself (a retry) are its incidents' follow-ups, not new incidents."""
    out = []
    for job in jobs:
        if job.state != "failed" or (job.submitted_by or "").startswith("supervisor:"):
            continue
        stdout, stderr = logs.get(job.id, ("", ""))
        usage = job.usage or {}
        declared = int((job.needs or {}).get("memory_bytes") or 0)
        limit = declared or (default_limit if job.sandbox else 0)
        kind = classify_job(job.reason or "", stderr, usage.get("peak_rss_bytes"), limit or None)
        last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
        reason = job.reason or "failed"
        error = f"{reason}: {last}" if last and last[:300] not in reason else reason  # the job's own reason has it
        title = ("ran out of memory: " if kind == "oom" else "failed: ") + f"job {job.id} ({job.name})"
        diagnosis = {
            "job": {
                "id": job.id,
                "name": job.name,
                "kind": job.kind,
                "command": job.argv,
                "team": job.team,
                "task": job.task,
                "sandbox": job.sandbox,
                "needs": job.needs,
                "tags": job.tags,
                "priority": job.priority,
                "exit_code": job.exit_code,
                "reason": job.reason,
                "run_id": job.run_id,
            },
            "resources": {
                "memory_limit_bytes": limit or None,
                "peak_rss_bytes": usage.get("peak_rss_bytes"),
                "cpu_s": usage.get("cpu_s"),
                "wall_s": usage.get("wall_s"),
            },
            "stdout_tail": _tail(stdout),
            "stderr_tail": _tail(stderr),
        }
        out.append(Finding(kind, "job", job.id, title, error, diagnosis))
    return out


def run_findings(runs: Iterable[Mapping[str, Any]], events: Mapping[str, list[EventRecord]]) -> list[Finding]:
    """Failed runs as findings (a job's run is the job's incident; a supervisor's own runs are skipped).

    A run in which a person denied an approval (``denied_approval``: the id of one) is not an incident:
    the denial is a person's decision, not a failure to heal, and running the team again would only
    put the same call back in the Approvals inbox. Nor is a run whose team's answer said its work failed
    (``failed_when``: a task that failed its checks): that is the work's result, as an execution's is."""
    out = []
    for run in runs:
        trigger = run.get("trigger") or {}
        # the supervisor's own team by its name: a team of the user's called "supervisor-digest" is no
        # supervisor's run, and its failures are incidents like any other team's
        if trigger.get("kind") in ("job", "supervisor") or run["team"] == ACTION_TEAM:
            continue
        if run.get("denied_approval"):
            continue
        error = str(run.get("error") or "failed without an error message")
        if error.startswith(ANSWER_SAYS_FAILED):
            continue
        seen = events.get(str(run["id"]), [])
        failing = next((e for e in reversed(seen) if isinstance(e.payload, StepFinished) and e.payload.error), None)
        models = [e.payload for e in seen if isinstance(e.payload, ModelCalled)]
        diagnosis = {
            "run": {"id": run["id"], "team": run["team"], "task": run["task"], "project": run.get("project")},
            "failing_step": failing.step_key if failing else None,
            "failing_agent": failing.agent if failing else None,
            "models": sorted({m.alias or m.requested for m in models} - {""}),
            "model_errors": [m.error for m in models if m.error][-5:],
            "failed_models": failed_models(models),
            "events": [{"type": e.type, "step": e.step_key, "data": _short(e.data)} for e in seen[-12:]],
        }
        out.append(
            Finding("run_failed", "run", str(run["id"]), f"run {run['id']} of {run['team']} failed", error, diagnosis)
        )
    return out


def failed_models(calls: Iterable[ModelCalled]) -> list[str]:
    """The aliases that failed a call of the run: those a call fell back from, and those that answered
    with an error."""
    failed = {attempt.alias for call in calls for attempt in call.fallbacks}
    failed |= {call.alias or call.requested for call in calls if call.error}
    return sorted(failed - {""})


def execution_findings(executions: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Executions that failed with no outcome stored, as findings: edgecrew's own error while running a
    version (the sandbox would not start, the disk filled), which ends the row with no checks counted.

    A version whose outcome is stored (``checks_total`` set) was judged: its checks failed, its program
    crashed or ran past a sandbox limit, it is not Python, or the task's checks do not parse. That is
    the task's normal result, for whoever ran it (a person, or the build loop writing the next version),
    not an incident. A ``killed`` execution was cancelled by a person, and an ``interrupted`` one
    (edgecrew stopped while it ran) is run again by whoever was waiting for it."""
    out = []
    for ex in executions:
        if ex.get("status") != "failed" or ex.get("checks_total") is not None:
            continue
        reason = str(ex.get("reason") or ex["status"])
        diagnosis = {
            "execution": {k: ex.get(k) for k in ("id", "task_id", "version", "status", "exit_code", "run_id", "agent")},
            "logs": {"stdout": ex.get("stdout_log"), "stderr": ex.get("stderr_log")},
        }
        title = f"execution {ex['id']} of task {ex['task_id']} v{ex['version']} {ex['status']}"
        out.append(Finding("execution", "execution", str(ex["id"]), title, reason, diagnosis))
    return out


def model_findings(calls: Iterable[EventRecord], bucket_s: float) -> list[Finding]:
    """Model calls no model could answer, one finding per alias per time bucket (a model that will not
    load fails every call: that is one incident, not one per call)."""
    grouped: dict[tuple[str, int], list[tuple[EventRecord, ModelCalled]]] = defaultdict(list)
    for call in calls:
        event = call.payload
        if isinstance(event, ModelCalled) and event.error:
            alias = event.alias or event.requested or "?"
            grouped[(alias, int(call.created_at // bucket_s))].append((call, event))
    out = []
    for (alias, bucket), failed in sorted(grouped.items()):
        errors = [str(event.error) for _, event in failed]
        diagnosis = {
            "model": alias,
            "failed_calls": len(failed),
            "runs": sorted({call.run_id for call, _ in failed})[:10],
            "errors": errors[-5:],
            "fallbacks": [[a.model_dump() for a in event.fallbacks] for _, event in failed][-3:],
        }
        title = f"model {alias} failed {len(failed)} call(s)"
        out.append(Finding("model", "model", f"{alias}@{bucket}", title, errors[-1], diagnosis))
    return out


# A call the tool never ran, as the engine words it (ToolSpec.validate_arguments, permissions.refusal):
# the model's mistake (bad arguments, a tool it does not have), not the tool failing.
NEVER_RAN = re.compile(
    r"^error: (invalid arguments for |there is no tool '"
    r"|tool '[^']*' is not allowed for agent |tool '[^']*' is forbidden)"
)


def tool_findings(
    calls: Iterable[EventRecord], now: float, window_s: float, threshold: float, min_calls: int
) -> list[Finding]:
    """Tools whose share of failed calls over the window is at or above ``threshold`` (with at least
    ``min_calls`` calls), one finding per tool per window. Calls refused before the tool ran
    (:data:`NEVER_RAN`) are left out: a model misusing a tool that works is no failing tool."""
    by_tool: dict[str, list[tuple[EventRecord, ToolCalled]]] = defaultdict(list)
    for call in calls:
        event = call.payload
        if isinstance(event, ToolCalled) and call.created_at >= now - window_s:
            if event.is_error and NEVER_RAN.match(event.result):
                continue
            by_tool[event.tool or "?"].append((call, event))
    out = []
    for tool, seen in sorted(by_tool.items()):
        failed = [(call, event) for call, event in seen if event.is_error]
        if len(seen) < min_calls or len(failed) / len(seen) < threshold:
            continue
        rate = len(failed) / len(seen)
        diagnosis = {
            "tool": tool,
            "calls": len(seen),
            "failed": len(failed),
            "error_rate": round(rate, 3),
            "window_s": window_s,
            "threshold": threshold,
            "errors": [event.result[:300] for _, event in failed[-5:]],
            "runs": sorted({call.run_id for call, _ in failed})[:10],
        }
        error = failed[-1][1].result if failed else ""
        subject = f"{tool}@{int(now // window_s)}"
        out.append(
            Finding(
                "tool_errors", "tool", subject, f"tool {tool} failed {rate:.0%} of {len(seen)} calls", error, diagnosis
            )
        )
    return out


def worker_findings(
    workers: Iterable[Mapping[str, Any]], now: float, lease_s: float, since: float = 0.0
) -> list[Finding]:
    """Workers declared dead, or silent past the lease (their heartbeat lost), since ``since``; a worker
    that stopped cleanly is not lost. The diagnosis holds its last heartbeat, the models it served, who
    declared it dead and how many of its workflows were recovered (when known yet), and the live workers."""
    rows = list(workers)
    live = [w for w in rows if w.get("state") == "alive" and now - float(w.get("heartbeat_at") or 0) <= lease_s]
    out = []
    for worker in rows:
        beat = float(worker.get("heartbeat_at") or 0)
        silent = now - beat
        lost_at = float(worker.get("dead_at") or 0) or beat
        if worker.get("state") in ("stopped", "stopping") or (worker.get("state") != "dead" and silent <= lease_s):
            continue
        if lost_at < since:
            continue
        declared = worker.get("state") == "dead"
        how = f"declared dead by worker {worker.get('declared_by')}" if declared else "not declared dead yet"
        error = f"worker {worker['id']} lost its heartbeat ({silent:.0f}s silent, lease {lease_s:g}s; {how})"
        diagnosis = {
            "worker": _worker_facts(worker),
            "last_heartbeat_at": beat,
            "silent_s": round(silent, 1),
            "lease_s": lease_s,
            "models": list(worker.get("aliases") or []),
            "tags": list(worker.get("tags") or []),
            "recovery": _recovery_facts(worker),
            "live_workers": [_worker_facts(w) for w in live if w["id"] != worker["id"]],
            "unserved_models": sorted(
                set(worker.get("aliases") or []) - {a for w in live for a in (w.get("aliases") or [])}
            ),
        }
        subject = f"{worker['id']}@{int(beat)}"
        out.append(
            Finding("worker_lost", "worker", subject[:200], f"worker {worker.get('host')} lost", error, diagnosis)
        )
    return out


@dataclass
class WorkersSight:
    """When the supervisor last read the workers table, and until when it calls no silent worker lost.

    A supervisor that could not read the table for longer than a lease (the database was out of reach)
    comes back to find every worker silent past its lease: they could not renew their leases either. As a
    worker back from an outage does, it gives them a lease to renew theirs first; a worker declared dead
    by a live one is lost all the same. A supervisor that just started (its first read) gives them the
    same lease: it cannot tell how long a worker silent then has been left undeclared, nor whether live
    workers are starting with it (a whole cluster brought up again), which declare it on their first
    heartbeat and recover its workflows."""

    seen_at: float | None = None
    failed: bool = False  # a read failed since ``seen_at``
    patient_until: float = 0.0

    def looked(self, now: float, lease_s: float, interval_s: float) -> float | None:
        """Record a read at ``now``; how long the supervisor could not see when that begins a grace (None: it
        does not). Blind: a read failed and the last good one is older than a lease, or the last good one is
        older than a lease past the interval between two scans (a read that hung). The first read begins a
        grace too, and returns None: nothing was missed."""
        blind = None if self.seen_at is None else now - self.seen_at
        self.seen_at, failed, self.failed = now, self.failed, False
        if blind is None:
            self.patient_until = now + lease_s
            return None
        if not ((failed and blind > lease_s) or blind > lease_s + interval_s):
            return None
        self.patient_until = now + lease_s
        return blind

    def patient(self, now: float) -> bool:
        return now < self.patient_until


@dataclass(frozen=True)
class WorkerOutcome:
    """How a lost worker's failover ended: its workflows recovered on live workers (healed) or not."""

    healed: bool
    reason: str
    recovery: dict[str, Any]


def worker_recovery(
    worker_id: str,
    workers: Iterable[Mapping[str, Any]],
    now: float,
    lease_s: float,
    grace_s: float,
    seen_from: float = 0.0,
) -> WorkerOutcome | None:
    """Judge a lost worker's failover from the workers table at ``now`` (None: not over yet, look again).

    Live workers declare a silent one dead on their next heartbeat and ask DBOS to recover its
    workflows (its row's ``recovered`` is negative while that runs). Healed: it was recovered (or it
    stopped cleanly, or it heartbeats again) and a live worker is left to run what was recovered.
    Escalated: ``grace_s`` after its lease ran out nobody recovered it, its recovery never finished,
    or no live worker is left. edgecrew cannot restart a process on another machine, so the reason
    says what a person must restart. ``seen_from``: when the supervisor's grace after it could not see
    the table ended (:class:`WorkersSight`); the live workers, back from the same outage, get ``grace_s``
    from then to declare it."""
    rows = {str(w["id"]): w for w in workers}
    worker = rows.get(worker_id)
    live = sorted(
        i for i, w in rows.items() if w.get("state") == "alive" and now - float(w.get("heartbeat_at") or 0) <= lease_s
    )
    if worker is None:
        why = f"worker {worker_id}'s row was removed: nobody can tell whether its workflows were recovered"
        return WorkerOutcome(False, why, {"live_workers": live})
    recovery = {**_recovery_facts(worker), "live_workers": live}
    state = str(worker.get("state"))
    beat = float(worker.get("heartbeat_at") or 0)
    restart = (
        f"restart `edgecrew worker` on {worker.get('host')} (it was pid {worker.get('pid')}, serving "
        f"{', '.join(worker.get('aliases') or []) or 'no models'}) or start another worker; edgecrew cannot "
        "restart a process on another machine (no restart_worker handler)"
    )
    if worker_id in live:
        return WorkerOutcome(True, f"worker {worker_id} heartbeats again: a pause, not a loss", recovery)
    done = state in ("dead", "stopped") and int(worker.get("recovered") or 0) >= 0
    if done:
        count, by = int(worker.get("recovered") or 0), worker.get("declared_by")
        if count and not live:
            why = f"worker {by} recovered its {count} workflow(s), but no live worker is left to run them"
            return WorkerOutcome(False, f"{why}; {restart}", recovery)
        what = f"its {count} workflow(s) were recovered by worker {by}" if count else "it held no unfinished workflow"
        where = f" and run on live workers ({', '.join(live)})" if count else ""
        return WorkerOutcome(True, f"{what}{where}", recovery)
    waited = now - (float(worker.get("dead_at") or 0) or beat + lease_s)
    if state == "dead":  # declared, recovery under way
        if waited <= grace_s:
            return None
        why = (
            f"worker {worker.get('declared_by')} declared it dead {waited:.0f}s ago but never finished "
            "recovering its workflows (did it die too?)"
        )
        return WorkerOutcome(False, f"{why}; {restart}", recovery)
    waited = min(waited, now - seen_from)
    if waited <= grace_s:
        return None  # a live worker declares it on its next heartbeat (one may start meanwhile)
    why = (
        "no live worker is left to recover its workflows"
        if not live
        else f"no live worker recovered it in {grace_s:g}s"
    )
    return WorkerOutcome(False, f"{why}; {restart}", recovery)


def _worker_facts(worker: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "host", "pid", "aliases", "tags", "memory_bytes", "concurrency", "running", "state", "started_at")
    return {k: worker.get(k) for k in keys}


def _recovery_facts(worker: Mapping[str, Any]) -> dict[str, Any]:
    recovered = worker.get("recovered")
    return {
        "state": worker.get("state"),
        "dead_at": worker.get("dead_at"),
        "declared_by": worker.get("declared_by"),
        "recovered": recovered if recovered is None or int(recovered) >= 0 else None,  # negative: under way
    }


def _short(data: Any) -> Any:
    text = json.dumps(data, default=str)
    return data if len(text) <= 600 else text[:600] + "…"


# -- the rule table ----------------------------------------------------------------------------------


def rule_for(kind: str, diagnosis: Mapping[str, Any], attempts: int, limits: RuleLimits) -> Decision | None:
    """The known cases' action (None: no rule knows this failure; ask the model)."""
    if kind == "oom":
        resources = diagnosis.get("resources") or {}
        current = int(resources.get("memory_limit_bytes") or limits.default_memory_bytes)
        if attempts >= limits.max_attempts:
            return Decision("escalate", f"it ran out of memory after {attempts} retries with more memory")
        wanted = _round_mib(current * limits.memory_factor)
        if current >= limits.memory_cap_bytes:
            cap = limits.memory_cap_bytes // 2**20
            return Decision(
                "escalate", f"it ran out of memory at {current // 2**20} MiB, the supervisor's cap ({cap} MiB)"
            )
        wanted = min(wanted, limits.memory_cap_bytes)
        why = f"it ran out of memory under {current // 2**20} MiB; retry with {wanted // 2**20} MiB"
        return Decision("retry_with_more_memory", why, {"memory_bytes": wanted})
    if kind == "worker_lost":
        if attempts:
            return None  # its failover was judged: the workflow escalates with that reason
        return Decision(
            AWAIT_RECOVERY,
            "live workers declare a lost worker dead and DBOS recovers its workflows on them: wait for that",
            {"worker": str((diagnosis.get("worker") or {}).get("id") or "")},
        )
    if kind == "run_failed":
        errors = " ".join(str(e) for e in diagnosis.get("model_errors") or [])
        if attempts == 0 and any(marker in errors.lower() for marker in TRANSIENT_MARKERS):
            return Decision("retry", "its model failed with a transient error (a timeout or an unreachable server)")
    if kind == "model" and attempts == 0:
        text = " ".join(str(e) for e in diagnosis.get("errors") or []).lower()
        if any(marker in text for marker in TRANSIENT_MARKERS):
            return Decision("escalate", "the model failed with transient errors; routing falls back along its chain")
    return None


def _round_mib(value: float) -> int:
    return int(-(-value // 2**20)) * 2**20


def param_problem(action: str, params: Mapping[str, Any]) -> str | None:
    """What is wrong with the parameters the model gave ``action`` (None: it takes them all, each of
    its kind); one given as null is not given, and ``escalate`` acts on nothing and is not checked."""
    if action not in ACTION_PARAMS:
        return None
    takes = ACTION_PARAMS[action]
    params = {name: value for name, value in params.items() if value is not None}
    unknown = sorted(set(params) - set(takes))
    if unknown:
        what = f"only params.{takes[0]}" if takes else "no parameters"
        return f"{action} takes {what} (it was given {', '.join(unknown)})"
    memory = params.get("memory_mb")
    if "memory_mb" in params and (isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0):
        return f"params.memory_mb must be a positive whole number of MiB (it was given {memory!r})"
    for name in ("model", "worker"):
        value = params.get(name)
        if name in params and (not isinstance(value, str) or not value.strip()):
            return f"params.{name} must name a {name} (it was given {value!r})"
    return None


_FENCED = re.compile(r"^```[\w-]*[ \t]*\n(.*?)\n?```$", re.S)


def parse_choice(text: str) -> ActionChoice:
    """The model's answer, checked against the schema (raises ValueError saying what is wrong). JSON in
    a Markdown code fence is read as the JSON (a LiteLLM model may fence it though a schema was asked
    for, as agents' answers are read), and ``params: null`` as no parameters."""
    stripped = text.strip()
    fenced = _FENCED.match(stripped)
    try:
        data = json.loads(fenced.group(1) if fenced else stripped)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(data, dict) and "params" in data and data["params"] is None:
        data = {**data, "params": {}}
    try:
        return ActionChoice.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(validation_problem(e, "answer") for e in exc.errors())
        raise ValueError(problems) from None


# -- regression cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionCase:
    """A failure the supervisor could not heal, as a reproduction a person (or a test) can run."""

    incident: str
    kind: str
    title: str
    error: str
    reproduce: dict[str, Any]
    expected: dict[str, Any]
    diagnosis: dict[str, Any]
    path: Path | None = None

    def command(self) -> list[str]:
        """The edgecrew command line that reproduces it."""
        what = self.reproduce
        if what.get("kind") == "job" and what.get("command"):
            argv = ["edgecrew", "jobs", "submit"]
            if what.get("sandbox"):
                argv.append("--sandbox")
            memory = (what.get("needs") or {}).get("memory_bytes")
            if memory:
                argv += ["--memory", f"{int(memory) // 2**20}MiB"]
            return [*argv, "--", *[str(a) for a in what["command"]]]
        if what.get("team") and what.get("task"):
            return ["edgecrew", "run", str(what["team"]), str(what["task"])]
        execution = what.get("execution") or {}
        if what.get("kind") == "execution" and execution.get("task_id") and execution.get("version"):
            return ["edgecrew", "tasks", "run", str(execution["task_id"]), str(execution["version"])]
        raise ValueError(f"regression case {self.incident} names no runnable reproduction (reproduce: {what})")


def regression_case(incident: Any, decision_reason: str) -> RegressionCase:
    """The case of an incident (an ``IncidentRecord``) that could not be healed."""
    diagnosis = incident.diagnosis
    reproduce: dict[str, Any] = {"kind": incident.subject_type}
    if "job" in diagnosis:
        job = diagnosis["job"]
        if job.get("kind") == "team":
            reproduce.update(kind="run", team=job.get("team"), task=job.get("task"))
        else:
            reproduce.update(
                command=job.get("command"),
                sandbox=bool(job.get("sandbox")),
                needs=job.get("needs"),
                tags=job.get("tags"),
            )
    elif "run" in diagnosis:
        run = diagnosis["run"]
        reproduce.update(
            team=run.get("team"),
            task=run.get("task"),
            models=diagnosis.get("models"),
            failing_step=diagnosis.get("failing_step"),
            failing_agent=diagnosis.get("failing_agent"),
        )
    elif "execution" in diagnosis:
        reproduce.update(execution=diagnosis["execution"])
    else:
        reproduce.update({k: v for k, v in diagnosis.items() if k in ("model", "tool", "worker")})
    return RegressionCase(
        incident=incident.id,
        kind=incident.kind,
        title=incident.title,
        error=incident.error,
        reproduce=reproduce,
        expected={"state": "succeeded", "note": f"not healed by the supervisor: {decision_reason}"},
        diagnosis=diagnosis,
    )


def write_regression(case: RegressionCase, folder: Path, at: float) -> Path:
    """Write the case as ``<folder>/<date>-<kind>-<incident>.yaml`` (the same path on a replay)."""
    folder.mkdir(parents=True, exist_ok=True)
    day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
    path = folder / f"{day}-{case.kind}-{case.incident}.yaml"
    doc = {
        "incident": case.incident,
        "kind": case.kind,
        "title": case.title,
        "error": case.error,
        "reproduce": case.reproduce,
        "command": case.command() if _runnable(case) else None,
        "expected": case.expected,
        "diagnosis": case.diagnosis,
    }
    partial = path.with_suffix(".tmp")
    partial.write_text(
        "# A failure edgecrew's supervisor could not heal. `command` reproduces it; a fix makes it end as `expected`.\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110),
        encoding="utf-8",
    )
    partial.replace(path)
    return path


def _runnable(case: RegressionCase) -> bool:
    try:
        case.command()
    except ValueError:
        return False
    return True


def load_regression(path: Path) -> RegressionCase:
    """Read a regression case (raises ValueError naming the file when it is not one)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read it as YAML: {exc}") from None
    missing = [
        k for k in ("incident", "kind", "error", "reproduce", "expected") if not isinstance(doc, dict) or k not in doc
    ]
    if missing:
        raise ValueError(f"{path}: not a regression case (missing {', '.join(missing)})")
    return RegressionCase(
        incident=str(doc["incident"]),
        kind=str(doc["kind"]),
        title=str(doc.get("title") or ""),
        error=str(doc["error"]),
        reproduce=dict(doc["reproduce"]),
        expected=dict(doc["expected"]),
        diagnosis=dict(doc.get("diagnosis") or {}),
        path=path,
    )
