"""Turning run events into terminal lines (shared by `run`, `resume` and `runs events`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventRecord,
    ModelCalled,
    ModelFallback,
    ModelSkipped,
    RouteTaken,
    RunCancelled,
    RunFinished,
    RunResumed,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
    ToolsSelected,
)
from edgecrew.domain.runs import ANSWER_SAYS_FAILED, Outcome, RunStatus


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_line(event: EventRecord) -> str | None:
    """One rich-markup line describing an event, or None for events not worth a line."""
    agent = f"[bold cyan]{escape(event.agent)}[/]" if event.agent else ""
    match p := event.payload:
        case RunStarted():
            return f"[bold]▶ run started[/] team [bold]{escape(p.team)}[/]"
        case RunResumed() if p.lost_worker:
            return f"[yellow]↻ run resumed[/] from its last finished step (its worker {escape(p.lost_worker)} died)"
        case RunResumed():
            return "[yellow]↻ run resumed[/] from its last finished step"
        case StepStarted() if p.agent_kind == "tool":
            return f"● {agent} started [dim]({event.step_key}, calls {escape(p.tool)}, no model)[/]"
        case StepStarted() if p.agent_kind == "template":
            return f"● {agent} started [dim]({event.step_key}, renders its template, no model)[/]"
        case StepStarted():
            return f"● {agent} started [dim]({event.step_key}, model {escape(p.model)})[/]"
        case ToolsSelected():
            offered = ", ".join(escape(t) for t in p.tools)
            return f"  [dim]offered {len(p.tools)} of {p.allowed} tools: {offered}[/]"
        case ModelCalled() if not p.ok:
            return f"  [red]✗ model {escape(p.alias)}: {escape(str(p.error))}[/]"
        case ModelCalled():
            calls = f" → tool {', '.join(p.tool_calls)}" if p.tool_calls else ""
            return (
                f"  [dim]model {escape(p.alias)}: {p.prompt_tokens}→{p.completion_tokens} "
                f"tokens in {p.latency_s or 0:.2f}s ({p.tokens_per_s:.1f} tok/s){calls}[/]"
            )
        case ToolCalled():
            mark = "[red]✗[/]" if p.is_error else "[green]✓[/]"
            return (
                f"  {mark} tool [bold]{escape(p.tool)}[/] {escape(_short(p.arguments, 60))} → "
                f"{escape(_short(p.result, 80))}"
            )
        case StepFinished():
            ok = p.outcome == Outcome.FINAL
            detail = _short(p.output) if ok else p.error
            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            return f"{mark} {agent} {p.outcome.value}: {escape(str(detail))}"
        case RouteTaken():
            return f"  [dim]→ {escape(p.from_)} → {', '.join(p.to)}[/]"
        case RunFinished():
            colour = "green" if p.status == RunStatus.SUCCEEDED else "red"
            return f"[bold {colour}]■ run {p.status.value}[/]" + (f": {escape(p.error)}" if p.error else "")
        case RunCancelled():
            return "[yellow]■ run cancelled[/]"
        case ModelFallback():
            failed = f"model {escape(p.from_)} failed ({escape(p.error)})"
            return f"  [yellow]↪ {failed}; trying {p.to}[/]"
        case ApprovalRequested():
            return (
                f"  [bold yellow]⏸ {escape(p.tool)} {escape(_short(p.arguments, 60))} waits for "
                f"approval[/] — edgecrew approvals approve {p.approval} (or deny / edit)"
            )
        case ApprovalDecided():
            verdict = "[green]approved[/]" if p.approved else "[red]denied[/]"
            return f"  {verdict} {escape(_short(p.arguments, 60))}"
        case ModelSkipped():
            return f"  [dim]model {escape(p.alias)} skipped: {escape(p.reason)}[/]"
    return None


def say_waits(event: EventRecord) -> None:
    """With ``--json`` nothing is shown while a run goes on: a run that waits for a person says so, on
    stderr (stdout stays the one JSON result), so a script's caller is not left waiting in silence."""
    from edgecrew.cli.common import err

    if isinstance(event.payload, ApprovalRequested):
        line = event_line(event)
        if line:
            err.print(line.strip(), highlight=False, soft_wrap=True)


class LiveRenderer:
    """Prints event lines and keeps a one-line status (agent, step, tokens/s) up to date."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = console.status("starting…")
        self.tokens = 0

    def __enter__(self) -> LiveRenderer:
        self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.status.__exit__(None, None, None)

    def __call__(self, event: EventRecord) -> None:
        line = event_line(event)
        if line:
            self.console.print(line, highlight=False)
        match p := event.payload:
            case StepStarted():
                doing = "thinking…" if p.agent_kind == "model" else "working…"
                self.status.update(f"[cyan]{event.agent}[/] {doing} ({event.step_key})")
            case ModelCalled() if p.ok:
                self.tokens += p.completion_tokens
                self.status.update(f"[cyan]{event.agent}[/] {p.tokens_per_s:.1f} tok/s · {self.tokens} tokens so far")
            case ToolCalled():
                self.status.update(f"[cyan]{event.agent}[/] ran {p.tool}")
            case ApprovalRequested():
                self.status.update(f"[yellow]waiting for approval {p.approval}[/]")


def status_markup(value: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(value, "cyan")
    return f"[{colour}]{value}[/]"


def when(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def print_result(done: Any, as_json: bool, console: Console | None = None) -> None:
    """A finished run: its output and usage (or one JSON object with ``as_json``)."""
    from edgecrew.cli.common import console as common_console

    console = console or common_console
    run, usage = done.run, done.usage
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": run.id,
                    "team": run.team,
                    "status": run.status.value,
                    "output": run.output,
                    "error": run.error,
                    "usage": dataclasses.asdict(usage),
                    "workspace": run.workspace,
                },
                ensure_ascii=False,
            ),
            flush=True,  # a script reading it need not wait for the process to end
        )
        return
    console.rule("output")
    output = run.output
    shown = not (output is None or (output == {} and not done.ok))
    if not shown:  # ended before any answer: not `null` or `{}`
        console.print("[dim](no output)[/]")
    elif isinstance(output, dict) and set(output) == {"text"}:
        console.print(escape(output["text"]))
    else:
        console.print_json(json.dumps(output, ensure_ascii=False))
    colour = "green" if done.ok else "red"
    console.print(
        f"[{colour}]{run.status.value}[/] · {usage.model_calls} model calls · "
        f"{usage.tool_calls} tool calls · {usage.prompt_tokens}+{usage.completion_tokens} tokens"
    )
    # A run failed by its team's failed_when failed on the answer just shown, which says why: the engine's
    # generic line (the progress above named the condition) would only repeat that it failed.
    if run.error and not (shown and run.error.startswith(ANSWER_SAYS_FAILED)):
        console.print(f"[red]{escape(run.error)}[/]")
    files = workspace_listing(run.workspace)
    if files:  # a tool wrote them relative to the run's workspace: say where that is
        console.print(f"files in {escape(run.workspace)}: {escape(files)}")


def workspace_listing(workspace: str | None, limit: int = 6) -> str | None:
    """What a run left in its workspace, by name (a folder with a trailing ``/``), at most ``limit`` and how
    many more; None when it left nothing or the workspace is not on this machine (a cluster worker's)."""
    try:
        entries = sorted(Path(workspace).iterdir(), key=lambda p: p.name) if workspace else []
    except OSError:
        return None
    names = [e.name + ("/" if e.is_dir() else "") for e in entries]
    if not names:
        return None
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
