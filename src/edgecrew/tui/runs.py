"""The Runs screen (every run, live) and the Run screen (one run's timeline as it lands, its steps, Cancel).

Both read through :class:`~edgecrew.engine.service.RunService`: the list is read again every
``poll_s``; a run's timeline follows :meth:`RunService.events`, the one event stream the CLI, the API's
SSE and the web UI read too, and each line is the CLI's own rendering of the event.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import ClassVar

import anyio
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, RichLog, Select, Static

from edgecrew.domain.events import EventRecord
from edgecrew.engine.service import TeamName
from edgecrew.errors import EdgecrewError
from edgecrew.store.repo import RunRecord
from edgecrew.tui.services import Services, duration, escape, short, status_markup
from edgecrew.tui.widgets import HelpLine, attempt

RUN_COLUMNS = ("run", "status", "team", "task", "duration", "started")


class RunTable(DataTable[Text]):
    """The runs table: Enter opens the run under the cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Open run")]


def _started(ts: float) -> str:
    stamp = datetime.fromtimestamp(ts)
    return stamp.strftime("%H:%M:%S" if stamp.date() == datetime.now().date() else "%Y-%m-%d %H:%M")


def run_cells(run: RunRecord, now: float) -> tuple[Text, ...]:
    return (
        Text(run.id),
        Text.from_markup(status_markup(run.status.value)),
        Text(run.team),
        Text.from_markup(short(run.task, 60)),
        Text(duration(run.created_at, run.finished_at, now)),
        Text(_started(run.created_at)),
    )


class RunsScreen(Screen[None]):
    """Every run, newest first, kept up to date."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("n", "new_run", "New run")]

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.shown: list[str] = []  # run ids in the table, in order

    def compose(self) -> ComposeResult:
        yield Header()
        yield HelpLine("Runs, newest first, live · Enter opens a run · n starts one · 1-4 switch screens · q quits")
        yield RunTable(cursor_type="row", zebra_stripes=True, id="runs")
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one(RunTable)
        for name in RUN_COLUMNS:
            table.add_column(name, key=name)
        await self.refresh_runs()
        self.set_interval(self.services.poll_s, self.refresh_runs)

    async def refresh_runs(self) -> None:
        runs = await attempt(self, lambda: self.services.runs.list_runs(limit=200))
        if runs is None or not self.is_attached:
            return
        table = self.query_one(RunTable)
        now = time.time()
        ids = [r.id for r in runs]
        if ids == self.shown:
            for run in runs:
                for column, cell in zip(RUN_COLUMNS[1:], run_cells(run, now)[1:], strict=True):
                    table.update_cell(run.id, column, cell)
            return
        keep = self.current_run()
        table.clear()
        for run in runs:
            table.add_row(*run_cells(run, now), key=run.id)
        self.shown = ids
        if keep in ids:
            table.move_cursor(row=ids.index(keep))

    def current_run(self) -> str | None:
        table = self.query_one(RunTable)
        if not self.shown or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(RunScreen(self.services, event.row_key.value))

    def action_new_run(self) -> None:
        self.app.push_screen(NewRunDialog(self.services.teams()), self._chosen)

    def _chosen(self, choice: tuple[str, str] | None) -> None:
        if choice is not None:
            self._start(*choice)

    @work(group="start")
    async def _start(self, team: str, task: str) -> None:
        try:
            started = await self.services.runs.start(TeamName(team), task)
        except EdgecrewError as exc:
            self.notify(str(exc), title="error", severity="error", markup=False, timeout=10)
            return
        await self.refresh_runs()
        self.app.push_screen(RunScreen(self.services, started.run.id))


class NewRunDialog(ModalScreen[tuple[str, str] | None]):
    """Pick a team and say what it should do; Enter starts the run."""

    DEFAULT_CSS = """
    NewRunDialog { align: center middle; }
    NewRunDialog > Vertical { width: 90; height: auto; border: thick $accent; background: $surface; padding: 1 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, teams: list[str]) -> None:
        super().__init__()
        self.teams = teams

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Start a run")
            yield (
                Select([(t, t) for t in self.teams], allow_blank=False, id="team")
                if self.teams
                else Label("no valid teams in this project (see `edgecrew teams list`)")
            )
            yield Input(placeholder="what should the team do?", id="task")
            yield HelpLine("Enter: start · Escape: cancel")

    def on_mount(self) -> None:
        self.query_one("#task", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.teams:
            self.dismiss(None)
            return
        self.dismiss((str(self.query_one("#team", Select).value), event.value))

    def action_cancel(self) -> None:
        self.dismiss(None)


class RunScreen(Screen[None]):
    """One run: what it is, its timeline streaming as events land, and its steps."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "cancel_run", "Cancel run"),
    ]
    DEFAULT_CSS = """
    RunScreen #summary { height: auto; padding: 0 1; }
    RunScreen #timeline { height: 2fr; border: round $primary; }
    RunScreen #steps { height: 1fr; border: round $primary; }
    """

    def __init__(self, services: Services, run_id: str) -> None:
        super().__init__()
        self.services = services
        self.run_id = run_id
        self.stop = anyio.Event()
        self.lines: list[str] = []  # the timeline as plain text (what the log shows)

    def compose(self) -> ComposeResult:
        yield Header()
        yield HelpLine("A run's timeline, live · c cancels the run · Escape goes back")
        yield Static(id="summary")
        yield RichLog(id="timeline", wrap=True, markup=False, min_width=40)
        steps: DataTable[Text] = DataTable(id="steps", cursor_type="row", zebra_stripes=True)
        yield steps
        yield Footer()

    def on_mount(self) -> None:
        steps: DataTable[Text] = self.query_one("#steps", DataTable)
        for name in ("step", "agent", "outcome", "calls", "tokens", "output"):
            steps.add_column(name, key=name)
        steps.border_title = "steps"
        self.query_one("#timeline", RichLog).border_title = "timeline"
        self.follow()

    def on_unmount(self) -> None:
        self.stop.set()

    @work(group="follow", exclusive=True)
    async def follow(self) -> None:
        stream = self.services.stream()
        await self.show_run()
        async for batch in stream.events(self.run_id, stop=self.stop, poll_s=0.2):
            for event in batch:
                self.write(event)
            await self.show_run()
        await self.show_run()

    def write(self, event: EventRecord) -> None:
        line = self.services.event_line(event) or f"[dim]{escape(event.type)}[/]"
        text = Text.from_markup(f"[dim]{event.id:>5}[/] {line}")
        self.lines.append(text.plain)
        try:
            self.query_one("#timeline", RichLog).write(text)
        except NoMatches:  # the screen is closing
            return

    async def show_run(self) -> None:
        run = await attempt(self, lambda: self.services.runs.get(self.run_id))
        steps = await attempt(self, lambda: self.services.runs.steps(self.run_id))
        if run is None or steps is None or not self.is_attached:
            return
        self.run_id = run.id
        summary = (
            f"run [bold]{run.id}[/] · team [bold]{escape(run.team)}[/] · {status_markup(run.status.value)} · "
            f"{duration(run.created_at, run.finished_at)}\ntask: {short(run.task, 200)}"
        )
        if run.error:
            summary += f"\n[red]error: {escape(run.error)}[/]"
        elif run.output is not None:
            summary += f"\noutput: {short(run.output, 200)}"
        try:
            shown = self.query_one("#summary", Static)
            table: DataTable[Text] = self.query_one("#steps", DataTable)
        except NoMatches:  # the screen is closing: its widgets go before its follow worker stops
            return
        shown.update(summary)
        table.clear()
        for s in steps:
            table.add_row(
                Text(s.key),
                Text(s.agent),
                Text(s.outcome or s.status),
                Text(f"{s.model_calls}m/{s.tool_calls}t"),
                Text(f"{s.prompt_tokens}+{s.completion_tokens}"),
                Text.from_markup(short(s.output, 70)) if s.output is not None else Text(""),
                key=s.key,
            )

    async def action_cancel_run(self) -> None:
        run = await attempt(self, lambda: self.services.runs.cancel(self.run_id))
        if run is not None:
            self.notify(f"run {run.id} {run.status.value}")
