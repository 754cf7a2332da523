"""`edgecrew chat TEAM`: talk to a team in this terminal; `edgecrew chat sessions`: the sessions so far.

Each message is a run of the team in this process (as `edgecrew run` does), whose task carries the
session's recent turns; the reply is printed as the model writes it, then stored. A session lives in the
store, so `edgecrew chat --session ID` (or the API, or the chat page) carries on where it stopped. The
one design decision: ``chat`` is a command group whose unknown first word is a team, so `edgecrew chat
twin` and `edgecrew chat sessions` both read naturally (a team named like a subcommand: `chat start NAME`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from edgecrew.cli.common import ProjectOpt, arun, console, err, guard, runtime
from edgecrew.errors import ConflictError, UserError

COMMANDS = "/new starts a new session with the same team, /quit leaves"
HELP = "In a chat: /new starts a new session with the same team, /quit (or Ctrl-D) leaves."


class _TeamOrCommand(TyperGroup):
    """A group whose first word, when it is not one of its commands, is the team of ``start``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


chat_app = typer.Typer(
    cls=_TeamOrCommand,
    help="Chat with a team: `edgecrew chat twin`, `edgecrew chat --session ID`, `edgecrew chat sessions`.",
    no_args_is_help=True,
)


def _sessions(project: Any, *, mcp: bool = False) -> Any:
    from edgecrew.engine.service import RunService
    from edgecrew.engine.sessions import ChatSessions

    return ChatSessions(RunService(runtime(project, mcp=mcp)))


@chat_app.command("start")
def start(
    team: Annotated[
        str | None, typer.Argument(help="The team to talk to, e.g. twin (see `edgecrew teams list`).")
    ] = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Carry on a session (its id).")] = None,
    message: Annotated[
        list[str] | None,
        typer.Option("--message", "-m", help="Say this (repeatable) and leave, instead of reading the terminal."),
    ] = None,
    works_in: Annotated[
        str | None, typer.Option("--in", help="A project whose files and memory a new session's runs use.")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Talk to a team: each line you type is answered by a run of it, with the recent turns as context."""
    from edgecrew.engine.sessions import Replied, Said, Writing

    if team is None and session is None:
        err.print("[red]error:[/] name a team (edgecrew chat twin) or a session (edgecrew chat --session ID)")
        raise typer.Exit(2)
    if message is not None and not any(m.strip() for m in message):  # nothing to say: no session is made
        err.print("[red]error:[/] --message is empty; say something")
        raise typer.Exit(2)

    async def body() -> int:
        from edgecrew.engine.sessions import check_message

        for said in message or []:  # a message no run can take makes no session either (blank ones are skipped)
            if said.strip():
                check_message(said)
        chats = _sessions(project, mcp=True)
        await chats.runs.recover()  # runs of earlier chats that a dead process left behind go on here
        current = chats.get(session) if session else chats.create(str(team), project=works_in)
        if team is not None and current.team != team:
            err.print(f"[red]error:[/] session {current.id} talks to team '{current.team}', not '{team}'")
            return 2
        console.print(f"[bold]{current.team}[/] · session {current.id}" + ("" if message else f"  [dim]{HELP}[/]"))
        for turn in chats.turns(current.id)[-6:] if session else []:
            who = "you" if turn.role == "user" else current.team
            console.print(f"[dim]{who}: {escape(turn.content)}[/]")
        script = list(message or [])
        failed = 0
        while True:
            if message is not None:
                if not script:
                    return 1 if failed else 0
                text = script.pop(0)
                console.print(f"[bold cyan]you:[/] {escape(text)}")
            else:
                try:
                    text = await _ask()
                except EOFError:
                    console.print()
                    return 0
            if not text.strip():
                continue
            if text.strip() in ("/quit", "/exit"):
                return 0
            if text.strip() == "/new":
                current = chats.create(current.team, project=current.project)
                console.print(f"[dim]new session {current.id}[/]")
                continue
            if re.fullmatch(r"/\S*", text.strip()):  # a mistyped command is no message for the team
                err.print(f"[yellow]unknown command {escape(text.strip())}:[/] {COMMANDS}")
                continue
            shown = ""
            try:
                async for update in chats.stream(current.id, text):
                    if isinstance(update, Said):
                        # e.g. a cluster with no live worker: the run waits on its queue, and so does this chat
                        for notice in update.pending.started.notices:
                            err.print(f"[yellow]warning:[/] {escape(notice)}")
                        console.print(f"[bold green]{escape(current.team)}:[/] ", end="")
                    elif isinstance(update, Writing):
                        shown = update.text
                        console.print(escape(update.delta), end="", soft_wrap=True)
                    elif isinstance(update, Replied):
                        failed += _print_reply(update.exchange, shown)
            except (ConflictError, UserError) as exc:  # this message refused (e.g. the last one still waits)
                err.print(f"[red]error:[/] {escape(str(exc))}")
                failed += 1

    raise typer.Exit(arun(body))


async def _ask() -> str:
    import asyncio

    return await asyncio.to_thread(input, "you: ")


def _print_reply(exchange: Any, shown: str) -> int:
    """The rest of the answer after what streamed (or all of it); returns 1 when there is none, or when
    its run failed (an answer that says why the work failed: the team's ``failed_when``)."""
    if exchange.answer is not None:
        text = exchange.answer.content
        rest = text[len(shown) :] if shown and text.startswith(shown) else ("\n" + text if shown else text)
        console.print(escape(rest), soft_wrap=True)
        if exchange.status != "failed":
            return 0
        err.print(f"[red]run {exchange.run.id} failed[/]: its answer above says why")
        return 1
    console.print()
    if exchange.status == "pending" and exchange.waiting is not None:
        goes_on = "the answer comes to this session once they are decided (edgecrew chat show)"
        err.print(f"[yellow]{escape(exchange.waiting.message(goes_on))}[/]")
    elif exchange.status == "pending":
        err.print(f"[yellow]run {exchange.run.id} waits for an approval[/] (edgecrew approvals list)")
    else:
        err.print(f"[red]error:[/] {escape(exchange.error or '')}; say it again to retry")
    return 1


@chat_app.command("sessions")
def sessions(
    team: Annotated[str | None, typer.Option("--team", help="Only this team's sessions.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 20,
    project: ProjectOpt = None,
) -> None:
    """Chat sessions, the most recently active first."""

    def body() -> None:
        chats = _sessions(project)
        found = chats.list_sessions(limit=limit, team=team)
        if not found:  # an empty table under the sentence said nothing more
            start = team if team is not None else "twin"
            first = f"no chat sessions with team '{team}'" if team is not None else "no chat sessions yet"
            console.print(escape(f"{first}; start one: edgecrew chat {start}"))
            return
        table = Table("session", "team", "title", "last active")
        for s in found:
            when = datetime.fromtimestamp(s.updated_at).strftime("%Y-%m-%d %H:%M")
            table.add_row(s.id, s.team, escape(s.title or "—"), when)
        console.print(table)

    guard(body)


@chat_app.command("show")
def show(
    session: Annotated[str, typer.Argument(help="A session's id (see `edgecrew chat sessions`).")],
    project: ProjectOpt = None,
) -> None:
    """A session's turns."""

    def body() -> None:
        chats = _sessions(project)
        current = chats.get(session)
        console.print(f"[bold]{current.team}[/] · session {current.id} · {escape(current.title or '—')}")
        turns = chats.turns(current.id)
        failed = chats.failed_answers(turns)
        for turn in turns:
            who = "you" if turn.role == "user" else current.team
            run = f" [dim]({turn.run_id})[/]" if turn.role == "assistant" and turn.run_id else ""
            if turn.run_id in failed:  # an answer that says why its run failed (failed_when)
                run = f" [red](run {turn.run_id} failed)[/]"
            console.print(f"[bold]{who}:[/] {escape(turn.content)}{run}")

    guard(body)
