"""What every screen of the terminal UI uses: the use cases of one runtime, and small formatting helpers.

The one design decision: screens get a :class:`Services` (never the app, never the runtime's store), and
each live stream gets its own :class:`RunService` from :meth:`Services.stream`, because a finished
stream closes its service's DBOS client and must not close one that another stream is using.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.markup import escape as rich_escape

from edgecrew.domain.events import EventRecord
from edgecrew.domain.text import terminal_text
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.chat import ChatService
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService
from edgecrew.ops import Ops
from edgecrew.ops.routines import RoutineService

EventLine = Callable[[EventRecord], "str | None"]
"""Renders one event as a line of Rich markup, or None for events not worth a line (the CLI's ``event_line``)."""


class Services:
    """The use cases the screens call, built once from the runtime the command made."""

    def __init__(self, rt: Runtime, event_line: EventLine, *, poll_s: float = 1.0) -> None:
        self.rt = rt
        self._event_line = event_line
        self.poll_s = poll_s  # how often lists (runs, approvals, routines) are read again
        self.runs = RunService(rt)
        self.approvals = ApprovalService(rt)
        self.routines: RoutineService = Ops.of(rt).routines

    def event_line(self, event: EventRecord) -> str | None:
        """The event's line, its control characters made visible (``terminal_text``)."""
        line = self._event_line(event)
        return None if line is None else terminal_text(line)

    def stream(self) -> RunService:
        """A RunService of its own, for one live stream (see the module docstring)."""
        return RunService(self.rt)

    def chat(self) -> ChatService:
        """A chat service over a RunService of its own (a chat turn follows its run to the end)."""
        return ChatService(self.stream())

    def chat_models(self) -> list[str]:
        """What a chat may talk to (teams, and ``team/agent``): the project's own teams first, valid ones only."""
        teams = self.rt.project.teams
        ids = [m.id for m in self.chat().models()]
        return sorted(ids, key=lambda i: (teams[i.partition("/")[0]].builtin, i.partition("/")[0], "/" in i, i))

    def teams(self) -> list[str]:
        """The teams this project can run, its own first, then the built-in ones (valid ones only)."""
        return [m for m in self.chat_models() if "/" not in m]


def duration(started: float, finished: float | None, now: float | None = None) -> str:
    """``12s``, ``3m05s``, ``2h04m``: how long a run took, or has taken so far."""
    seconds = max(0, int((finished if finished is not None else (now or time.time())) - started))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def escape(text: str) -> str:
    """``text`` for Rich markup in a screen: escaped, its control characters made visible."""
    return rich_escape(terminal_text(text))


def short(value: Any, limit: int = 80) -> str:
    """One line of at most ``limit`` characters, JSON for anything but text, escaped for markup."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def status_markup(value: str) -> str:
    colour = {
        "succeeded": "green",
        "failed": "red",
        "cancelled": "yellow",
        "waiting_approval": "bold yellow",
        "active": "green",
        "paused": "yellow",
        "invalid": "red",
    }.get(value, "cyan")
    return f"[{colour}]{escape(value)}[/]"
