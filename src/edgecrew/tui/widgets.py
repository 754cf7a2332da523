"""Small widgets every screen shares: the help line, and the dialogs that ask for a line of text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Label, Static

from edgecrew.errors import EdgecrewError

T = TypeVar("T")


class HelpLine(Static):
    """One line under the header that says what the screen is for and its keys."""

    DEFAULT_CSS = """
    HelpLine { height: auto; padding: 0 1; color: $text-muted; background: $boost; }
    """


class AskText(ModalScreen[str | None]):
    """Ask for one line of text: Enter answers (with what was typed, maybe nothing), Escape cancels (None)."""

    DEFAULT_CSS = """
    AskText { align: center middle; }
    AskText > Vertical { width: 80; height: auto; border: thick $accent; background: $surface; padding: 1 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(placeholder=self.placeholder, id="answer")
            yield HelpLine("Enter: done · Escape: cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


async def attempt(node: Widget, fn: Callable[[], T]) -> T | None:
    """Call a (blocking) use case in a thread; edgecrew's own errors become an error notification."""
    try:
        return await asyncio.to_thread(fn)
    except EdgecrewError as exc:
        node.notify(str(exc), title="error", severity="error", markup=False, timeout=10)
        return None
