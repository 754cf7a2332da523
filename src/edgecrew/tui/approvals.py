"""The Approvals screen: risky tool calls waiting for a person, approved, denied or edited here.

Each decision goes through :class:`~edgecrew.engine.approvals.ApprovalService`, as from the CLI, the
API and the web UI: a call is decided once however many places decide it. Editing checks the JSON here
(a clear message, the dialog stays open) and the arguments against the tool's schema in the service.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Static, TextArea

from edgecrew.store.approvals import ApprovalRecord
from edgecrew.tui.services import Services, short
from edgecrew.tui.widgets import AskText, HelpLine, attempt

APPROVAL_COLUMNS = ("approval", "run", "agent", "tool", "arguments", "reason")


def parse_arguments(text: str) -> dict[str, Any] | str:
    """The arguments a person typed, or what is wrong with them (a message to show)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    if not isinstance(value, dict):
        return 'the arguments must be a JSON object, e.g. {"target": "staging"}'
    return value


class ApprovalsScreen(Screen[None]):
    """Pending approvals, kept up to date; a, d and e decide the one under the cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("d", "deny", "Deny…"),
        Binding("e", "edit", "Edit & approve…"),
    ]

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.pending: list[ApprovalRecord] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield HelpLine(
            "Tool calls waiting for you · a approves · d denies with a reason · e edits the arguments (JSON), "
            "then approves · 1-4 switch screens"
        )
        yield DataTable(id="approvals", cursor_type="row", zebra_stripes=True)
        yield Static(id="empty")
        yield Footer()

    async def on_mount(self) -> None:
        table: DataTable[Text] = self.query_one(DataTable)
        for name in APPROVAL_COLUMNS:
            table.add_column(name, key=name)
        await self.refresh_approvals()
        self.set_interval(self.services.poll_s, self.refresh_approvals)

    async def refresh_approvals(self) -> None:
        found = await attempt(self, lambda: self.services.approvals.list("pending"))
        if found is None or not self.is_attached:
            return
        table: DataTable[Text] = self.query_one(DataTable)
        self.query_one("#empty", Static).update("" if found else "no approvals waiting")
        if [(a.id, a.arguments) for a in found] == [(a.id, a.arguments) for a in self.pending]:
            return
        keep = self.current()
        table.clear()
        for a in found:
            table.add_row(
                Text(a.id),
                Text(a.run_id),
                Text(a.agent),
                Text(a.tool),
                Text.from_markup(short(a.arguments, 80)),
                Text.from_markup(short(a.reason, 80)),
                key=a.id,
            )
        self.pending = found
        ids = [a.id for a in found]
        if keep is not None and keep.id in ids:
            table.move_cursor(row=ids.index(keep.id))

    def current(self) -> ApprovalRecord | None:
        row = self.query_one(DataTable).cursor_row
        return self.pending[row] if 0 <= row < len(self.pending) else None

    def _chosen(self) -> ApprovalRecord | None:
        chosen = self.current()
        if chosen is None:
            self.notify("no approval waiting", severity="warning")
        return chosen

    async def action_approve(self) -> None:
        chosen = self._chosen()
        if chosen is not None:
            await self.approve(chosen)

    async def approve(self, chosen: ApprovalRecord) -> None:
        done = await attempt(self, lambda: self.services.approvals.approve(chosen.id, "approved in the terminal UI"))
        if done is not None:
            self.notify(f"approved {done.tool} {short(done.arguments, 60)}", markup=False)
        await self.refresh_approvals()

    def action_deny(self) -> None:
        chosen = self._chosen()
        if chosen is None:
            return

        async def deny(reason: str | None) -> None:
            if reason is None:
                return
            note = reason.strip() or None
            done = await attempt(self, lambda: self.services.approvals.deny(chosen.id, note))
            if done is not None:
                self.notify(f"denied {done.tool}" + (f": {note}" if note else ""), markup=False)
            await self.refresh_approvals()

        ask = AskText(f"Deny {chosen.tool}? The agent is told the reason.", "why not (optional)")
        self.app.push_screen(ask, deny)

    def action_edit(self) -> None:
        chosen = self._chosen()
        if chosen is None:
            return

        async def edited(arguments: dict[str, Any] | None) -> None:
            if arguments is None:
                return
            done = await attempt(self, lambda: self.services.approvals.edit(chosen.id, arguments))
            if done is not None:
                await self.approve(done)

        self.app.push_screen(EditArguments(chosen), edited)


class EditArguments(ModalScreen[dict[str, Any] | None]):
    """The call's arguments as JSON to change; Ctrl+S approves with them, Escape leaves the call pending."""

    DEFAULT_CSS = """
    EditArguments { align: center middle; }
    EditArguments > Vertical { width: 100; height: 80%; border: thick $accent; background: $surface; padding: 1 2; }
    EditArguments TextArea { height: 1fr; }
    EditArguments #error { color: $error; height: auto; }
    EditArguments Horizontal { height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Approve with these"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, approval: ApprovalRecord) -> None:
        super().__init__()
        self.approval = approval

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Arguments of {self.approval.tool} (run {self.approval.run_id}, agent {self.approval.agent})")
            yield TextArea(json.dumps(self.approval.arguments, indent=2, ensure_ascii=False), language=None, id="args")
            yield Static(id="error")
            with Horizontal():
                yield Button("Approve with these", variant="primary", id="save")
                yield Button("Cancel", id="cancel")
            yield HelpLine("Ctrl+S: approve with these arguments · Escape: cancel (the call stays pending)")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        parsed = parse_arguments(self.query_one(TextArea).text)
        if isinstance(parsed, str):
            self.query_one("#error", Static).update(Text(parsed))
            return
        self.dismiss(parsed)

    def action_cancel(self) -> None:
        self.dismiss(None)
