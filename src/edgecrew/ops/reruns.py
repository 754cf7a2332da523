"""How the supervisor runs a failed job or team run again: as it was (a job with more memory), or a
team run with a change (another model for the failing agent, a bigger model pool; the change itself is
chosen in :mod:`edgecrew.ops.remedies`).

The one design decision: a rerun is keyed by its incident and attempt (a job's ``submitted_by``, a
run's idempotency key), so a replayed step finds the rerun it made instead of making another; and a
run is only recorded here, never started: the incident's workflow starts it as its child, since a
DBOS step cannot start a workflow.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from edgecrew.domain.events import ModelCalled
from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import EdgecrewError, ToolError
from edgecrew.ops.incidents import failed_models
from edgecrew.ops.remedies import BudgetChange, ModelChange, Unfit, budget_change, model_change
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


class Reruns:
    """The supervisor's reruns of one runtime's failed jobs and runs."""

    def __init__(self, rt: Runtime, store: IncidentStore) -> None:
        self.rt = rt
        self.store = store

    @property
    def _jobs(self) -> JobService:
        from edgecrew.ops import Ops

        return Ops.of(self.rt).jobs

    async def again(self, incident: IncidentRecord, attempt: int, memory_bytes: Any) -> str:
        """Run the failed job (or run) again as it was, a job with ``memory_bytes`` when given."""
        tag = f"supervisor:{incident.id}#{attempt}"
        if incident.subject_type == "run" or incident.diagnosis.get("job", {}).get("kind") == "team":
            from edgecrew.engine.service import RunService, TeamName

            run = incident.diagnosis.get("run") or {}
            team = run.get("team") or incident.diagnosis["job"]["team"]
            task = run.get("task") or incident.diagnosis["job"]["task"]
            started = await asyncio.to_thread(
                RunService(self.rt).record,
                TeamName(str(team)),
                str(task),
                idempotency_key=f"incident:{tag}",
                trigger={"kind": "supervisor", "incident": incident.id},
            )
            return f"run:{started.run.id}"
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

    def why_not(self, incident: IncidentRecord, action: str, params: dict[str, Any]) -> str | None:
        """Why the change ``action`` cannot apply to the incident (None: it can)."""
        try:
            self.plan(incident, action, params)
        except (Unfit, EdgecrewError) as exc:
            return str(exc)
        return None

    def changed(self, incident: IncidentRecord, attempt: int, action: str, params: dict[str, Any]) -> str:
        """Apply the change and record the team's next run, whose trigger names the incident and the
        change. Raises ToolError saying why when the change cannot apply."""
        from edgecrew.engine.service import RunService

        key = f"incident:supervisor:{incident.id}#{attempt}"
        earlier = self.rt.store.run_by_idempotency_key(key)
        if earlier is not None:  # a replayed step: the change is made and its run recorded
            return f"run:{earlier.id}"
        try:
            snapshot, task, change = self.plan(incident, action, params)
        except Unfit as exc:
            raise ToolError(f"incident {incident.id}: {exc}") from None
        if isinstance(change, BudgetChange):
            self.rt.pool.resize(change.after)
            log.warning(
                "incident %s: %s (until this process restarts; EDGECREW_MODEL_MEMORY keeps it)",
                incident.id,
                change.describe(),
                extra={"incident": incident.id},
            )
        started = RunService(self.rt).record(
            team_from_snapshot(snapshot, source=f"incident {incident.id}"),
            task,
            idempotency_key=key,
            trigger={"kind": "supervisor", "incident": incident.id, "action": action, "change": change.describe()},
        )
        self.store.note(incident.id, "changed", {"change": change.describe(), "run": started.run.id})
        return f"run:{started.run.id}"

    def plan(
        self, incident: IncidentRecord, action: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], str, ModelChange | BudgetChange]:
        """The snapshot and task to run again and what changes (raises Unfit saying why it cannot)."""
        snapshot, task, run_id = self._subject_team(incident)
        if action == "change_memory_budget":
            from edgecrew.models.probe import PsutilProbe

            wanted = int(params.get("memory_bytes") or 0) or None
            machine = PsutilProbe().total_memory()
            remote = self.rt.settings.cluster_enabled
            return snapshot, task, budget_change(self.rt.pool.budget_bytes, wanted, machine=machine, remote=remote)
        failing: str | None = None
        failed: list[str] = []
        if run_id is not None:
            failing = next((s.agent for s in reversed(self.rt.store.steps(run_id)) if s.error), None)
            events = self.rt.store.events(run_id, limit=5000)
            failed = failed_models([e.payload for e in events if isinstance(e.payload, ModelCalled)])
        models = self.rt.models
        change = model_change(
            snapshot,
            action,
            str(params.get("model") or "") or None,
            failing_agent=failing,
            failed_models=failed,
            aliases=models.aliases(),
            candidates=models.candidates,
        )
        return change.snapshot, task, change

    def _subject_team(self, incident: IncidentRecord) -> tuple[dict[str, Any], str, str | None]:
        """The failed team's recorded snapshot, its task and its run (a team job that never started a
        run: its team as it is now, and no run)."""
        if incident.subject_type == "run":
            run = self.rt.store.get_run(incident.subject)
            return run.spec, run.task, run.id
        job = incident.diagnosis.get("job") or {}
        if incident.subject_type != "job" or job.get("kind") != "team":
            what = "a command" if incident.subject_type == "job" else f"a {incident.subject_type}"
            raise Unfit(f"{incident.subject_type} {incident.subject} is {what}, not a team run: it has no model")
        if job.get("run_id"):
            run = self.rt.store.get_run(str(job["run_id"]))
            return run.spec, run.task, run.id
        return dict(self.rt.load_named_team(str(job["team"])).raw), str(job["task"]), None
