"""OpenTelemetry spans of a team run, named and attributed after the GenAI semantic conventions.

One ``invoke_workflow {team}`` span per run holds an ``invoke_agent {agent}`` span per turn, which
holds its ``chat {model}`` and ``execute_tool {tool}`` spans. Every span carries the run id as
``gen_ai.conversation.id`` and the run's correlation id as ``edgecrew.request_id``; prompts, replies,
tool arguments and error messages are never put in attributes (they may hold secrets).

The decision that shapes it: the tracer provider is held here, installed and removed by whoever owns
it (the server, a test), never set as OpenTelemetry's global one, which can be set only once per
process. With none installed, an embedding program's global provider is used when it set one; with
neither, tracing is off and costs one dictionary lookup per span (OpenTelemetry is not even
imported). Workflow functions replay after a restart, so their spans may be emitted twice; steps
that finished are not re-run and their spans are not repeated.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from edgecrew.context import request_id as current_request_id
from edgecrew.version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from edgecrew.domain.events import ModelCalled
    from edgecrew.settings import Settings

TRACER_NAME = "edgecrew"
_provider: TracerProvider | None = None

# LiteLLM's provider prefixes whose GenAI name differs (gen_ai.provider.name well-known values).
_LITELLM_PROVIDERS = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}


# -- the provider ------------------------------------------------------------------------------------


def build_provider(settings: Settings) -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP in batches, or None when no endpoint is configured."""
    endpoint = settings.traces_endpoint
    if not endpoint:
        return None
    import os

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, Any] = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):  # the standard variable wins when set
        attributes["service.name"] = "edgecrew"
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def install(provider: TracerProvider) -> None:
    """Send edgecrew's spans to ``provider`` (replacing the one installed before)."""
    global _provider
    _provider = provider


def uninstall(provider: TracerProvider, *, shutdown: bool = True) -> None:
    """Stop using ``provider`` if it is the installed one; ``shutdown`` flushes and closes it."""
    global _provider
    if _provider is provider:
        _provider = None
    if shutdown:
        provider.shutdown()


def tracer() -> Tracer | None:
    """The tracer spans start from, or None when tracing is off."""
    if _provider is not None:
        return _provider.get_tracer(TRACER_NAME, __version__)
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # nobody imported OpenTelemetry, so nobody set a global provider
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):  # no global provider was set
        return None
    found: Tracer = provider.get_tracer(TRACER_NAME, __version__)
    return found


# -- spans -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any], *, client: bool = False) -> Iterator[Span | None]:
    """A span made current for the block (None when tracing is off); an exception marks it failed
    with ``error.type`` set to the exception's class, never its message."""
    active = tracer()
    if active is None:
        yield None
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    attrs = {k: v for k, v in attributes.items() if v is not None}
    if (rid := current_request_id.get()) is not None:
        attrs["edgecrew.request_id"] = rid
    with active.start_as_current_span(
        name,
        kind=SpanKind.CLIENT if client else SpanKind.INTERNAL,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_attribute(
                "error.type", "cancelled" if "cancel" in type(exc).__name__.lower() else type(exc).__name__
            )
            current.set_status(Status(StatusCode.ERROR))
            raise


def workflow_span(run_id: str, team: str) -> contextlib.AbstractContextManager[Span | None]:
    return span(
        f"invoke_workflow {team}",
        {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": team,
            "gen_ai.conversation.id": run_id,
            "edgecrew.run_id": run_id,
        },
    )


def agent_span(
    run_id: str, team: str, agent: str, model: str, step: str
) -> contextlib.AbstractContextManager[Span | None]:
    return span(
        f"invoke_agent {agent}",
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.request.model": model,
            "gen_ai.conversation.id": run_id,
            "gen_ai.workflow.name": team,
            "edgecrew.run_id": run_id,
            "edgecrew.step": step,
        },
    )


def chat_span(
    run_id: str, agent: str, model: str, step: str, *, max_tokens: int, temperature: float | None
) -> contextlib.AbstractContextManager[Span | None]:
    """A model call's span; ``temperature`` is the one the request sets, None (left out) where the request
    leaves it to the model (its alias's sampling decides: the request's 0.0 placeholder is not what runs)."""
    return span(
        f"chat {model}",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
            "gen_ai.request.temperature": temperature,
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": run_id,
            "edgecrew.run_id": run_id,
            "edgecrew.step": step,
        },
        client=True,
    )


def tool_span(
    run_id: str, agent: str, tool: str, call_id: str, step: str
) -> contextlib.AbstractContextManager[Span | None]:
    return span(
        f"execute_tool {tool}",
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id or None,
            "gen_ai.tool.type": "function",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": run_id,
            "edgecrew.run_id": run_id,
            "edgecrew.step": step,
        },
    )


# -- results -----------------------------------------------------------------------------------------


def record_run(current: Span | None, status: str, ok: bool) -> None:
    if current is None:
        return
    current.set_attribute("edgecrew.run.status", status)
    if not ok:
        _failed(current, status)


def record_turn(current: Span | None, outcome: str, input_tokens: int, output_tokens: int) -> None:
    if current is None:
        return
    current.set_attribute("edgecrew.outcome", outcome)
    current.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    current.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    if outcome != "final":
        _failed(current, outcome)


def record_chat(current: Span | None, event: ModelCalled, backend: str, model_id: str | None) -> None:
    """Fill a chat span from the ``model_called`` event of its call."""
    if current is None:
        return
    if event.alias:
        current.update_name(f"chat {event.alias}")
        current.set_attribute("gen_ai.request.model", event.alias)
    if event.requested and event.requested != event.alias:
        current.set_attribute("edgecrew.model.requested", event.requested)
    if backend:
        provider = provider_name(backend, model_id)
        current.set_attribute("gen_ai.provider.name", provider)
        current.set_attribute("gen_ai.system", provider)  # the name older backends read
        current.set_attribute("edgecrew.model.backend", backend)
    if event.fallbacks:
        current.set_attribute("edgecrew.model.fallbacks", len(event.fallbacks))
    if not event.ok:
        _failed(current, "model_error")
        return
    if event.model:
        current.set_attribute("gen_ai.response.model", event.model)
    current.set_attribute("gen_ai.usage.input_tokens", event.prompt_tokens)
    current.set_attribute("gen_ai.usage.output_tokens", event.completion_tokens)
    if event.cached_tokens:
        current.set_attribute("gen_ai.usage.cache_read.input_tokens", event.cached_tokens)
    if event.ttft_s is not None:
        current.set_attribute("gen_ai.response.time_to_first_chunk", event.ttft_s)
    finish = "tool_calls" if event.tool_calls else "stop"
    current.set_attribute("gen_ai.response.finish_reasons", [finish])


def record_tool(current: Span | None, is_error: bool) -> None:
    if current is not None and is_error:
        _failed(current, "tool_error")


def provider_name(backend: str, model_id: str | None = None) -> str:
    """``gen_ai.provider.name`` of a backend: LiteLLM's provider prefix, or edgecrew's own names."""
    if backend == "litellm":
        prefix = (model_id or "").split("/", 1)[0] if model_id and "/" in model_id else "openai"
        return _LITELLM_PROVIDERS.get(prefix, prefix)
    return {"llamacpp": "llama.cpp", "scripted": "edgecrew.scripted"}.get(backend, backend)


def _failed(current: Span, error_type: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("error.type", error_type)
    current.set_status(Status(StatusCode.ERROR))
