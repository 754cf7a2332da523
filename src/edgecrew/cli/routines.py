"""`edgecrew routines ...`: the routines of edgecrew.yaml, their schedules and firings.

Firings happen in `edgecrew serve` (each firing once, however many servers are up); these commands
read and change the schedules that the servers follow, and `trigger` runs a routine now, here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from edgecrew.cli.common import ProjectOpt, arun, console, guard, runtime
from edgecrew.cli.render import LiveRenderer, print_result, status_markup

routines_app = typer.Typer(
    help="Routines: teams run on a cron schedule by `edgecrew serve` (declared under routines: in edgecrew.yaml).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Routine name (see `edgecrew routines list`).")]


def _routines(project: Any, *, mcp: bool = False) -> Any:
    from edgecrew.ops import Ops

    return Ops.of(runtime(project, mcp=mcp)).routines


def _at(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else "—"


def _status(value: str) -> str:
    colour = {"active": "green", "paused": "yellow", "invalid": "red"}.get(value, "dim")
    return f"[{colour}]{value}[/]"


@routines_app.command("list")
def list_routines(project: ProjectOpt = None) -> None:
    """Each routine with its schedule, state, next and last firing, and its last run."""

    def body() -> None:
        states = _routines(project).states()
        if not states:
            console.print(
                "no routines; declare them in edgecrew.yaml, e.g.\n"
                "routines:\n  morning:\n    team: machine-check\n    task: How is this machine doing?\n"
                '    cron: "0 8 * * 1-5"\n    timezone: Europe/Berlin'
            )
            return
        table = Table(
            Column("routine", no_wrap=True),  # whole: the name the other commands take
            "team",
            "schedule",
            "state",
            "next firing",
            "last firing",
            "last run",
        )
        for s in states:
            last = f"{s.last_run.id} {status_markup(s.last_run.status.value)}" if s.last_run else "—"
            table.add_row(
                s.name,
                s.doc.team + (f"\nin {s.doc.project}" if s.doc.project else ""),
                f"{s.doc.cron} ({s.doc.timezone})",
                _status(s.status) + (f" ({s.schedule})" if s.status == "invalid" and s.schedule == "paused" else ""),
                _at(s.next_firing),
                _at(s.last_firing),
                last,
            )
        console.print(table)
        for s in states:
            if s.problem:
                console.print(f"[red]{s.name}:[/] {escape(s.problem)}")
            elif s.status == "not scheduled":
                console.print(f"[dim]{s.name}: fires once `edgecrew serve` is up[/]")

    guard(body)


@routines_app.command()
def pause(name: NameArg, project: ProjectOpt = None) -> None:
    """Stop a routine's firings (every server sees it) until `edgecrew routines resume`."""
    state = guard(lambda: _routines(project).pause(name))
    console.print(f"routine {name}: {_status(state.status)}")


@routines_app.command()
def resume(name: NameArg, project: ProjectOpt = None) -> None:
    """Let a paused routine fire again (from its next firing on)."""
    state = guard(lambda: _routines(project).resume(name))
    console.print(f"routine {name}: {_status(state.status)}; next firing {_at(state.next_firing)}")
    if state.problem:  # resumed, but its firings fail (or follow an older schedule) until this is fixed
        console.print(f"[red]{name}:[/] {escape(state.problem)}")


@routines_app.command()
def trigger(
    name: NameArg,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the run to its end.")] = True,
    project: ProjectOpt = None,
) -> None:
    """Run a routine now (its team on its task), recorded as a manual firing of the routine."""
    from edgecrew.engine.service import RunService

    async def body() -> int:
        routines = _routines(project, mcp=True)
        started = await routines.trigger(name)
        console.print(f"routine {name}: run [bold]{started.run.id}[/]  (edgecrew runs show {started.run.id})")
        svc = RunService(routines.rt)
        if not wait:  # this process ends now: the run goes on only in a server (it adopts the run) or a resume
            console.print(
                f"not followed here: a running `edgecrew serve` takes the run over within 30 s; "
                f"with none up, `edgecrew resume {started.run.id}` runs it"
            )
            return 0
        with LiveRenderer(console) as live:
            done = await svc.finish(started, live)
        print_result(done, False, console)
        return 0 if done.ok else 1

    raise typer.Exit(arun(body))


@routines_app.command()
def runs(
    name: NameArg,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many firings, newest first.")] = 20,
    project: ProjectOpt = None,
) -> None:
    """The routine's latest runs (scheduled and manual firings), newest first."""
    from edgecrew.cli.render import when

    def body() -> None:
        found = _routines(project).runs(name, limit)
        table = Table("run", "firing", "status", "created")
        for r in found:
            trig = r.trigger or {}
            firing = str(trig.get("firing", "")) + (" (manual)" if trig.get("manual") else "")
            table.add_row(r.id, firing, status_markup(r.status.value), when(r.created_at))
        console.print(table if found else f"routine {name} has not run yet")

    guard(body)
