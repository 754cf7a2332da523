"""Choosing the model for a call and falling back along its chain when a model fails.

An agent's model reference is an alias or ``tag:<tag>``; :meth:`ModelRegistry.candidates` expands it
into the aliases to try. A candidate that lacks a capability the request needs (tools, JSON schema)
is skipped; one that fails with a model error, a timeout or a context overflow hands over to the
next. A malformed reply is not a reason to switch models: it goes back to the agent, which retries.
Every skip and fallback is reported through ``on_event`` so it lands in the run's events. Every reply
is cut at the request's first stop string here, the same for a provider that ignores ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from edgecrew.domain.events import FallbackAttempt, ModelChosen, ModelFallback, ModelSkipped, RoutingEvent
from edgecrew.domain.messages import ModelRequest, ModelResponse
from edgecrew.domain.stops import TextStops, stopped_message
from edgecrew.errors import EdgecrewError, InvalidOutputError, ModelError
from edgecrew.models.registry import ModelRegistry


class ModelSource(Protocol):
    """Where routing gets a ready model for an alias (the registry, or the memory-aware pool)."""

    def use(self, alias: str) -> Any:  # an async context manager yielding a ChatModel
        ...


@dataclass
class RoutedCall:
    alias: str | None = None
    response: ModelResponse | None = None
    error: str | None = None
    kind: str = ""  # "" | "timeout" | "invalid" | "error"
    attempts: list[FallbackAttempt] = field(default_factory=list)
    spent: ModelResponse | None = None  # an invalid reply's raw text, usage and timing, when known


def needs(request: ModelRequest) -> set[str]:
    wanted = set()
    if request.tools:
        wanted.add("tools")
    if request.output_schema is not None:
        wanted.add("json_schema")
    return wanted


async def call_with_fallback(
    registry: ModelRegistry,
    source: ModelSource,
    ref: str,
    request: ModelRequest,
    timeout_s: float,
    on_event: Callable[[RoutingEvent], None],
    on_text: Callable[[str], None] | None = None,
) -> RoutedCall:
    result = RoutedCall()
    deadline = time.monotonic() + timeout_s
    resident: frozenset[str] = getattr(source, "resident_aliases", frozenset)()
    candidates = registry.candidates(ref, resident)
    wanted = needs(request)
    for i, alias in enumerate(candidates):
        definition = registry.definition(alias)
        missing = wanted - set(definition.capabilities) if definition.backend != "instance" else set()
        if missing:
            on_event(ModelSkipped(alias=alias, reason=f"lacks {', '.join(sorted(missing))}"))
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if i > 0 or ref != alias:
            on_event(ModelChosen(requested=ref, alias=alias, attempt=len(result.attempts) + 1))
        try:
            # The time limit covers waiting for a slot and loading the model, not only generation.
            async with asyncio.timeout(remaining):  # in this task: wait_for would start one a call
                result.response = await _attempt(source, alias, request, on_text)
            result.alias = alias
            return result
        except InvalidOutputError as exc:
            result.alias, result.error, result.kind = alias, str(exc), "invalid"
            result.spent = exc.spent if isinstance(exc.spent, ModelResponse) else None
            return result
        except TimeoutError:
            reason, kind = f"model '{alias}' did not answer within {remaining:.0f}s", "timeout"
        except EdgecrewError as exc:
            reason, kind = str(exc), "error"
        result.attempts.append(FallbackAttempt(alias=alias, error=reason))
        result.error, result.kind = reason, kind
        following = [c for c in candidates[i + 1 :]]
        if following:
            on_event(ModelFallback(from_=alias, to=following[0], error=reason))
    if result.error is None:
        result.error, result.kind = f"no model for '{ref}' can serve this call ({', '.join(sorted(wanted))})", "error"
    return result


async def _attempt(
    source: ModelSource, alias: str, request: ModelRequest, on_text: Callable[[str], None] | None
) -> ModelResponse:
    """One model's answer; with ``on_text``, streamed, each piece of text handed over as it comes.

    Every provider's reply passes here, so here it is cut at the request's first stop string (and the
    stream ends there), whether or not the provider honoured ``stop``.
    """
    async with source.use(alias) as model:
        if on_text is None:
            response: ModelResponse = await model.request(request)
            return _stopped(response, request)
        final: ModelResponse | None = None
        # A stop string only ends a plain reply: a structured one's text streams whole.
        stops = TextStops(request.stop if request.output_schema is None else ())
        async with contextlib.aclosing(model.stream(request)) as deltas:
            async for delta in deltas:
                shown = stops.feed(delta.text) if delta.text else ""
                if shown:
                    on_text(shown)
                if delta.response is not None:
                    final = delta.response
        if final is None:
            raise ModelError(f"model '{alias}' ended its stream without a response")
        if not stops.stopped and not final.message.tool_calls and (held := stops.flush()):
            on_text(held)
        return _stopped(final, request)


def _stopped(response: ModelResponse, request: ModelRequest) -> ModelResponse:
    # Only the text is cut: the usage stays the provider's. A provider that ignored `stop` generated,
    # and bills, every token of the uncut text, in the latency it reported; counting the shown text
    # instead would understate tokens spent and overstate tokens per second.
    message = stopped_message(response.message, request)
    return response if message is response.message else replace(response, message=message)
