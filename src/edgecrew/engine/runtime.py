"""The composition root: settings, store, project, model and tool registries of this process.

Durable steps find their collaborators here (DBOS replays a step by name, so it cannot carry them
in a closure). Only this module wires adapters together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecrew.domain.specs import TeamSpec
from edgecrew.models.registry import ModelRegistry
from edgecrew.settings import Settings, get_settings
from edgecrew.specs.loader import Catalog
from edgecrew.specs.project import Project, load_project
from edgecrew.store.repo import RunStore, open_store
from edgecrew.tools.base import ToolRegistry, default_registry


@dataclass
class Runtime:
    settings: Settings
    store: RunStore
    project: Project
    models: ModelRegistry
    tools: ToolRegistry

    @property
    def model_source(self) -> Any:
        """Where model calls get their model: the registry now; the memory-aware pool once wired."""
        from edgecrew.engine.routing import RegistrySource

        return RegistrySource(self.models)

    def catalog(self) -> Catalog:
        return Catalog(tools=self.tools.names(), models=self.models.references(), normalize_tool=self.tools.canonical)

    def load_team(self, name_or_path: str) -> TeamSpec:
        return self.project.load_team(name_or_path, self.catalog())

    def workspace(self, run_id: str) -> Path:
        return self.settings.workspaces_dir / run_id


_CURRENT: Runtime | None = None


def bootstrap(settings: Settings | None = None, *, tools: ToolRegistry | None = None) -> Runtime:
    """Build this process's runtime (idempotent for the same settings) and make it current."""
    global _CURRENT
    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    project = load_project(settings.project_dir)
    registry = tools or default_registry()
    project.import_plugins()
    _CURRENT = Runtime(
        settings=settings,
        store=open_store(settings.store_url),
        project=project,
        models=ModelRegistry(project.models, data_dir=settings.home),
        tools=registry,
    )
    return _CURRENT


def get_runtime() -> Runtime:
    if _CURRENT is None:
        return bootstrap()
    return _CURRENT
