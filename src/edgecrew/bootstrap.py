"""The composition root: builds a process's :class:`~edgecrew.engine.runtime.Runtime` from settings.

Entry points (CLI, server app, MCP server, tests, embedding programs) call :func:`bootstrap`; it
wires the adapters: the project with its plugins and MCP servers, the model registry, the tool
registry and the store. It sits above the engine and keeps no module state: the durable engine
learns which runtime its steps serve when it is launched with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlalchemy as sa

from edgecrew.engine.runtime import Runtime
from edgecrew.errors import UserError
from edgecrew.memory import MemoryService, ScopeRef, register_memory_tools
from edgecrew.models.registry import ModelRegistry
from edgecrew.ops.tools import register_ops_tools
from edgecrew.platform import PlatformConfig, register_platform_tools
from edgecrew.platform.config import WORKSPACE_RULES
from edgecrew.projects import ProjectService, register_project_tools
from edgecrew.settings import Settings, get_settings
from edgecrew.specs.project import Project, load_project
from edgecrew.store.repo import database_problem, open_store
from edgecrew.tasks import register_task_tools
from edgecrew.tools.base import ToolRegistry, declared_tools
from edgecrew.tools.builtins import builtin_registry, prometheus

__all__ = ["bootstrap", "load_catalog"]


def bootstrap(settings: Settings | None = None, *, tools: ToolRegistry | None = None, mcp: bool = False) -> Runtime:
    """Build a runtime (``mcp``: connect the project's MCP servers)."""
    settings = settings or get_settings()
    project, models, registry = load_catalog(settings, tools, mcp=mcp)
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.store_url)
    except OSError as exc:
        raise UserError(
            f"the data dir {settings.home} is not usable ({exc.strerror or exc}); "
            "set EDGECREW_HOME to a writable directory"
        ) from None
    except (sa.exc.SQLAlchemyError, sqlite3.DatabaseError) as exc:  # read-only, damaged, unreachable
        raise UserError(database_problem("the store", settings.store_url, exc)) from None
    runtime = Runtime(settings=settings, store=store, project=project, models=models, tools=registry)
    register_task_tools(registry, runtime.tasks, runtime.executions)  # bound to this runtime's workspace
    register_ops_tools(registry, runtime)  # bound to this runtime's sampler and jobs
    register_project_tools(registry, ProjectService.of(runtime))  # bound to this runtime's projects
    memory = MemoryService.of(runtime)
    projects = ProjectService.of(runtime)
    memory.project_of = projects.project_id_of_run
    projects.forget_memories = lambda project_id: memory.forget(scopes=[ScopeRef("project", project_id)])
    register_memory_tools(registry, memory)  # this runtime's memory; the model loads on first use
    # docs.search ranks the guidelines with the same model (BM25 when it cannot load)
    register_platform_tools(registry, _platform_config(settings), embedder=memory.embedder)
    if settings.cluster_enabled:  # runs wait on the cluster's queue: say so when no worker would take them
        runtime.queue_check = _no_worker_check(runtime)
    return runtime


def _no_worker_check(runtime: Runtime) -> Callable[[], str | None]:
    def check() -> str | None:
        from edgecrew.cluster import ClusterService

        return ClusterService.of(runtime).no_worker_warning()

    return check


def load_catalog(
    settings: Settings, tools: ToolRegistry | None = None, *, mcp: bool = False
) -> tuple[Project, ModelRegistry, ToolRegistry]:
    """The project with its models and tools (plugins imported, MCP servers connected when ``mcp``);
    no store needed (`validate` uses it)."""
    project = load_project(settings.project_dir)
    registry = tools or builtin_registry()
    if tools is None and settings.prometheus_url:  # prometheus.query asks the server the metrics tools use
        prometheus.register(registry, settings.prometheus_url)
    register_task_tools(registry)  # listed now; bootstrap binds them to the runtime's task workspace
    register_ops_tools(registry)
    register_memory_tools(registry)  # listed now; bootstrap binds them to the runtime's memory
    register_project_tools(registry)
    register_platform_tools(registry, _platform_config(settings))
    project.import_plugins()
    if tools is None:  # a registry handed in is used as it is
        for spec in declared_tools():
            registry.register(spec)
    if mcp and project.mcp_servers:
        from edgecrew.tools.mcp import register_mcp_tools

        register_mcp_tools(registry, project.mcp_servers, base_dir=project.dir, log_dir=settings.home / "logs")
    return project, ModelRegistry(project.models, data_dir=settings.home), registry


def _platform_config(settings: Settings) -> PlatformConfig:
    # The project's platform.yaml (beside edgecrew.yaml) when the setting names no rules file: a run's
    # workspace, whose platform.yaml the tools also read, is made only when the run starts.
    project_rules = settings.project_dir / WORKSPACE_RULES
    rules = settings.platform_rules or (project_rules if project_rules.is_file() else None)
    return PlatformConfig(k8s_context=settings.k8s_context, rules=rules, guidelines=settings.platform_guidelines)
