"""scheduler.suggest_window, jobs.submit and jobs.status: the jobs capability as agents' tools.

``suggest_window`` answers "when can a job of this size run?" from the policies in force (a window
must stay open for the job's whole expected duration) and the sampler's history: for each hour of
the day, the free memory and load seen at that hour over the last days (the worse half of the
samples, so a busy hour is not averaged away). With no history yet it says so and judges by the
policies and the room free now. ``jobs.submit`` is risky (it goes through the approval gate) and a
command submitted by an agent always runs in the sandbox. Every answer opens with a one-line
``summary`` (small models read it). The tools are closures over one runtime (``register(registry,
rt)``); unbound (``rt`` None) they are only listed.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from edgecrew.engine.runtime import Runtime
from edgecrew.errors import EdgecrewError, ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

if TYPE_CHECKING:
    from edgecrew.ops.jobs import JobService
    from edgecrew.specs.jobs import MachineFacts, PolicyDoc
    from edgecrew.store.jobs import JobRecord

__all__ = ["JOB_TOOLS", "bigger_than_machine", "register"]

JOB_TOOLS = ("scheduler.suggest_window", "jobs.submit", "jobs.status")
MiB = 2**20
HISTORY_DAYS = 7
SLOT = timedelta(minutes=30)


class Window(BaseModel):
    start: str = Field(description="ISO time (UTC) the job may start at.")
    end: str = Field(description="The latest it may start and still finish inside the window.")
    expected_free_memory_mb: int | None = None
    expected_load_per_core: float | None = None
    basis: str = Field(description="now | history | policies: what the figures come from.")


class SuggestOut(BaseModel):
    summary: str
    fits_now: bool
    windows: list[Window]
    policies: list[str] = Field(description="The policies that cover such a job.")
    history: bool = Field(description="Whether metric history was used.")
    notes: list[str] = []


class SubmitOut(BaseModel):
    summary: str
    job_id: str
    state: str
    sandbox: bool


class JobStatus(BaseModel):
    id: str
    name: str
    state: str
    reason: str | None = None
    waiting_on: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    run_id: str | None = None


class StatusOut(BaseModel):
    summary: str
    jobs: list[JobStatus]


def register(registry: ToolRegistry, rt: Runtime | None = None) -> None:
    """Register the jobs tools, bound to ``rt``'s jobs service (unbound: listed only)."""
    tools = _JobTools(rt)
    for fn, name, risk, out, timeout_s in (
        (tools.suggest_window, "scheduler.suggest_window", "safe", SuggestOut, 30.0),
        (tools.submit, "jobs.submit", "risky", SubmitOut, 30.0),
        (tools.status, "jobs.status", "safe", StatusOut, 15.0),
    ):
        spec = spec_from_function(fn, name=name, timeout_s=timeout_s, risk=risk)  # type: ignore[arg-type]
        registry.register(replace(spec, output_model=out))


class _JobTools:
    """The tools' functions (their docstrings are the descriptions)."""

    def __init__(self, rt: Runtime | None) -> None:
        self._rt = rt

    @property
    def jobs(self) -> JobService:
        if self._rt is None:
            raise ToolError("jobs are not open in this process (the tools are only listed here)")
        from edgecrew.ops import Ops

        return Ops.of(self._rt).jobs

    async def suggest_window(
        self,
        memory_mb: Annotated[float, Field(ge=0, description="Memory the job needs (MB).")],
        cpu_cores: Annotated[float, Field(ge=0, le=4096)] = 1.0,
        gpu_memory_mb: Annotated[float, Field(ge=0)] = 0.0,
        duration_min: Annotated[float, Field(gt=0, le=10_080, description="How long it runs (minutes).")] = 30.0,
        within_hours: Annotated[float, Field(gt=0, le=168)] = 24.0,
        tags: Annotated[list[str], Field(max_length=32, description="The job's tags (policies match them).")] = [],  # noqa: B006
        priority: Annotated[int, Field(ge=0, le=100)] = 50,
    ) -> dict[str, Any]:
        """The next windows where a job of this size may start and run to its end: from the policies in
        force and the metric history (free memory and load by hour of day)."""
        jobs = self.jobs
        return (await asyncio.to_thread(_suggest, jobs, memory_mb, cpu_cores, gpu_memory_mb, duration_min,
                                        within_hours, tuple(tags), priority)).model_dump()  # fmt: skip

    async def submit(
        self,
        ctx: ToolContext,
        argv: Annotated[list[str] | None, Field(description="A command and its arguments (runs sandboxed).")] = None,
        team: Annotated[str | None, Field(description="Or a team to run...")] = None,
        task: Annotated[str | None, Field(description="...with this task.")] = None,
        name: str | None = None,
        memory_mb: Annotated[float, Field(ge=0)] = 0.0,
        cpu_cores: Annotated[float, Field(ge=0)] = 0.0,
        gpu_memory_mb: Annotated[float, Field(ge=0)] = 0.0,
        duration_min: Annotated[float | None, Field(gt=0)] = None,
        priority: Annotated[int, Field(ge=0, le=100)] = 50,
        deadline_min: Annotated[float | None, Field(gt=0, description="Must start within this many minutes.")] = None,
        tags: Annotated[list[str], Field(max_length=32)] = [],  # noqa: B006
    ) -> dict[str, Any]:
        """Submit a job (a sandboxed command, or a team and task); it starts when its policies allow."""
        from edgecrew.ops.jobs import JobNeeds

        try:
            job = await self.jobs.submit(
                argv=argv,
                team=team,
                task=task,
                name=name,
                sandbox=argv is not None,
                needs=JobNeeds(
                    cpu_cores,
                    int(memory_mb * MiB),
                    int(gpu_memory_mb * MiB),
                    duration_min * 60 if duration_min else None,
                ),
                priority=priority,
                deadline=time.time() + deadline_min * 60 if deadline_min else None,
                tags=tags,
                submitted_by=f"{ctx.agent}@{ctx.run_id}",
            )
        except EdgecrewError as exc:
            raise ToolError(str(exc)) from None
        summary = (f"Submitted job {job.id} ({job.name}); a server (`edgecrew serve`) starts it when its policies "
                   f"allow (jobs.status, or `edgecrew jobs show {job.id}`, tells).")  # fmt: skip
        return SubmitOut(summary=summary, job_id=job.id, state=job.state, sandbox=job.sandbox).model_dump()

    async def status(
        self,
        job_id: Annotated[str | None, Field(max_length=64, description="One job; none: the latest jobs.")] = None,
        limit: Annotated[int, Field(ge=1, le=50)] = 10,
    ) -> dict[str, Any]:
        """A job's state, why it waits (each policy that says no) and its measured usage; or the latest jobs."""
        jobs = self.jobs
        try:
            found = [await asyncio.to_thread(jobs.get, job_id)] if job_id else await asyncio.to_thread(
                jobs.list_jobs, limit=limit)  # fmt: skip
        except EdgecrewError as exc:
            raise ToolError(str(exc)) from None
        items = [_status(j) for j in found]
        if job_id:
            j = found[0]
            summary = f"Job {j.id} ({j.name}) is {j.state}" + (f": {j.reason}" if j.reason else ".")
        else:
            counts: dict[str, int] = defaultdict(int)
            for j in found:
                counts[j.state] += 1
            summary = (f"{len(found)} latest jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                       if found else "No jobs yet.")  # fmt: skip
        return StatusOut(summary=summary, jobs=items).model_dump()


def _status(job: JobRecord) -> JobStatus:
    return JobStatus(id=job.id, name=job.name, state=job.state, reason=job.reason, waiting_on=job.waiting_on,
                     usage=job.usage, run_id=job.run_id)  # fmt: skip


# -- suggest_window -------------------------------------------------------------------------------------


def _suggest(
    jobs: JobService,
    memory_mb: float,
    cpu_cores: float,
    gpu_mb: float,
    duration_min: float,
    within_hours: float,
    tags: tuple[str, ...],
    priority: int,
    now: datetime | None = None,
) -> SuggestOut:
    from edgecrew.ops.jobs import JobNeeds
    from edgecrew.specs.jobs import JobFacts, covering, evaluate

    now = now or datetime.now(UTC)
    duration = timedelta(minutes=duration_min)
    policies = {n: p.doc for n, p in jobs.effective_policies().items()}
    names = covering(policies, JobFacts("suggested", tags, priority))
    mine = {n: policies[n] for n in names}
    notes: list[str] = []
    needs = JobNeeds(cpu_cores, int(memory_mb * MiB), int(gpu_mb * MiB), duration.total_seconds())
    machine = jobs.facts()
    never = bigger_than_machine(needs, machine)
    if never:  # no window would ever open: not "none in the next 24 h"
        return SuggestOut(summary=f"It can never run here: {never}.", fits_now=False, windows=[], policies=names,
                          history=False, notes=notes)  # fmt: skip
    room_now = jobs.room(needs)
    judged = evaluate(mine, JobFacts("suggested", tags, priority), machine, now)
    refused_now = [f"{r.policy}: {r.reason}" for r in judged]
    if room_now:
        refused_now.append(f"the machine: {room_now}")
    fits_now = not refused_now and all(p.open_throughout(now, now + duration) for p in mine.values())
    by_hour = _history(jobs, now, notes)
    windows: list[Window] = []
    current: Window | None = None
    for start in _candidates(now, mine, within_hours):
        free, load, basis = _expected(start, now, by_hour, machine.available_memory_bytes, machine.load1)
        per_core = load / max(machine.cpu_count, 1)
        ok = all(p.open_throughout(start, start + duration) for p in mine.values())
        ok = ok and (fits_now if start == now else _fits(mine, needs, free, per_core, machine))
        if ok and start != now and room_now and basis != "history":
            ok = False  # without history the room free now is all there is to go by
        if not ok:
            current = None
            continue
        at = start.isoformat(timespec="minutes")
        if current is not None:
            current.end = at
        elif len(windows) < 5:
            current = Window(start=at, end=at, basis=basis, expected_free_memory_mb=round(free / MiB),
                             expected_load_per_core=round(per_core, 2))  # fmt: skip
            windows.append(current)
    if gpu_mb and not jobs.rt.pool.gpu_budget_bytes:
        notes.append("this machine has no GPU memory budget: a job needing GPU memory cannot run here")
        windows, fits_now = [], False
    return SuggestOut(
        summary=_summary(fits_now, windows, refused_now, within_hours, bool(by_hour)),
        fits_now=fits_now,
        windows=windows,
        policies=names,
        history=bool(by_hour),
        notes=notes,
    )


def bigger_than_machine(needs: Any, machine: MachineFacts) -> str:
    """Why a job needs more than this whole machine has ("" when it does not)."""
    total = machine.total_memory_bytes
    if total and needs.memory_bytes > total:
        return (f"it needs {round(needs.memory_bytes / MiB)} MiB of memory, more than this machine has "
                f"({round(total / MiB)} MiB)")  # fmt: skip
    if needs.cpu_cores > max(machine.cpu_count, 1):
        return f"it needs {needs.cpu_cores:g} CPU cores, more than this machine has ({machine.cpu_count})"
    return ""


def _candidates(now: datetime, policies: dict[str, PolicyDoc], within_hours: float) -> list[datetime]:
    """Now, every half hour after it, and each window opening of these policies within the horizon."""
    horizon = now + timedelta(hours=within_hours)
    first = now.replace(minute=0, second=0, microsecond=0) + SLOT
    found = {now}
    at = first
    while at <= horizon:
        found.add(at)
        at += SLOT
    for doc in policies.values():
        at = now
        while True:
            opening = doc.next_opening(at + timedelta(seconds=1))
            if opening is None or opening > horizon:
                break
            found.add(opening.astimezone(UTC))
            at = opening
    return sorted(found)


def _history(jobs: JobService, now: datetime, notes: list[str]) -> dict[int, tuple[float, float]]:
    """Per hour of day (UTC): (free memory, load) at that hour over the last days, the worse half."""
    from edgecrew.ops import Ops

    sampler = getattr(Ops.of(jobs.rt), "sampler", None)
    if sampler is None or not hasattr(sampler, "series"):
        notes.append("no metric sampler in this process: judged by the policies and the room free now")
        return {}
    since = (now - timedelta(days=HISTORY_DAYS)).timestamp()
    try:
        memory = sampler.series("memory_available_bytes", since)
        load = sampler.series("load1", since)
        if inspect.isawaitable(memory) or inspect.isawaitable(load):
            raise TypeError("the sampler's series is asynchronous")
    except Exception as exc:  # the sampler is another part's: say what happened, answer anyway
        notes.append(f"the metric history could not be read ({exc}): judged by the policies and the room free now")
        return {}
    hours_mem: dict[int, list[float]] = defaultdict(list)
    hours_load: dict[int, list[float]] = defaultdict(list)
    for at, value in memory:
        hours_mem[_hour(at)].append(float(value))
    for at, value in load:
        hours_load[_hour(at)].append(float(value))
    if not hours_mem:
        notes.append("no metric history yet (the sampler has recorded nothing): judged by the policies and the "
                     "room free now")  # fmt: skip
        return {}
    out = {}
    for hour, values in hours_mem.items():
        worse_mem = statistics.median(sorted(values)[: max(1, len(values) // 2)])
        loads = sorted(hours_load.get(hour, [0.0]))
        worse_load = statistics.median(loads[len(loads) // 2 :])
        out[hour] = (worse_mem, worse_load)
    return out


def _hour(at: Any) -> int:
    stamp = at.timestamp() if isinstance(at, datetime) else float(at)
    return datetime.fromtimestamp(stamp, UTC).hour


def _expected(
    start: datetime, now: datetime, by_hour: dict[int, tuple[float, float]], free_now: int, load_now: float
) -> tuple[float, float, str]:
    if start == now:
        return float(free_now), load_now, "now"
    if start.hour in by_hour:
        memory, load = by_hour[start.hour]
        return memory, load, "history"
    return float(free_now), load_now, "policies"


def _fits(policies: dict[str, PolicyDoc], needs: Any, free: float, per_core: float, machine: MachineFacts) -> bool:
    """Whether the job would be let in at a later start, where ``free`` memory and ``per_core`` load are
    expected: every limit of the policies that a prediction exists for (the temperature has none)."""
    if needs.memory_bytes > free:
        return False
    cpus = max(machine.cpu_count, 1)
    total = machine.total_memory_bytes
    used_percent = 100 * (1 - free / total) if total else machine.memory_percent
    for doc in policies.values():
        floor = doc.min_free_memory_bytes
        if floor is not None and free - needs.memory_bytes < floor:
            return False
        if doc.max_load_per_core is not None and per_core + needs.cpu_cores / cpus > doc.max_load_per_core:
            return False
        if doc.max_memory_percent is not None and used_percent > doc.max_memory_percent:
            return False
    return True


def _summary(fits_now: bool, windows: list[Window], refused_now: list[str], within_hours: float, history: bool) -> str:
    basis = "" if history else " (no metric history yet: by the policies and the room free now)"
    if fits_now:
        return f"It fits now; {len(windows)} window(s) in the next {within_hours:g} h{basis}."
    if not windows:
        why = "; ".join(refused_now) or "no window stays open for its whole duration"
        return f"No window in the next {within_hours:g} h: {why}{basis}."
    first = windows[0]
    now_why = f" Not now: {'; '.join(refused_now)}." if refused_now else ""
    # A window's end is the latest start that still ends in it: "(until 18:30)" after "starts 18:30" read
    # as no time at all.
    when = (f"at {first.start} only" if first.start == first.end
            else f"from {first.start} until {first.end}")  # fmt: skip
    return f"Next window: a job may start {when}.{now_why}{basis}".replace("..", ".")
