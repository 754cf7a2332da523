"""The model port: how the engine talks to any model.

A ``ChatModel`` takes a :class:`ModelRequest` (messages, tool definitions, optional JSON Schema the
output must satisfy) and returns a :class:`ModelResponse` (a message that carries either text or
tool calls, plus usage and timings). Which server or file backs it is the adapter's business.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from edgecrew.domain.messages import ModelRequest, ModelResponse, StreamDelta


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can answer a chat request."""

    name: str

    async def request(self, req: ModelRequest) -> ModelResponse: ...

    def stream(self, req: ModelRequest) -> AsyncIterator[StreamDelta]:
        """Yield text deltas, then one final delta carrying the full response."""
        ...


async def stream_by_request(model: ChatModel, req: ModelRequest) -> AsyncIterator[StreamDelta]:
    """A stream for models that only answer whole: one delta with the text, then the response."""
    response = await model.request(req)
    if response.message.content:
        yield StreamDelta(text=response.message.content)
    yield StreamDelta(response=response)
