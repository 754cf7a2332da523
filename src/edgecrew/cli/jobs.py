"""`edgecrew jobs submit|list|show|cancel|policies`: jobs under policies from a terminal.

The one design decision: these commands only record and read; a server (`edgecrew serve`) admits and
runs the jobs (its job queue), so a job submitted here outlives this command and starts once, where the
server decides, when its policies allow.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from edgecrew.cli.common import ProjectOpt, arun, console, guard, runtime
from edgecrew.errors import UserError

if TYPE_CHECKING:
    from edgecrew.ops.jobs import JobService
    from edgecrew.store.jobs import JobRecord

jobs_app = typer.Typer(help="Jobs that start when their policies allow (submit, list, show, cancel, policies).",
                       no_args_is_help=True)  # fmt: skip
COLOURS = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "interrupted": "yellow", "running": "cyan"}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNIT_S = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _service(project: Path | None) -> JobService:
    from edgecrew.ops import Ops

    return Ops.of(guard(lambda: runtime(project))).jobs


def parse_span(text: str, what: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``2h`` or ``1d``."""
    match = _SPAN.match(text)
    if match is None:
        raise UserError(f"{what}: cannot read '{text}'; write e.g. 90s, 30m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[(match.group(2) or "").lower() or None]


def parse_deadline(text: str, now: float | None = None) -> float:
    """Epoch seconds from ``+2h`` (from now) or an ISO time (``2026-12-07T06:00``; no zone: local time)."""
    now = time.time() if now is None else now
    if text.strip().startswith("+"):
        return now + parse_span(text.strip()[1:], "--deadline")
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UserError(f"--deadline: cannot read '{text}'; write +2h or a time like 2026-12-07T06:00") from None


def _size(text: str | None, what: str) -> int:
    from edgecrew.domain.sizes import parse_size

    if text is None:
        return 0
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):  # "4": four bytes is never what was meant
        raise UserError(f"{what}: '{text.strip()}' has no unit; write e.g. {text.strip()}GiB or {text.strip()}MiB")
    try:
        return int(parse_size(text.strip()) or 0)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from None


def _state(value: str) -> str:
    return f"[{COLOURS.get(value, 'blue')}]{value}[/]"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _plain(job: JobRecord, run_status: str | None = None) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(job) | {"run_status": run_status}


def _shown_state(job: JobRecord, waits: str | None) -> str:
    """The job's state, and what its run waits for when that is a person (derived from the run)."""
    return _state(job.state) + (" [yellow]waiting for approval[/]" if waits else "")


@jobs_app.command("submit")
def jobs_submit(
    argv: Annotated[list[str] | None, typer.Argument(help="The command, after --: `-- python train.py`.")] = None,
    team: Annotated[str | None, typer.Option(help="Run this team instead of a command.")] = None,
    task: Annotated[str | None, typer.Option(help="The team's task.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the job (policies match it by glob).")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory it needs, e.g. 4GiB.")] = None,
    cpus: Annotated[float, typer.Option(min=0, help="CPU cores it keeps busy.")] = 0.0,
    gpu_memory: Annotated[str | None, typer.Option(help="GPU memory it needs, e.g. 2GiB.")] = None,
    duration: Annotated[str | None, typer.Option(help="How long it should run, e.g. 30m.")] = None,
    priority: Annotated[int, typer.Option(min=0, max=100, help="0 lowest, 100 highest.")] = 50,
    deadline: Annotated[str | None, typer.Option(help="Must start by then: +2h or 2026-12-07T06:00.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat for more).")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Run the command in the sandbox.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    project: ProjectOpt = None,
) -> None:
    """Submit a command (`-- CMD ARGS`) or a team run (`--team T --task "..."`); a server starts it when
    every policy covering it allows."""
    from edgecrew.ops.jobs import JobNeeds

    def needs() -> JobNeeds:
        return JobNeeds(
            cpu_cores=cpus,
            memory_bytes=_size(memory, "--memory"),
            gpu_memory_bytes=_size(gpu_memory, "--gpu-memory"),
            duration_s=parse_span(duration, "--duration") if duration else None,
        )

    declared = guard(needs)
    due = guard(lambda: parse_deadline(deadline)) if deadline else None
    service = _service(project)

    async def go() -> JobRecord:
        try:
            return await service.submit(
                argv=argv or None,
                team=team,
                task=task,
                name=name,
                sandbox=sandbox,
                needs=declared,
                priority=priority,
                deadline=due,
                tags=tag or (),
                submitted_by=_user(),
            )
        finally:
            service.close()

    job = arun(go)
    if as_json:
        print(json.dumps(_plain(job)))
        return
    console.print(f"submitted job [bold]{job.id}[/] ({escape(job.name)}): {_state(job.state)}")
    console.print(f"a server (`edgecrew serve`) starts it when its policies allow; `edgecrew jobs show {job.id}`")


def _user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    project: ProjectOpt = None,
) -> None:
    """Jobs, newest first: state, priority, what they run and why they wait."""
    from edgecrew.ops.jobs import awaiting_approval

    service = _service(project)
    jobs = guard(lambda: service.list_jobs(state=state, limit=limit))
    statuses = service.run_statuses(jobs)
    if as_json:
        print(json.dumps([_plain(j, statuses.get(j.id)) for j in jobs]))
        return
    if not jobs and state is not None and guard(lambda: _service(project).list_jobs(limit=1)):
        console.print(f"no {state} jobs; `edgecrew jobs list` shows the jobs in other states")
        return
    if not jobs:
        console.print("no jobs yet; submit one with `edgecrew jobs submit -- CMD` or `--team T --task ...`")
        return
    table = Table(Column("id", no_wrap=True), "name", Column("state", no_wrap=True), "prio",
                  Column("job", overflow="fold"), "submitted", Column("why", overflow="fold"))  # fmt: skip
    for j in jobs:
        waits = awaiting_approval(j, statuses.get(j.id))
        table.add_row(j.id, escape(j.name), _shown_state(j, waits), str(j.priority), escape(j.command)[:80],
                      _when(j.created_at), escape(waits or j.reason or ""))  # fmt: skip
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="A job id (`edgecrew jobs list`).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    project: ProjectOpt = None,
) -> None:
    """A job: its state, why it waits (each policy that says no), its usage and its history."""
    from edgecrew.ops.jobs import awaiting_approval

    service = _service(project)
    job = guard(lambda: service.get(job_id))
    events = service.events(job_id)
    run_status = service.run_statuses([job]).get(job.id)
    if as_json:
        print(json.dumps({**_plain(job, run_status), "events": [e.__dict__ for e in events]}))
        return
    waits = awaiting_approval(job, run_status)
    console.print(f"[bold]{job.id}[/] {escape(job.name)}: {_shown_state(job, waits)}  (priority {job.priority})")
    if waits:
        console.print(f"  waits on:  [yellow]{escape(waits)}[/]")
    console.print(f"  job:       {escape(job.command)}" + ("  [dim](sandbox)[/]" if job.sandbox else ""))
    if job.tags:
        console.print(f"  tags:      {', '.join(job.tags)}")
    if needs := _needs(job.needs):
        console.print(f"  needs:     {escape(needs)}")
    if job.deadline:
        console.print(f"  deadline:  {_when(job.deadline)}")
    for w in job.waiting_on or []:
        console.print(f"  waits on:  [yellow]{escape(w['policy'])}[/]: {escape(w['reason'])}")
    if job.reason and not job.waiting_on:
        console.print(f"  reason:    {escape(job.reason)}")
    if job.run_id:
        console.print(f"  run:       {job.run_id}  (`edgecrew runs show {job.run_id}`)")
    if job.usage:
        console.print(f"  usage:     {escape(_usage(job.usage))}")
    if job.kind == "command" and job.started_at:
        console.print(f"  logs:      {service.job_dir(job.id)}/stdout.log, stderr.log")
    for e in events:
        detail = f"  {escape(json.dumps(e.detail))}" if e.detail else ""
        console.print(f"  {_when(e.at)}  {e.kind}{detail}", soft_wrap=True)


def _needs(needs: dict[str, Any]) -> str:
    """``{"memory_bytes": 2147483648, "cpu_cores": 1.0}`` -> ``1 CPU core, 2.0 GiB memory``."""
    from edgecrew.domain.sizes import human_size
    from edgecrew.domain.text import counted

    parts = []
    if cores := needs.get("cpu_cores"):
        parts.append(f"{counted(cores, 'CPU core')}")
    if memory := needs.get("memory_bytes"):
        parts.append(f"{human_size(memory)} memory")
    if gpu := needs.get("gpu_memory_bytes"):
        parts.append(f"{human_size(gpu)} GPU memory")
    if duration := needs.get("duration_s"):
        parts.append(f"about {duration / 60:g} min")
    return ", ".join(parts)


def _usage(usage: dict[str, Any]) -> str:
    parts = []
    if usage.get("peak_rss_bytes") is not None:
        parts.append(f"peak RSS {usage['peak_rss_bytes'] / 2**20:.1f} MiB")
    if usage.get("cpu_s") is not None:
        parts.append(f"CPU {usage['cpu_s']:.2f} s")
    if usage.get("wall_s") is not None:
        parts.append(f"wall {usage['wall_s']:.2f} s")
    if usage.get("exit_code") is not None:
        parts.append(f"exit code {usage['exit_code']}")
    if usage.get("model_calls"):
        parts.append(f"{usage['model_calls']} model calls")
    return ", ".join(parts)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="A job id (`edgecrew jobs list`).")],
    project: ProjectOpt = None,
) -> None:
    """Cancel a job: a waiting one never starts; a running one is stopped by the server running it."""
    service = _service(project)
    job = guard(lambda: service.cancel(job_id, by=_user()))
    console.print(f"job [bold]{job.id}[/]: {_state(job.state)}  {escape(job.reason or '')}")


@jobs_app.command("policies")
def jobs_policies(
    name: Annotated[str | None, typer.Argument(help="A policy: list its versions.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    project: ProjectOpt = None,
) -> None:
    """The policies in force with their versions; with NAME, every version of that policy."""
    service = _service(project)
    if name is not None:
        versions = guard(lambda: service.policy_versions(name))
        if as_json:
            print(json.dumps([v.__dict__ for v in versions]))
            return
        table = Table("version", "source", "recorded", Column("reason", overflow="fold"),
                      Column("policy", overflow="fold"))  # fmt: skip
        for v in versions:
            table.add_row(str(v.version), escape(v.source), _when(v.created_at), escape(v.reason),
                          escape(json.dumps(v.doc) if v.doc is not None else "(removed)"))  # fmt: skip
        console.print(table)
        return
    found = guard(service.effective_policies)
    if as_json:
        print(json.dumps({n: {"version": p.version.version, "source": p.version.source,
                              "doc": p.doc.model_dump(mode="json")} for n, p in found.items()}))  # fmt: skip
        return
    if not found:
        console.print("no policies: every job may start at once; declare some under policies: in edgecrew.yaml")
        return
    table = Table("policy", "version", "source", Column("rules", overflow="fold"))
    for n, p in sorted(found.items()):
        rules = p.doc.model_dump(mode="json", exclude_defaults=True)
        table.add_row(escape(n), str(p.version.version), escape(p.version.source), escape(json.dumps(rules)))
    console.print(table)
