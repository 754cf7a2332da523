"""The terminal UI driven by Textual's own test driver (Pilot) over a project of scripted-model teams.

The app launches the durable engine in the test's process, as ``edgecrew tui`` does, so the runs it
starts (and those the tests start through RunService) execute here. Every wait is on a condition,
with a timeout only as a guard against hanging.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog, Select, Static, TextArea

from edgecrew.cli.common import runtime
from edgecrew.cli.render import event_line
from edgecrew.engine import durable
from edgecrew.engine.service import TeamName
from edgecrew.tui import EdgecrewTUI
from edgecrew.tui.approvals import ApprovalsScreen, EditArguments
from edgecrew.tui.chat import ChatScreen
from edgecrew.tui.routines import RoutinesScreen
from edgecrew.tui.runs import RunScreen, RunsScreen
from tests.api.conftest import ECHO, SHIP, TOOLS
from tests.conftest import write

PROJECT = """
models:
  fake:
    backend: scripted
    replies: ["the answer is 42"]
    cycle: true
  gated:
    backend: scripted
    replies: [{tool: deploy, args: {target: prod}, text: "the fix must ship"}, "shipped"]
plugins: [tools.py]
routines:
  nightly:
    team: echo
    task: what is the answer?
    cron: "30 2 * * *"
    timezone: Europe/Berlin
"""


@pytest.fixture
def project(project_dir: Path) -> Path:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "echo.yaml", ECHO)
    write(project_dir / "teams" / "ship.yaml", SHIP)
    return project_dir


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    durable.shutdown()


def make_app(project: Path) -> EdgecrewTUI:
    """The app as `edgecrew tui` builds it, reading lists five times a second."""
    return EdgecrewTUI(runtime(project, mcp=True), event_line=event_line, poll_s=0.2)


async def until(pilot: Pilot[None], condition: Callable[[], object], what: str, timeout_s: float = 60) -> None:
    """Let the app run until ``condition`` holds (the timeout only stops a hang)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def started(pilot: Pilot[None], app: EdgecrewTUI) -> None:
    await until(pilot, lambda: app.engine_ready and isinstance(app.screen, RunsScreen), "the app to start")


def cells(table: DataTable[Text]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def log_text(log: RichLog) -> str:
    return "\n".join(line.text for line in log.lines)


def status(app: EdgecrewTUI, run_id: str) -> str:
    return app.services.runs.get(run_id).status.value


async def pending(pilot: Pilot[None], app: EdgecrewTUI, count: int = 1) -> None:
    await until(pilot, lambda: len(app.services.approvals.list("pending")) >= count, "a pending approval")


async def test_a_run_started_here_streams_its_timeline_and_shows_in_the_runs_list(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        await pilot.press("n")  # New run: the project's own teams come first, so echo is chosen
        await until(pilot, lambda: app.screen.query("#task"), "the new-run dialog")
        await pilot.press(*"what is the answer?", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        log = screen.query_one("#timeline", RichLog)
        await until(pilot, lambda: "run succeeded" in log_text(log), "the run's end in its timeline")
        text = log_text(log)
        assert "run started team echo" in text and "solo started" in text and "the answer is 42" in text
        steps = screen.query_one("#steps", DataTable)
        # The steps table and the summary redraw on their own tick, a moment after the timeline's end.
        await until(pilot, lambda: steps.row_count == 1 and cells(steps)[0][2] == "final", "the run's final step")
        assert cells(steps)[0][1:3] == ["solo", "final"]
        summary = screen.query_one("#summary", Static)
        await until(pilot, lambda: "succeeded" in str(summary.content), "the summary's final status")
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the run in the list")
        assert cells(table)[0][:4] == [screen.run_id, "succeeded", "echo", "what is the answer?"]


async def test_the_runs_list_follows_a_run_started_elsewhere_and_enter_opens_it(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        run = (await app.services.runs.start(TeamName("ship"), "ship the fix")).run
        table = app.screen.query_one("#runs", DataTable)
        await until(
            pilot, lambda: cells(table) and cells(table)[0][1] == "waiting_approval", "the run to wait in the list"
        )
        assert cells(table)[0][:4] == [run.id, "waiting_approval", "ship", "ship the fix"]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        log = app.screen.query_one("#timeline", RichLog)
        await until(pilot, lambda: "waits for approval" in log_text(log), "the approval request in the timeline")
        await pilot.press("c")  # Cancel
        await until(pilot, lambda: "run cancelled" in log_text(log), "the cancellation in the timeline")
        assert status(app, run.id) == "cancelled"
        await pilot.press("escape")
        table = app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: cells(table)[0][1] == "cancelled", "the list to show it cancelled")


async def test_the_tui_approves_a_waiting_tool_call_and_the_run_finishes(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        run = (await app.services.runs.start(TeamName("ship"), "ship the fix")).run
        await pending(pilot, app)
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen), "the approvals screen")
        table = app.screen.query_one("#approvals", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the approval in the inbox")
        [row] = cells(table)
        assert row[1:5] == [run.id, "op", "deploy", '{"target": "prod"}'] and row[5] == "the fix must ship"
        await pilot.press("a")
        await until(pilot, lambda: status(app, run.id) == "succeeded", "the approved run to finish")
        done = app.services.runs.get(run.id)
        assert done.output == {"text": "shipped"}
        events = app.services.runs.event_page(run.id)
        called = [e.data for e in events if e.type == "tool_called"]
        assert [(c["tool"], c["arguments"], c["result"]) for c in called] == [
            ("deploy", {"target": "prod"}, "deployed prod")
        ]
        await until(pilot, lambda: table.row_count == 0, "the inbox to empty")


async def test_a_denied_call_tells_the_agent_the_reason(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        run = (await app.services.runs.start(TeamName("ship"), "ship the fix")).run
        await pending(pilot, app)
        await pilot.press("2")
        table = app.screen.query_one("#approvals", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the approval in the inbox")
        await pilot.press("d")
        await until(pilot, lambda: app.screen.query("#answer"), "the reason dialog")
        await pilot.press(*"not on a friday", "enter")
        await until(pilot, lambda: status(app, run.id) == "succeeded", "the run to go on without the call")
        [decided] = app.services.approvals.list(None, run.id)
        assert (decided.status, decided.decision_note) == ("denied", "not on a friday")
        events = app.services.runs.event_page(run.id)
        assert not any(e.type == "tool_called" and not e.data.get("is_error") for e in events)
        assert any(e.type == "approval_decided" and e.data["approved"] is False for e in events)


async def test_editing_with_bad_json_says_so_and_good_json_approves_the_edited_call(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        run = (await app.services.runs.start(TeamName("ship"), "ship the fix")).run
        await pending(pilot, app)
        await pilot.press("2")
        table = app.screen.query_one("#approvals", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the approval in the inbox")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EditArguments), "the edit dialog")
        editor = app.screen.query_one(TextArea)
        assert editor.text == '{\n  "target": "prod"\n}'
        editor.load_text('{"target": staging}')
        await pilot.press("ctrl+s")
        error = app.screen.query_one("#error", Static)
        await until(pilot, lambda: "not valid JSON" in str(error.content), "the JSON error")
        assert "line 1, column 12" in str(error.content)
        assert isinstance(app.screen, EditArguments) and status(app, run.id) == "waiting_approval"
        editor.load_text("[1, 2]")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "must be a JSON object" in str(error.content), "the object error")
        editor.load_text('{"target": "staging"}')
        await pilot.press("ctrl+s")
        await until(pilot, lambda: status(app, run.id) == "succeeded", "the edited call to run")
        called = [e.data for e in app.services.runs.event_page(run.id) if e.type == "tool_called"]
        assert [(c["arguments"], c["result"]) for c in called] == [({"target": "staging"}, "deployed staging")]


async def test_routines_are_paused_and_resumed(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, RoutinesScreen), "the routines screen")
        table = app.screen.query_one("#routines", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the routine")
        assert cells(table)[0][:4] == ["nightly", "echo", "30 2 * * * (Europe/Berlin)", "not scheduled"]
        await pilot.press("p")
        await until(pilot, lambda: cells(table)[0][3] == "paused", "the routine to pause")
        assert cells(table)[0][4] == "—"  # a paused routine has no next firing
        assert app.services.routines.state("nightly").status == "paused"
        await pilot.press("r")
        await until(pilot, lambda: cells(table)[0][3] == "active", "the routine to resume")
        assert cells(table)[0][4] != "—"
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the routine's run")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await until(pilot, lambda: status(app, screen.run_id) == "succeeded", "the routine's run to finish")
        assert app.services.runs.get(screen.run_id).trigger["routine"] == "nightly"  # type: ignore[index]


async def test_a_chat_turn_gets_the_teams_reply(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen), "the chat screen")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        assert screen.model == "echo"  # the project's own teams come first
        choices = screen.query_one("#model", Select)
        choices.value = "echo/solo"  # an option (Select refuses any other value): each agent is one too
        choices.value = "echo"
        box = screen.query_one("#message", Input)
        assert box.has_focus
        await pilot.press(*"what is the answer?", "enter")
        log = screen.query_one("#transcript", RichLog)
        await until(pilot, lambda: "echo: the answer is 42" in log_text(log), "the team's reply")
        assert "you: what is the answer?" in log_text(log)
        await until(pilot, lambda: not box.disabled, "the input to come back")
        await pilot.press(*"and again?", "enter")
        await until(pilot, lambda: log_text(log).count("echo: the answer is 42") == 2, "the second reply")
        [second, _] = app.services.runs.list_runs(team="echo")
        assert "user: what is the answer?" in second.task and "assistant: the answer is 42" in second.task


def test_the_screens_show_control_characters_they_do_not_send_them() -> None:
    """A reply or an event holding escape codes is shown with them made visible, never sent to the
    terminal (Textual passes ESC through as it is)."""
    from edgecrew.domain.events import EventRecord
    from edgecrew.tui.services import Services, escape, short

    assert escape("a\x1b]0;pwned\x07[b]\x1b[2J") == "a␛]0;pwned␇\\[b]␛[2J"
    assert "\x1b" not in short({"text": "\x1b[31mred"})
    services = Services.__new__(Services)
    services._event_line = lambda event: f"[bold]{event.type}[/] \x1b[2J"
    event = EventRecord(id=1, run_id="r", key="k", type="model_called", step_key=None, agent=None, data={},
                        created_at=0.0, request_id=None)  # fmt: skip
    assert services.event_line(event) == "[bold]model_called[/] ␛[2J"
