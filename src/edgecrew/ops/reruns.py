"""How the supervisor runs a failed job or team run again: as it was (a job with more memory), or a
team run with a change (another model for the failing agent, a bigger model pool; the change itself is
chosen in :mod:`edgecrew.ops.remedies`).

The one design decision: a team is always rerun one way, from the snapshot its failed run recorded (never
the team's YAML as it is now), in the project that run worked in, keyed by its incident and the
decision's attempt (a job's ``submitted_by``, a run's idempotency key), so a replayed step finds the
rerun it made instead of making another; and a run is only recorded here, never started: the
incident's workflow starts it as its child, since a DBOS step cannot start a workflow. A change is
planned once, when the action is decided (:meth:`Reruns.plan`), and applied as planned.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from edgecrew.domain.events import ModelCalled, StepFinished
from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.domain.text import with_article
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ToolError
from edgecrew.ops.incidents import failed_models
from edgecrew.ops.remedies import (
    BudgetChange,
    ModelChange,
    Unfit,
    budget_as_planned,
    budget_change,
    model_change,
    model_change_as_planned,
)
from edgecrew.store.incidents import IncidentRecord, IncidentStore

if TYPE_CHECKING:
    from edgecrew.ops.jobs import JobService

__all__ = ["Reruns", "changes_team"]

log = logging.getLogger("edgecrew.supervisor")


def changes_team(incident: IncidentRecord, action: str) -> bool:
    """Whether ``action`` reruns the incident's team with a change: a model swap on any subject (an
    unfit one says why), a memory budget on a run or a team job (whose memory is the model pool's)."""
    if action in ("change_model", "fallback_model"):
        return True
    team_job = (incident.diagnosis.get("job") or {}).get("kind") == "team"
    return action == "change_memory_budget" and (incident.subject_type == "run" or team_job)


def _not_a_team_run(incident: IncidentRecord) -> str:
    """Why a model action cannot apply to an incident whose subject is no team run."""
    if incident.subject_type == "model":  # its subject is 'alias@time bucket': name the alias
        alias = incident.diagnosis.get("model") or incident.subject.rpartition("@")[0]
        return (
            f"this incident is about model '{alias}' itself ({incident.title}), not a team run: there is no"
            " agent whose model to change (a run that failed on it is an incident of its own)"
        )
    what = "a command" if incident.subject_type == "job" else with_article(incident.subject_type)
    return f"{incident.subject_type} {incident.subject} is {what}, not a team run: it has no model"


def _reruns_team(incident: IncidentRecord) -> bool:
    return incident.subject_type == "run" or (incident.diagnosis.get("job") or {}).get("kind") == "team"


@dataclass(frozen=True)
class _Subject:
    """The failed team as it ran: its recorded snapshot, task, run and the project that run worked in."""

    snapshot: dict[str, Any]
    task: str
    run_id: str | None
    project: str | None


class Reruns:
    """The supervisor's reruns of one runtime's failed jobs and runs."""

    def __init__(self, rt: Runtime, store: IncidentStore) -> None:
        self.rt = rt
        self.store = store

    @property
    def _jobs(self) -> JobService:
        from edgecrew.ops import Ops

        return Ops.of(self.rt).jobs

    def key(self, incident: IncidentRecord, attempt: int) -> str:
        """The rerun's key: the incident and the attempt its decision makes (``Supervisor.apply`` returns
        the follow-up it made when a decision is applied again, so the attempt is the same on a replay)."""
        return f"supervisor:{incident.id}#{attempt}"

    async def again(self, incident: IncidentRecord, attempt: int, memory_bytes: Any) -> str:
        """Run the failed job (or run) again as it was, a job with ``memory_bytes`` when given."""
        tag = self.key(incident, attempt)
        if _reruns_team(incident):
            subject = await asyncio.to_thread(self._subject_team, incident)
            trigger = {"kind": "supervisor", "incident": incident.id}
            return await asyncio.to_thread(self._record, incident, attempt, subject, subject.snapshot, trigger)
        jobs = self._jobs
        for earlier in await asyncio.to_thread(jobs.store.list_jobs, limit=500):
            if earlier.submitted_by == tag:
                return f"job:{earlier.id}"
        from edgecrew.ops.jobs import JobNeeds

        job = jobs.store.get(incident.subject)
        needs = JobNeeds.of(job.needs)
        if memory_bytes:
            needs = replace(needs, memory_bytes=int(memory_bytes))
        retry = await jobs.submit(
            argv=job.argv,
            name=job.name,
            sandbox=job.sandbox,
            needs=needs,
            priority=job.priority,
            tags=job.tags,
            submitted_by=tag,
        )
        return f"job:{retry.id}"

    def plan(self, incident: IncidentRecord, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """The change ``action`` makes, planned now to be stored with the decision, shown to whoever
        approves it and applied as it is by :meth:`changed` (raises Unfit, or EdgecrewError, saying why
        it cannot apply)."""
        return self._change(incident, self._subject_team(incident), action, params).plan()

    def changed(self, incident: IncidentRecord, attempt: int, action: str, params: dict[str, Any]) -> str:
        """Apply the change planned with the decision (``params["plan"]``), checked again, and record
        the team's next run, whose trigger names the incident and the change. Raises ToolError saying
        why when the change cannot apply (any more)."""
        key = self.key(incident, attempt)
        replayed = self.rt.store.run_by_idempotency_key(f"incident:{key}") is not None
        try:
            subject = self._subject_team(incident)
            change = self._as_planned(incident, subject, action, params, replayed=replayed)
        except Unfit as exc:
            raise ToolError(f"incident {incident.id}: {exc}") from None
        trigger = {"kind": "supervisor", "incident": incident.id, "action": action, "change": change.describe()}
        snapshot = change.snapshot if isinstance(change, ModelChange) else subject.snapshot
        # Recorded before the budget changes: a run that cannot be recorded leaves the pool as it was.
        follow_up = self._record(incident, attempt, subject, snapshot, trigger)
        if isinstance(change, BudgetChange) and self.rt.pool.budget_bytes != change.after:
            self.rt.pool.resize(change.after)
            log.warning(
                "incident %s: %s (until this process restarts; EDGECREW_MODEL_MEMORY keeps it)",
                incident.id,
                change.describe(),
                extra={"incident": incident.id},
            )
        if not replayed:
            self.store.note(
                incident.id, "changed", {"change": change.describe(), "run": follow_up.removeprefix("run:")}
            )
        return follow_up

    def restore(self, incident: IncidentRecord) -> str | None:
        """Put the model pool's budget back after a ``change_memory_budget`` whose rerun did not succeed
        (unless something else changed it since): what was done, or None."""
        planned = ((incident.action_params or {}).get("plan") or {}).get("budget")
        if incident.action != "change_memory_budget" or not planned:
            return None
        before, after = (int(n) for n in planned)
        if self.rt.pool.budget_bytes != after:
            return None
        self.rt.pool.resize(before)
        restored = BudgetChange(after, before).describe()
        self.store.note(incident.id, "restored", {"change": restored})
        log.warning(
            "incident %s: %s (its rerun did not succeed)", incident.id, restored, extra={"incident": incident.id}
        )
        return restored

    def _record(
        self,
        incident: IncidentRecord,
        attempt: int,
        subject: _Subject,
        snapshot: dict[str, Any],
        trigger: dict[str, Any],
    ) -> str:
        """Record the team's rerun (queued: the incident's workflow starts it): ``run:<id>``. A chat
        message's run is rerun for that message: the session's turn names the rerun (see
        :meth:`ChatSessions.answer_with`), so its answer comes back to the chat."""
        from edgecrew.engine.service import RunService
        from edgecrew.engine.sessions import ChatSessions

        runs = RunService(self.rt)
        started = runs.record(
            team_from_snapshot(snapshot, source=f"incident {incident.id}"),
            subject.task,
            idempotency_key=f"incident:{self.key(incident, attempt)}",
            trigger=trigger,
            project=subject.project,
        )
        if subject.run_id is not None:
            ChatSessions(runs).answer_with(self.rt.store.get_run(subject.run_id), started.run)
        return f"run:{started.run.id}"

    def _as_planned(
        self, incident: IncidentRecord, subject: _Subject, action: str, params: dict[str, Any], *, replayed: bool
    ) -> ModelChange | BudgetChange:
        """The change stored with the decision, checked again; planned now for a decision stored
        without one (made before plans were stored)."""
        plan = params.get("plan")
        if not plan:
            return self._change(incident, subject, action, params)
        if "budget" in plan:
            before, after = (int(n) for n in plan["budget"])
            planned = BudgetChange(before, after)
            if replayed:  # the run is recorded and the pool may be resized already: only finish it
                return planned
            return budget_as_planned(planned, self.rt.pool.budget_bytes, **self._machine())
        return model_change_as_planned(subject.snapshot, plan.get("swap") or {}, aliases=self.rt.models.aliases())

    def _machine(self) -> dict[str, Any]:
        from edgecrew.models.probe import PsutilProbe

        return {"machine": PsutilProbe().total_memory(), "remote": self.rt.settings.cluster_enabled}

    def _change(
        self, incident: IncidentRecord, subject: _Subject, action: str, params: dict[str, Any]
    ) -> ModelChange | BudgetChange:
        """What ``action`` changes in the failed team (raises Unfit saying why it cannot)."""
        if action == "change_memory_budget":
            wanted = int(params.get("memory_bytes") or 0) or None
            return budget_change(self.rt.pool.budget_bytes, wanted, **self._machine())
        failing, failed = self._failure(incident, subject.run_id)
        models = self.rt.models
        return model_change(
            subject.snapshot,
            action,
            str(params.get("model") or "") or None,
            failing_agent=failing,
            failed_models=failed,
            aliases=models.aliases(),
            candidates=models.candidates,
        )

    def _failure(self, incident: IncidentRecord, run_id: str | None) -> tuple[str | None, list[str]]:
        """The failing agent and the models that failed: the diagnosis' (a run's incident), else read
        from the team job's run."""
        diagnosis = incident.diagnosis
        if "failing_agent" in diagnosis:
            return diagnosis.get("failing_agent"), list(diagnosis.get("failed_models") or [])
        if run_id is None:
            return None, []
        events = self.rt.store.events(run_id, limit=5000)
        failing = next(
            (e.agent for e in reversed(events) if isinstance(e.payload, StepFinished) and e.payload.error),
            None,
        )
        return failing, failed_models([e.payload for e in events if isinstance(e.payload, ModelCalled)])

    def _subject_team(self, incident: IncidentRecord) -> _Subject:
        """The failed team's recorded snapshot, its task, its run and that run's project (a team job that
        never started a run: its team as it is now, and no run)."""
        run_id: str | None = None
        if incident.subject_type == "run":
            run_id = incident.subject
        else:
            job = incident.diagnosis.get("job") or {}
            if incident.subject_type != "job" or job.get("kind") != "team":
                raise Unfit(_not_a_team_run(incident))
            if not job.get("run_id"):
                return _Subject(dict(self.rt.load_named_team(str(job["team"])).raw), str(job["task"]), None, None)
            run_id = str(job["run_id"])
        from edgecrew.projects import ProjectService

        run = self.rt.store.get_run(run_id)
        return _Subject(run.spec, run.task, run.id, ProjectService.of(self.rt).project_id_of_run(run.id))
