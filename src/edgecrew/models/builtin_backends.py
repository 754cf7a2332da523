"""The built-in backends, registered like any plugin's: llama.cpp (embedded), LiteLLM, scripted.

Each is its settings model (the keys an alias of that backend takes in ``edgecrew.yaml``) and a
factory. The one design decision: this module stays as light as the specs that read it; an adapter
module, and the SDK behind it, is imported only inside its factory, when a model is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgecrew.errors import UserError
from edgecrew.models.backends import BackendConfig, BuildContext, ConfigProblem, ModelBackend
from edgecrew.models.base import ChatModel

StopString = Annotated[str, Field(min_length=1, max_length=64)]


class SamplingConfig(BaseModel):
    """``sampling:`` of a llama.cpp alias: each key left out keeps what the model's family recommends.

    A request that sets its own temperature overrides both temperatures here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0, le=2)  # plain-text replies; 0 is greedy
    json_temperature: float | None = Field(default=None, ge=0, le=2)  # tool calls and structured output
    top_k: int | None = Field(default=None, ge=0)  # 0: no top-k cut
    top_p: float | None = Field(default=None, gt=0, le=1)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, gt=0, le=2)  # 1: none


class LlamaCppConfig(BackendConfig):
    """A GGUF file run in-process: a path, or an installed distribution that ships one.

    ``sampling``, ``stop`` and ``system_prompt`` override the defaults of the model's family, which
    is read from the GGUF (SmolLM2, Gemma 3; see ``edgecrew.models.llamacpp_state``).
    """

    path: str | None = None  # relative to the project directory
    package: str | None = None  # installed distribution holding the GGUF (or its chunk packages)
    assemble: bool = False  # the package ships the GGUF in chunk packages to join on first use
    n_ctx: int = Field(4096, ge=256)
    threads: int | None = Field(None, ge=1)
    seed: int = 42
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    # Replace the family's stop list; the GGUF's end-of-generation tokens always end a reply.
    stop: list[StopString] | None = Field(None, max_length=16)
    # "system": the chat template's system role; "user": the system prompt opens the first user turn.
    system_prompt: Literal["system", "user"] | None = None

    def describe(self) -> str:
        return self.path or f"package {self.package}"

    def problems(self) -> list[ConfigProblem]:
        if self.path or self.package:
            return []
        return [ConfigProblem("needs 'path' or 'package'", "path: models/my.gguf")]


def gguf_path(context: BuildContext, config: LlamaCppConfig) -> Path:
    """The GGUF file of an alias (a chunked package's is joined into the data directory first)."""
    from edgecrew.models.resources import assembled_gguf, packaged_gguf

    if config.path:
        return context.base_dir / config.path
    if config.package is None:
        raise UserError(f"model '{context.alias}' needs 'path' or 'package'")
    if config.assemble:
        return assembled_gguf(config.package, context.data_dir / "models")
    return packaged_gguf(config.package)


def _build_llamacpp(context: BuildContext, config: LlamaCppConfig) -> ChatModel:
    from edgecrew.models.llamacpp import LlamaCppModel
    from edgecrew.models.llamacpp_state import SamplingOverride

    return LlamaCppModel(
        gguf_path(context, config),
        name=context.alias,
        n_ctx=config.n_ctx,
        n_threads=config.threads,
        seed=config.seed,
        sampling=SamplingOverride(**config.sampling.model_dump()),
        stop=config.stop,
        system_prompt=config.system_prompt,
    )


class LiteLLMConfig(BackendConfig):
    """A provider reached through LiteLLM; the key is read from an environment variable, never written."""

    model: str | None = None  # provider model id, e.g. "ollama/qwen2.5:0.5b"
    api_base: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    # Replies of requests that leave the temperature to the model (an agent without its own); None: 0, greedy.
    temperature: float | None = Field(None, ge=0, le=2)

    def describe(self) -> str:
        return f"{self.model}" + (f" at {self.api_base}" if self.api_base else "")

    def problems(self) -> list[ConfigProblem]:
        if self.model:
            return []
        return [ConfigProblem("needs 'model', the provider's model id", "e.g. model: ollama/qwen2.5:0.5b")]


def _build_litellm(context: BuildContext, config: LiteLLMConfig) -> ChatModel:
    from edgecrew.models.litellm import LiteLLMModel

    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if config.api_key_env and key is None:
        raise UserError(f"model '{context.alias}' reads its API key from ${config.api_key_env}, which is not set")
    return LiteLLMModel(
        str(config.model),
        name=context.alias,
        api_base=config.api_base,
        api_key=key,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        temperature=config.temperature,
    )


class ScriptedConfig(BackendConfig):
    """Deterministic replies, for tests and demos (see :class:`~edgecrew.models.scripted.ScriptedModel`)."""

    hidden: ClassVar[frozenset[str]] = frozenset({"replies", "replies_by_agent"})

    replies: list[Any] | None = None
    replies_by_agent: dict[str, list[Any]] | None = None
    delay: float = Field(0.0, ge=0)
    record: str | None = None  # a JSON-lines file, relative to the project, that logs every call
    cycle: bool = False

    def describe(self) -> str:
        return "scripted replies"


def _build_scripted(context: BuildContext, config: ScriptedConfig) -> ChatModel:
    from edgecrew.models.scripted import ScriptedModel

    return ScriptedModel(
        config.replies_by_agent or config.replies or [],
        name=context.alias,
        delay=config.delay,
        record_path=(context.base_dir / config.record) if config.record else None,
        cycle=config.cycle,
    )


LLAMACPP = ModelBackend("llamacpp", LlamaCppConfig, _build_llamacpp)
LITELLM = ModelBackend("litellm", LiteLLMConfig, _build_litellm)
SCRIPTED = ModelBackend("scripted", ScriptedConfig, _build_scripted)
