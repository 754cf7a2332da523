"""What every CLI command shares: the consoles, the runtime, and turning errors into exit codes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from edgecrew.domain.text import terminal_text
from edgecrew.errors import EdgecrewError, SpecError, SpecIssue

if TYPE_CHECKING:
    from edgecrew.store.repo import RunRecord


def shown(text: str) -> str:
    """Text printed as it is (a file's content, a log): kept byte for byte when stdout is a pipe or a
    file, made safe (``terminal_text``) when it is a terminal."""
    return terminal_text(text) if sys.stdout.isatty() else text


def print_file(data: bytes) -> None:
    """A stored file's bytes on stdout: as they are to a pipe or a file (``> copy.py`` is the file, a
    binary or Latin-1 one too), as safe UTF-8 text to a terminal."""
    if sys.stdout.isatty():
        print(terminal_text(data.decode("utf-8", errors="replace")), end="")
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


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


def say_orphaned(run: RunRecord) -> None:
    """Tell that an unfinished run has no live process (the one that ran it stopped) and how to go on."""
    err.print(
        f"[yellow]run {run.id} is {run.status.value} but no live edgecrew process runs it[/] (the one that did"
        f" has stopped): `edgecrew resume {run.id}` goes on with it here; a server takes such runs over when it"
        " starts (a running one: Resume on the run's page in mission control)"
    )


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
        err.print(f"[yellow]interrupted.[/] {_interrupted_runs()}")
        raise typer.Exit(130) from None


def _interrupted_runs() -> str:
    """What became of the runs a Ctrl-C left: on a cluster a worker runs them, so they go on (being told
    that "the next `edgecrew run` resumes them" of a run that finished on its worker meanwhile misled)."""
    from edgecrew.settings import get_settings

    try:
        clustered = get_settings().cluster_enabled
    except Exception:  # settings that do not read are said elsewhere; the usual advice stands
        clustered = False
    if clustered:
        return (
            "Runs started here go on on the cluster's workers (this process only followed them): "
            "`edgecrew runs list` shows them, `edgecrew cancel RUN` stops one."
        )
    return (
        "Unfinished runs are kept: the next `edgecrew run` resumes them, "
        "or run `edgecrew resume RUN` (see `edgecrew runs list`)."
    )


def say_warnings(warnings: Iterable[SpecIssue]) -> None:
    """Spec warnings on stderr, one line each, marked apart from errors (a warning fails nothing)."""
    for issue in warnings:
        err.print(f"[yellow]! warning:[/] {escape(str(issue))}")
