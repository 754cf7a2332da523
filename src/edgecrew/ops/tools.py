"""The ops tools (metrics history, jobs, EdgePilot's plan executor), listed unbound by ``load_catalog``
and bound to a runtime by ``bootstrap``: each part registers its own from its module."""

from __future__ import annotations

from edgecrew.engine.runtime import Runtime
from edgecrew.ops import job_tools, metric_tools, optimizer, pilot, supervisor
from edgecrew.tools.base import ToolRegistry


def register_ops_tools(registry: ToolRegistry, rt: Runtime | None = None) -> None:
    """Register (or with ``rt``, re-register bound to that runtime) the metrics and jobs tools."""
    metric_tools.register(registry, rt)
    job_tools.register(registry, rt)
    pilot.register(registry, rt)
    optimizer.register(registry, rt)
    supervisor.register_tools(registry, rt)
