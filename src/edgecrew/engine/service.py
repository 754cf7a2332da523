"""Run use cases shared by every entry point (CLI now, API and UI later): start, follow, resume, cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from edgecrew.domain.runs import EventType, RunStatus
from edgecrew.domain.specs import TeamSpec
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import UserError
from edgecrew.store.repo import EventRecord, RunRecord

EventCallback = Callable[[EventRecord], None]
_END_EVENTS = {EventType.RUN_FINISHED.value, EventType.RUN_CANCELLED.value}


def new_run_id() -> str:
    return "r" + uuid.uuid4().hex[:15]


class RunService:
    """Start, follow, resume and cancel team runs."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def load_team(self, team: str) -> TeamSpec:
        return self.rt.load_team(team)

    async def start(self, team: str, task: str) -> tuple[str, Any]:
        """Validate the team, record the run and start its workflow; returns (run id, handle)."""
        from edgecrew.engine import durable

        if not task.strip():
            raise UserError('the task is empty; say what the team should do, e.g. edgecrew run TEAM "..."')
        spec = self.load_team(team)
        run_id = new_run_id()
        workspace = self.rt.workspace(run_id)
        workspace.mkdir(parents=True, exist_ok=True)
        self.rt.store.create_run(run_id, spec.name, task, spec.raw, str(workspace))
        self.rt.store.emit(run_id, "run_created", EventType.RUN_CREATED, {"team": spec.name, "task": task})
        durable.launch(self.rt)
        handle = await durable.start_workflow(run_id)
        return run_id, handle

    async def recover(self) -> list[str]:
        """Launch the durable engine and resume runs left behind by dead processes."""
        from edgecrew.engine import durable

        durable.launch(self.rt)
        return await durable.recover_orphans(self.rt)

    async def resume(self, run_id: str) -> tuple[RunRecord, str]:
        """Resume an interrupted run; returns the run and what happened (resumed / already running)."""
        from dbos import DBOS

        from edgecrew.engine import durable

        run = self.rt.store.get_run(run_id)
        if run.status.terminal:
            raise UserError(f"run {run.id} already {run.status.value}; only unfinished runs can be resumed")
        recovered = await self.recover()
        if run.id in recovered:
            return run, "resumed"
        status = await durable.workflow_status(run.id)
        if status is None:
            await durable.start_workflow(run.id)
            return run, "resumed"
        if status.status in ("PENDING", "ENQUEUED"):
            return run, f"already running (executor {status.executor_id})"
        await DBOS.resume_workflow_async(run.id)
        return run, "resumed"

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run (it stops at its next step); works whether or not its process is alive."""
        from dbos import DBOSClient

        run = self.rt.store.get_run(run_id)
        if run.status.terminal:
            raise UserError(f"run {run.id} already {run.status.value}; nothing to cancel")
        self.rt.store.set_status(run.id, RunStatus.CANCELLED, error="cancelled by user")
        self.rt.store.emit(run.id, "run_cancelled", EventType.RUN_CANCELLED, {"reason": "cancelled by user"})
        client = DBOSClient(system_database_url=self.rt.settings.system_database_url)
        try:
            client.cancel_workflow(run.id)
        except Exception as exc:  # no workflow yet: the store status alone keeps it from starting
            if "not found" not in str(exc).lower() and "nonexistent" not in type(exc).__name__.lower():
                raise
        finally:
            client.destroy()
        return self.rt.store.get_run(run.id)

    async def follow(
        self,
        run_id: str,
        on_event: EventCallback | None = None,
        *,
        after_id: int = 0,
        poll_s: float = 0.1,
        timeout_s: float | None = None,
    ) -> RunRecord:
        """Stream a run's events from the store until it ends; returns the finished run."""
        last = after_id
        waited = 0.0
        grace = 0
        seen_end = False
        while True:
            # Read the status first: an end event written after this read is picked up next round.
            run = self.rt.store.get_run(run_id)
            for event in self.rt.store.events(run_id, after_id=last):
                last = event.id
                seen_end = seen_end or event.type in _END_EVENTS
                if on_event is not None:
                    on_event(event)
            if run.status.terminal:
                if seen_end or grace >= 20:
                    return run
                grace += 1
            await asyncio.sleep(poll_s)
            waited += poll_s
            if timeout_s is not None and waited >= timeout_s:
                return run
