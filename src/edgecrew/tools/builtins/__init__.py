"""Built-in tools, registered through the same ToolRegistry that plugins use."""

from __future__ import annotations

from edgecrew.tools.base import ToolRegistry


def register_builtins(registry: ToolRegistry) -> None:
    from edgecrew.tools.builtins import files, scheduler

    files.register(registry)
    scheduler.register(registry)
