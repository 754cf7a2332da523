"""What every CLI command shares: the consoles, the runtime, and turning errors into exit codes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from edgecrew.errors import EdgecrewError, SpecError

# Control characters shown as symbols: text from programs, models and other people (a task's output, a
# reply, a case file) must not move the cursor, clear the screen or retitle the user's terminal. Tab
# and newline stay (CRLF as a newline); C0 codes and DEL become their Unicode control pictures (ESC
# is "␛"), C1 codes "\ufffd".
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}
_CONTROLS |= dict.fromkeys(range(0x80, 0xA0), 0xFFFD)


def terminal_text(text: str) -> str:
    """``text`` safe to write to a terminal: its control characters made visible (see ``_CONTROLS``)."""
    return text.replace("\r\n", "\n").translate(_CONTROLS)  # a CRLF file's line ends are plain ends


def shown(text: str) -> str:
    """Text printed as it is (a file's content, a log): kept byte for byte when stdout is a pipe or a
    file, made safe (``terminal_text``) when it is a terminal."""
    return terminal_text(text) if sys.stdout.isatty() else text


class SafeConsole(Console):
    """A rich Console that makes the control characters of every string it renders visible: strings
    reach the terminal through ``render_str`` (``print``'s arguments, table cells, panels)."""

    def render_str(self, text: str, *args: Any, **kwargs: Any) -> Any:
        return super().render_str(terminal_text(text), *args, **kwargs)


console = SafeConsole(highlight=False)
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True)  # errors stay whole lines (paths, file:line)
T = TypeVar("T")

ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="Project dir (default: current dir).")]


def runtime(project: Path | None = None, *, mcp: bool = False) -> Any:
    """The runtime for a command; ``mcp`` also connects the project's MCP servers (commands that run
    tools or list them need them; the rest should not pay for starting servers)."""
    from edgecrew.bootstrap import bootstrap
    from edgecrew.settings import get_settings

    settings = get_settings()
    if project is not None:
        settings = settings.model_copy(update={"project": project})
    return bootstrap(settings, mcp=mcp)


def read_text(path: Path) -> str:
    """A file's UTF-8 text; UserError naming the file and why it cannot be read."""
    from edgecrew.errors import UserError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UserError(f"{path}: cannot read it ({reason})") from None


def read_stdin() -> str:
    """What was piped in, as UTF-8 text; UserError when it is not."""
    import sys

    from edgecrew.errors import UserError

    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("what came on stdin is not UTF-8 text; check its encoding") from None


def guard(fn: Callable[[], T]) -> T:
    """Run a command body; edgecrew's own errors become a clear message and exit code."""
    try:
        return fn()
    except SpecError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except EdgecrewError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None


def arun(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return guard(lambda: asyncio.run(coro_fn()))
    except KeyboardInterrupt:
        err.print(
            "[yellow]interrupted.[/] Unfinished runs are kept: the next `edgecrew run` resumes them, "
            "or run `edgecrew resume RUN` (see `edgecrew runs list --status running`)."
        )
        raise typer.Exit(130) from None
