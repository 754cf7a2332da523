"""Turning run events into terminal lines (shared by `run`, `resume` and `runs events`)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from edgecrew.store.repo import EventRecord


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_line(event: EventRecord) -> str | None:
    """One rich-markup line describing an event, or None for events not worth a line."""
    d = event.data
    agent = f"[bold cyan]{escape(event.agent)}[/]" if event.agent else ""
    match event.type:
        case "run_started":
            return f"[bold]▶ run started[/] team [bold]{escape(d.get('team', ''))}[/]"
        case "run_resumed":
            return "[yellow]↻ run resumed[/] from its last finished step"
        case "step_started":
            return f"● {agent} started [dim]({event.step_key}, model {escape(str(d.get('model')))})[/]"
        case "model_called":
            if "error" in d:
                return f"  [red]✗ model {escape(str(d.get('alias')))}: {escape(d['error'])}[/]"
            calls = f" → tool {', '.join(d['tool_calls'])}" if d.get("tool_calls") else ""
            return (
                f"  [dim]model {escape(str(d.get('alias')))}: {d.get('prompt_tokens')}→{d.get('completion_tokens')} "
                f"tokens in {d.get('latency_s', 0):.2f}s ({d.get('tokens_per_s', 0):.1f} tok/s){calls}[/]"
            )
        case "tool_called":
            mark = "[red]✗[/]" if d.get("is_error") else "[green]✓[/]"
            return (
                f"  {mark} tool [bold]{escape(d.get('tool', ''))}[/] {escape(_short(d.get('arguments'), 60))} → "
                f"{escape(_short(d.get('result', ''), 80))}"
            )
        case "step_finished":
            ok = d.get("outcome") == "final"
            detail = _short(d.get("output")) if ok else d.get("error")
            mark = "[green]✓[/]" if ok else "[red]✗[/]"
            return f"{mark} {agent} {d.get('outcome')}: {escape(str(detail))}"
        case "route_taken":
            return f"  [dim]→ {escape(d.get('from', ''))} → {', '.join(d.get('to', []))}[/]"
        case "run_finished":
            colour = "green" if d.get("status") == "succeeded" else "red"
            return f"[bold {colour}]■ run {d.get('status')}[/]" + (
                f": {escape(str(d['error']))}" if d.get("error") else ""
            )
        case "run_cancelled":
            return "[yellow]■ run cancelled[/]"
        case "model_fallback":
            failed = f"model {escape(str(d.get('from')))} failed ({escape(str(d.get('error')))})"
            return f"  [yellow]↪ {failed}; trying {d.get('to')}[/]"
        case "approval_requested":
            return (
                f"  [bold yellow]⏸ {escape(str(d.get('tool')))} {escape(_short(d.get('arguments'), 60))} waits for "
                f"approval[/] — edgecrew approvals approve {d.get('approval')} (or deny / edit)"
            )
        case "approval_decided":
            verdict = "[green]approved[/]" if d.get("approved") else "[red]denied[/]"
            return f"  {verdict} {escape(_short(d.get('arguments'), 60))}"
        case "model_skipped":
            return f"  [dim]model {escape(str(d.get('alias')))} skipped: {escape(str(d.get('reason')))}[/]"
    return None


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
        d = event.data
        if event.type == "step_started":
            self.status.update(f"[cyan]{event.agent}[/] thinking… ({event.step_key})")
        elif event.type == "model_called" and "error" not in d:
            self.tokens += int(d.get("completion_tokens") or 0)
            self.status.update(
                f"[cyan]{event.agent}[/] {d.get('tokens_per_s', 0):.1f} tok/s · {self.tokens} tokens so far"
            )
        elif event.type == "tool_called":
            self.status.update(f"[cyan]{event.agent}[/] ran {d.get('tool')}")
        elif event.type == "approval_requested":
            self.status.update(f"[yellow]waiting for approval {d.get('approval')}[/]")
