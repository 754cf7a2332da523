"""The Chat screen: pick a team (or one agent of it), type, and read its reply.

A turn goes through :class:`~edgecrew.engine.chat.ChatService`, the same as ``/v1/chat/completions``:
one durable run per message, whose task is the conversation so far, so every turn is recorded and
visible on the Runs screen like any other run. A turn that waits for an approval waits here too.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, RichLog, Select

from edgecrew.engine.chat import ChatMessage
from edgecrew.errors import EdgecrewError
from edgecrew.tui.services import Services, escape
from edgecrew.tui.widgets import HelpLine


class ChatScreen(Screen[None]):
    """A conversation with the chosen team; choosing another team starts a new one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("escape", "leave_input", "Leave input"),
    ]
    DEFAULT_CSS = """
    ChatScreen #transcript { height: 1fr; border: round $primary; }
    """

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.messages: list[ChatMessage] = []
        self.lines: list[str] = []  # the transcript as plain text (what the log shows)

    def compose(self) -> ComposeResult:
        yield Header()
        yield HelpLine(
            "Chat with a team (each message is a run) · Enter sends · Ctrl+N starts over · "
            "Escape leaves the input, then 1-4 switch screens"
        )
        models = self.services.chat_models()
        yield Select([(m, m) for m in models], allow_blank=not models, id="model", prompt="no teams")
        yield RichLog(id="transcript", wrap=True, markup=False, min_width=40)
        yield Input(placeholder="message the team…", id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#transcript", RichLog).border_title = "conversation"
        self.query_one("#message", Input).focus()

    @property
    def model(self) -> str | None:
        value = self.query_one("#model", Select).value
        return value if isinstance(value, str) else None

    def say(self, markup: str) -> None:
        text = Text.from_markup(markup)
        self.lines.append(text.plain)
        self.query_one("#transcript", RichLog).write(text)

    def on_select_changed(self, event: Select.Changed) -> None:
        if self.messages:
            self.action_new_chat()

    def action_new_chat(self) -> None:
        self.messages = []
        self.query_one("#transcript", RichLog).clear()
        self.lines = []
        self.say(f"[dim]new conversation with {escape(self.model or 'no team')}[/]")

    def action_leave_input(self) -> None:
        self.query_one("#transcript", RichLog).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.model is None:
            self.notify("no team to chat with: add one under teams/", severity="warning")
            return
        event.input.value = ""
        self.messages.append(ChatMessage("user", text))
        self.say(f"[bold]you:[/] {escape(text)}")
        self.turn(self.model, list(self.messages))

    @work(group="chat", exclusive=False)
    async def turn(self, model: str, messages: list[ChatMessage]) -> None:
        box = self.query_one("#message", Input)
        box.disabled = True
        chat = self.services.chat()
        try:
            started = await chat.start(model, messages)
            self.say(f"[dim]run {started.run_id} · waiting for {escape(model)}…[/]")
            answer = await chat.answer(started.run_id)
        except EdgecrewError as exc:
            self.messages.pop()
            self.say(f"[red]error: {escape(str(exc))}[/]")
            return
        finally:
            box.disabled = False
            box.focus()
        if answer.ok:
            self.messages.append(ChatMessage("assistant", answer.text))
            self.say(f"[bold cyan]{escape(model)}:[/] {escape(answer.text)}")
        else:
            self.messages.pop()
            self.say(f"[red]{escape(answer.error)}[/]")
