"""The terminal UI's app: four screens (modes) over one runtime, with the durable engine running here.

Like ``edgecrew run``, the app launches the durable engine in its own process (and resumes this
project's runs left behind by dead processes, through :meth:`RunService.recover`), so the runs it
starts, from "New run", "Run now" or a chat turn, execute here while their screens follow them.
Quitting leaves unfinished runs resumable: the next ``edgecrew run``, ``tui`` or ``serve`` resumes them.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from edgecrew.engine.runtime import Runtime
from edgecrew.tui.approvals import ApprovalsScreen
from edgecrew.tui.chat import ChatScreen
from edgecrew.tui.routines import RoutinesScreen
from edgecrew.tui.runs import RunsScreen
from edgecrew.tui.services import EventLine, Services


class EdgecrewTUI(App[None]):
    """edgecrew's terminal mission control: runs, approvals, routines and chat."""

    TITLE = "edgecrew"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "switch_mode('runs')", "Runs"),
        Binding("2", "switch_mode('approvals')", "Approvals"),
        Binding("3", "switch_mode('routines')", "Routines"),
        Binding("4", "switch_mode('chat')", "Chat"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, rt: Runtime, *, event_line: EventLine, poll_s: float = 1.0) -> None:
        super().__init__()
        self.services = Services(rt, event_line, poll_s=poll_s)
        self.engine_ready = False  # the durable engine runs here and orphans were resumed
        self.add_mode("runs", lambda: RunsScreen(self.services))
        self.add_mode("approvals", lambda: ApprovalsScreen(self.services))
        self.add_mode("routines", lambda: RoutinesScreen(self.services))
        self.add_mode("chat", lambda: ChatScreen(self.services))

    async def on_mount(self) -> None:
        self.sub_title = str(self.services.rt.project.dir)
        recovery = await self.services.runs.recover()
        self.engine_ready = True
        if recovery.adopted:
            self.notify(f"resuming {len(recovery.adopted)} interrupted run(s) here: {', '.join(recovery.adopted)}")
        for run_id, missing in recovery.blocked:
            self.notify(
                f"run {run_id} was interrupted and cannot go on here: this project no longer has {missing}; "
                f"restore it and resume it",
                severity="warning",
                markup=False,
            )
        for run in recovery.elsewhere:
            self.notify(
                f"run {run.id} of project {run.project} was interrupted; resume it there: "
                f"edgecrew resume {run.id} -p {run.project}",
                severity="warning",
                markup=False,
            )
        await self.switch_mode("runs")
