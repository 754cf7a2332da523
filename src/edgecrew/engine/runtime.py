"""The runtime of one process: settings, store, project, model registry and pool, tool registry.

Entry points reach the store only through it: runs through :class:`~edgecrew.engine.service.RunService`,
approvals through :class:`~edgecrew.engine.approvals.ApprovalService`, tasks through ``tasks`` (and their
code's executions through ``executions``), API keys
through ``keys`` (``tests/unit/test_layers.py`` checks that no entry point reads ``.store``).
Services of other layers that must be one per runtime (projects, memory, ops) are its extensions:
``rt.extension(ProjectService, make)`` is keyed and typed by the class, never a dict read by name.
The composition root that builds it is :func:`edgecrew.bootstrap.bootstrap`, above the engine;
durable steps reach the runtime DBOS was launched with through ``durable.current_runtime()`` (DBOS
replays a step by name, so a step cannot carry it in a closure). The entry points wire what is
theirs on top (the server app adds telemetry, auth and routers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from edgecrew.domain.specs import TeamSpec
from edgecrew.engine.executors import executor_alive, executor_id
from edgecrew.errors import SpecError
from edgecrew.models.base import ChatModel
from edgecrew.models.pool import ModelPool, PoolModelSpec
from edgecrew.models.registry import ModelRegistry
from edgecrew.settings import Settings
from edgecrew.specs.loader import Catalog
from edgecrew.specs.project import Project
from edgecrew.store.keys import ApiKeyStore
from edgecrew.store.repo import RunStore
from edgecrew.store.tasks import TaskStore
from edgecrew.tasks.executions import ExecutionService
from edgecrew.tools.base import ToolRegistry

T = TypeVar("T")


POOL_STATE_REFRESH_S = 1.0  # how stale the published pool state may get while nothing changes


@dataclass
class Runtime:
    """What one process runs with: settings, store, project, models and tools, and the services built on them."""

    settings: Settings
    store: RunStore
    project: Project
    models: ModelRegistry
    tools: ToolRegistry

    # What to tell whoever starts a run that would wait on a queue no live process serves (None: it
    # would not); the composition root sets it when runs go through a cluster's queue.
    queue_check: Callable[[], str | None] | None = None
    _pool: ModelPool | None = None
    _extensions: dict[type[Any], Any] = field(default_factory=dict, repr=False)
    _published: tuple[tuple[Any, ...] | None, float] = field(default=(None, 0.0), repr=False)

    def extension(self, cls: type[T], make: Callable[[Runtime], T]) -> T:
        """The runtime's one ``cls``, made by ``make(self)`` on first use: a service of another layer that
        must be one per runtime (one model loaded, one sampler), e.g. ``ProjectService.of(rt)``."""
        found = self._extensions.get(cls)
        if found is None:
            found = self._extensions[cls] = make(self)
        if not isinstance(found, cls):
            raise TypeError(f"the runtime's {cls.__name__} extension is a {type(found).__name__}")
        return found

    @cached_property
    def project_key(self) -> str:
        """A short stable name of this runtime's project: several projects may share one data dir (and so
        one DBOS system database), and each runs only its own queued work (its DBOS queues carry it)."""
        return hashlib.sha256(str(self.project.dir).encode()).hexdigest()[:10]

    @cached_property
    def tasks(self) -> TaskStore:
        """The task workspace: tasks, code versions, results, feedback, messages and logs."""
        return TaskStore(self.store, self.settings.home / "tasks")

    @cached_property
    def executions(self) -> ExecutionService:
        """Executions of task code versions in the sandbox (per runtime: it holds the running ones)."""
        return ExecutionService(self.tasks, executor=executor_id(), executor_alive=executor_alive)

    @cached_property
    def keys(self) -> ApiKeyStore:
        """The API keys (only their hashes are stored)."""
        return ApiKeyStore(self.store)

    @property
    def pool(self) -> ModelPool:
        """The process's model pool, created on first use (model calls get their model here)."""
        if self._pool is None:
            self._pool = build_pool(self.models, self.settings.model_memory_bytes)
        return self._pool

    def publish_pool_state(self) -> None:
        """Write the pool's state where `edgecrew models status` (another process) can read it: when it
        changed, or a second after the last write (its ``at`` says how fresh it is); a model call
        that changes nothing costs no file write."""
        if self._pool is None:
            return
        now = time.monotonic()
        # What changes the picture: not the clock (last use, idle seconds) nor the counters every call
        # moves (grants, waits); those are at most a second stale.
        shape = self._pool.fingerprint()
        if shape == self._published[0] and now - self._published[1] < POOL_STATE_REFRESH_S:
            return
        state = self._pool.state().to_dict()
        folder = self.settings.home / "pool"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{executor_id().replace(':', '_')}.json"
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps({"executor": executor_id(), "at": time.time(), **state}))
        partial.replace(target)
        self._published = (shape, now)

    async def close_pool(self) -> None:
        """Unload the pool's models (a server shutting down; nothing happens when none was used)."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    def catalog(self) -> Catalog:
        return catalog_of(self.models, self.tools, self.project.agent_docs(), self.project.agent_files())

    def load_team(self, name_or_path: str) -> TeamSpec:
        """A team by name or YAML path (the CLI's way; network callers use ``load_named_team``)."""
        return self.project.load_team(name_or_path, self.catalog())

    def load_named_team(self, name: str) -> TeamSpec:
        """A team by name only (never a path)."""
        return self.project.load_source(self.project.named_source(name), self.catalog())

    def workspace(self, run_id: str) -> Path:
        return self.settings.workspaces_dir / run_id


def published_pool_states(home: Path) -> list[dict[str, Any]]:
    """The pool states that live edgecrew processes published (files of dead ones are removed)."""
    from edgecrew.engine.executors import executor_alive

    states = []
    for file in sorted((home / "pool").glob("*.json")):
        try:
            state = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        if executor_alive(state.get("executor")):
            states.append(state)
        else:
            file.unlink(missing_ok=True)  # the process is gone, and so are its resident models
    return states


def catalog_of(
    models: ModelRegistry,
    tools: ToolRegistry,
    agents: Mapping[str, Mapping[str, Any] | SpecError] | None = None,
    agent_files: Mapping[str, str] | None = None,
) -> Catalog:
    """What specs may refer to: these models (aliases and tags), tools (normalized names) and library
    agents (with the file that declares each, by name)."""
    return Catalog(
        tools=tools.names(),
        models=models.references(),
        normalize_tool=tools.canonical,
        agents=agents,
        agent_files=agent_files,
        tool_schema=lambda name: tools.get(name).input_schema,
    )


def build_pool(registry: ModelRegistry, budget_bytes: int | None) -> ModelPool:
    """One pool over the registry: fresh model instances, loaded in a worker thread."""

    async def load(alias: str) -> ChatModel:
        instance = registry.instance(alias)
        if instance is not None:  # registered in-process (tests, embedding apps): nothing to load
            return instance
        model = registry.build(registry.definition(alias))
        loader = getattr(model, "load", None)
        if loader is not None:
            await asyncio.to_thread(loader)
        return model

    def spec(alias: str) -> PoolModelSpec:
        if registry.instance(alias) is not None:
            return PoolModelSpec(alias, memory_bytes=0, slots=64)
        d = registry.definition(alias)
        return PoolModelSpec(alias, memory_bytes=d.memory_bytes, slots=d.slots, pinned=d.pinned)

    return ModelPool(load, specs=spec, budget_bytes=budget_bytes)
