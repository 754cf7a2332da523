"""/jobs and /policies: submit, list, read and cancel jobs; read the policies in force and their versions.

Submitting and cancelling need the ``runs`` scope, reading needs ``read``. A command job runs in the
sandbox unless it asks otherwise; a plain child process runs as the server's own user, so asking for
one needs the ``admin`` scope (and the server's ``jobs_plain_commands`` setting).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from edgecrew.api.deps import Read, RuntimeDep, StartRuns
from edgecrew.api.problems import PROBLEM_RESPONSES, problem
from edgecrew.api.shapes import Limit, Offset, Out, Page
from edgecrew.context import request_id as current_request_id
from edgecrew.domain.runs import RunStatus
from edgecrew.engine.service import TASK_MAX_CHARS, TASK_PATTERN
from edgecrew.errors import ConflictError
from edgecrew.ops import Ops
from edgecrew.ops.jobs import LAST_DEADLINE, MAX_DURATION_S, JobNeeds, JobService, awaiting_approval
from edgecrew.store.jobs import JOB_STATES, JobEvent, JobRecord, PolicyVersion

JobState = Literal["queued", "waiting", "running", "cancelling", "succeeded", "failed", "cancelled", "interrupted"]
assert set(get_args(JobState)) == set(JOB_STATES)  # the schema names the store's states

router = APIRouter(tags=["jobs"], responses=PROBLEM_RESPONSES)
JobId = Annotated[str, Path(min_length=1, max_length=64, description="A job id (POST /jobs returns it).")]
PolicyName = Annotated[str, Path(min_length=1, max_length=64, description="A policy name (GET /policies).")]
MiB = 2**20


class NeedsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt need ("memory") must not become a job needing nothing
    cpu_cores: float = Field(default=0, ge=0, le=4096, description="CPU cores it keeps busy.")
    memory_mb: float = Field(default=0, ge=0, le=2**30, description="Memory it needs (MB).")
    gpu_memory_mb: float = Field(default=0, ge=0, le=2**30, description="GPU memory it needs (MB).")
    duration_min: float | None = Field(
        default=None, gt=0, le=MAX_DURATION_S / 60, description="How long it should run."
    )


_ARG = r"^[^\x00]*\S[^\x00]*$"  # no NUL byte, something visible (the command may not be blank)
_TAG = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class _JobCommon(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=_NAME)
    needs: NeedsIn = NeedsIn()
    priority: int = Field(default=50, ge=0, le=100, description="0 lowest, 100 highest.")
    deadline: float | None = Field(
        default=None,
        ge=0,
        lt=LAST_DEADLINE,
        description="Epoch seconds by which it must have started (a past one is a 409).",
    )
    tags: list[Annotated[str, Field(pattern=_TAG)]] = Field(default=[], max_length=32)


class CommandJobIn(_JobCommon):
    """A command: its argv, run in the sandbox unless ``sandbox`` is false (which needs the admin scope)."""

    argv: list[Annotated[str, Field(max_length=10_000, pattern=_ARG)]] = Field(
        min_length=1, max_length=1000, description="The command and its arguments."
    )
    sandbox: bool = Field(default=True, description="Run the command in the sandbox (false needs the admin scope).")


class TeamJobIn(_JobCommon):
    """A team run: the team (GET /teams) and what it should do."""

    team: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=TASK_MAX_CHARS, pattern=TASK_PATTERN)


def _job_kind(value: Any) -> str | None:
    """Which shape a body is: a team run names its team or task, a command its argv (None: neither)."""
    if isinstance(value, dict):
        return "team" if "team" in value or "task" in value else "command" if "argv" in value else None
    return "team" if isinstance(value, TeamJobIn) else "command" if isinstance(value, CommandJobIn) else None


# Told apart by their fields, so a mistake is reported against the one shape the body is (a plain
# union reported every field of both: a command with a typo also heard "team: Field required").
JobIn = Annotated[
    Annotated[CommandJobIn, Tag("command")] | Annotated[TeamJobIn, Tag("team")],
    Discriminator(
        _job_kind,
        custom_error_type="job_kind",
        custom_error_message="a job is a command (argv) or a team run (team and task)",
    ),
]


class JobEventOut(Out):
    kind: str
    detail: Any = None
    at: float


class JobOut(Out):
    id: str
    name: str
    kind: str
    argv: list[str] | None = None
    sandbox: bool
    team: str | None = None
    task: str | None = None
    needs: dict[str, Any]
    priority: int
    deadline: float | None = None
    tags: list[str]
    state: str = Field(description=f"One of {', '.join(JOB_STATES)}.")
    reason: str | None = Field(default=None, description="Why it waits, or why it ended as it did.")
    waiting_on: list[dict[str, Any]] | None = Field(default=None, description="Each policy that says no now, and why.")
    submitted_by: str | None = None
    run_id: str | None = None
    run_status: str | None = Field(
        default=None,
        description="The status of an unfinished team job's run, read from the run: waiting_approval while "
        "a person's approval holds it (the job stays running, and reason says so); null otherwise.",
    )
    exit_code: int | None = None
    usage: dict[str, Any] | None = Field(default=None, description="peak_rss_bytes, cpu_s, wall_s (measured).")
    created_at: float
    allowed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


class JobDetail(JobOut):
    events: list[JobEventOut] = Field(default_factory=list)


class JobPage(Page[JobOut]):
    pass


class PolicyVersionOut(Out):
    policy: str
    version: int
    doc: dict[str, Any] | None = Field(description="The policy as that version said it (null: removed).")
    source: str = Field(description="'yaml' (edgecrew.yaml) or who applied it.")
    reason: str
    created_at: float


class PolicyOut(BaseModel):
    name: str
    version: int
    source: str
    doc: dict[str, Any]


def _jobs(rt: Any) -> JobService:
    return Ops.of(rt).jobs


def _out(job: JobRecord, run_status: RunStatus | None = None) -> JobOut:
    """The job, with its run's status (a wait for approval is the run's, and said in ``reason``)."""
    out = JobOut.of(job)
    waits = awaiting_approval(job, run_status)
    return out.model_copy(update={"run_status": run_status, "reason": waits or out.reason})


def _detail(job: JobRecord, events: list[JobEvent], run_status: RunStatus | None = None) -> JobDetail:
    return JobDetail.model_validate(
        {**_out(job, run_status).model_dump(), "events": [JobEventOut.of(e) for e in events]}
    )


@router.post("/jobs", status_code=201, response_model=JobOut)
async def submit_job(body: JobIn, rt: RuntimeDep, principal: StartRuns, request: Request) -> JSONResponse:
    """Submit a job; it starts when every policy covering it (and the machine's free room) allows."""
    command = body if isinstance(body, CommandJobIn) else None
    if command is not None and not command.sandbox and not rt.settings.jobs_plain_commands:
        return problem(
            403,
            "plain commands are off on this server (EDGECREW_JOBS_PLAIN_COMMANDS=false); "
            'send "sandbox": true to run it in the sandbox',
        )
    if command is not None and not command.sandbox and not principal.allows("admin"):
        return problem(
            403,
            "a plain command runs as the server's own user, so it needs the admin scope; "
            'send "sandbox": true to run it in the sandbox',
        )
    needs = body.needs
    if body.deadline is not None and body.deadline <= time.time():
        raise ConflictError("deadline: it has already passed; give a time in the future")
    team = body if isinstance(body, TeamJobIn) else None
    job = await _jobs(rt).submit(
        argv=command.argv if command else None,
        team=team.team if team else None,
        task=team.task if team else None,
        name=body.name,
        sandbox=command.sandbox if command else False,
        needs=JobNeeds(
            cpu_cores=needs.cpu_cores,
            memory_bytes=int(needs.memory_mb * MiB),
            gpu_memory_bytes=int(needs.gpu_memory_mb * MiB),
            duration_s=needs.duration_min * 60 if needs.duration_min else None,
        ),
        priority=body.priority,
        deadline=body.deadline,
        tags=body.tags,
        submitted_by=principal.name,
    )
    out = JobOut.of(job).model_dump(mode="json")
    headers = {"Location": f"/jobs/{job.id}"}
    if current_request_id.get():
        headers["X-Request-ID"] = str(current_request_id.get())
    return JSONResponse(out, status_code=201, headers=headers)


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    rt: RuntimeDep,
    _: Read,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[JobOut]:
    """Jobs, newest first, optionally in one state."""
    jobs = _jobs(rt)
    items = await asyncio.to_thread(jobs.list_jobs, state=state, limit=limit, offset=offset)
    total = await asyncio.to_thread(jobs.count, state=state)
    statuses = await asyncio.to_thread(jobs.run_statuses, items)
    return JobPage.of([_out(j, statuses.get(j.id)) for j in items], total, limit, offset)


@router.get("/jobs/{job_id}", response_model=JobDetail)
async def get_job(job_id: JobId, rt: RuntimeDep, _: Read) -> JobDetail:
    """A job: its state, why it waits (each policy that says no), its usage and what happened to it."""
    jobs = _jobs(rt)
    job = await asyncio.to_thread(jobs.get, job_id)
    statuses = await asyncio.to_thread(jobs.run_statuses, [job])
    return _detail(job, await asyncio.to_thread(jobs.events, job_id), statuses.get(job.id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel_job(job_id: JobId, rt: RuntimeDep, principal: StartRuns) -> JobOut:
    """Cancel a job: a waiting one never starts, a running one is stopped. 409 when it already ended."""
    return JobOut.of(await asyncio.to_thread(_jobs(rt).cancel, job_id, principal.name))


@router.get("/policies", response_model=list[PolicyOut])
async def list_policies(rt: RuntimeDep, _: Read) -> list[PolicyOut]:
    """The policies in force, each at its newest version."""
    found = await asyncio.to_thread(_jobs(rt).effective_policies)
    return [
        PolicyOut(name=name, version=p.version.version, source=p.version.source, doc=p.doc.model_dump(mode="json"))
        for name, p in sorted(found.items())
    ]


@router.get("/policies/{name}/versions", response_model=list[PolicyVersionOut])
async def policy_versions(name: PolicyName, rt: RuntimeDep, _: Read) -> list[PolicyVersionOut]:
    """Every version of a policy, oldest first: from edgecrew.yaml, or applied (by the optimizer, a person)."""
    versions: list[PolicyVersion] = await asyncio.to_thread(_jobs(rt).policy_versions, name)
    return [PolicyVersionOut.of(v) for v in versions]
