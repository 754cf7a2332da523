"""The `edgecrew` command line: thin commands that parse, call a service and render."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from edgecrew.cli.agents import agents_app
from edgecrew.cli.alerts import alerts_app
from edgecrew.cli.approvals import approvals_app
from edgecrew.cli.chat import chat_app
from edgecrew.cli.cluster import cluster_app, worker
from edgecrew.cli.common import ProjectOpt, arun, console, err, guard, runtime, say_orphaned, say_warnings, shown
from edgecrew.cli.feedback import feedback_app
from edgecrew.cli.feedback import rate as rate_run
from edgecrew.cli.incidents import incidents_app
from edgecrew.cli.jobs import jobs_app
from edgecrew.cli.mcp import mcp_app
from edgecrew.cli.memory import memory_app
from edgecrew.cli.models import models_app
from edgecrew.cli.projects import projects_app
from edgecrew.cli.render import print_result as _print_result
from edgecrew.cli.render import say_waits
from edgecrew.cli.render import status_markup as _status
from edgecrew.cli.render import when as _when
from edgecrew.cli.routines import routines_app
from edgecrew.cli.server import keys_app, serve
from edgecrew.cli.tasks import tasks_app
from edgecrew.cli.tui import tui
from edgecrew.domain.runs import RunStatus, started_by
from edgecrew.domain.text import counted
from edgecrew.errors import EdgecrewError, NotFoundError, SpecError, SpecIssue

if TYPE_CHECKING:
    from edgecrew.specs.project import TeamSource

app = typer.Typer(
    name="edgecrew",
    help="Durable teams of LLM agents on small local models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
teams_app = typer.Typer(help="List and show teams.", no_args_is_help=True)
tools_app = typer.Typer(help="Tools agents may be allowed to call.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(teams_app, name="teams")
app.add_typer(models_app, name="models")
app.add_typer(tools_app, name="tools")
app.add_typer(approvals_app, name="approvals")
app.add_typer(mcp_app, name="mcp")
app.add_typer(keys_app, name="keys")
app.add_typer(tasks_app, name="tasks")
app.add_typer(feedback_app, name="feedback")
app.add_typer(agents_app, name="agents")
app.add_typer(projects_app, name="projects")
app.add_typer(routines_app, name="routines")
app.add_typer(alerts_app, name="alerts")
app.add_typer(jobs_app, name="jobs")
app.add_typer(cluster_app, name="cluster")
app.add_typer(incidents_app, name="incidents")
app.add_typer(chat_app, name="chat")
app.add_typer(memory_app, name="memory")
runs_app.command("rate")(rate_run)
app.command()(serve)
app.command()(tui)
app.command()(worker)

# -- run / resume / cancel ------------------------------------------------------------------------


@app.command()
def run(
    team: Annotated[
        str,
        typer.Argument(
            help="Team name (see `edgecrew teams list`), TEAM/AGENT for one of its agents alone (as /v1 names"
            " it), or a team YAML file."
        ),
    ],
    task: Annotated[str, typer.Argument(help="What the team should do.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print only the result, as JSON.")] = False,
    works_in: Annotated[
        str | None,
        typer.Option("--in", help="A project (see `edgecrew projects list`) whose files and memory the run uses."),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Run a team on a task, showing progress live, and print its output."""
    from edgecrew.cli.render import LiveRenderer
    from edgecrew.engine.service import RunService, TeamFile, TeamName
    from edgecrew.settings import get_settings

    is_file = team.endswith((".yaml", ".yml")) and Path(team).exists()
    ref = TeamFile(Path(team)) if is_file else TeamName(team)
    if is_file and project is None and guard(get_settings).project is None:
        project = _project_above(Path(team).resolve())  # the file's own project, as `validate FILE` reads it

    async def body() -> int:
        svc = RunService(runtime(project, mcp=True))
        recovery = await svc.recover()
        if not as_json:
            _report_recovery(recovery)
        alone = not is_file and "/" in team and team.partition("/")[0] in svc.rt.project.teams
        if alone:  # `team/agent`: the agent on its own, as /v1 runs it (and a regression case names it)
            from edgecrew.engine.chat import ChatService

            started = await svc.start(ChatService(svc).team_for(team), task, project=works_in)
        else:
            started = await svc.start(ref, task, project=works_in)
        say_warnings(started.spec_warnings)  # what may fail later; the run goes on all the same
        if started.warning:  # e.g. no live worker on the cluster's queue: the run waits for one
            typer.echo(f"warning: {started.warning}", err=True)
        if as_json:
            done = await svc.finish(started, say_waits)
        else:
            console.print(f"run [bold]{started.run.id}[/]  (edgecrew runs show {started.run.id})")
            with LiveRenderer(console) as live:
                done = await svc.finish(started, live)
        _print_result(done, as_json)
        await _wait_for_adopted(svc, recovery.adopted, quiet=as_json)
        return 0 if done.ok else 1

    raise typer.Exit(arun(body))


def _report_recovery(recovery: Any) -> None:
    if recovery.adopted:
        console.print(
            f"[yellow]Resuming {len(recovery.adopted)} interrupted run(s) in this process:[/] "
            + ", ".join(recovery.adopted)
        )
    for run_id, missing in recovery.blocked:
        console.print(
            f"[yellow]Run {run_id} was interrupted and cannot go on here:[/] this project no longer has "
            f"{escape(missing)}; restore it and `edgecrew resume {run_id}`"
        )
    for run in recovery.elsewhere:
        console.print(
            f"[yellow]Run {run.id} of project {run.project} was interrupted;[/] resume it there: "
            f"edgecrew resume {run.id} -p {run.project}"
        )


async def _wait_for_adopted(svc: Any, adopted: list[str], *, quiet: bool) -> None:
    """Runs this process adopted at start-up go on here (leaving would interrupt them again) until they
    end or wait for a person: an approval may take days, and the next process to start takes them up."""
    import asyncio

    from edgecrew.domain.runs import RunStatus

    for other in adopted:
        announced = False
        while not (
            (run := await asyncio.to_thread(svc.get, other)).status.terminal or run.status == RunStatus.WAITING_APPROVAL
        ):
            if not (quiet or announced):
                console.print(f"[dim]waiting for resumed run {other} (Ctrl-C leaves it for later)…[/]")
                announced = True
            await svc.follow(other, timeout_s=1.0)
        if run.status == RunStatus.WAITING_APPROVAL and not quiet:
            console.print(
                f"[dim]resumed run {other} waits for an approval (edgecrew approvals list); left for later[/]"
            )


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")], project: ProjectOpt = None
) -> None:
    """Resume an interrupted run from its last finished step."""
    from edgecrew.cli.render import LiveRenderer
    from edgecrew.engine.service import RunService, Started

    async def body() -> int:
        rt = runtime(project)
        if project is None:  # resume where the run was started: it needs that project's models and tools
            recorded = RunService(rt).get(run_id).project
            if recorded and Path(recorded) != rt.project.dir and Path(recorded).is_dir():
                rt = runtime(Path(recorded), mcp=True)
            else:
                rt = runtime(project, mcp=True)
        svc = RunService(rt)
        run, what, recovery = await svc.resume(run_id)
        console.print(f"run [bold]{run.id}[/]: {what}")
        started = Started(run, False, await _handle_here(run.id))
        with LiveRenderer(console) as live:
            done = await svc.finish(started, live, after_id=svc.last_event_id(run.id))
        _print_result(done, False)
        await _wait_for_adopted(svc, [r for r in recovery.adopted if r != run.id], quiet=False)
        return 0 if done.ok else 1

    raise typer.Exit(arun(body))


async def _handle_here(run_id: str) -> Any:
    """The workflow's handle when this process runs it (None otherwise: nothing to wait for)."""
    from dbos import DBOS

    try:
        return await DBOS.retrieve_workflow_async(run_id)
    except Exception:  # not run by this process
        return None


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")]) -> None:
    """Cancel a run; it stops at its next step, even when another process runs it."""
    from edgecrew.engine.service import RunService

    run = guard(lambda: RunService(runtime()).cancel(run_id))
    console.print(f"run [bold]{run.id}[/] {run.status.value}")


# -- runs -----------------------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs, newest first.")] = 20,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs with this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List recent runs."""
    if limit < 1:
        err.print("[red]error:[/] --limit must be at least 1")
        raise typer.Exit(2)
    from edgecrew.engine.service import RunService

    svc = RunService(guard(runtime))
    runs = guard(lambda: svc.list_runs(limit=limit, status=status.value if status else None))
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "team": r.team,
                        "status": r.status.value,
                        "task": r.task,
                        "created_at": r.created_at,
                    }
                    for r in runs
                ]
            )
        )
        return
    if not runs and status is not None:
        console.print(f"no {status.value} runs (every run: `edgecrew runs list`)")
        return
    if not runs:
        console.print('no runs yet — try: edgecrew run plan-write-review "Write a haiku about edge AI"')
        return
    table = Table("team", "status", "created", "task")
    table.columns.insert(0, Column("run", no_wrap=True, min_width=16))
    for r in runs:
        table.add_row(r.id, r.team, _status(r.status.value), _when(r.created_at), escape(r.task[:60]))
    console.print(table)
    if len(runs) == limit and (total := svc.count_runs(status=status.value if status else None)) > limit:
        console.print(f"[dim]the newest {limit} of {total}; more with --limit N[/]")


@runs_app.command("show")
def runs_show(run_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a run: status, output and each agent step with its tokens."""
    from edgecrew.domain.events import ModelCalled, RunStarted
    from edgecrew.engine.service import RunService
    from edgecrew.projects import ProjectService

    svc = RunService(guard(runtime))
    run = guard(lambda: svc.get(run_id))
    steps = svc.steps(run.id)
    works_in = ProjectService.of(svc.rt).project_of_run(run.id)  # its files at project/, its memory
    if as_json:
        print(
            json.dumps(
                {
                    "id": run.id,
                    "team": run.team,
                    "task": run.task,
                    "status": run.status.value,
                    "output": run.output,
                    "error": run.error,
                    # what started it when no person did (a from-step run's copied outputs left out)
                    "trigger": {k: v for k, v in run.trigger.items() if k != "seed"} if run.trigger else None,
                    "project": {"id": works_in.id, "name": works_in.name} if works_in else None,
                    "steps": [
                        {
                            "key": s.key,
                            "agent": s.agent,
                            "outcome": s.outcome,
                            "output": s.output,
                            "model_calls": s.model_calls,
                            "tool_calls": s.tool_calls,
                            "prompt_tokens": s.prompt_tokens,
                            "completion_tokens": s.completion_tokens,
                        }
                        for s in steps
                    ],
                },
                ensure_ascii=False,
            )
        )
        return
    console.print(f"run [bold]{run.id}[/] · team {run.team} · {_status(run.status.value)} · {_when(run.created_at)}")
    try:
        orphaned = svc.orphaned(run)  # "running" alone would read as if something still worked on it
    except Exception:  # no DBOS system database to ask (no process ever ran one here): nothing to add
        orphaned = False
    finally:
        svc.close()  # the DBOS client it opened to look
    if orphaned:
        say_orphaned(run)
    console.print(f"task: {escape(run.task)}")
    if works_in is not None:
        files = f"edgecrew projects files {works_in.id}"
        console.print(f"project: {escape(works_in.name)} ({works_in.id}; its files: {files})")
    if (by := started_by(run.trigger)) is not None:
        console.print(f"started by: {escape(by)}")
    events = svc.event_page(run.id)
    started = next((p for e in reversed(events) if isinstance(p := e.payload, RunStarted)), None)
    if started is not None and started.executor and started.executor != run.executor:
        # Another process runs it (a cluster worker, or one that resumed it): its files are on that machine.
        console.print(f"ran by: {escape(started.executor)} (its workspace there: {escape(started.workspace)})")
    elif run.workspace:
        console.print(f"workspace: {run.workspace}")
    table = Table("step", "agent", "outcome", "calls", "tokens", "output")
    for s in steps:
        table.add_row(
            s.key,
            s.agent,
            s.outcome or s.status,
            f"{s.model_calls}m/{s.tool_calls}t",
            f"{s.prompt_tokens}+{s.completion_tokens}",
            escape(json.dumps(s.output)[:70]) if s.output else "",
        )
    console.print(table)
    calls = [(e.key, p) for e in events if isinstance(p := e.payload, ModelCalled) and p.ok]
    if calls:
        usage = Table(
            "call",
            "model",
            "backend",
            "prompt",
            "cached",
            "completion",
            "ttft s",
            "latency s",
            "tok/s",
            title="model calls",
        )
        for key, call in calls:
            usage.add_row(
                key.removesuffix(".model"),
                call.alias,
                call.backend,
                str(call.prompt_tokens),
                str(call.cached_tokens),
                str(call.completion_tokens),
                f"{call.ttft_s:.2f}" if call.ttft_s is not None else "",
                f"{call.latency_s or 0:.2f}",
                f"{call.tokens_per_s:.1f}",
            )
        console.print(usage)
    if run.error:
        console.print(f"[red]error:[/] {escape(run.error)}")
    if run.output is not None:
        console.print_json(json.dumps(run.output, ensure_ascii=False))


@runs_app.command("checklist")
def runs_checklist(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The run's checklist as markdown: its agents' work with states, open questions and notes."""
    from edgecrew.engine.service import RunService

    found = guard(lambda: RunService(runtime()).checklist(run))
    if as_json:
        print(json.dumps(dataclasses.asdict(found)))
        return
    print(shown(found.to_markdown()), end="")


@runs_app.command("events")
def runs_events(
    run_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print a run's events (the same stream the API and UI read)."""
    from edgecrew.cli.render import event_line
    from edgecrew.engine.service import RunService

    svc = RunService(guard(runtime))
    run = guard(lambda: svc.get(run_id))

    def show(e: Any) -> None:
        if as_json:
            print(
                json.dumps(
                    {
                        "id": e.id,
                        "type": e.type,
                        "agent": e.agent,
                        "step": e.step_key,
                        "data": e.data,
                        "at": e.created_at,
                    },
                    ensure_ascii=False,
                ),
                flush=True,
            )
        else:
            console.print(f"[dim]{e.id:>5}[/] " + (event_line(e) or e.type))

    if follow:
        # A run no live process runs would never end: stop following it and say how to go on.
        last = arun(lambda: svc.follow(run.id, show, stop_when_orphaned=True))
        if not last.status.terminal:
            say_orphaned(last)
            raise typer.Exit(1)
    else:
        for e in svc.event_page(run.id):
            show(e)


# -- teams / validate / init / doctor -------------------------------------------------------------


@teams_app.command("list")
def teams_list(project: ProjectOpt = None) -> None:
    """List the teams this project can run (built-in and project teams)."""
    rt = guard(lambda: runtime(project))
    table = Table("team", "source", "agents", "status")
    for name, source in sorted(rt.project.teams.items()):
        try:
            spec = rt.project.load_team(name, rt.catalog())
            agents, state = ", ".join(spec.agents), "[green]valid[/]"
            if spec.warnings:  # `edgecrew validate` says what each is
                state += f", [yellow]{counted(len(spec.warnings), 'warning')}[/]"
            if spec.internal:  # edgecrew starts it itself: chat, MCP, A2A and the UI's run forms do not offer it
                state += ", [cyan]internal[/]"
        except SpecError as exc:
            agents, state = "", f"[red]{len(exc.issues)} problem(s)[/]"
        table.add_row(name, "built-in" if source.builtin else str(source.file), agents, state)
    console.print(table)


@tools_app.command("list")
def tools_list(project: ProjectOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the tools of this project (built-in and plugins) with their arguments."""
    from edgecrew.bootstrap import load_catalog
    from edgecrew.settings import get_settings

    settings = get_settings() if project is None else get_settings().model_copy(update={"project": project})
    _, _, tools = guard(lambda: load_catalog(settings, mcp=True))
    specs = tools.specs()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "name": t.name,
                        "description": t.description,
                        "input_schema": t.input_schema,
                        "risk": t.risk,
                        "aliases": list(t.aliases),
                    }
                    for t in specs
                ]
            )
        )
        return
    table = Table("tool", "arguments", "description")
    for t in specs:
        props = t.input_schema.get("properties", {})
        required = set(t.input_schema.get("required", []))
        args = ", ".join(f"{n}{'' if n in required else '?'}: {_arg_type(p)}" for n, p in props.items())
        risky = " (risky: runs only once a person approves it)" if t.risk == "risky" else ""
        table.add_row(t.name, args, t.description + risky)
    console.print(table)


def _arg_type(schema: dict[str, Any]) -> str:
    """An argument's type as `tools list` shows it: a choice's values ('github|gitlab'), and an optional
    one's own type ('string' for string-or-null, which read as 'any')."""
    if "enum" in schema:
        return "|".join(str(v) for v in schema["enum"] if v is not None)
    kinds = schema.get("type")
    if isinstance(kinds, str):
        return kinds
    if isinstance(kinds, list):
        return "|".join(k for k in kinds if k != "null") or "null"
    options = [_arg_type(o) for o in schema.get("anyOf", schema.get("oneOf", [])) if o.get("type") != "null"]
    return "|".join(dict.fromkeys(options)) or "any"


@teams_app.command("show")
def teams_show(team: str, project: ProjectOpt = None) -> None:
    """Print a team's YAML (its file named on stderr), as it is: `teams show T > my.yaml` copies it."""
    rt = guard(lambda: runtime(project))
    source = guard(lambda: rt.project.team_source(team))
    err.print(f"[dim]{escape(str(source.file))}[/]")
    text = source.file.read_text()
    sys.stdout.write(shown(text) if text.endswith("\n") else shown(text) + "\n")  # whole lines, never wrapped


@app.command()
def validate(
    path: Annotated[
        Path | None,
        typer.Argument(help="A team YAML file, a project directory or a team's name (default: the project)."),
    ] = None,
) -> None:
    """Check team specs and report every problem with file, line and fix."""

    def body() -> int:
        from edgecrew.bootstrap import load_catalog
        from edgecrew.engine.runtime import catalog_of
        from edgecrew.settings import get_settings

        target = (path or get_settings().project_dir).resolve()
        named = path is not None and not target.exists() and path.name == str(path)  # a team's name?
        if not target.exists() and not named:
            err.print(f"[red]error:[/] {escape(str(target))} does not exist")
            return 2
        project_dir = get_settings().project_dir if named else target if target.is_dir() else _project_of(target)
        settings = get_settings().model_copy(update={"project": project_dir})
        project, models, tools = load_catalog(settings, mcp=True)
        catalog = catalog_of(models, tools, project.agent_docs(), project.agent_files())
        sources: list[TeamSource | Path]  # a file is read in the loop below, with the other problems
        if named:
            if str(path) not in project.teams:
                try:
                    project.named_source(str(path))
                except NotFoundError as exc:  # the teams there are, and the closest name
                    err.print(f"[red]error:[/] {escape(str(path))} is neither a file, a directory nor a team: {exc}")
                return 2
            sources = [project.named_source(str(path))]
        elif target.is_file():
            sources = [target]
        elif project.config_file is None and not (target / "teams").is_dir():  # not a project: a folder of teams
            sources = [f for f in sorted(target.glob("*.y*ml")) if not f.name.startswith(".")]
        else:
            sources = [s for s in project.sources if not s.builtin]
        problems = [] if named or target.is_file() else list(project.duplicates)
        warnings = [] if named or target.is_file() else _policies_never_met(project)
        library = [] if named or target.is_file() else [a for a in project.agents.values() if not a.builtin]
        for agent in library:
            try:
                project.load_agent(agent.name, catalog)
                console.print(f"[green]✓[/] agent {agent.name} ({agent.file})", soft_wrap=True)
            except SpecError as exc:
                problems += exc.issues
                warnings += exc.warnings
        if not sources and not problems and not library:
            if project.config_file is None:  # nothing here is edgecrew's: a wrong path, not a valid project
                err.print(
                    f"[red]error:[/] nothing to check in {escape(str(target))}: no edgecrew.yaml, teams/*.yaml"
                    " or *.yaml there; give a project directory, a team file or a team's name"
                )
                return 1
            console.print(f"[green]✓[/] {project.config_file}: valid", soft_wrap=True)
            console.print(f"no teams in {target} (looked at edgecrew.yaml, teams/*.yaml and *.yaml)")
            say_warnings(warnings)
            return 0
        for source in sources:
            try:
                spec = project.load_source(
                    project.team_source(str(source)) if isinstance(source, Path) else source, catalog
                )
                console.print(
                    f"[green]✓[/] {spec.name} ({spec.source}): "
                    f"{counted(len(spec.agents), 'agent')}, {counted(len(spec.graph.edges), 'edge')}",
                    soft_wrap=True,  # a path is one line however narrow the terminal
                )
                warnings += spec.warnings
            except SpecError as exc:
                problems += exc.issues
                warnings += exc.warnings
        if not (named or target.is_file()):
            problems += _builtin_teams_broken(project, catalog)
        for issue in problems:
            err.print(f"[red]✗[/] {escape(str(issue))}")
        say_warnings(warnings)  # after the errors: those are what to fix first
        return 2 if problems else 0  # warnings alone pass: the team may well run

    raise typer.Exit(guard(body))


def _builtin_teams_broken(project: Any, catalog: Any) -> list[Any]:
    """The problems of built-in teams that use a library agent this project replaces (its agents/NAME.yaml
    wins in every team): the project broke them, so they are the project's problems."""
    found = []
    for name, agents in project.builtin_teams_overridden().items():
        try:
            project.load_source(project.teams[name], catalog)
        except SpecError as exc:
            replaced = ", ".join(f"'{a}'" for a in agents)
            err.print(
                f"[yellow]![/] built-in team {name} uses {replaced}, which this project's agents/ replaces:",
                soft_wrap=True,
            )
            found += exc.issues
    return found


def _policies_never_met(project: Any) -> list[SpecIssue]:
    """Policies this machine can never satisfy: warnings, not problems (the file may be for another)."""
    if not project.policies or project.config_file is None:
        return []
    import psutil

    from edgecrew.specs.jobs import never_met
    from edgecrew.specs.yamlsrc import line_of, read_yaml

    raw = read_yaml(project.config_file)
    return [
        SpecIssue(
            str(project.config_file), line_of(raw, ("policies", name, "min_free_memory")), what, severity="warning"
        )
        for name, what in never_met(project.policies, psutil.virtual_memory().total)
    ]


def _project_of(file: Path) -> Path:
    """The project a team file belongs to: the nearest folder above it holding edgecrew.yaml."""
    found = _project_above(file)
    if found is not None:
        return found
    return file.parent.parent if file.parent.name == "teams" else file.parent


def _project_above(file: Path) -> Path | None:
    """The nearest folder above ``file`` holding an edgecrew.yaml (None: the file is in no project)."""
    return next((folder for folder in file.parents if (folder / "edgecrew.yaml").exists()), None)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path(".")) -> None:
    """Create a project with an example team you can run and edit."""
    from edgecrew.cli.scaffold import create_project

    created = guard(lambda: create_project(directory))
    for file in created:
        console.print(f"[green]created[/] {file}")
    console.print(
        f'\nnext: cd {directory} && edgecrew validate && edgecrew run example "Summarize why edge AI matters"'
    )


@app.command()
def doctor() -> None:
    """Check this machine: Python, CPU, RAM, model files, data dir; say what is missing and how to fix it."""
    from edgecrew.cli.doctor import run_checks

    ok = True
    table = Table("check", "status", "detail")
    for check in run_checks():
        ok = ok and (check.ok or not check.required)
        mark = "[green]ok[/]" if check.ok else ("[red]missing[/]" if check.required else "[yellow]warn[/]")
        detail = check.detail + (f"\n[yellow]fix:[/] {escape(check.fix)}" if not check.ok and check.fix else "")
        table.add_row(check.name, mark, detail)
    console.print(table)
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    """The ``edgecrew`` command: :func:`dispatch`, then out without tearing the interpreter down.

    Python's own exit clears the ~900 modules a command imports one by one: ~200 ms on a 2-core VM
    after every command, more on a Pi, for a process that is ending anyway. So the command ends the
    way the interpreter would, minus that: non-daemon threads joined (DBOS's executor finishing what
    it records), exit handlers run (logging flushed, temporary folders removed, the store's connections
    closed so SQLite folds its log back into the database file), the standard streams flushed (an
    output that cannot be written is status 120, as Python's), then ``os._exit`` with the command's
    status. Nothing durable depends on the teardown: the
    store and DBOS are built to survive a kill -9 at any point. (To run the CLI inside another
    program, call :func:`dispatch`: it raises SystemExit like any click app.)"""
    try:
        dispatch()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    _leave(code)


def _leave(code: object) -> None:
    """Exit with ``code`` as ``sys.exit`` would (None 0, an int itself, anything else printed, 1)."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    shutdown_threads = getattr(threading, "_shutdown", None)  # what the interpreter calls first at exit
    if shutdown_threads is None:  # another Python: the ordinary way out
        raise SystemExit(status)
    shutdown_threads()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader is gone: nothing to tell it; the status says so, as Python's
        status = 120
    except (OSError, ValueError) as exc:  # a full disk, a closed file: the output is lost, say so
        with contextlib.suppress(Exception):
            print(f"error: could not write the output: {exc}", file=sys.stderr)
        status = 120
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(status)


def dispatch() -> None:
    """Run the command ``sys.argv`` names; raises SystemExit with its status."""
    for i, arg in enumerate(sys.argv[1:], 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # bytes the terminal's encoding could not read (kept as surrogates)
            shown = repr(os.fsencode(arg))[2:-1]
            err.print(f"[red]error:[/] argument {i} ({escape(shown)}) is not valid UTF-8 text; check its encoding")
            raise SystemExit(2) from None
    try:
        app(prog_name="edgecrew")
    except EdgecrewError as exc:  # raised before a command's own guard (a bad setting, say): no traceback
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise SystemExit(2 if isinstance(exc, SpecError) else 1) from None


if __name__ == "__main__":
    main()
