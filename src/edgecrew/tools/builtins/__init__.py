"""Built-in tools, registered through the same ToolRegistry that plugins use."""

from __future__ import annotations

from edgecrew.tools.base import ToolRegistry


def register_builtins(registry: ToolRegistry) -> None:
    from edgecrew.tools.builtins import a2a, code, files, git, prometheus, scheduler, system

    a2a.register(registry)  # a2a.send: ask a remote A2A agent (risky; tokens from EDGECREW_A2A_TOKENS)
    code.register(registry)
    files.register(registry)
    git.register(registry)
    prometheus.register(registry)  # http://127.0.0.1:9090 until a project's `prometheus: {url}` re-registers
    scheduler.register(registry)
    system.register(registry)


def builtin_registry() -> ToolRegistry:
    """A fresh registry holding the built-in tools (each runtime gets its own)."""
    registry = ToolRegistry()
    register_builtins(registry)
    return registry
