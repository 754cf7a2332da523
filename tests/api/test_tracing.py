"""OpenTelemetry spans of runs driven through the API: GenAI semantic conventions, parentage, the
request id, nothing of the prompt in attributes; and the OTLP/HTTP export to a real receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from edgecrew.app import create_app
from edgecrew.settings import Settings, reset_settings
from edgecrew.store.keys import SCOPES, ApiKeyStore
from edgecrew.telemetry import tracing
from tests.api.conftest import auth
from tests.api.telemetry_project import extend_project, run_to_end

SECRET_TASK = "task-text-that-must-stay-out-of-spans"
WAIT_S = 30.0


@pytest.fixture(autouse=True)
def no_ambient_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "EDGECREW_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()


@pytest.fixture
def server_project(server_project: Path) -> Path:
    return extend_project(server_project)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall(provider)


def workflow_spans(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The finished spans once ``count`` workflow spans have ended (they end just after run_finished)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        finished = list(exporter.get_finished_spans())
        if sum(s.name.startswith("invoke_workflow ") for s in finished) >= count:
            return finished
        time.sleep(0.02)
    raise TimeoutError(f"{count} workflow span(s) did not end within {WAIT_S:.0f} s")


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def one(found: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in found if s.name == name]
    assert len(matching) == 1, [s.name for s in found]
    return matching[0]


def test_spans_of_a_run_with_a_tool_call(client: TestClient, keys: dict[str, str], spans: InMemorySpanExporter) -> None:
    run = run_to_end(client, keys, "lookup", SECRET_TASK, **{"X-Request-ID": "req-trace-1"})
    assert run["status"] == "succeeded"
    found = workflow_spans(spans, 1)

    workflow = one(found, "invoke_workflow lookup")
    agent = one(found, "invoke_agent finder")
    tool = one(found, "execute_tool lookup")
    chats = [s for s in found if s.name == "chat tooly"]
    assert len(chats) == 2

    assert workflow.kind == SpanKind.INTERNAL and workflow.parent is None
    assert (
        attrs(workflow).items()
        >= {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": "lookup",
            "gen_ai.conversation.id": run["id"],
            "edgecrew.run.status": "succeeded",
        }.items()
    )
    assert agent.kind == SpanKind.INTERNAL
    assert (
        attrs(agent).items()
        >= {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "finder",
            "gen_ai.request.model": "tooly",
            "gen_ai.conversation.id": run["id"],
            "edgecrew.outcome": "final",
        }.items()
    )
    assert attrs(agent)["gen_ai.usage.output_tokens"] > 0
    for chat in chats:
        assert chat.kind == SpanKind.CLIENT
        assert (
            attrs(chat).items()
            >= {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "tooly",
                "gen_ai.response.model": "tooly",
                "gen_ai.provider.name": "edgecrew.scripted",
                "gen_ai.agent.name": "finder",
                "gen_ai.conversation.id": run["id"],
            }.items()
        )
        assert attrs(chat)["gen_ai.usage.input_tokens"] > 0 and attrs(chat)["gen_ai.usage.output_tokens"] > 0
        # finder sets no temperature: the model's alias decides, so the span claims none (not the request's 0.0)
        assert "gen_ai.request.temperature" not in attrs(chat)
    assert sorted(attrs(c)["gen_ai.response.finish_reasons"][0] for c in chats) == ["stop", "tool_calls"]

    # The tool span names the call by the id the model gave it (the one in the stored messages).
    messages = client.app.state.rt.store.messages(run["id"])  # type: ignore[attr-defined]
    call_ids = [c["id"] for m in messages for c in (m["tool_calls"] or [])]
    assert call_ids and attrs(tool)["gen_ai.tool.call.id"] == call_ids[0]
    assert (
        attrs(tool).items()
        >= {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "lookup",
            "gen_ai.tool.type": "function",
        }.items()
    )
    assert tool.status.status_code == StatusCode.UNSET

    # One trace: the workflow holds the turn, the turn holds its model and tool calls.
    assert {s.context.trace_id for s in (workflow, agent, tool, *chats)} == {workflow.context.trace_id}
    assert agent.parent is not None and agent.parent.span_id == workflow.context.span_id
    for child in (tool, *chats):
        assert child.parent is not None and child.parent.span_id == agent.context.span_id

    # Every span carries the request id; none carries the task, a prompt or a reply.
    for span in (workflow, agent, tool, *chats):
        assert attrs(span)["edgecrew.request_id"] == "req-trace-1", span.name
        for value in attrs(span).values():
            assert SECRET_TASK not in str(value) and "sunny" not in str(value) and "look it up" not in str(value)


def test_a_failing_run_marks_its_spans(client: TestClient, keys: dict[str, str], spans: InMemorySpanExporter) -> None:
    assert run_to_end(client, keys, "broken")["status"] == "failed"
    found = workflow_spans(spans, 1)
    workflow = one(found, "invoke_workflow broken")
    agent = one(found, "invoke_agent solo")
    chats = [s for s in found if s.name == "chat broken"]
    assert chats
    assert workflow.status.status_code == StatusCode.ERROR and attrs(workflow)["error.type"] == "failed"
    assert agent.status.status_code == StatusCode.ERROR and attrs(agent)["error.type"] == "error"
    for chat in chats:
        assert chat.status.status_code == StatusCode.ERROR and attrs(chat)["error.type"] == "model_error"
        assert not chat.status.description  # the kind of failure only, never the message
        assert "gen_ai.usage.input_tokens" not in attrs(chat)
        assert attrs(chat)["gen_ai.request.temperature"] == 0.3  # the agent's own


def test_tracing_is_off_without_an_endpoint(client: TestClient, keys: dict[str, str]) -> None:
    assert tracing.tracer() is None
    assert run_to_end(client, keys, "echo")["status"] == "succeeded"
    with tracing.span("anything", {"a": 1}) as span:
        assert span is None


def test_the_traces_endpoint_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().traces_endpoint is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert Settings().traces_endpoint == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom")
    assert Settings().traces_endpoint == "http://traces:4318/custom"
    monkeypatch.setenv("EDGECREW_OTLP_ENDPOINT", "http://ours:4318/")
    assert Settings().traces_endpoint == "http://ours:4318/v1/traces"


class Receiver:
    """A tiny OTLP/HTTP trace receiver: records each request's path, content type and body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of every span received."""
        found = []
        for _path, _type, body in self.requests:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_spans_are_exported_over_otlp_http(
    server_project: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGECREW_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        assert tracing.tracer() is not None  # the app installed its own provider
        store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
        keys = {scope: store.create(f"t-{scope}", (scope,))[1] for scope in SCOPES}
        run = run_to_end(client, keys, "lookup", SECRET_TASK, **{"X-Request-ID": "req-otlp-1"})
        deadline = time.monotonic() + WAIT_S
        while client.get(f"/runs/{run['id']}", headers=auth(keys["read"])).json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    # Shutting the app down flushed the batch and removed the provider.
    assert tracing.tracer() is None
    assert receiver.requests, "the exporter sent nothing"
    assert {(path, ctype) for path, ctype, _ in receiver.requests} == {("/v1/traces", "application/x-protobuf")}
    received = receiver.spans()
    names = {span.name for _, span in received}
    assert {"invoke_workflow lookup", "invoke_agent finder", "chat tooly", "execute_tool lookup"} <= names
    for resource, span in received:
        assert resource["service.name"] == "edgecrew"
        span_attrs = {a.key: a.value for a in span.attributes}
        assert span_attrs["edgecrew.request_id"].string_value == "req-otlp-1"
        assert span_attrs["gen_ai.conversation.id"].string_value == run["id"]
        assert SECRET_TASK.encode() not in span.SerializeToString()
    (workflow,) = [span for _, span in received if span.name == "invoke_workflow lookup"]
    assert {span.trace_id for _, span in received} == {workflow.trace_id}
