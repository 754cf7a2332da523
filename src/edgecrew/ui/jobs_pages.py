"""Mission control's jobs pages: the list with a submit form and the policies in force (/ui/jobs), and
one job (/ui/jobs/{id}): its state, why it waits (which policy says no, and why), its measured usage
and what happened to it. Submitting and cancelling are plain form posts answered with a redirect; a
plain (unsandboxed) command needs the admin scope, as in the API. What the form itself can get wrong
(the kind, an empty command, team or task, a deadline past the year 9999) is checked here and named
by the form's own labels: the jobs service words those for the CLI's flags."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgecrew.engine.chat import public_teams
from edgecrew.engine.service import TASK_MAX_CHARS, TASK_PATTERN
from edgecrew.errors import EdgecrewError
from edgecrew.ops import Ops
from edgecrew.ops.jobs import LAST_DEADLINE, JobNeeds, JobService, awaiting_approval
from edgecrew.store.jobs import JOB_STATES
from edgecrew.ui.pages import Viewer, back, checked, need, page
from edgecrew.ui.session import Session

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
MiB = 2**20
Checked = Annotated[Session, Depends(checked)]  # a signed-in session whose form carries its CSRF token


def _jobs(request: Request) -> JobService:
    return Ops.of(request.app.state.rt).jobs


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "–"


def _usage(usage: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not usage:
        return []
    shown = []
    if usage.get("peak_rss_bytes") is not None:
        shown.append(("peak RSS", f"{usage['peak_rss_bytes'] / MiB:.1f} MiB"))
    if usage.get("cpu_s") is not None:
        shown.append(("CPU time", f"{usage['cpu_s']:.2f} s"))
    if usage.get("wall_s") is not None:
        shown.append(("wall time", f"{usage['wall_s']:.2f} s"))
    if usage.get("exit_code") is not None:
        shown.append(("exit code", str(usage["exit_code"])))
    for key in ("model_calls", "prompt_tokens", "completion_tokens"):
        if usage.get(key):
            shown.append((key.replace("_", " "), str(usage[key])))
    return shown


@router.get("/ui/jobs")
async def jobs_page(
    request: Request,
    session: Viewer,
    state: Annotated[str | None, Query(max_length=16)] = None,
    notice: str = "",
) -> HTMLResponse:
    jobs = _jobs(request)

    def read() -> tuple[list[Any], dict[str, Any], dict[str, str]]:
        listed = jobs.list_jobs(state=state or None, limit=200)
        statuses = jobs.run_statuses(listed)
        waits = {j.id: why for j in listed if (why := awaiting_approval(j, statuses.get(j.id)))}
        return listed, jobs.effective_policies(), waits

    listed, policies, waits = await asyncio.to_thread(read)
    teams = await asyncio.to_thread(public_teams, request.app.state.rt)  # not the internal ones
    return page(request, "jobs.html", session, jobs=listed, policies=policies, states=JOB_STATES, waits=waits,
                state=state or "", teams=teams, when=_when, notice=notice, dumps=json.dumps)  # fmt: skip


@router.post("/ui/jobs")
async def submit_job(
    request: Request,
    session: Checked,
    kind: Annotated[str, Form(max_length=16)] = "command",
    command: Annotated[str, Form(max_length=20_000)] = "",
    team: Annotated[str, Form(max_length=200)] = "",
    task: Annotated[str, Form(max_length=TASK_MAX_CHARS)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    sandbox: Annotated[str, Form(max_length=8)] = "",
    # POST /jobs's bounds: an infinite size (memory_mb=inf) made a 500 (no int is infinite)
    memory_mb: Annotated[float, Form(ge=0, le=2**30)] = 0,
    cpu_cores: Annotated[float, Form(ge=0, le=4096)] = 0,
    priority: Annotated[int, Form(ge=0, le=100)] = 50,
    deadline_min: Annotated[float, Form(ge=0)] = 0,
    tags: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    need(session, "runs")
    boxed = bool(sandbox)
    try:
        argv = shlex.split(command) if kind == "command" else None
    except ValueError as exc:
        return back("/ui/jobs", f"Command: {exc}")
    deadline = time.time() + deadline_min * 60 if deadline_min else None
    problem = _form_problem(request, kind, argv, team, task, deadline_min, deadline)
    if problem:
        return back("/ui/jobs", problem)
    if argv is not None and not boxed and not session.allows("admin"):
        return back(
            "/ui/jobs", "a plain command runs as the server's own user: it needs the admin scope (tick sandbox)"
        )
    try:
        job = await _jobs(request).submit(
            argv=argv,
            team=team or None if kind == "team" else None,
            task=task or None if kind == "team" else None,
            name=name or None,
            sandbox=boxed and argv is not None,
            needs=JobNeeds(cpu_cores=cpu_cores, memory_bytes=int(memory_mb * MiB)),
            priority=priority,
            deadline=deadline,
            tags=[t for t in tags.replace(",", " ").split() if t],
            submitted_by=f"ui:{session.name}",
        )
    except EdgecrewError as exc:
        return back("/ui/jobs", str(exc))
    return RedirectResponse(f"/ui/jobs/{job.id}", status_code=303)


def _form_problem(
    request: Request, kind: str, argv: list[str] | None, team: str, task: str, minutes: float, deadline: float | None
) -> str | None:
    """What is wrong in the form, named by its labels; None where the jobs service is to judge."""
    if kind not in ("command", "team"):
        return f"What it runs: {kind!r} is neither a command nor a team run; choose one"
    if argv is not None and not (argv and argv[0].strip()):
        return "Command: it is empty; write the command to run, e.g. python train.py"
    if kind == "team":
        known = sorted(request.app.state.rt.project.teams)
        if not team:
            return "Team: choose the team that runs the job"
        if team not in known:
            return f"Team: there is no team {team!r} (known: {', '.join(known) or 'none'})"
        if team not in public_teams(request.app.state.rt):
            return f"Team: {team!r} is internal (edgecrew starts it itself); choose another"
        if re.search(TASK_PATTERN, task) is None:
            return "Task: say what the team should do"
    if deadline is not None and not deadline < LAST_DEADLINE:
        return (
            f"Must start within (minutes): {minutes:g} minutes is after the year 9999; "
            "give fewer minutes, or 0 for no deadline"
        )
    return None


@router.get("/ui/jobs/{job_id}")
async def job_page(request: Request, job_id: str, session: Viewer, notice: str = "") -> HTMLResponse:
    jobs = _jobs(request)

    def read() -> tuple[Any, list[Any], str | None]:
        job = jobs.get(job_id)
        return job, jobs.events(job_id), awaiting_approval(job, jobs.run_statuses([job]).get(job.id))

    job, events, waits = await asyncio.to_thread(read)
    logs = jobs.job_dir(job.id) if job.kind == "command" and job.started_at else None
    return page(request, "job.html", session, job=job, events=events, usage=_usage(job.usage), when=_when,
                logs=logs, notice=notice, dumps=json.dumps, waits=waits)  # fmt: skip


@router.post("/ui/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str, session: Checked) -> Response:
    need(session, "runs")
    try:
        job = await asyncio.to_thread(_jobs(request).cancel, job_id, f"ui:{session.name}")
    except EdgecrewError as exc:
        return back(f"/ui/jobs/{job_id}", str(exc))
    return back(f"/ui/jobs/{job.id}", f"job {job.state}")
