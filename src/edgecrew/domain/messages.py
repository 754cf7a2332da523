"""Messages exchanged with a model, and what a model call returns.

These are plain frozen dataclasses with ``to_dict``/``from_dict`` so that a model call's result can
be recorded as a durable step output and replayed byte for byte.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A model's request to call one tool with JSON arguments."""

    id: str
    name: str
    arguments: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        return cls(id=str(data["id"]), name=str(data["name"]), arguments=dict(data.get("arguments") or {}))


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # What dataclasses.asdict gives (tool calls as dicts, their arguments copied), written out: asdict
        # walks every field recursively and runs on each model call and step of a run.
        return {
            "role": self.role,
            "content": self.content,
            "tool_calls": tuple(
                {"id": c.id, "name": c.name, "arguments": copy.deepcopy(c.arguments)} for c in self.tool_calls
            ),
            "tool_call_id": self.tool_call_id,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            role=data["role"],
            content=data.get("content") or "",
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


@dataclass(frozen=True)
class Usage:
    """Token accounting of one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as the model sees it: name, description and JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


class ModelDefault(float):
    """The temperature of a request that leaves it to the model (:data:`MODEL_DEFAULT`).

    A float, so whatever reads ``temperature`` as a number (a provider's API, telemetry) reads 0.0,
    greedy, as before it existed; a model with defaults of its own (the embedded llama.cpp model's
    per-model sampling) tells it from an explicit 0.0 through :attr:`ModelRequest.requested_temperature`.
    """

    def __repr__(self) -> str:
        return "MODEL_DEFAULT"


MODEL_DEFAULT = ModelDefault(0.0)


@dataclass(frozen=True)
class ModelRequest:
    """Everything a model needs for one call."""

    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    output_schema: dict[str, Any] | None = None
    max_tokens: int = 512
    # Set, the reply is sampled at this temperature whatever the model's settings say; left out, the
    # model decides (its alias's settings, then its own recommended value; 0.0 where it has none).
    temperature: float = MODEL_DEFAULT
    # "auto": the model may call a tool or answer; "required": it must call one of ``tools``.
    tool_choice: Literal["auto", "required"] = "auto"
    # A plain-text reply ends before the first of these strings, which it leaves out (a chat's reply stops
    # where the model starts writing the transcript's next turn); a structured reply or tool call ignores them.
    stop: tuple[str, ...] = ()
    # Free-form labels (agent, run id, step key) that models may record but must not act on.
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def requested_temperature(self) -> float | None:
        """The temperature this request sets, or None where it leaves the choice to the model."""
        return None if isinstance(self.temperature, ModelDefault) else self.temperature


@dataclass(frozen=True)
class ModelResponse:
    """What one model call produced."""

    message: Message
    usage: Usage = Usage()
    model: str = ""
    latency_s: float = 0.0
    time_to_first_token_s: float | None = None

    @property
    def tokens_per_second(self) -> float:
        if self.latency_s <= 0:
            return 0.0
        return self.usage.completion_tokens / self.latency_s

    def to_dict(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "message": self.message.to_dict(),
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cached_tokens": usage.cached_tokens,
            },
            "model": self.model,
            "latency_s": self.latency_s,
            "time_to_first_token_s": self.time_to_first_token_s,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResponse:
        return cls(
            message=Message.from_dict(data["message"]),
            usage=Usage(**data.get("usage", {})),
            model=data.get("model", ""),
            latency_s=float(data.get("latency_s", 0.0)),
            time_to_first_token_s=data.get("time_to_first_token_s"),
        )


@dataclass(frozen=True)
class StreamDelta:
    """One piece of a streamed response; the last one carries the full response."""

    text: str = ""
    response: ModelResponse | None = None
