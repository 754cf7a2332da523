"""`edgecrew incidents list|show`: the failures the supervisor saw, what it did and how each ended.

The supervisor runs inside `edgecrew serve`; these commands only read what it recorded (a risky
action it proposes waits in `edgecrew approvals list`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgecrew.cli.common import ProjectOpt, console, guard, runtime
from edgecrew.errors import UserError

if TYPE_CHECKING:
    from edgecrew.ops.supervisor import Supervisor

incidents_app = typer.Typer(
    help="Incidents the supervisor saw, healed or escalated (list, show).", no_args_is_help=True
)
COLOURS = {"healed": "green", "escalated": "red", "failed": "red", "healing": "cyan", "open": "yellow"}


def _supervisor(project: Path | None) -> Supervisor:
    from edgecrew.ops import Ops

    return Ops.of(guard(lambda: runtime(project))).supervisor


def _at(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "—"


def _state(value: str) -> str:
    return f"[{COLOURS.get(value, 'cyan')}]{value}[/]"


@incidents_app.command("list")
def list_incidents(
    project: ProjectOpt = None,
    state: Annotated[
        str | None, typer.Option(help="Only this state (open, healing, healed, escalated, failed).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (oom, job_failed, run_failed, ...).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Incidents, newest first: what failed, the action taken and how it ended."""
    from edgecrew.store.incidents import INCIDENT_KINDS, INCIDENT_STATES

    def body() -> None:
        if state is not None and state not in INCIDENT_STATES:
            raise UserError(
                f"--state: '{state[:40]}' is not an incident state; use one of {', '.join(INCIDENT_STATES)}"
            )
        if kind is not None and kind not in INCIDENT_KINDS:  # it listed "the supervisor has seen no failure"
            raise UserError(f"--kind: '{kind[:40]}' is not an incident kind; use one of {', '.join(INCIDENT_KINDS)}")
        found = _supervisor(project).list_incidents(state=state, kind=kind, limit=limit)
        if as_json:
            print(json.dumps([asdict(i) for i in found], ensure_ascii=False, default=str))
            return
        if not found:
            filters = " and ".join(
                f for f in (f"in state {state}" if state else "", f"of kind {kind}" if kind else "") if f
            )
            console.print(f"no incidents {filters}" if filters else "no incidents: the supervisor has seen no failure")
            return
        table = Table("id", "when", "kind", "what", "state", "action", "by")
        for i in found:
            table.add_row(
                i.id, _at(i.created_at), i.kind, escape(i.title), _state(i.state), i.action or "—", i.decided_by or "—"
            )
        console.print(table)

    guard(body)


@incidents_app.command("show")
def show_incident(
    incident_id: Annotated[str, typer.Argument(help="The incident's id (or a unique prefix).")],
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One incident: its error, diagnosis, decision, follow-up, history and regression case."""

    def body() -> None:
        sup = _supervisor(project)
        found = sup.get(incident_id)
        events = sup.events(found.id)
        if as_json:
            print(json.dumps({**asdict(found), "events": [asdict(e) for e in events]}, ensure_ascii=False, default=str))
            return
        console.print(f"[bold]{found.id}[/] {escape(found.title)}  {_state(found.state)}")
        console.print(
            f"kind {found.kind} · {found.subject_type} {escape(found.subject)} · seen {_at(found.created_at)}"
        )
        console.print(f"error: {escape(found.error)}")
        if found.action:
            params = f" {json.dumps(found.action_params)}" if found.action_params else ""
            console.print(
                f"action: {found.action}{escape(params)} (by {found.decided_by}): {escape(found.reason or '')}"
            )
        for label, value in (
            ("follow-up", found.follow_up),
            ("approval", found.approval_id),
            ("regression case", found.regression_path),
        ):
            if value:
                console.print(f"{label}: {escape(value)}")
        console.print("diagnosis:")
        console.print(escape(json.dumps(found.diagnosis, indent=2, default=str)[:6000]))
        table = Table("when", "event", "detail")
        for e in events:
            table.add_row(_at(e.at), e.kind, escape(json.dumps(e.detail, default=str)[:200]) if e.detail else "")
        console.print(table)

    guard(body)
