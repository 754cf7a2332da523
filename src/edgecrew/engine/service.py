"""The runs use case: the one way every entry point starts, follows, ends, cancels, resumes and reads runs.

CLI, TUI, API, UI, ``/v1``, MCP, A2A, routines and jobs all go through :class:`RunService`, so
there is one idempotency rule (decided in :meth:`RunService.start`), one event stream
(:meth:`RunService.events`, which also notices a workflow that died without finishing its run) and
one "run to the end" (:meth:`RunService.run`). The one design decision: a team is named by a type
that says where it may come from: :class:`TeamName` (a project or built-in team: what network callers
may name), :class:`TeamFile` (a YAML file: the CLI only), or a :class:`TeamSpec` already built (a
chat's one-agent team).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import anyio
import sqlalchemy as sa

from edgecrew.domain.checklist import Checklist, checklist
from edgecrew.domain.events import EventRecord, RunCancelled, RunCreated, RunFinished
from edgecrew.domain.runs import EventType, Outcome, RunStatus
from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.domain.specs import TeamSpec
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ConflictError, IdempotencyKeyReused, NotFoundError, SpecIssue, UserError, worded
from edgecrew.projects import ProjectService
from edgecrew.store.feedback import FeedbackRecord, FeedbackStore
from edgecrew.store.repo import EventListener, RunRecord, StepRecord

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from edgecrew.engine.durable import Recovery

EventCallback = Callable[[EventRecord], None]
_WORKFLOW_CHECK_S = 2.0  # how often a stream asks DBOS whether a live run's workflow still exists
_END_GRACE_S = 2.0  # a run found ended gets this long for its end event to land
_IN_FLIGHT_GRACE_S = 30.0  # after a cancel, the most a stream waits for the ends of the steps in flight


@dataclass(frozen=True)
class TeamName:
    """A team of the project or a built-in one, by name: never a path, whoever sends it."""

    name: str


@dataclass(frozen=True)
class TeamFile:
    """A team YAML file on disk; only the CLI names teams this way."""

    path: Path


TeamRef = TeamName | TeamFile | TeamSpec


class StartOptions(TypedDict, total=False):
    """What :meth:`RunService.start` passes on to :meth:`RunService.record` (see there)."""

    request_id: str | None
    idempotency_key: str | None
    trigger: dict[str, Any] | None
    project: str | None


class RunFilter(TypedDict, total=False):
    """Which runs :meth:`RunService.list_runs` and :meth:`RunService.count_runs` read."""

    status: str | None
    team: str | None
    text: str | None  # whose task, output or events' data contains it (any case)
    agent: str | None  # that have a step of this agent
    model: str | None  # that called this model alias
    since: float | None  # created at or after (epoch seconds)
    until: float | None  # created before (epoch seconds)


@dataclass(frozen=True)
class Started:
    """A run that :meth:`RunService.start` began, or found again under its idempotency key."""

    run: RunRecord
    created: bool  # False: a retry with the same key; ``run`` is the first one
    handle: Any = None  # the workflow's handle when this process started it
    warning: str | None = None  # why the run may wait (no live worker on a cluster's queue), for the person
    # What the team's spec may fail at later (`edgecrew validate`'s warnings): each way in shows them.
    spec_warnings: tuple[SpecIssue, ...] = ()

    @property
    def notices(self) -> list[str]:
        """Every warning for whoever started the run, one line each: the queue's, then the spec's."""
        return ([self.warning] if self.warning else []) + [" ".join(str(i).split()) for i in self.spec_warnings]


@dataclass(frozen=True)
class RunUsage:
    """What a run used, summed over its agent steps."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0

    @classmethod
    def of(cls, steps: Sequence[StepRecord]) -> RunUsage:
        return cls(
            sum(s.prompt_tokens for s in steps),
            sum(s.completion_tokens for s in steps),
            sum(s.model_calls for s in steps),
            sum(s.tool_calls for s in steps),
        )


@dataclass(frozen=True)
class RunSummary:
    """A run as it ended, with its usage."""

    run: RunRecord
    usage: RunUsage

    @property
    def ok(self) -> bool:
        return self.run.status == RunStatus.SUCCEEDED


def new_run_id() -> str:
    return "r" + uuid.uuid4().hex[:15]


# A task needs one visible character: neither whitespace (in Python's, Unicode's or ECMAScript's
# sense, which differ) nor a control character. The API's schema carries the same pattern.
TASK_PATTERN = worded(r"[^\s\x00-\x1f\x7f-\x9f\ufeff]", "text that says something (not blank)")
# Characters of a task a person gives (POST /runs, a job's team task, a chat or /v1 message): the one
# limit every way in declares. A chat's run task adds earlier turns in front, so it may be longer.
TASK_MAX_CHARS = 20_000


def _check_task(task: str) -> None:
    if re.search(TASK_PATTERN, task) is None:
        raise UserError("the task is empty; say what the team should do (e.g. 'summarise the README')")


def require_project(spec: TeamSpec, project: object | None) -> None:
    """Refuse a team that says ``needs_project: true`` where no project is given (a run, a chat session)."""
    if project is None and spec.needs_project:
        raise UserError(
            f"team '{spec.name}' works in a project (needs_project: true) and none was given: start it in one"
            f" (`edgecrew run {spec.name} TASK --in NAME`, `--in` of `edgecrew chat`, `project` in POST /runs or"
            " POST /sessions, a routine's `project:`); `edgecrew projects list` shows them, `edgecrew projects"
            " create NAME` makes one"
        )


class RunService:
    """Start, follow, run to the end, resume, cancel and read team runs."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._dbos_client: Any = None

    # -- start ---------------------------------------------------------------------------------------

    def load_team(self, team: TeamRef) -> TeamSpec:
        """The validated team a reference names (SpecError / NotFoundError say why not)."""
        if isinstance(team, TeamSpec):
            return team
        if isinstance(team, TeamFile):
            return self.rt.load_team(str(team.path))
        return self.rt.load_named_team(team.name)

    async def start(self, team: TeamRef, task: str, **options: Unpack[StartOptions]) -> Started:
        """Validate the team, record the run (:meth:`record`, which takes the same ``options``) and start
        its workflow. A new run's ``warning`` says why it may wait (the runtime's ``queue_check``: a
        cluster queue no live worker serves), for whichever way in started it to show."""
        from edgecrew.engine import durable

        # Asked before the run is queued: a worker that starts meanwhile would take it, not keep it waiting.
        check = self.rt.queue_check
        warning = check() if check is not None else None  # a short read, synchronous as in record()
        started = self.record(team, task, **options)
        if not started.created:
            return started
        handle = await durable.start_workflow(started.run.id)
        if warning:  # info: each way in shows it to whoever started the run (the CLI printed it twice)
            log.info("run %s: %s", started.run.id, warning, extra={"run": started.run.id})
        return Started(started.run, True, handle, warning, started.spec_warnings)

    def record(
        self,
        team: TeamRef,
        task: str,
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        trigger: dict[str, Any] | None = None,
        project: str | None = None,
    ) -> Started:
        """The first half of :meth:`start`: validate and record the run (queued), without starting its
        workflow. A workflow that starts runs (a routine's firing) records the run, then starts the
        run's workflow as its child, so a replay finds both again instead of making a second run.

        A run recorded under ``idempotency_key`` is created once: the same key with the same team and
        task finds it again (``created`` False, before the team is even loaded); with another team or
        task it raises :class:`IdempotencyKeyReused`. ``request_id`` is recorded on the run and its events;
        ``trigger`` says what started it when no person did (a routine's firing, a job); ``project`` (a
        project's name or id) is the project the run works in: its files at ``project/``, its memory.
        The run snapshots the spec's ``raw``, so a TeamSpec must come from the loader.
        """
        from edgecrew.engine import durable
        from edgecrew.engine.executors import executor_id

        _check_task(task)
        # Synchronous on purpose: these are short reads (team files are cached by mtime), and a thread
        # hop here would fail in a loop whose executor DBOS shut down (a relaunch in the same loop).
        if idempotency_key is not None and not isinstance(team, TeamFile):
            earlier = self.rt.store.run_by_idempotency_key(idempotency_key)
            if earlier is not None:
                return _retry(earlier, team.name, task)
        spec = self.load_team(team)
        # A project (name or id) the run works in: checked before anything is written (NotFoundError).
        works_in = ProjectService.of(self.rt).get(project) if project else None
        require_project(spec, works_in)
        if idempotency_key is not None:
            earlier = self.rt.store.run_by_idempotency_key(idempotency_key)
            if earlier is not None:
                return _retry(earlier, spec.name, task)
        run_id = new_run_id()
        workspace = self.rt.workspace(run_id)
        workspace.mkdir(parents=True, exist_ok=True)
        if trigger is not None and trigger.get("kind") == "from_step":  # the copied steps' files too
            self._copy_workspace(str(trigger["run"]), workspace)
        durable.launch(self.rt)
        try:
            with self.rt.store.transaction():  # the run and its first event: one commit
                run = self.rt.store.create_run(
                    run_id,
                    spec.name,
                    task,
                    spec.raw,
                    str(workspace),
                    project=str(self.rt.project.dir),
                    executor=executor_id(),
                    request_id=request_id,
                    idempotency_key=idempotency_key,
                    trigger=trigger,
                )
                self.rt.store.emit(run_id, "run_created", RunCreated(team=spec.name, task=task))
        except sa.exc.IntegrityError:  # a concurrent request with the same key won the race
            earlier = self.rt.store.run_by_idempotency_key(idempotency_key or "")
            if earlier is None:
                raise
            return _retry(earlier, spec.name, task)
        if works_in is not None:  # its files at workspace/project, its id on the run (project_runs)
            ProjectService.of(self.rt).attach_run(run_id, works_in.id, workspace)
        return Started(run, True, spec_warnings=spec.warnings)

    def _copy_workspace(self, run_id: str, workspace: Path) -> None:
        """Copy run ``run_id``'s files, as they are now, into a new run's ``workspace``: a run from one of
        its steps works on what the steps before it wrote (platform-copilot's deploy, its manifests)."""
        source = self.rt.store.get_run(run_id).workspace
        if source and Path(source).is_dir():
            shutil.copytree(source, workspace, symlinks=True, dirs_exist_ok=True)

    async def run(
        self,
        team: TeamRef,
        task: str,
        on_event: EventCallback | None = None,
        *,
        request_id: str | None = None,
        project: str | None = None,
        stop_when_waiting: bool = False,
    ) -> RunSummary:
        """Start a run and follow it to its end: its final state, output and usage. With
        ``stop_when_waiting`` it answers as soon as the run waits for an approval (status
        ``waiting_approval``; its workflow goes on in this process once a person decides)."""
        started = await self.start(team, task, request_id=request_id, project=project)
        return await self.finish(started, on_event, stop_when_waiting=stop_when_waiting)

    async def finish(
        self,
        started: Started,
        on_event: EventCallback | None = None,
        *,
        after_id: int = 0,
        stop_when_waiting: bool = False,
    ) -> RunSummary:
        """Follow a started run to its end (or, with ``stop_when_waiting``, until it waits for an
        approval), let its workflow record completion, and sum its usage."""
        final = await self.follow(started.run.id, on_event, after_id=after_id, stop_when_waiting=stop_when_waiting)
        if final.status != RunStatus.WAITING_APPROVAL or not stop_when_waiting:  # a waiting one goes on
            await settle(started.handle)
        return await self.summary(final.id)

    async def summary(self, run_id: str) -> RunSummary:
        """A run as it is now, with its usage."""
        run = await asyncio.to_thread(self.rt.store.get_run, run_id)
        return RunSummary(run, RunUsage.of(await asyncio.to_thread(self.rt.store.steps, run.id)))

    # -- follow --------------------------------------------------------------------------------------

    async def events(
        self,
        run_id: str,
        after: int = 0,
        *,
        stop: anyio.Event | None = None,
        poll_s: float = 0.25,
        stop_when_orphaned: bool = False,
        stop_when_waiting: bool = False,
    ) -> AsyncIterator[list[EventRecord]]:
        """Batches of a run's new events (ids above ``after``) as they land, up to and including its end.

        Every reader of a live run (SSE, UI, CLI, ``/v1``, MCP) reads it through this stream. Every
        couple of seconds it also asks DBOS about the run's workflow: one that ended without
        finishing the run marks the run failed (so the stream ends); with ``stop_when_orphaned`` a
        workflow whose process died ends the stream instead of waiting for someone to resume it.
        It also ends when ``stop`` is set, and with ``stop_when_waiting`` once the run waits for an
        approval (after the batch that holds its ``approval_requested``).

        The end is ``run_finished``, or ``run_cancelled`` followed by the ends of the steps it caught
        in flight: the cancel is written first, and a step's call under way finishes (or the step stops
        at its next call) after it. The stream waits for those while the workflow's process lives, for
        at most ``_IN_FLIGHT_GRACE_S``; a run cancelled with no step open ends at once.
        """
        last, waited, next_check, ended_at = after, 0.0, _WORKFLOW_CHECK_S, None
        in_flight: set[str] | None = None  # once the run is cancelled: its steps still at work
        give_up = float("inf")  # ... waited for until then at most
        try:
            while stop is None or not stop.is_set():
                # Status first: an end event written after this read is picked up next round.
                run = await asyncio.to_thread(self.rt.store.get_run, run_id)
                events = await asyncio.to_thread(self.rt.store.events, run_id, after_id=last)
                if events:
                    end = next((i for i, e in enumerate(events) if e.type == EventType.RUN_FINISHED), None)
                    last = events[-1].id
                    yield events if end is None else events[: end + 1]
                    if end is not None:
                        return
                    if in_flight is not None:
                        _track_steps(in_flight, events)
                    elif any(e.type == EventType.RUN_CANCELLED for e in events):
                        in_flight = await asyncio.to_thread(self._open_steps, run_id)
                        give_up, next_check = waited + _IN_FLIGHT_GRACE_S, waited
                if in_flight is not None:
                    if not in_flight or waited >= give_up:
                        return
                    if waited >= next_check:
                        next_check = waited + _WORKFLOW_CHECK_S
                        if not await self._workflow_process_alive(run):
                            return
                elif run.status.terminal:
                    ended_at = waited if ended_at is None else ended_at
                    if waited - ended_at >= _END_GRACE_S:
                        if run.status != RunStatus.CANCELLED:
                            return
                        # Its run_cancelled came before ``after`` (a stream resumed after it): as above.
                        in_flight = await asyncio.to_thread(self._open_steps, run_id)
                        give_up, next_check = waited + _IN_FLIGHT_GRACE_S, waited
                        continue
                elif stop_when_waiting and run.status == RunStatus.WAITING_APPROVAL:
                    return  # read before this round's events, so they hold its approval_requested
                elif waited >= next_check:
                    next_check = waited + _WORKFLOW_CHECK_S
                    if await self._workflow_gone(run, stop_when_orphaned):
                        return
                await _pause(poll_s, stop)
                waited += poll_s
        finally:
            self.close()

    async def follow(
        self,
        run_id: str,
        on_event: EventCallback | None = None,
        *,
        after_id: int = 0,
        poll_s: float = 0.1,
        stop_when_orphaned: bool = False,
        stop_when_waiting: bool = False,
        timeout_s: float | None = None,
    ) -> RunRecord:
        """Read the run's events until it ends (see :meth:`events`), or for at most ``timeout_s``;
        returns the run as it is then."""
        with anyio.move_on_after(timeout_s if timeout_s is not None else float("inf")):
            async for batch in self.events(
                run_id,
                after_id,
                poll_s=poll_s,
                stop_when_orphaned=stop_when_orphaned,
                stop_when_waiting=stop_when_waiting,
            ):
                for event in batch:
                    if on_event is not None:
                        on_event(event)
        return await asyncio.to_thread(self.rt.store.get_run, run_id)

    def _open_steps(self, run_id: str) -> set[str]:
        """The keys of the run's steps at work (started, not ended nor waiting for a person), as its events say."""
        return _track_steps(set(), self.rt.store.events(run_id, limit=1_000_000))

    async def _workflow_process_alive(self, run: RunRecord) -> bool:
        """Whether the process that runs (or ran) the run's workflow still lives."""
        from edgecrew.engine.executors import executor_alive

        _status, executor = await self._workflow_state(run.id)
        return executor_alive(executor or run.executor)

    async def _workflow_gone(self, run: RunRecord, stop_when_orphaned: bool) -> bool:
        """Mark a run whose workflow ended without finishing it failed; True when waiting is pointless."""
        status, executor = await self._workflow_state(run.id)
        if status in ("ERROR", "SUCCESS", "CANCELLED"):
            await asyncio.sleep(0.5)  # let a finishing workflow write its last rows first
            if not (await asyncio.to_thread(self.rt.store.get_run, run.id)).status.terminal:
                reason = f"its workflow ended ({status.lower()}) without finishing the run"
                await asyncio.to_thread(self._fail, run.id, reason)
            return False  # the end event follows: the stream reads it next round
        return stop_when_orphaned and _no_live_process(run, status, executor)

    def _fail(self, run_id: str, reason: str) -> None:
        self.rt.store.set_status(run_id, RunStatus.FAILED, error=reason)
        self.rt.store.emit(run_id, "run_finished", RunFinished(status=RunStatus.FAILED, error=reason))

    async def _workflow_state(self, run_id: str) -> tuple[str | None, str | None]:
        """(DBOS status, executor id) of a run's workflow: from this process's DBOS when it runs
        here (the server), else through a client, without launching DBOS."""
        from edgecrew.engine import durable

        if durable.launched(self.rt):
            found = await durable.workflow_status(run_id)
            return (found.status, found.executor_id) if found is not None else (None, None)
        return await asyncio.to_thread(self.workflow_state, run_id)

    def orphaned(self, run: RunRecord) -> bool:
        """Whether an unfinished run has no live process running it (its process stopped: nothing goes
        on with it until `edgecrew resume` or a server takes it over)."""
        if run.status.terminal:
            return False
        status, executor = self.workflow_state(run.id)
        return _no_live_process(run, status, executor)

    def workflow_state(self, run_id: str) -> tuple[str | None, str | None]:
        """(DBOS status, executor id) of a run's workflow: from this process's DBOS when it runs here
        (the server's pages), else through a DBOS client."""
        from edgecrew.engine import durable

        if durable.launched(self.rt):
            from dbos import DBOS

            found = DBOS.list_workflows(workflow_ids=[run_id], load_input=False, load_output=False)
        else:
            found = self._client().list_workflows(workflow_ids=[run_id], load_input=False, load_output=False)
        return (found[0].status, found[0].executor_id) if found else (None, None)

    # -- resume and cancel ---------------------------------------------------------------------------

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
        missing = durable.missing_parts(self.rt, run)
        if missing is not None:  # refused before anything runs: the run stays interrupted, resumable
            raise UserError(
                f"run {run.id} cannot go on here: this project no longer has {missing}; "
                "restore it (edgecrew.yaml, plugins) and resume again"
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
            self._fail(run.id, reason)
            raise ConflictError(f"run {run.id} cannot be resumed: {reason}")
        if status.status == "PENDING":  # its process died after recovery looked: adopted as recovery does
            if await durable.adopt(run.id, status.executor_id, durable.adopted_queue(self.rt)):
                return run, "resumed", recovery
            return run, "taken over by another process; following it", recovery
        if status.status == "ENQUEUED":  # back on a queue: the next process to dequeue it runs it
            return run, "waiting in a queue to be picked up; following it", recovery
        await DBOS.resume_workflow_async(run.id)  # stopped by DBOS (too many recovery attempts): nobody runs it
        return run, "resumed", recovery

    async def start_from_step(
        self, run_id: str, step_key: str, task: str | None = None, *, request_id: str | None = None
    ) -> Started:
        """A new run of ``run_id``'s team as it ran then, that copies the outputs of the visits before
        ``step_key`` (their agents do not run again) and runs on from that step. Routing is a function
        of the outputs, so the copied visits take the same path; ``task`` may differ from the first."""
        source = self.get(run_id)
        steps = {s.key: s for s in self.steps(source.id)}
        chosen = steps.get(step_key)
        if chosen is None:
            raise NotFoundError(f"run {source.id} has no step '{step_key}'")
        seed = {s.key: s.output for s in steps.values() if s.visit < chosen.visit and s.outcome == Outcome.FINAL}
        spec = team_from_snapshot(source.spec, source=f"run {source.id}")
        trigger = {"kind": "from_step", "run": source.id, "step": step_key, "seed": seed}
        # In the project the first worked in (its files at project/, its memory): the copied outputs
        # were read there, and a team that needs one (crew) is refused without it.
        project = ProjectService.of(self.rt).project_id_of_run(source.id)
        return await self.start(
            spec,
            task if task is not None else source.task,
            request_id=request_id,
            trigger=trigger,
            project=project,
        )

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run (it stops at its next step); works whether or not its process is alive."""
        from dbos._error import DBOSNonExistentWorkflowError

        from edgecrew.engine.approvals import topic
        from edgecrew.store.approvals import ApprovalStore

        run = self.rt.store.get_run(run_id)
        if run.status.terminal:
            raise ConflictError(f"run {run.id} already {run.status.value}; nothing to cancel")
        waiting = ApprovalStore(self.rt.store).list("pending", run.id)  # they expire as the run ends
        if not self.rt.store.set_status(run.id, RunStatus.CANCELLED, error="cancelled by user"):
            ended = self.rt.store.get_run(run.id)  # it ended since it was read: its end stands
            raise ConflictError(f"run {run.id} already {ended.status.value}; nothing to cancel")
        self.rt.store.close_open_steps(run.id, "cancelled")
        self.rt.store.emit(run.id, "run_cancelled", RunCancelled(reason="cancelled by user"))
        try:
            self._client().cancel_workflow(run.id)
            # A workflow waiting for a person's decision waits on a message, which a cancel does not wake:
            # told, its step stops at its next call (writing its end) and the workflow's task ends.
            for approval in waiting:
                self._client().send(approval.workflow_id, {"cancelled": True}, topic(approval.id))
        except DBOSNonExistentWorkflowError:
            pass  # no workflow yet: the store's status alone keeps it from starting
        finally:
            self.close()
        return self.rt.store.get_run(run.id)

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """A run by id or unique id prefix."""
        return self.rt.store.get_run(run_id)

    def list_runs(self, *, limit: int = 20, offset: int = 0, **where: Unpack[RunFilter]) -> list[RunRecord]:
        """Runs, newest first, filtered as :class:`RunFilter` says."""
        return self.rt.store.list_runs(limit=limit, offset=offset, **where)

    def count_runs(self, **where: Unpack[RunFilter]) -> int:
        return self.rt.store.count_runs(**where)

    def run_filter_choices(self) -> tuple[list[str], list[str]]:
        """The agents and model aliases seen in recent runs: what the runs list offers to filter by."""
        return self.rt.store.run_filter_choices()

    def usage_by_run(self, run_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(prompt, completion) tokens per run, for a page of runs."""
        return self.rt.store.usage_by_run(run_ids)

    def steps(self, run_id: str) -> list[StepRecord]:
        return self.rt.store.steps(run_id)

    def messages(self, run_id: str, step_key: str) -> list[dict[str, Any]]:
        """One step's conversation as recorded when it ended (system prompt, input, replies, tool results)."""
        return self.rt.store.messages(run_id, step_key)

    def event_page(self, run_id: str, after: int = 0, limit: int = 1000) -> list[EventRecord]:
        """The run's events so far (ids above ``after``), oldest first."""
        return self.rt.store.events(run_id, after_id=after, limit=limit)

    def events_of_type(self, kind: str, limit: int) -> list[EventRecord]:
        """The newest events of one type across runs (the metrics page)."""
        return self.rt.store.events_of_type(kind, limit=limit)

    def last_event_id(self, run_id: str) -> int:
        return self.rt.store.last_event_id(run_id)

    def checklist(self, run_id: str) -> Checklist:
        """The run's checklist (its agents' work with states, open questions, notes), from its events."""
        run = self.get(run_id)
        return checklist(team_from_snapshot(run.spec), run.task, self.event_page(run.id, limit=100_000))

    # -- feedback ------------------------------------------------------------------------------------

    def rate(
        self,
        run_id: str,
        rating: int,
        *,
        comment: str = "",
        correction: str | None = None,
        author: str,
        via: str,
    ) -> FeedbackRecord:
        """A person's rating of a run's answer (+1 up, -1 down), with a comment and the answer they wanted."""
        run = self.get(run_id)
        if not run.status.terminal:
            raise ConflictError(f"run {run.id} is {run.status.value}; rate its answer once it has ended")
        return FeedbackStore(self.rt.store).add(
            run.id, rating, comment=comment, correction=correction, author=author, via=via
        )

    def feedback(self, run_id: str) -> list[FeedbackRecord]:
        return FeedbackStore(self.rt.store).of_run(self.get(run_id).id)

    def feedback_export(self, *, team: str | None = None, rating: int | None = None) -> Iterator[dict[str, Any]]:
        """Every rating as a JSON-ready row, oldest first: the run's team, task and answer, the rating, and
        ``messages`` (the task, then the corrected answer or the run's) ready for fine-tuning or few-shot."""
        runs: dict[str, RunRecord] = {}
        for item in FeedbackStore(self.rt.store).all():
            if item.run_id not in runs:  # each run read once, however many ratings it has
                runs[item.run_id] = self.rt.store.get_run(item.run_id)
            run = runs[item.run_id]
            if (team is not None and run.team != team) or (rating is not None and item.rating != rating):
                continue
            answer = _answer_text(run.output)
            yield {
                "run_id": run.id,
                "team": run.team,
                "task": run.task,
                "answer": answer,
                "rating": item.rating,
                "comment": item.comment,
                "correction": item.correction,
                "author": item.author,
                "via": item.via,
                "created_at": item.created_at,
                "messages": [
                    {"role": "user", "content": run.task},
                    {"role": "assistant", "content": item.correction or answer},
                ],
            }

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event this process writes (and whether it is new); returns the
        unsubscribe (the server's metrics count runs this way)."""
        return self.rt.store.subscribe(listener)

    # -- DBOS client -----------------------------------------------------------------------------------

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


def _answer_text(output: Any) -> str:
    """A run's answer as text: a free-text agent's text, any other output as JSON."""
    if isinstance(output, dict) and set(output) == {"text"}:
        return str(output["text"])
    return "" if output is None else json.dumps(output, ensure_ascii=False)


def _retry(earlier: RunRecord, team: str, task: str) -> Started:
    if (earlier.team, earlier.task) != (team, task):
        raise IdempotencyKeyReused(earlier.id)
    return Started(earlier, False)


async def settle(handle: Any) -> None:
    """Let a workflow this process started record its completion (before the process may exit)."""
    if handle is None:
        return
    with contextlib.suppress(Exception):  # cancelled or failed workflows raise here; the store says why
        await asyncio.wait_for(handle.get_result(), timeout=30)


def _track_steps(at_work: set[str], events: Sequence[EventRecord]) -> set[str]:
    """``at_work`` with the steps that ``events`` start (or a person's decision resumes) added, and those
    they end (or park waiting for a decision) removed. A parked step does nothing more once its run is
    cancelled: the cancel does not wake it."""
    for event in events:
        if event.step_key is None:
            continue
        if event.type in (EventType.STEP_STARTED, EventType.APPROVAL_DECIDED):
            at_work.add(event.step_key)
        elif event.type in (EventType.STEP_FINISHED, EventType.APPROVAL_REQUESTED):
            at_work.discard(event.step_key)
    return at_work


async def _pause(seconds: float, stop: anyio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
    else:
        with anyio.move_on_after(seconds):
            await stop.wait()


def _no_live_process(run: RunRecord, workflow_status: str | None, executor: str | None) -> bool:
    """Whether DBOS's view of an unfinished run's workflow (not started, or PENDING) is held by no live
    process: the workflow's executor, or the run's recording process when it never started."""
    from edgecrew.engine.executors import executor_alive

    return workflow_status in ("PENDING", None) and not executor_alive(executor or run.executor)
