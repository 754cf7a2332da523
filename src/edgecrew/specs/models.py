"""The ``models:`` section of ``edgecrew.yaml`` → ModelDef objects, with file:line errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgecrew.domain.sizes import parse_size
from edgecrew.errors import SpecIssue
from edgecrew.models.registry import BUILTIN_MODELS, DEFAULT_CAPABILITIES, ModelDef
from edgecrew.specs.yamlsrc import line_of


class ModelDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["llamacpp", "litellm", "scripted"]
    # llamacpp
    path: str | None = None
    package: str | None = None
    assemble: bool = False
    n_ctx: int = Field(4096, ge=256)
    threads: int | None = Field(None, ge=1)
    seed: int = 42
    # litellm
    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    # every backend
    memory: str | int | None = None  # "900MiB", "1.5GB" or bytes; measured at load when absent
    capabilities: list[Literal["tools", "json_schema"]] | None = None
    tags: list[str] = []
    fallbacks: list[str] = []
    pinned: bool = False
    slots: int = Field(1, ge=1, le=64)
    # scripted
    replies: list[Any] | None = None
    replies_by_agent: dict[str, list[Any]] | None = None
    delay: float = Field(0.0, ge=0)
    record: str | None = None
    cycle: bool = False


def build_models(
    docs: Mapping[str, ModelDoc], doc: Any, file: str, base_dir: Path
) -> tuple[dict[str, ModelDef], list[SpecIssue]]:
    """ModelDefs for the project's aliases, and every problem found in them."""
    issues: list[SpecIssue] = []
    known = set(BUILTIN_MODELS) | set(docs)

    def issue(loc: tuple[Any, ...], message: str, hint: str = "") -> None:
        issues.append(SpecIssue(file, line_of(doc, ("models", *loc)), message, hint))

    defs: dict[str, ModelDef] = {}
    for alias, m in docs.items():
        if m.backend == "llamacpp" and not (m.path or m.package):
            issue((alias,), f"model '{alias}' (llamacpp) needs 'path' or 'package'", "path: models/my.gguf")
        if m.backend == "litellm" and not m.model:
            issue(
                (alias,),
                f"model '{alias}' (litellm) needs 'model', the provider's model id",
                "e.g. model: ollama/qwen2.5:0.5b",
            )
        for i, fallback in enumerate(m.fallbacks):
            if fallback not in known:
                issue(
                    (alias, "fallbacks", i),
                    f"model '{alias}' falls back to unknown model '{fallback}'",
                    "known: " + ", ".join(sorted(known)),
                )
            elif fallback == alias:
                issue((alias, "fallbacks", i), f"model '{alias}' lists itself as a fallback")
        try:
            memory = parse_size(m.memory)
        except ValueError as exc:
            issue((alias, "memory"), str(exc))
            memory = None
        options = {
            k: v
            for k, v in m.model_dump(exclude_none=True).items()
            if k in ("seed", "replies", "replies_by_agent", "delay", "record", "cycle", "timeout_s", "max_retries")
        }
        defs[alias] = ModelDef(
            alias=alias,
            backend=m.backend,
            path=m.path,
            package=m.package,
            assemble=m.assemble,
            model=m.model,
            api_base=m.api_base,
            api_key_env=m.api_key_env,
            n_ctx=m.n_ctx,
            threads=m.threads,
            memory_bytes=memory,
            capabilities=frozenset(m.capabilities) if m.capabilities is not None else DEFAULT_CAPABILITIES,
            tags=tuple(m.tags),
            fallbacks=tuple(m.fallbacks),
            pinned=m.pinned,
            slots=m.slots,
            options=options,
            base_dir=base_dir,
            source=file,
        )
    return defs, issues
