"""`edgecrew alerts list|history|check`: the usage alert rules of edgecrew.yaml, where each stands,
and the firings and resolutions so far.

`edgecrew serve` samples this machine and evaluates the rules on its own schedule; `list` and
`history` read what it recorded. `check` takes one sample and evaluates every rule once, here
(firing webhooks included), for a box where no server runs, or to try a new rule.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgecrew.cli.common import ProjectOpt, arun, console, guard, runtime

alerts_app = typer.Typer(
    help="Usage alerts: rules on metrics and model calls (declared under alerts: in edgecrew.yaml).",
    no_args_is_help=True,
)
STATE_COLOURS = {"firing": "red", "pending": "yellow", "resolved": "green", "ok": "green"}
EXAMPLE = (
    "no alert rules; declare them in edgecrew.yaml, e.g.\n"
    "alerts:\n  low-memory:\n    metric: memory_available_bytes\n    below: 2GiB\n    for: 2m\n"
    "    severity: warning\n    description: less than 2 GiB of memory is available"
)


def _alerts(project: Any) -> Any:
    from edgecrew.ops import Ops

    return Ops.of(runtime(project)).alerts


def _at(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "—"


def _state(value: str) -> str:
    return f"[{STATE_COLOURS.get(value, 'cyan')}]{value}[/]"


def _print_states(states: list[Any], as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "name": s.name,
                "source": s.rule.source,
                "comparison": s.rule.comparison,
                "threshold": s.rule.threshold,
                "for_s": s.rule.for_s,
                "severity": s.rule.severity,
                "state": s.state,
                "value": s.value,
                "since": s.since or None,
                "host": s.scope or None,
                "error": s.error,
            }
            for s in states
        ]
        print(json.dumps(rows, ensure_ascii=False))
        return
    if not states:
        console.print(EXAMPLE)
        return
    from edgecrew.ops.alerts import shown  # here: `edgecrew run` imports this module, not the alerts service

    table = Table("rule", "watches", "threshold", "severity", "state", "value", "since")
    for s in states:
        value = shown(s.value, s.rule.source) if s.error is None else f"[dim]{escape(s.error[:60])}[/]"
        table.add_row(
            s.name,
            escape(s.rule.source[:60]),
            f"{s.rule.comparison} {shown(s.rule.threshold, s.rule.source)}"
            + (f" for {s.rule.for_s:g}s" if s.rule.for_s else ""),
            s.rule.severity,
            _state(s.state),
            value,
            _at(s.since),
        )
    console.print(table)


@alerts_app.command("list")
def list_alerts(project: ProjectOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each rule with what it watches, its state, the value last seen and since when."""
    guard(lambda: _print_states(_alerts(project).states(), as_json))


@alerts_app.command("history")
def alert_history(
    project: ProjectOpt = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule's firings and resolutions.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Firings and resolutions, newest first, with the value seen and how the webhooks went."""

    def body() -> None:
        alerts = _alerts(project)
        if rule is not None and alerts.count_history(rule) == 0:
            alerts.rule(rule)  # says which rules there are when the name is unknown
        events = alerts.history(limit, 0, rule)
        if as_json:
            print(json.dumps([e.__dict__ for e in events], ensure_ascii=False))
            return
        if not events:
            console.print("no alert has fired yet")
            return
        from edgecrew.ops.alerts import shown

        table = Table("when", "rule", "event", "severity", "value", "threshold", "webhooks")
        for e in events:
            delivery = "; ".join(f"{url}: {how}" for url, how in (e.delivery or {}).items())
            table.add_row(
                _at(e.at),
                e.rule,
                _state(e.kind) + (f"\n{escape(e.reason)}" if e.reason else ""),
                e.severity,
                shown(e.value, e.source),
                f"{e.comparison} {shown(e.threshold, e.source)}",
                escape(delivery) or "—",
            )
        console.print(table)

    guard(body)


@alerts_app.command("check")
def check_alerts(project: ProjectOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Sample this machine now and evaluate every rule once, here (webhooks fire as in the server)."""

    async def body() -> list[Any]:
        import asyncio

        from edgecrew.ops import Ops

        ops = Ops.of(runtime(project))
        await asyncio.to_thread(ops.sampler.sample_now)
        states: list[Any] = await ops.alerts.evaluate_now()
        return states

    states = arun(body)
    _print_states(states, as_json)
