"""Routines: a team and a task run on a cron schedule, as DBOS scheduled workflows.

``routines:`` in ``edgecrew.yaml`` declares them; :meth:`RoutineService.start` (the server, after the
durable engine is launched) makes each one a DBOS schedule named ``routine.<project>.<name>`` on this
project's routine queue. DBOS fires a schedule in every process that has it, under one workflow id
per firing (``sched-<schedule>-<time>``), so however many servers are up a firing is one workflow,
run by one of them; the firing records the run under the idempotency key ``routine:<name>:<time>``
(a replay finds it again) and starts the run's workflow as its child. The run's ``trigger`` says
which routine and firing started it.

Pausing is the schedule's state in DBOS (so every process sees it); ``enabled:`` in the YAML is the
declared state, applied when it changes, so a pause survives restarts until the YAML says otherwise.
A firing missed while no server was up runs once at the next start (``catch_up: once``, through
DBOS's backfill of that one firing) or not at all (``catch_up: skip``). A routine whose team or project
does not exist, whose team has spec problems, or whose team ``needs_project`` while it names none, is
listed invalid but stays scheduled, since a team file can be added or fixed, and a project created, while
the servers run: each firing loads the team (and finds the project) as they are then and, when it cannot,
records no run and ends as skipped, saying why.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from dbos import DBOS

from edgecrew.domain.specs import TeamSpec
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService, Started, TeamName
from edgecrew.errors import ConflictError, NotFoundError, SpecError
from edgecrew.projects import ProjectService
from edgecrew.specs.routines import RoutineDoc
from edgecrew.store.repo import RunRecord

log = logging.getLogger("edgecrew.routines")

__all__ = ["RoutineService", "RoutineState", "routine_firing"]


@dataclass(frozen=True)
class RoutineState:
    """A routine as declared, with its schedule's live state and its firings."""

    name: str
    doc: RoutineDoc
    status: str  # active | paused (or declared off) | not scheduled (no server has synced it yet) | invalid
    next_firing: datetime | None
    last_firing: datetime | None
    last_run: RunRecord | None
    problem: str | None = None  # why its firings are skipped (its team is missing or invalid), or not as declared
    # Its schedule's own state (active | paused | not scheduled), also while it is invalid: an invalid routine
    # stays scheduled (each firing skipped), so it can be paused and resumed like any other.
    schedule: str = "not scheduled"


def firing_key(name: str, at: datetime) -> str:
    """The idempotency key of one firing's run."""
    return f"routine:{name}:{at.astimezone(UTC).isoformat()}"


class RoutineService:
    """List, sync, pause, resume and trigger this project's routines."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- names ------------------------------------------------------------------------------------------

    @property
    def _ops_key(self) -> str:
        from edgecrew.ops import Ops

        return Ops.of(self.rt).project_key

    @property
    def queue(self) -> str:
        from edgecrew.ops import Ops

        return Ops.of(self.rt).queue("routines")

    def schedule_name(self, name: str) -> str:
        return f"routine.{self._ops_key}.{name}"

    def doc(self, name: str) -> RoutineDoc:
        found = self.rt.project.routines.get(name)
        if found is None:
            known = ", ".join(sorted(self.rt.project.routines)) or "none"
            raise NotFoundError(f"no routine '{name}' (known: {known}); routines are declared in edgecrew.yaml")
        return found

    # -- server life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the queue and sync the schedules (the durable engine must be launched)."""
        if not durable.launched(self.rt):
            return
        await asyncio.to_thread(self.sync)
        prefix = f"sched-routine.{self._ops_key}."
        resumed = await durable.resume_dead(
            self.rt, "edgecrew.routine_firing", lambda wf: wf.workflow_id.startswith(prefix)
        )
        if resumed:
            log.info("resumed %d routine firing(s) left by a dead process", len(resumed))

    async def stop(self) -> None:
        return None

    def sync(self, now: datetime | None = None) -> dict[str, str]:
        """Make DBOS's schedules match ``routines:``; returns what happened to each routine."""
        now = now or datetime.now(UTC)
        DBOS.register_queue(self.queue)  # a schedule must name a declared queue (declaring again is a no-op)
        prefix = f"routine.{self._ops_key}."
        existing: dict[str, dict[str, Any]] = {
            s["schedule_name"]: dict(s) for s in DBOS.list_schedules(schedule_name_prefix=prefix)
        }
        outcome: dict[str, str] = {}
        for name, doc in self.rt.project.routines.items():
            sched_name = self.schedule_name(name)
            missing = self._missing(doc)
            if missing is not None:  # scheduled all the same: its firings are skipped until it exists
                log.warning("routine '%s': %s", name, missing)
            context = _context(name, doc)
            found = existing.get(sched_name)
            if found is not None and _same(found, doc, context):
                outcome[name] = "unchanged"
            else:
                paused = not doc.enabled
                if found is not None:
                    if found["context"] and found["context"].get("enabled") == doc.enabled:
                        paused = found["status"] != "ACTIVE"  # the declared state did not change: keep a pause
                    DBOS.delete_schedule(sched_name)
                try:
                    DBOS.create_schedule(
                        schedule_name=sched_name,
                        workflow_fn=routine_firing,
                        schedule=doc.seconds_cron,
                        context=context,
                        cron_timezone=doc.timezone,
                        queue_name=self.queue,
                    )
                except Exception as exc:  # another process created it a moment ago
                    if DBOS.get_schedule(sched_name) is None:
                        raise
                    log.debug("schedule %s created elsewhere: %s", sched_name, exc)
                if paused:
                    DBOS.pause_schedule(sched_name)
                outcome[name] = "created" if found is None else "updated"
            if doc.catch_up == "once" and found is not None:
                self._catch_up(name, doc, found, now)
            if missing is not None:
                outcome[name] += f" (invalid: {missing})"
        for sched_name in existing:
            if sched_name.removeprefix(prefix) not in self.rt.project.routines:
                DBOS.delete_schedule(sched_name)
                outcome[sched_name.removeprefix(prefix)] = "removed"
        return outcome

    def _missing(self, doc: RoutineDoc) -> str | None:
        """Why the routine's firings are skipped for now: its team or project does not exist (None: both do)."""
        try:
            self.rt.project.named_source(doc.team)
            if doc.project:
                ProjectService.of(self.rt).get(doc.project)
        except NotFoundError as exc:
            return f"{exc}; its firings are skipped until it exists (no restart needed)"
        return None

    def _catch_up(self, name: str, doc: RoutineDoc, schedule: dict[str, Any], now: datetime) -> None:
        """Enqueue the latest firing that passed while no process fired it (once, not every missed one)."""
        if schedule["status"] != "ACTIVE":
            return
        last = schedule.get("last_fired_at")
        if last is None:
            return  # never fired: nothing was missed since this routine began
        latest = previous_firing(doc, now)
        if latest is None or latest <= datetime.fromisoformat(last):
            return
        log.info("routine '%s' missed its firing at %s while no server was up: running it now", name, latest)
        DBOS.backfill_schedule(self.schedule_name(name), latest - timedelta(seconds=1), latest + timedelta(seconds=1))

    # -- reads ------------------------------------------------------------------------------------------

    def states(self, now: datetime | None = None) -> list[RoutineState]:
        return [self.state(name, now) for name in sorted(self.rt.project.routines)]

    def state(self, name: str, now: datetime | None = None) -> RoutineState:
        doc = self.doc(name)
        now = now or datetime.now(UTC)
        schedule = self._schedule(name)
        problem = self._missing(doc)
        if problem is None:
            try:
                team = self.rt.load_named_team(doc.team)  # validated: a team with spec problems skips its firings
                problem = _no_project(team, doc.project)
            except NotFoundError as exc:  # gone since _missing looked
                problem = str(exc)
            except SpecError as exc:
                first = exc.issues[0] if exc.issues else exc
                problem = (
                    f"team '{doc.team}' is invalid, so its firings are skipped until the file is fixed (no "
                    f"restart needed): {first} (`edgecrew validate` lists all)"
                )
        if schedule is None:  # the first server will schedule it, paused when declared off
            scheduled = "not scheduled" if doc.enabled else "paused"
        else:
            scheduled = "active" if schedule["status"] == "ACTIVE" else "paused"
        status = "invalid" if problem is not None else scheduled
        last_run = self.rt.store.latest_run_by_key_prefix(f"routine:{name}:")
        last_fired = schedule.get("last_fired_at") if schedule else None
        last_firing = datetime.fromisoformat(last_fired) if last_fired else None
        if last_run is not None and last_run.trigger:
            run_firing = datetime.fromisoformat(str(last_run.trigger.get("firing")))
            last_firing = max(last_firing, run_firing) if last_firing else run_firing
        upcoming = next_firing(doc, now) if status in ("active", "not scheduled") else None
        if schedule is not None and status != "invalid" and not _same(schedule, doc, _context(name, doc)):
            # The servers read edgecrew.yaml when they start: until then they fire the schedule they synced.
            zone = schedule.get("cron_timezone") or "UTC"
            problem = (
                f"edgecrew.yaml changed since the servers scheduled it; they fire it as before "
                f"({schedule['schedule']} in {zone}, seconds first) until `edgecrew serve` restarts"
            )
            if upcoming is not None:
                upcoming = _next(schedule["schedule"], zone, now)
        return RoutineState(name, doc, status, upcoming, last_firing, last_run, problem, scheduled)

    def runs(self, name: str, limit: int = 20) -> list[RunRecord]:
        """The routine's latest runs, newest first."""
        self.doc(name)
        return self.rt.store.runs_by_key_prefix(f"routine:{name}:", limit)

    def _schedule(self, name: str) -> dict[str, Any] | None:
        if not durable.launched(self.rt):
            durable.launch(self.rt)  # reads DBOS's schedules; this process runs no queue
        found: dict[str, Any] | None = DBOS.get_schedule(self.schedule_name(name))  # type: ignore[assignment]
        return found

    # -- changes ----------------------------------------------------------------------------------------

    def pause(self, name: str) -> RoutineState:
        self._scheduled(name)
        DBOS.pause_schedule(self.schedule_name(name))
        return self.state(name)

    def resume(self, name: str) -> RoutineState:
        self._scheduled(name)
        DBOS.resume_schedule(self.schedule_name(name))
        return self.state(name)

    def _scheduled(self, name: str) -> None:
        doc = self.doc(name)
        if self._schedule(name) is None:  # no server has scheduled it yet: do it now
            self.sync()
            if self._schedule(name) is None:
                state = self.state(name)
                raise ConflictError(f"routine '{name}' cannot be scheduled: {state.problem or doc.team}")

    async def trigger(self, name: str, *, request_id: str | None = None, idempotency_key: str | None = None) -> Started:
        """Run the routine now (a manual firing), through the one run use case; a retry with the same
        ``idempotency_key`` finds the run the first one started."""
        doc = self.doc(name)
        at = datetime.now(UTC)
        key = f"routine:{name}:key:{idempotency_key}" if idempotency_key else firing_key(name, at) + ":manual"
        return await RunService(self.rt).start(
            TeamName(doc.team),
            doc.task,
            request_id=request_id,
            idempotency_key=key,
            trigger={"kind": "routine", "routine": name, "firing": at.isoformat(), "manual": True},
            project=doc.project,
        )


def next_firing(doc: RoutineDoc, now: datetime) -> datetime:
    return _next(doc.seconds_cron, doc.timezone, now)


def _next(seconds_cron: str, timezone: str, now: datetime) -> datetime:
    zone = ZoneInfo(timezone)
    found: datetime = croniter(seconds_cron, now.astimezone(zone), second_at_beginning=True).get_next(datetime)
    return found


def previous_firing(doc: RoutineDoc, now: datetime) -> datetime | None:
    zone = ZoneInfo(doc.timezone)
    found: datetime = croniter(doc.seconds_cron, now.astimezone(zone), second_at_beginning=True).get_prev(datetime)
    return found


def _context(name: str, doc: RoutineDoc) -> dict[str, Any]:
    """What a schedule carries to its firings (and how a changed declaration is noticed)."""
    return {"routine": name, "team": doc.team, "task": doc.task, "enabled": doc.enabled, "project": doc.project}


def _same(schedule: dict[str, Any], doc: RoutineDoc, context: dict[str, Any]) -> bool:
    return bool(
        schedule["schedule"] == doc.seconds_cron
        and (schedule.get("cron_timezone") or "UTC") == doc.timezone
        and schedule["context"] == context
    )


def _no_project(team: TeamSpec, project: str | None) -> str | None:
    """Why a routine of ``team`` cannot run: the team needs a project and the routine names none."""
    if not team.needs_project or project:
        return None
    return (
        f"team '{team.name}' needs a project (needs_project: true) and the routine names none: add `project: "
        f"NAME` to it (`edgecrew projects list`); its firings are skipped until then (no restart needed)"
    )


# -- the workflow DBOS fires ---------------------------------------------------------------------------


@DBOS.step(name="edgecrew.routine_record")
async def _record_firing(name: str, team: str, task: str, at: datetime, project: str | None = None) -> dict[str, str]:
    """The firing's run id, or why it is skipped: the team (or project) the routine names is invalid or
    gone now. Team files are read again when they change, so a fixed file runs at the next firing."""
    rt = durable.current_runtime()
    try:
        missing = _no_project(rt.load_named_team(team), project)
        if missing is not None:  # its run would fail at its first step: skipped, as for a missing project
            return {"skipped": missing}
        started = RunService(rt).record(
            TeamName(team),
            task,
            idempotency_key=firing_key(name, at),
            trigger={"kind": "routine", "routine": name, "firing": at.astimezone(UTC).isoformat()},
            project=project,
        )
    except SpecError as exc:
        first = exc.issues[0] if exc.issues else exc
        return {"skipped": f"team '{team}' is invalid: {first} (`edgecrew validate` lists all)"}
    except NotFoundError as exc:
        return {"skipped": str(exc)}
    return {"run": started.run.id}


@DBOS.workflow(name="edgecrew.routine_firing")
async def routine_firing(scheduled_at: datetime, context: dict[str, Any]) -> None:
    """One firing of a routine: record its run (once, by key) and start the run's workflow; a firing
    whose team cannot be loaded now records no run and says why (its step's output, a warning)."""
    at = scheduled_at.astimezone(UTC)
    name = context["routine"]
    recorded = await _record_firing(name, context["team"], context["task"], at, context.get("project"))
    if "skipped" in recorded:
        log.warning("routine '%s' firing for %s skipped: %s", name, at, recorded["skipped"])
        return
    run_id = recorded["run"]
    await durable.start_workflow(run_id)
    log.info("routine '%s' fired for %s: run %s", name, at, run_id)
