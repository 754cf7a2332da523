"""Stub: job_tools. TO BE FILLED."""

from __future__ import annotations

from edgecrew.engine.runtime import Runtime
from edgecrew.tools.base import ToolRegistry


def register(registry: ToolRegistry, rt: Runtime | None = None) -> None:
    return None
