"""`edgecrew approvals list|approve|deny|edit`: the human side of the approval gate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from edgecrew.cli.common import console, err, guard, runtime, say_orphaned

if TYPE_CHECKING:
    from edgecrew.engine.approvals import ApprovalService

approvals_app = typer.Typer(help="Risky tool calls waiting for a person.", no_args_is_help=True)


def _service() -> ApprovalService:
    from edgecrew.engine.approvals import ApprovalService

    return ApprovalService(runtime())


@approvals_app.command("list")
def approvals_list(
    show_all: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    run: Annotated[str | None, typer.Option("--run", help="Only this run's approvals.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List pending approvals: tool, arguments, agent and the agent's reason."""
    records = guard(lambda: _service().list(None if show_all else "pending", run))
    if as_json:
        print(json.dumps([r.__dict__ for r in records]))
        return
    if not records:
        if run:
            console.print(f"no approvals {'waiting ' if not show_all else ''}in run {escape(run)}")
        else:
            console.print("no approvals waiting" if not show_all else "no approvals yet")
        return
    if console.width < 120:  # a table of seven columns cuts the arguments and reasons to "ar…" here
        for r in records:
            console.print(f"[bold]{r.id}[/]  {r.status}  run {r.run_id}  {escape(r.agent)} → {escape(r.tool)}")
            console.print(f"  arguments: {escape(json.dumps(r.arguments)[:400])}", soft_wrap=True)
            console.print(f"  reason:    {escape(r.reason[:400])}", soft_wrap=True)
        return
    table = Table(
        Column("approval", no_wrap=True), Column("run", no_wrap=True), "agent", "tool", "arguments", "reason", "status"
    )
    for r in records:
        table.add_row(
            r.id, r.run_id, r.agent, r.tool, escape(json.dumps(r.arguments)[:200]), escape(r.reason[:200]), r.status
        )
    console.print(table)


@approvals_app.command("approve")
def approvals_approve(
    approval: str, note: Annotated[str | None, typer.Option(help="Why, for the record.")] = None
) -> None:
    """Approve a call: it runs once, with its (possibly edited) arguments."""
    record = guard(lambda: _service().approve(approval, note))
    console.print(f"[green]approved[/] {record.id}: {record.tool} {escape(json.dumps(record.arguments))}")
    _say_if_orphaned(record.run_id)


@approvals_app.command("deny")
def approvals_deny(
    approval: str, reason: Annotated[str | None, typer.Option(help="Told to the agent.")] = None
) -> None:
    """Deny a call: the agent is told, and carries on without it."""
    record = guard(lambda: _service().deny(approval, reason))
    console.print(f"[yellow]denied[/] {record.id}: {record.tool}")
    _say_if_orphaned(record.run_id)


def _say_if_orphaned(run_id: str) -> None:
    """The decision is recorded; a run whose process stopped only takes it up when something runs it."""
    from edgecrew.engine.service import RunService

    service = RunService(runtime())
    try:
        run = guard(lambda: service.get(run_id))
        if service.orphaned(run):
            say_orphaned(run)
    finally:
        service.close()  # the DBOS client it opened to look


@approvals_app.command("edit")
def approvals_edit(
    approval: str,
    args: Annotated[str, typer.Option("--args", help='New arguments as JSON, e.g. \'{"path": "a.md"}\'.')],
) -> None:
    """Change a pending call's arguments (checked against the tool's schema); approve it afterwards."""
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/] --args is not JSON ({exc.msg} at {exc.pos})")
        raise typer.Exit(2) from None
    if not isinstance(arguments, dict):
        err.print("[red]error:[/] --args must be a JSON object")
        raise typer.Exit(2)
    record = guard(lambda: _service().edit(approval, arguments))
    console.print(f"edited {record.id}: {record.tool} {escape(json.dumps(record.arguments))} (still pending)")
