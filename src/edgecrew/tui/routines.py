"""The Routines screen: each routine's state and next firing; pause, resume, or run one now.

Through the routines service of :class:`~edgecrew.ops.Ops`, like ``edgecrew routines``: pausing is the
schedule's state in DBOS, so every server sees it; scheduled firings happen in ``edgecrew serve``,
while "run now" starts the routine's run here, and opens it.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from edgecrew.errors import EdgecrewError
from edgecrew.ops.routines import RoutineState
from edgecrew.tui.runs import RunScreen
from edgecrew.tui.services import Services, escape, status_markup
from edgecrew.tui.widgets import HelpLine, attempt

ROUTINE_COLUMNS = ("routine", "team", "schedule", "state", "next firing", "last firing", "last run")


def _at(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value is not None else "—"


def routine_cells(s: RoutineState) -> tuple[Text, ...]:
    last = f"{s.last_run.id} {status_markup(s.last_run.status.value)}" if s.last_run else "—"
    return (
        Text(s.name),
        Text(s.doc.team),
        Text(f"{s.doc.cron} ({s.doc.timezone})"),
        Text.from_markup(status_markup(s.status)),
        Text(_at(s.next_firing)),
        Text(_at(s.last_firing)),
        Text.from_markup(last),
    )


class RoutinesScreen(Screen[None]):
    """The project's routines, kept up to date."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume"),
        Binding("t", "trigger", "Run now"),
    ]

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.states: list[RoutineState] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield HelpLine(
            "Routines of edgecrew.yaml (fired by `edgecrew serve`) · p pauses · r resumes · t runs one now · "
            "1-4 switch screens"
        )
        yield DataTable(id="routines", cursor_type="row", zebra_stripes=True)
        yield Static(id="problems")
        yield Footer()

    async def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one(DataTable)
        for name in ROUTINE_COLUMNS:
            table.add_column(name, key=name)
        await self.refresh_routines()
        self.set_interval(max(self.services.poll_s, 2.0), self.refresh_routines)

    async def refresh_routines(self) -> None:
        found = await attempt(self, self.services.routines.states)
        if found is None or not self.is_attached:
            return
        table: DataTable[Text] = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for s in found:
            table.add_row(*routine_cells(s), key=s.name)
        self.states = found
        if found:
            table.move_cursor(row=min(row, len(found) - 1))
        notes = [f"[red]{escape(s.name)}:[/] {escape(s.problem)}" for s in found if s.problem]
        if not found:
            notes = ["no routines; declare them under routines: in edgecrew.yaml (see `edgecrew routines list`)"]
        self.query_one("#problems", Static).update("\n".join(notes))

    def current(self) -> RoutineState | None:
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.states):
            return self.states[row]
        self.notify("no routine chosen", severity="warning")
        return None

    async def action_pause(self) -> None:
        chosen = self.current()
        if chosen is not None:
            state = await attempt(self, lambda: self.services.routines.pause(chosen.name))
            if state is not None:
                self.notify(f"routine {state.name}: {state.status}")
            await self.refresh_routines()

    async def action_resume(self) -> None:
        chosen = self.current()
        if chosen is not None:
            state = await attempt(self, lambda: self.services.routines.resume(chosen.name))
            if state is not None:
                self.notify(f"routine {state.name}: {state.status}, next firing {_at(state.next_firing)}")
            await self.refresh_routines()

    def action_trigger(self) -> None:
        chosen = self.current()
        if chosen is not None:
            self._trigger(chosen.name)

    @work(group="trigger")
    async def _trigger(self, name: str) -> None:
        try:
            started = await self.services.routines.trigger(name)
        except EdgecrewError as exc:
            self.notify(str(exc), title="error", severity="error", markup=False, timeout=10)
            return
        self.notify(f"routine {name}: run {started.run.id}")
        await self.refresh_routines()
        self.app.push_screen(RunScreen(self.services, started.run.id))
