"""Run use cases shared by every entry point (CLI now, API and UI later): start, follow, resume, cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa

from edgecrew.domain.runs import EventType, RunStatus
from edgecrew.domain.specs import TeamSpec
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ConflictError, UserError
from edgecrew.store.repo import EventRecord, RunRecord, RunStore

if TYPE_CHECKING:
    from edgecrew.engine.durable import Recovery

EventCallback = Callable[[EventRecord], None]
_END_EVENTS = {EventType.RUN_FINISHED.value, EventType.RUN_CANCELLED.value}


class DuplicateRunError(Exception):
    """A run was already started under this idempotency key (not an error for the caller: a replay)."""

    def __init__(self, run: RunRecord) -> None:
        super().__init__(f"run {run.id} was already started with this idempotency key")
        self.run = run


async def watch_events(
    store: RunStore, run_id: str, after: int = 0, *, stop: anyio.Event | None = None, poll_s: float = 0.25
) -> AsyncIterator[list[EventRecord]]:
    """Batches of a run's new events (ids above ``after``), read off the store as they land, up to
    and including its end event; also ends a moment after the run is found ended (its end event
    follows the status), or when ``stop`` is set. Live streams (API and UI) read runs through this."""
    last, grace = after, 0
    while stop is None or not stop.is_set():
        run = await asyncio.to_thread(store.get_run, run_id)  # status first: see RunService.follow
        events = await asyncio.to_thread(store.events, run_id, after_id=last)
        if events:
            end = next((i for i, e in enumerate(events) if e.type in _END_EVENTS), None)
            last = events[-1].id
            yield events if end is None else events[: end + 1]
            if end is not None:
                return
        elif run.status.terminal:
            grace += 1
            if grace > 8:
                return
        if stop is None:
            await asyncio.sleep(poll_s)
        else:
            with anyio.move_on_after(poll_s):
                await stop.wait()


def new_run_id() -> str:
    return "r" + uuid.uuid4().hex[:15]


def _check_task(task: str) -> None:
    if not task.strip():
        raise UserError('the task is empty; say what the team should do, e.g. edgecrew run TEAM "..."')


class RunService:
    """Start, follow, resume and cancel team runs."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._dbos_client: Any = None

    def load_team(self, team: str) -> TeamSpec:
        return self.rt.load_team(team)

    async def start(
        self, team: str, task: str, *, request_id: str | None = None, idempotency_key: str | None = None
    ) -> tuple[str, Any]:
        """Validate the team, record the run and start its workflow; returns (run id, handle).

        ``request_id`` is recorded on the run and its events; a run recorded under ``idempotency_key``
        is created once: starting it again raises ``DuplicateRunError`` carrying the existing run.
        """
        _check_task(task)
        return await self.start_spec(self.load_team(team), task, request_id=request_id, idempotency_key=idempotency_key)

    async def start_spec(
        self, spec: TeamSpec, task: str, *, request_id: str | None = None, idempotency_key: str | None = None
    ) -> tuple[str, Any]:
        """Like :meth:`start`, for a team already built (a one-agent team made from an agent, say).

        The run snapshots ``spec.raw``, so the spec must be one the loader produced or validated.
        """
        from edgecrew.engine import durable
        from edgecrew.engine.executors import executor_id

        _check_task(task)
        if idempotency_key is not None:
            existing = self.rt.store.run_by_idempotency_key(idempotency_key)
            if existing is not None:
                raise DuplicateRunError(existing)
        run_id = new_run_id()
        workspace = self.rt.workspace(run_id)
        workspace.mkdir(parents=True, exist_ok=True)
        durable.launch(self.rt)
        try:
            self.rt.store.create_run(
                run_id,
                spec.name,
                task,
                spec.raw,
                str(workspace),
                project=str(self.rt.project.dir),
                executor=executor_id(),
                request_id=request_id,
                idempotency_key=idempotency_key,
            )
        except sa.exc.IntegrityError:  # a concurrent request with the same key won the race
            existing = self.rt.store.run_by_idempotency_key(idempotency_key or "")
            if existing is None:
                raise
            raise DuplicateRunError(existing) from None
        self.rt.store.emit(run_id, "run_created", EventType.RUN_CREATED, {"team": spec.name, "task": task})
        handle = await durable.start_workflow(run_id)
        return run_id, handle

    async def recover(self) -> Recovery:
        """Launch the durable engine and resume this project's runs left behind by dead processes."""
        from edgecrew.engine import durable

        durable.launch(self.rt)
        return await durable.recover_orphans(self.rt)

    async def resume(self, run_id: str) -> tuple[RunRecord, str, Recovery]:
        """Resume an interrupted run; returns the run, what happened, and what else was recovered."""
        from dbos import DBOS

        from edgecrew.engine import durable
        from edgecrew.engine.executors import executor_alive

        run = self.rt.store.get_run(run_id)
        if run.status.terminal:
            raise ConflictError(f"run {run.id} already {run.status.value}; only unfinished runs can be resumed")
        if run.project and Path(run.project) != self.rt.project.dir:
            raise UserError(
                f"run {run.id} belongs to project {run.project}; resume it there "
                f"(`edgecrew resume {run.id} -p {run.project}`)"
            )
        recovery = await self.recover()
        if run.id in recovery.adopted:
            return run, "resumed", recovery
        status = await durable.workflow_status(run.id)
        if status is None:
            await durable.start_workflow(run.id)
            return run, "resumed", recovery
        if status.status in ("PENDING", "ENQUEUED") and executor_alive(status.executor_id):
            return run, f"already running in process {status.executor_id}; following it", recovery
        if status.status in ("ERROR", "SUCCESS", "CANCELLED"):
            reason = f"its workflow ended ({status.status.lower()}) without finishing the run"
            self.rt.store.set_status(run.id, RunStatus.FAILED, error=reason)
            self.rt.store.emit(run.id, "run_finished", EventType.RUN_FINISHED, {"status": "failed", "error": reason})
            raise ConflictError(f"run {run.id} cannot be resumed: {reason}")
        await DBOS.resume_workflow_async(run.id)
        return run, "resumed", recovery

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run (it stops at its next step); works whether or not its process is alive."""
        from dbos._error import DBOSNonExistentWorkflowError

        run = self.rt.store.get_run(run_id)
        if run.status.terminal:
            raise ConflictError(f"run {run.id} already {run.status.value}; nothing to cancel")
        self.rt.store.set_status(run.id, RunStatus.CANCELLED, error="cancelled by user")
        self.rt.store.close_open_steps(run.id, "cancelled")
        self.rt.store.emit(run.id, "run_cancelled", EventType.RUN_CANCELLED, {"reason": "cancelled by user"})
        try:
            self._client().cancel_workflow(run.id)
        except DBOSNonExistentWorkflowError:
            pass  # no workflow yet: the store's status alone keeps it from starting
        finally:
            self.close()
        return self.rt.store.get_run(run.id)

    def workflow_state(self, run_id: str) -> tuple[str | None, str | None]:
        """(DBOS status, executor id) of a run's workflow, read without launching DBOS."""
        found = self._client().list_workflows(workflow_ids=[run_id], load_input=False, load_output=False)
        return (found[0].status, found[0].executor_id) if found else (None, None)

    def _client(self) -> Any:
        """One DBOS client per service (opening one costs an engine and a connection pool)."""
        if self._dbos_client is None:
            from dbos import DBOSClient

            self._dbos_client = DBOSClient(system_database_url=self.rt.settings.system_database_url)
        return self._dbos_client

    def close(self) -> None:
        if self._dbos_client is not None:
            self._dbos_client.destroy()
            self._dbos_client = None

    async def follow(
        self,
        run_id: str,
        on_event: EventCallback | None = None,
        *,
        after_id: int = 0,
        poll_s: float = 0.1,
        timeout_s: float | None = None,
        stop_when_orphaned: bool = False,
    ) -> RunRecord:
        """Stream a run's events from the store until it ends; returns the run as it is then.

        Every couple of seconds it also asks DBOS about the run's workflow: a workflow that ended
        without finishing the run marks it failed, and (with ``stop_when_orphaned``) a workflow
        whose process died stops the wait instead of waiting forever.
        """
        try:
            return await self._follow(run_id, on_event, after_id, poll_s, timeout_s, stop_when_orphaned)
        finally:
            self.close()

    async def _follow(
        self,
        run_id: str,
        on_event: EventCallback | None,
        after_id: int,
        poll_s: float,
        timeout_s: float | None,
        stop_when_orphaned: bool,
    ) -> RunRecord:
        from edgecrew.engine.executors import executor_alive

        last = after_id
        waited = 0.0
        grace = 0
        seen_end = False
        next_check = 2.0
        while True:
            # Read the status first: an end event written after this read is picked up next round.
            # The reads run in a thread: in the server many follows share one event loop.
            run = await asyncio.to_thread(self.rt.store.get_run, run_id)
            for event in await asyncio.to_thread(self.rt.store.events, run_id, after_id=last):
                last = event.id
                seen_end = seen_end or event.type in _END_EVENTS
                if on_event is not None:
                    on_event(event)
            if run.status.terminal:
                if seen_end or grace >= 20:
                    return run
                grace += 1
            elif waited >= next_check:
                next_check = waited + 2.0
                status, executor = await asyncio.to_thread(self.workflow_state, run_id)
                if status in ("ERROR", "SUCCESS", "CANCELLED"):
                    await asyncio.sleep(0.5)  # let a finishing workflow write its last rows first
                    if not self.rt.store.get_run(run_id).status.terminal:
                        reason = f"its workflow ended ({status.lower()}) without finishing the run"
                        self.rt.store.set_status(run_id, RunStatus.FAILED, error=reason)
                        self.rt.store.emit(
                            run_id, "run_finished", EventType.RUN_FINISHED, {"status": "failed", "error": reason}
                        )
                elif (
                    stop_when_orphaned and status in ("PENDING", None) and not executor_alive(executor or run.executor)
                ):
                    return run
            await asyncio.sleep(poll_s)
            waited += poll_s
            if timeout_s is not None and waited >= timeout_s:
                return run
