"""`edgecrew tui`: the terminal UI (Textual), an optional extra: without it, say how to install it."""

from __future__ import annotations

import typer
from rich.markup import escape

from edgecrew.cli.common import ProjectOpt, err, guard, runtime

INSTALL_HINT = (
    "the terminal UI needs Textual, which is not installed; install it with "
    "pip install 'edgecrew[tui]' (or pip install 'textual>=8,<9')"
)


def tui(project: ProjectOpt = None) -> None:
    """A terminal UI: runs live, a run's timeline, the approvals inbox, routines, and chat with a team."""
    try:
        from edgecrew.tui import EdgecrewTUI
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "textual":
            raise
        err.print(f"[red]error:[/] {escape(INSTALL_HINT)}")
        raise typer.Exit(1) from None
    from edgecrew.cli.render import event_line

    rt = guard(lambda: runtime(project, mcp=True))
    EdgecrewTUI(rt, event_line=event_line).run()
