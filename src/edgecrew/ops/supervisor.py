"""The supervisor: watches jobs, runs, model calls, sandbox executions, tool error rates and (when the
cluster's table exists) workers; records each failure as an incident with its diagnosis, decides an
action (the rule table first, a model constrained to a schema for novel failures), applies safe
actions itself and risky ones through the approval gate, and writes a regression case for what it
could not heal.

The one design decision: detection is a periodic loop (idempotent: an incident is keyed by what
failed), while everything that *acts* is one DBOS workflow per incident. Its steps decide, apply,
wait for the follow-up and escalate, so a server killed mid-incident resumes where it was, never
submits a retry twice and never asks the model twice. A risky action is a run of the built-in team
``supervisor-action``, whose one tool agent calls the risky tool ``supervisor.apply``: the engine's
approval gate holds it, so it waits in the Approvals inbox like any risky tool call, and runs once.
Watchers and action handlers are registries (``register_watcher``, ``register_action``), so the
cluster adds a worker watcher or a restart without this module knowing it. A lost cluster worker is
healed by the cluster itself (live workers recover its workflows through DBOS): its incident waits
for that failover and is escalated when none happened. No ``restart_worker`` handler is registered:
edgecrew cannot restart a process on another machine, so that action escalates and says so.
A model or memory action reruns the failed team as a new run with the change (:mod:`edgecrew.ops.remedies`:
the failing agent's model swapped in the recorded snapshot, or the model pool's budget raised), and a
rerun is only recorded by its step: the workflow starts it as its child, since a DBOS step cannot
start a workflow.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbos import DBOS

from edgecrew.domain.messages import Message, ModelRequest
from edgecrew.domain.runs import RunStatus
from edgecrew.domain.sizes import parse_size
from edgecrew.domain.text import with_article
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import EdgecrewError, NotFoundError, ToolError
from edgecrew.models.probe import mib
from edgecrew.ops.incidents import (
    ACTION_SCHEMA,
    ACTION_TEAM,
    AWAIT_RECOVERY,
    Decision,
    Finding,
    RuleLimits,
    WorkersSight,
    classify_job,
    execution_findings,
    job_findings,
    model_findings,
    param_problem,
    parse_choice,
    regression_case,
    rule_for,
    run_findings,
    tool_findings,
    worker_findings,
    worker_recovery,
    write_regression,
)
from edgecrew.ops.periodic import Periodic
from edgecrew.ops.remedies import Unfit
from edgecrew.ops.reruns import Reruns, changes_team
from edgecrew.store.incidents import IncidentEvent, IncidentRecord, IncidentStore
from edgecrew.store.reach import OUT_OF_REACH

if TYPE_CHECKING:
    from edgecrew.ops import Ops
    from edgecrew.tools.base import ToolRegistry

__all__ = ["WORKFLOW", "Supervisor", "register_action", "register_watcher"]

UNANSWERED = "supervisor"  # decided_by of an escalation because no model could answer (nobody judged it)

log = logging.getLogger("edgecrew.supervisor")
WORKFLOW = "edgecrew.incident"
FOLLOW_POLL_S = 0.5
MODEL_BUCKET_S = 600.0
SYSTEM = (
    "You are the supervisor of an edge AI runtime. A failure is described below. Choose ONE action: "
    "retry (run it again as it was), retry_with_more_memory (params.memory_mb), restart_worker "
    "(params.worker), change_model or fallback_model (params.model), change_memory_budget "
    "(params.memory_mb), cancel, or escalate (a person must look: choose it when unsure). "
    'Answer JSON only: {"action": ..., "reason": "one sentence", "params": {...}}.'
)

Watcher = Callable[["Supervisor", float, float], list[Finding]]
# (supervisor, incident, params) -> the follow-up to wait for ("job:<id>", "run:<id>") or None when done
ActionHandler = Callable[["Supervisor", IncidentRecord, dict[str, Any]], Awaitable[str | None]]
_WATCHERS: dict[str, Watcher] = {}
_ACTIONS: dict[str, ActionHandler] = {}


def register_watcher(name: str, watcher: Watcher) -> None:
    """Add (or replace) a watcher: ``watcher(supervisor, since, now)`` returns the failures it sees."""
    _WATCHERS[name] = watcher


def register_action(action: str, handler: ActionHandler) -> None:
    """Add (or replace) how a risky action is applied (e.g. the cluster's ``restart_worker``)."""
    _ACTIONS[action] = handler


@dataclass(frozen=True)
class Followed:
    """How a follow-up ended: healed, or not (and whether the rules may try again)."""

    ok: bool
    reason: str
    again: bool = False


class Supervisor:
    """Incidents: detection (a loop in the server), their workflows, and what the entry points read."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.store = IncidentStore(rt.store)
        self.reruns = Reruns(rt, self.store)
        self.clock: Callable[[], float] = time.time  # tests feed their own
        self.workers_sight = WorkersSight()
        self._loop = Periodic("edgecrew-supervisor", self.scan, "the supervisor's scan failed", "the supervisor")

    @property
    def _ops(self) -> Ops:
        from edgecrew.ops import Ops

        return Ops.of(self.rt)

    def workflow_id(self, incident_id: str) -> str:
        return f"incident.{self._ops.project_key}.{incident_id}"

    @property
    def limits(self) -> RuleLimits:
        s = self.rt.settings
        return RuleLimits(
            memory_factor=s.supervisor_memory_factor,
            memory_cap_bytes=parse_size(s.supervisor_memory_cap) or 8 * 2**30,
            max_attempts=s.supervisor_max_attempts,
            default_memory_bytes=parse_size(s.sandbox_memory) or 512 * 2**20,
        )

    def regressions_dir(self) -> Path:
        folder = Path(self.rt.settings.supervisor_regressions_dir)
        return folder if folder.is_absolute() else self.rt.project.dir / folder

    # -- what the entry points read ---------------------------------------------------------------------

    def list_incidents(
        self, *, state: str | None = None, kind: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[IncidentRecord]:
        return self.store.list_incidents(states=[state] if state else None, kind=kind, limit=limit, offset=offset)

    def count(self, *, state: str | None = None, kind: str | None = None) -> int:
        return self.store.count(states=[state] if state else None, kind=kind)

    def get(self, incident_id: str) -> IncidentRecord:
        return self.store.get(incident_id)

    def events(self, incident_id: str) -> list[IncidentEvent]:
        return self.store.events(self.store.get(incident_id).id)

    # -- server life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume incident workflows a dead process left, then scan every ``supervisor_interval_s``."""
        if not durable.launched(self.rt) or self.rt.settings.supervisor_interval_s <= 0:
            return
        if problem := self.model_problem():
            log.warning("%s", problem)
        prefix = self.workflow_id("")
        await durable.resume_dead(self.rt, WORKFLOW, lambda wf: wf.workflow_id.startswith(prefix))
        for incident in await asyncio.to_thread(self.store.list_incidents, states=["open", "healing"], limit=1000):
            if await durable.workflow_status(self.workflow_id(incident.id)) is None:
                await self._start_workflow(incident.id)
        self._loop.start(self.rt.settings.supervisor_interval_s)

    async def stop(self) -> None:
        await self._loop.stop()

    def model_problem(self) -> str | None:
        """Why the model asked about failures no rule knows cannot be called here (None: it can), said
        when the server starts rather than first at an incident, which would escalate unasked."""
        alias = self.rt.settings.supervisor_model
        try:
            self.rt.models.candidates(alias)
        except EdgecrewError as exc:
            return (
                f"EDGECREW_SUPERVISOR_MODEL names no model here ({exc}): every failure no rule knows will be"
                " escalated without asking a model; set it to one of this project's aliases"
            )
        return None

    # -- detection --------------------------------------------------------------------------------------

    async def scan(self, now: float | None = None) -> list[IncidentRecord]:
        """Run every watcher once; record the new failures as incidents and start their workflows."""
        now = self.clock() if now is None else now
        since = now - self.rt.settings.supervisor_lookback_s
        found = await asyncio.to_thread(self.detect, since, now)
        made = []
        for finding in found:
            incident = await asyncio.to_thread(self.record, finding)
            if incident is not None:
                made.append(incident)
                if durable.launched(self.rt):
                    await self._start_workflow(incident.id)
        return made

    def detect(self, since: float, now: float) -> list[Finding]:
        """What every watcher sees, less the failures already recorded. Raises the first watcher's error
        that says the database is out of reach (the scan's loop says that once, not a traceback each)."""
        findings: list[Finding] = []
        unreached: Exception | None = None
        for name, watcher in {**BUILTIN_WATCHERS, **_WATCHERS}.items():
            try:
                findings += watcher(self, since, now)
            except OUT_OF_REACH as exc:
                unreached = unreached or exc
            except Exception:  # one broken watcher must not blind the others
                log.exception("supervisor watcher %s failed", name)
        if unreached is not None:
            raise unreached
        fresh = []
        by_type: dict[str, list[Finding]] = {}
        for f in findings:
            by_type.setdefault(f.subject_type, []).append(f)
        for subject_type, group in by_type.items():
            known = self.store.known_subjects(subject_type, [f.subject for f in group])
            fresh += [f for f in group if f.subject not in known]
        return fresh

    def record(self, finding: Finding) -> IncidentRecord | None:
        """Record one finding as an incident (None: another process recorded it first)."""
        incident_id = "i" + hashlib.sha256(f"{finding.subject_type}:{finding.subject}".encode()).hexdigest()[:15]
        created = self.store.create(
            incident_id,
            kind=finding.kind,
            subject_type=finding.subject_type,
            subject=finding.subject,
            fingerprint=finding.fingerprint,
            title=finding.title[:500],
            error=finding.error[:4000],
            diagnosis=finding.diagnosis,
            workflow_id=self.workflow_id(incident_id),
        )
        if not created:
            return None
        log.warning(
            "incident %s: %s (%s)",
            incident_id,
            finding.title,
            finding.error[:200],
            extra={"incident": incident_id, "kind": finding.kind},
        )
        return self.store.get(incident_id)

    async def _start_workflow(self, incident_id: str) -> None:
        from dbos import SetWorkflowID

        with SetWorkflowID(self.workflow_id(incident_id)):
            await DBOS.start_workflow_async(incident_workflow, incident_id)

    def _job_logs(self, job_id: str) -> tuple[str, str]:
        folder = self._ops.jobs.job_dir(job_id)
        out = []
        for name in ("stdout.log", "stderr.log"):
            path = folder / name
            try:
                with path.open("rb") as fh:
                    fh.seek(max(0, path.stat().st_size - 16_384))
                    out.append(fh.read().decode("utf-8", errors="replace"))
            except OSError:
                out.append("")
        return out[0], out[1]

    # -- deciding ---------------------------------------------------------------------------------------

    async def decide(self, incident_id: str) -> Decision:
        """The rule table's action; for a failure no rule knows, an earlier escalation of the same
        failure, else the model's (checked against the schema; a bad answer escalates)."""
        incident = await asyncio.to_thread(self.store.get, incident_id)
        decision = rule_for(incident.kind, incident.diagnosis, incident.attempts, self.limits)
        if decision is None and incident.attempts > 0:
            decision = Decision("escalate", incident.reason or "its healing action did not heal it")
        if decision is None:
            # An escalation because no model answered judged nothing: the same failure is asked about again.
            earlier = [
                i
                for i in self.store.same_failure(incident.fingerprint, incident.id)
                if i.state == "escalated" and i.decided_by != UNANSWERED
            ]
            if earlier:
                decision = Decision(
                    "escalate",
                    f"the same failure as incident {earlier[0].id}, escalated before",
                    {"duplicate_of": earlier[0].id},
                    "duplicate",
                )
        if decision is None:
            decision = await asyncio.to_thread(self._checked, incident, await self.ask_model(incident))
        await asyncio.to_thread(
            self.store.update,
            incident_id,
            "decided",
            decision.to_json(),
            action=decision.action,
            action_params=decision.params,
            decided_by=decision.decided_by,
            reason=decision.reason,
        )
        return decision

    async def ask_model(self, incident: IncidentRecord) -> Decision:
        from edgecrew.engine.routing import call_with_fallback

        alias = self.rt.settings.supervisor_model
        facts = {
            "kind": incident.kind,
            "what": incident.title,
            "error": incident.error,
            "diagnosis": incident.diagnosis,
        }
        text = json.dumps(facts, default=str)[:6000]
        request = ModelRequest(
            messages=(Message("system", SYSTEM), Message("user", text)),
            output_schema=ACTION_SCHEMA,
            max_tokens=256,
            temperature=0.0,
            metadata={"agent": "supervisor", "step": f"incident.{incident.id}", "run": incident.id},
        )
        try:
            routed = await call_with_fallback(
                self.rt.models,
                self.rt.pool,
                alias,
                request,
                self.rt.settings.supervisor_model_timeout_s,
                lambda _e: None,
            )
        except EdgecrewError as exc:
            return Decision("escalate", f"no model could decide (model '{alias}': {exc})", {}, UNANSWERED)
        if routed.response is None:
            return Decision("escalate", f"no model could decide (model '{alias}': {routed.error})", {}, UNANSWERED)
        answer = routed.response.message.content
        try:
            choice = parse_choice(answer)
        except ValueError as exc:
            return Decision(
                "escalate",
                f"the model's answer did not fit the schema ({exc}): {answer[:300]!r}",
                {"answer": answer[:1000]},
                "model",
            )
        return Decision(choice.action, choice.reason, choice.params, "model")

    def _checked(self, incident: IncidentRecord, decision: Decision) -> Decision:
        """A model's action, escalated when it cannot apply to this incident, its parameters are not
        the ones it takes (the ones refused are kept with the decision) or it passes the limits."""
        action, params = decision.action, dict(decision.params)
        if problem := param_problem(action, params):
            why = f"the model chose {action}, but {problem}"
            return replace(decision, action="escalate", params={"refused": params}, reason=why)
        if action in ("retry", "retry_with_more_memory", "fallback_model") and incident.subject_type not in (
            "job",
            "run",
        ):
            return replace(
                decision,
                action="escalate",
                reason=(
                    f"the model chose {action}, which {with_article(incident.subject_type)} does not allow"
                    f" ({decision.reason})"
                ),
            )
        if action == "retry_with_more_memory":
            if incident.subject_type != "job":
                return replace(
                    decision, action="escalate", reason=f"the model chose more memory for a {incident.subject_type}"
                )
            asked = int(params.get("memory_mb") or 0) * 2**20
            current = int(
                (incident.diagnosis.get("resources") or {}).get("memory_limit_bytes")
                or self.limits.default_memory_bytes
            )
            wanted = asked or int(current * self.limits.memory_factor)
            if wanted > self.limits.memory_cap_bytes:
                return replace(
                    decision,
                    action="change_memory_budget",
                    params={"memory_bytes": wanted},
                    reason=f"{decision.reason} (past the supervisor's memory cap: needs approval)",
                )
            return replace(decision, params={"memory_bytes": max(wanted, current + 2**20)})
        if action == "change_memory_budget" and params.get("memory_mb"):
            decision = replace(decision, params={"memory_bytes": int(params["memory_mb"]) * 2**20})
        if changes_team(incident, decision.action) and decision.action not in _ACTIONS:
            try:  # planned once, here: the approval shows this plan and the apply step applies it
                plan = self.reruns.plan(incident, decision.action, decision.params)
            except (Unfit, EdgecrewError) as exc:
                why_not: str | None = str(exc)
            else:
                return replace(decision, params={**decision.params, "plan": plan})
        else:
            why_not = self._cannot_apply(incident, decision.action)
        if why_not:  # escalate now rather than ask a person to approve what cannot be applied
            return replace(decision, action="escalate", reason=f"the model chose {decision.action}, but {why_not}")
        return decision

    def _cannot_apply(self, incident: IncidentRecord, action: str) -> str | None:
        """Why ``action`` (one that does not change the team) cannot be applied to this incident here
        (None: it can)."""
        if action == "escalate" or action in _ACTIONS:
            return None
        if action in ("retry", "retry_with_more_memory", "change_memory_budget"):
            ok = incident.subject_type in ("job", "run")
            return None if ok else f"{with_article(incident.subject_type)} cannot be run again ({incident.subject})"
        if action == "cancel":
            if incident.subject_type not in ("job", "run"):
                return f"{with_article(incident.subject_type)} cannot be cancelled"
            ended = self._ended(incident)
            return f"{incident.subject_type} {incident.subject} already {ended}: nothing to cancel" if ended else None
        if action == "restart_worker":
            return (
                "edgecrew cannot restart a worker process (it may run on another machine; no restart_worker "
                "handler is registered): a person must restart it"
            )
        return f"no {action} handler is registered for a {incident.subject_type}"

    def _ended(self, incident: IncidentRecord) -> str | None:
        """The state a job or run subject ended in (None: still going, or not found)."""
        try:
            if incident.subject_type == "job":
                job = self._ops.jobs.store.get(incident.subject)
                return job.state if job.finished else None
            run = self.rt.store.get_run(incident.subject)
        except NotFoundError:
            return None
        return run.status.value if run.status.terminal else None

    # -- applying ---------------------------------------------------------------------------------------

    async def apply(self, incident_id: str, decision: Decision) -> str | None:
        """Apply a safe action (or, from ``supervisor.apply``, an approved risky one): the follow-up to
        wait for, or None when the action is done. A follow-up run is recorded, not started: the
        incident's workflow starts it. Raises ToolError when the action cannot be applied."""
        incident = await asyncio.to_thread(self.store.get, incident_id)
        if await asyncio.to_thread(self._applied, incident_id):  # a replayed step (or tool call)
            return incident.follow_up
        attempt = incident.attempts + 1  # raised only with the "applied" event: the same on a replay
        params = dict(decision.params)
        follow_up: str | None
        if decision.action in _ACTIONS:
            follow_up = await _ACTIONS[decision.action](self, incident, params)
        elif changes_team(incident, decision.action):
            follow_up = await asyncio.to_thread(self.reruns.changed, incident, attempt, decision.action, params)
        elif decision.action in ("retry", "retry_with_more_memory", "change_memory_budget") and (
            incident.subject_type in ("job", "run")
        ):
            follow_up = await self.reruns.again(incident, attempt, params.get("memory_bytes"))
        elif decision.action == AWAIT_RECOVERY and incident.subject_type == "worker":
            follow_up = f"worker:{params.get('worker') or incident.diagnosis['worker']['id']}"
        elif decision.action == "cancel":
            follow_up = await asyncio.to_thread(self._cancel_subject, incident)
        else:
            raise ToolError(f"incident {incident.id}: no way to {decision.action} a {incident.subject_type} here")
        await asyncio.to_thread(
            self.store.update,
            incident_id,
            "applied",
            {"action": decision.action, "params": params, "follow_up": follow_up},
            only_from=("open", "healing"),
            state="healing",
            attempts=attempt,
            follow_up=follow_up,
        )
        return follow_up

    def _applied(self, incident_id: str) -> bool:
        """Whether the incident's last decision was applied already."""
        kinds = [e.kind for e in self.store.events(incident_id) if e.kind in ("decided", "applied")]
        return bool(kinds) and kinds[-1] == "applied"

    def _cancel_subject(self, incident: IncidentRecord) -> str | None:
        if incident.subject_type == "job":
            self._ops.jobs.cancel(incident.subject, by=f"supervisor:{incident.id}")
        elif incident.subject_type == "run":
            from edgecrew.engine.service import RunService

            RunService(self.rt).cancel(incident.subject)
        else:
            raise ToolError(f"incident {incident.id}: a {incident.subject_type} cannot be cancelled")
        return None

    async def follow(self, incident_id: str) -> Followed:
        """Wait for the incident's follow-up to end and judge it."""
        incident = await asyncio.to_thread(self.store.get, incident_id)
        if not incident.follow_up:
            return Followed(True, f"{incident.action} applied")
        what, _, ident = incident.follow_up.partition(":")
        if what == "worker":
            return await self._follow_worker(incident, ident)
        if what == "run":
            from edgecrew.engine.service import RunService

            run = await RunService(self.rt).follow(ident)
            # A model or budget change reruns the team changed: say so, a retry changes nothing.
            change = (incident.action_params or {}).get("plan", {}).get("change")
            rerun = f"its rerun with {change}" if change else "its retry"
            if run.status == RunStatus.SUCCEEDED:
                return Followed(True, f"{rerun}, run {ident}, succeeded")
            reason = f"{rerun}, run {ident}, {run.status.value}: {run.error or ''}".strip(": ")
            restored = await asyncio.to_thread(self.reruns.restore, incident)
            return Followed(False, f"{reason} ({restored})" if restored else reason)
        jobs = self._ops.jobs
        while not (job := await asyncio.to_thread(jobs.store.get, ident)).finished:
            await asyncio.sleep(FOLLOW_POLL_S)
        if job.state == "succeeded":
            return Followed(True, f"its retry, job {ident}, succeeded")
        _, stderr = await asyncio.to_thread(self._job_logs, ident)
        limit = int(job.needs.get("memory_bytes") or 0) or self.limits.default_memory_bytes
        peak = (job.usage or {}).get("peak_rss_bytes")
        kind = classify_job(job.reason or "", stderr, peak, limit)
        reason = f"its retry, job {ident}, {job.state}: {job.reason}"
        if kind == "oom" and incident.kind == "oom":  # the rules may try again with more
            diagnosis = dict(incident.diagnosis)
            diagnosis["resources"] = {
                **diagnosis.get("resources", {}),
                "memory_limit_bytes": limit,
                "peak_rss_bytes": peak,
            }
            diagnosis["retries"] = [
                *diagnosis.get("retries", []),
                {"job": ident, "memory_limit_bytes": limit, "reason": job.reason},
            ]
            await asyncio.to_thread(
                self.store.update, incident_id, "retry_failed", {"job": ident}, diagnosis=diagnosis, reason=reason
            )
            return Followed(False, reason, again=True)
        await asyncio.to_thread(
            self.store.update, incident_id, "retry_failed", {"job": ident, "stderr": stderr[-500:]}, reason=reason
        )
        return Followed(False, reason)

    async def _follow_worker(self, incident: IncidentRecord, worker_id: str) -> Followed:
        """Wait for a lost worker's failover (live workers recover its workflows) and judge it; the
        outcome (who recovered how many, the live workers) joins the incident's diagnosis."""
        s = self.rt.settings
        grace = max(s.cluster_lease_s, 3 * s.cluster_heartbeat_s)
        while True:
            rows = await asyncio.to_thread(self.store.workers) or []
            seen_from = self.workers_sight.patient_until
            outcome = worker_recovery(worker_id, rows, self.clock(), s.cluster_lease_s, grace, seen_from)
            if outcome is not None:
                break
            await asyncio.sleep(FOLLOW_POLL_S)
        detail = {"healed": outcome.healed, **outcome.recovery}
        diagnosis = {**incident.diagnosis, "recovery": outcome.recovery}
        await asyncio.to_thread(self.store.update, incident.id, "failover", detail, diagnosis=diagnosis)
        return Followed(outcome.healed, outcome.reason)

    # -- ending -----------------------------------------------------------------------------------------

    def healed(self, incident_id: str, reason: str) -> None:
        self.store.update(
            incident_id, "healed", {"reason": reason}, only_from=("open", "healing"), state="healed", reason=reason
        )
        log.info("incident %s healed: %s", incident_id, reason, extra={"incident": incident_id})

    async def escalate(self, incident_id: str, reason: str) -> str | None:
        """Leave the incident to a person: its regression case written (an earlier one of the same
        failure reused), the state escalated, a warning logged and the alert webhook told."""
        incident = await asyncio.to_thread(self.store.get, incident_id)
        if incident.ended:
            return incident.regression_path
        duplicate = (incident.action_params or {}).get("duplicate_of")
        path: str | None = None
        if duplicate:
            path = (await asyncio.to_thread(self.store.get, str(duplicate))).regression_path
        if path is None:
            case = regression_case(incident, reason)
            folder = self.regressions_dir()
            try:
                path = str(await asyncio.to_thread(write_regression, case, folder, incident.created_at))
            except OSError as exc:  # a project the server may not write to: escalate all the same
                reason += (
                    f" (its regression case could not be written in {folder}: {exc.strerror or exc};"
                    " set EDGECREW_SUPERVISOR_REGRESSIONS_DIR to a folder it may write)"
                )
        await asyncio.to_thread(
            self.store.update,
            incident_id,
            "escalated",
            {"reason": reason, "regression": path},
            only_from=("open", "healing"),
            state="escalated",
            reason=reason,
            regression_path=path,
        )
        log.warning(
            "incident %s escalated: %s (regression case %s)", incident_id, reason, path, extra={"incident": incident_id}
        )
        await self._announce(incident, reason, path)
        return path

    async def _announce(self, incident: IncidentRecord, reason: str, path: str | None) -> None:
        url = self.rt.settings.alert_webhook_url
        if not url:
            return
        payload = {
            "text": f"[incident] {incident.title}: escalated ({reason})",
            "incident": incident.id,
            "kind": incident.kind,
            "status": "escalated",
            "error": incident.error,
            "regression_case": path,
        }
        try:
            delivery = await self._ops.alerts._post(url, payload)
        except Exception as exc:  # a webhook must never fail the incident
            delivery = f"failed: {exc}"
        await asyncio.to_thread(self.store.note, incident.id, "announced", {"url": url, "delivery": delivery})

    # -- risky actions: a run of supervisor-action, held by the approval gate --------------------------

    def approval_run(self, incident_id: str) -> str:
        """Record the run that asks a person to approve the incident's risky action (once per attempt)."""
        from edgecrew.engine.service import RunService, TeamName

        incident = self.store.get(incident_id)
        task = (
            f"Apply {incident.action} to incident {incident.id} ({incident.title[:120]}): "
            f"{(incident.reason or '')[:300]}"
        )
        params = incident.action_params or {}
        if plan := params.get("plan"):  # what will change, as planned when it was decided
            task += f"\nChange: {plan['change']}"
        elif params.get("memory_bytes"):
            task += f"\nChange: run it again with {mib(int(params['memory_bytes']))} of memory"
        started = RunService(self.rt).record(
            TeamName(ACTION_TEAM),
            task,
            idempotency_key=f"incident:{incident.id}:approve#{incident.attempts + 1}",
            trigger={"kind": "supervisor", "incident": incident.id},
        )
        self.store.update(incident_id, "approval_requested", {"run": started.run.id}, approval_run=started.run.id)
        return started.run.id

    async def follow_approval(self, incident_id: str, run_id: str) -> Followed:
        from edgecrew.engine.approvals import ApprovalService
        from edgecrew.engine.service import RunService

        service = RunService(self.rt)
        while True:  # note the approval id as soon as the gate records it
            approvals = await asyncio.to_thread(ApprovalService(self.rt).list, None, run_id)
            if approvals:
                await asyncio.to_thread(self.store.update, incident_id, None, approval_id=approvals[0].id)
                break
            if (await asyncio.to_thread(service.get, run_id)).status.terminal:
                break
            await asyncio.sleep(FOLLOW_POLL_S)
        run = await service.follow(run_id)
        if run.status == RunStatus.SUCCEEDED:
            return Followed(True, f"approved and applied (run {run_id})")
        incident = await asyncio.to_thread(self.store.get, incident_id)
        decided = [
            a for a in await asyncio.to_thread(ApprovalService(self.rt).list, None, run_id) if a.status != "pending"
        ]
        if decided and decided[0].status == "denied":
            note = f": {decided[0].decision_note}" if decided[0].decision_note else ""
            return Followed(False, f"a person denied {incident.action} (approval {decided[0].id}){note}")
        return Followed(
            False,
            f"{incident.action} was not applied (run {run_id} {run.status.value}: {run.error or ''})".rstrip(": "),
        )


def _supervisor() -> Supervisor:
    from edgecrew.ops import Ops

    return Ops.of(durable.current_runtime()).supervisor


# -- the built-in watchers ---------------------------------------------------------------------------


def _watch_jobs(sup: Supervisor, since: float, now: float) -> list[Finding]:
    jobs = [j for j in sup.store.failed_jobs(since) if not (j.submitted_by or "").startswith("supervisor:")]
    known = sup.store.known_subjects("job", [j.id for j in jobs])
    jobs = [j for j in jobs if j.id not in known]
    logs = {j.id: sup._job_logs(j.id) for j in jobs}
    return job_findings(jobs, logs, sup.limits.default_memory_bytes)


def _watch_runs(sup: Supervisor, since: float, now: float) -> list[Finding]:
    runs = sup.store.failed_runs(since)
    known = sup.store.known_subjects("run", [str(r["id"]) for r in runs])
    runs = [r for r in runs if r["id"] not in known]
    events = {str(r["id"]): sup.rt.store.events(str(r["id"]), limit=500) for r in runs}
    return run_findings(runs, events)


def _watch_executions(sup: Supervisor, since: float, now: float) -> list[Finding]:
    return execution_findings(sup.store.failed_executions(since))


def _watch_models(sup: Supervisor, since: float, now: float) -> list[Finding]:
    window = max(since, now - MODEL_BUCKET_S * 2)
    calls = sup.store.run_events(["model_called"], window)
    return model_findings(calls, MODEL_BUCKET_S)


def _watch_tools(sup: Supervisor, since: float, now: float) -> list[Finding]:
    s = sup.rt.settings
    calls = sup.store.run_events(["tool_called"], now - s.supervisor_tool_window_s)
    return tool_findings(
        calls, now, s.supervisor_tool_window_s, s.supervisor_tool_error_rate, s.supervisor_tool_min_calls
    )


def _watch_workers(sup: Supervisor, since: float, now: float) -> list[Finding]:
    try:
        workers = sup.store.workers()
    except Exception:
        sup.workers_sight.failed = True
        raise
    if workers is None:  # no cluster table: nothing to watch
        return []
    s = sup.rt.settings
    lease = s.cluster_lease_s
    if (blind := sup.workers_sight.looked(now, lease, s.supervisor_interval_s)) is not None:
        log.warning(
            "the supervisor could not read the workers table for %.0fs (was the database out of reach?); it "
            "calls no silent worker lost for the next %.0fs, so the workers can renew their leases",
            blind,
            lease,
        )
    found = worker_findings(workers, now, lease, since)
    if sup.workers_sight.patient(now):  # only a worker a live one declared dead is lost meanwhile
        found = [f for f in found if f.diagnosis["worker"]["state"] == "dead"]
    return found


BUILTIN_WATCHERS: dict[str, Watcher] = {
    "jobs": _watch_jobs,
    "runs": _watch_runs,
    "executions": _watch_executions,
    "models": _watch_models,
    "tools": _watch_tools,
    "workers": _watch_workers,
}


# -- the incident workflow ---------------------------------------------------------------------------


@DBOS.step(name="edgecrew.incident_decide")
async def _decide_step(incident_id: str) -> dict[str, Any]:
    return (await _supervisor().decide(incident_id)).to_json()


@DBOS.step(name="edgecrew.incident_apply")
async def _apply_step(incident_id: str, decision: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"follow_up": await _supervisor().apply(incident_id, Decision.of(decision))}
    except EdgecrewError as exc:
        return {"error": f"{decision['action']} could not be applied: {exc}"}


@DBOS.step(name="edgecrew.incident_follow")
async def _follow_step(incident_id: str) -> dict[str, Any]:
    done = await _supervisor().follow(incident_id)
    return {"ok": done.ok, "reason": done.reason, "again": done.again}


@DBOS.step(name="edgecrew.incident_approval_run")
async def _approval_run_step(incident_id: str) -> dict[str, Any]:
    try:
        return {"run": await asyncio.to_thread(_supervisor().approval_run, incident_id)}
    except EdgecrewError as exc:
        return {"error": f"the approval could not be asked: {exc}"}


@DBOS.step(name="edgecrew.incident_follow_approval")
async def _follow_approval_step(incident_id: str, run_id: str) -> dict[str, Any]:
    done = await _supervisor().follow_approval(incident_id, run_id)
    return {"ok": done.ok, "reason": done.reason}


@DBOS.step(name="edgecrew.incident_follow_up")
async def _follow_up_step(incident_id: str) -> str | None:
    return (await asyncio.to_thread(_supervisor().get, incident_id)).follow_up


async def _start_follow_up(follow_up: str | None) -> None:
    """Start the run an action recorded, as this workflow's child (a step cannot start a workflow;
    a replay finds the child it started)."""
    if follow_up and follow_up.startswith("run:"):
        await durable.start_workflow(follow_up.removeprefix("run:"))


@DBOS.step(name="edgecrew.incident_healed")
async def _healed_step(incident_id: str, reason: str) -> None:
    await asyncio.to_thread(_supervisor().healed, incident_id, reason)


@DBOS.step(name="edgecrew.incident_escalate")
async def _escalate_step(incident_id: str, reason: str) -> str | None:
    return await _supervisor().escalate(incident_id, reason)


@DBOS.workflow(name=WORKFLOW)
async def incident_workflow(incident_id: str) -> str:
    """Heal one incident: decide, apply (a risky action through the approval gate), wait for the
    follow-up; decide again while the rules allow another attempt; escalate what is not healed."""
    while True:
        decision = await _decide_step(incident_id)
        if decision["action"] == "escalate":
            await _escalate_step(incident_id, decision["reason"])
            return "escalated"
        if Decision.of(decision).risky:
            asked = await _approval_run_step(incident_id)
            if "error" in asked:
                await _escalate_step(incident_id, asked["error"])
                return "escalated"
            await durable.start_workflow(asked["run"])
            approved = await _follow_approval_step(incident_id, asked["run"])
            if not approved["ok"]:
                await _escalate_step(incident_id, approved["reason"])
                return "escalated"
            await _start_follow_up(await _follow_up_step(incident_id))
        else:
            applied = await _apply_step(incident_id, decision)
            if "error" in applied:
                await _escalate_step(incident_id, applied["error"])
                return "escalated"
            await _start_follow_up(applied["follow_up"])
        followed = await _follow_step(incident_id)
        if followed["ok"]:
            await _healed_step(incident_id, followed["reason"])
            return "healed"
        if not followed["again"]:
            await _escalate_step(incident_id, followed["reason"])
            return "escalated"


# -- the risky tool ------------------------------------------------------------------------------------


def register_tools(registry: ToolRegistry, rt: Runtime | None = None) -> None:
    """Register ``supervisor.apply`` (risky: the approval gate holds it), bound to ``rt``."""
    from edgecrew.tools.base import spec_from_function

    async def apply(request: str) -> dict[str, Any]:
        """Apply the action a supervisor incident decided (named in the request: "... incident i<id> ...")."""
        if rt is None:
            raise ToolError("the supervisor is not open in this process (the tool is only listed here)")
        from edgecrew.ops import Ops

        found = re.search(r"\bincident (i[0-9a-f]{6,31})\b", request)
        if found is None:
            raise ToolError("name the incident: 'incident i<id>'")
        sup = Ops.of(rt).supervisor
        incident = await asyncio.to_thread(sup.get, found.group(1))
        if incident.action is None or incident.ended:
            raise ToolError(f"incident {incident.id} is {incident.state} with no action to apply")
        if incident.approval_run:  # what a person approved is what was asked, or nothing is applied
            asked = (await asyncio.to_thread(rt.store.get_run, incident.approval_run)).task
            if request.strip() != asked.strip():
                raise ToolError(
                    f"incident {incident.id}: its request was edited, but the supervisor applies only the action"
                    f" it planned, as it asked ({asked.splitlines()[-1]!r}); nothing was applied: do what you"
                    " meant by hand"
                )
        decision = Decision(
            incident.action, incident.reason or "", dict(incident.action_params or {}), incident.decided_by or "rule"
        )
        follow_up = await sup.apply(incident.id, decision)
        return {
            "summary": f"{incident.action} applied to {incident.subject_type} {incident.subject}",
            "follow_up": follow_up,
        }

    registry.register(spec_from_function(apply, name="supervisor.apply", timeout_s=120.0, risk="risky"))
