"""The OpenAI-compatible endpoint, driven by the official ``openai`` client against a real uvicorn
server on 127.0.0.1, over the scripted-model teams of conftest (and one test on the real SmolLM2)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.domain.specs import TeamSpec
from edgecrew.engine import durable
from edgecrew.engine.chat import ChatMessage, answer_text, compose_task, pieces, single_agent_team
from edgecrew.engine.service import TASK_MAX_CHARS
from edgecrew.errors import UserError
from edgecrew.settings import get_settings, reset_settings
from edgecrew.specs.loader import load_team_text
from edgecrew.store.keys import SCOPES, ApiKeyStore
from tests.api.conftest import auth
from tests.conftest import write

# Two more scripted models: one whose provider refuses every call (the run fails at once, no
# retries), and one whose agent's answer is structured (the assistant gets it as JSON).
EXTRA_MODELS = """
  refused:
    backend: scripted
    replies: [{error: auth}]
  structured:
    backend: scripted
    replies: [{json: {verdict: ok, score: 3}}]
"""

BROKEN = """
name: broken
agents:
  solo: {model: refused, system: answer}
graph: {start: solo, edges: [{from: solo, to: end}]}
"""

JUDGE = """
name: judge
approval: once
preamble: You judge work.
agents:
  first: {model: fake, system: write}
  grader:
    model: structured
    system: grade
    output_schema:
      type: object
      properties: {verdict: {type: string}, score: {type: integer}}
      required: [verdict, score]
graph: {start: first, edges: [{from: first, to: grader}, {from: grader, to: end}]}
"""


@dataclass
class Served:
    app: FastAPI
    url: str


@contextlib.contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[Served]:
    """``app`` under uvicorn on a background thread, on a socket bound here first (no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during start-up (see the log above)"
            assert time.monotonic() < deadline, f"uvicorn did not start on {url} within 60 s"
            time.sleep(0.05)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        yield Served(app, url)
    finally:
        server.should_exit = True
        thread.join(timeout=35)
        sock.close()


@dataclass
class Live:
    """The server under test, an OpenAI client for it, and raw HTTP access with keys by scope."""

    url: str
    keys: dict[str, str]
    client: openai.OpenAI

    def get(self, path: str, scope: str = "read", **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, headers={"X-API-Key": self.keys[scope]}, timeout=30)
        response.raise_for_status()
        return response.json()

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("/runs", **params)["items"]
        return items


@pytest.fixture
def live(server_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    config = server_project / "edgecrew.yaml"
    text = config.read_text()
    assert "models:\n" in text  # conftest's project: our models go right below this line
    config.write_text(text.replace("models:\n", "models:" + EXTRA_MODELS, 1))
    write(server_project / "teams" / "broken.yaml", BROKEN)
    write(server_project / "teams" / "judge.yaml", JUDGE)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    try:
        with serve_in_thread(create_app()) as server:
            store = ApiKeyStore(server.app.state.rt.store)
            keys = {scope: store.create(f"test-{scope}", (scope,))[1] for scope in SCOPES}
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=keys["runs"], max_retries=0, timeout=120)
            yield Live(server.url, keys, client)
            client.close()
    finally:
        durable.shutdown()


# -- models ------------------------------------------------------------------------------------------


def test_models_lists_every_team_and_each_of_its_agents(live: Live) -> None:
    models = list(live.client.models.list())
    ids = [m.id for m in models]
    assert {"echo", "echo/solo", "ship", "ship/op", "judge", "judge/first", "judge/grader"} <= set(ids)
    assert ids.index("echo") < ids.index("echo/solo")
    assert all(m.object == "model" and m.owned_by == "edgecrew" and m.created > 0 for m in models)


def test_an_invalid_team_is_left_out_of_the_models(live: Live, server_project: Path) -> None:
    bad = "name: bad\nagents: {a: {model: nope, system: x}}\ngraph: {start: a}\n"
    write(server_project / "teams" / "bad.yaml", bad)
    assert "bad" not in {m.id for m in live.client.models.list()}
    with pytest.raises(openai.NotFoundError):  # nor retrieved on its own
        live.client.models.retrieve("bad")


def test_a_body_over_the_limit_is_413_with_the_openai_error(live: Live) -> None:
    too_long = "x" * (get_settings().max_body_bytes + 1)  # the openai client sends its Content-Length
    with pytest.raises(openai.APIStatusError) as caught:
        live.client.chat.completions.create(model="echo", messages=[{"role": "user", "content": too_long}])
    assert caught.value.status_code == 413
    assert caught.value.response.json()["error"]["code"] == "request_too_large"
    assert live.runs() == []


def test_an_agent_that_reads_another_agents_output_is_no_model_of_its_own(
    client: TestClient, keys: dict[str, str]
) -> None:
    # The twin's `figures` renders outputs.machine: alone it fails on its first step, every time.
    ids = {m["id"] for m in client.get("/v1/models", headers=auth(keys["runs"])).json()["data"]}
    assert {"twin", "twin/route", "twin/machine", "twin/twin", "twin/coder"} <= ids
    assert "twin/figures" not in ids
    retrieved = client.get("/v1/models/twin/figures", headers=auth(keys["runs"]))
    assert retrieved.status_code == 404 and "reads outputs.machine" in retrieved.json()["error"]["message"]
    asked = client.post(
        "/v1/chat/completions",
        headers=auth(keys["runs"]),
        json={"model": "twin/figures", "messages": [{"role": "user", "content": "how much ram?"}]},
    )
    assert asked.status_code == 404, asked.text
    error = asked.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["message"] == (
        "no model 'twin/figures': agent 'figures' of team 'twin' reads outputs.machine, which only its team's"
        " run has, so it cannot answer alone; ask model 'twin'"
    )
    assert client.get("/runs", headers=auth(keys["read"])).json()["items"] == []  # no run that had to fail


def test_a_model_is_retrieved_by_its_id_as_the_openai_client_asks(live: Live) -> None:
    listed = {m.id: m for m in live.client.models.list()}
    for model_id in ("echo", "judge/grader"):  # a team/agent id keeps its slash in the path
        model = live.client.models.retrieve(model_id)
        assert model.id == model_id and model.object == "model" and model.created == listed[model_id].created
    with pytest.raises(openai.NotFoundError) as caught:
        live.client.models.retrieve("gpt-4o")
    error = caught.value.response.json()["error"]
    assert error["code"] == "model_not_found" and "teams: " in error["message"]
    with pytest.raises(openai.NotFoundError, match="has no agent 'nobody'"):
        live.client.models.retrieve("echo/nobody")


# -- chat completions ---------------------------------------------------------------------------------


def test_a_completion_is_a_recorded_run_with_its_output_and_usage(live: Live) -> None:
    completion = live.client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "what is the answer?"}],
        temperature=0.2,  # sampling settings are accepted and left to the team's spec
        extra_headers={"X-Request-ID": "chat-req-1"},
    )
    assert completion.object == "chat.completion" and completion.model == "echo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "the answer is 42"
    assert completion.choices[0].finish_reason == "stop"
    run_id = completion.id.removeprefix("chatcmpl-")
    run = live.get(f"/runs/{run_id}")
    assert run["team"] == "echo" and run["status"] == "succeeded" and run["task"] == "what is the answer?"
    assert run["request_id"] == "chat-req-1"
    assert answer_text(run["output"]) == completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == sum(s["prompt_tokens"] for s in run["steps"]) > 0
    assert completion.usage.completion_tokens == sum(s["completion_tokens"] for s in run["steps"]) > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert run_id in {r["id"] for r in live.runs(team="echo")}
    events = live.get(f"/runs/{run_id}/events")
    assert events[-1]["type"] == "run_finished" and {e["request_id"] for e in events} == {"chat-req-1"}


def test_earlier_messages_reach_the_team_as_a_transcript(live: Live) -> None:
    completion = live.client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi, I am Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
        ],
    )
    task = live.get(f"/runs/{completion.id.removeprefix('chatcmpl-')}")["task"]
    assert task.index("system: Be terse.") < task.index("user: Hi, I am Ada.") < task.index("assistant: Hello Ada.")
    assert task.endswith("latest message: What is my name?")


def test_streaming_sends_role_then_the_answer_then_finish_and_usage(live: Live) -> None:
    stream = live.client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "what is the answer?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None and usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    run = live.get(f"/runs/{chunks[0].id.removeprefix('chatcmpl-')}")
    assert content == answer_text(run["output"]) == "the answer is 42"
    assert usage.prompt_tokens == sum(s["prompt_tokens"] for s in run["steps"])


def test_streaming_without_include_usage_sends_no_usage(live: Live) -> None:
    chunks = list(
        live.client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "the answer is 42"


def test_an_agent_runs_alone_as_a_one_agent_team(live: Live) -> None:
    completion = live.client.chat.completions.create(
        model="judge/grader", messages=[{"role": "user", "content": "grade this"}]
    )
    assert completion.model == "judge/grader"
    run = live.get(f"/runs/{completion.id.removeprefix('chatcmpl-')}")
    assert run["team"] == "judge/grader" and [s["agent"] for s in run["steps"]] == ["grader"]
    assert completion.choices[0].message.content == '{"verdict": "ok", "score": 3}'  # not only text: JSON
    solo = live.client.chat.completions.create(model="echo/solo", messages=[{"role": "user", "content": "hi"}])
    assert solo.choices[0].message.content == "the answer is 42"
    assert [r["team"] for r in live.runs(team="echo/solo")] == ["echo/solo"]


def test_a_team_of_several_agents_answers_with_its_final_output(live: Live) -> None:
    completion = live.client.chat.completions.create(model="judge", messages=[{"role": "user", "content": "go"}])
    run = live.get(f"/runs/{completion.id.removeprefix('chatcmpl-')}")
    assert [s["agent"] for s in run["steps"]] == ["first", "grader"]
    assert completion.choices[0].message.content == '{"verdict": "ok", "score": 3}'
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == sum(s["prompt_tokens"] for s in run["steps"])


def _approve(live: Live, approval_id: str) -> None:
    url = f"{live.url}/approvals/{approval_id}/approve"
    httpx.post(url, headers={"X-API-Key": live.keys["approve"]}, timeout=30).raise_for_status()


def _ended(live: Live, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (run := live.get(f"/runs/{run_id}"))["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    return run


def test_a_run_that_waits_for_approval_is_answered_at_once_and_the_same_key_reads_its_answer(live: Live) -> None:
    """Before: the call blocked until a person decided, so a client timed out (and retried: a new run each
    time without a key). Now it answers at once, as MCP's team tools do, and says how to decide."""
    ask: dict[str, Any] = {
        "model": "ship",
        "messages": [{"role": "user", "content": "ship the fix"}],
        "extra_headers": {"Idempotency-Key": "ship-once"},
    }
    raw = live.client.chat.completions.with_raw_response.create(**ask)
    [approval] = live.get("/approvals", status="pending")
    run_id = approval["run_id"]
    assert raw.headers["X-Edgecrew-Run-Status"] == "waiting_approval" and raw.headers["X-Run-ID"] == run_id
    assert raw.headers["X-Edgecrew-Approvals"] == approval["id"]
    said = raw.parse().choices[0].message.content
    assert said == (
        f"run {run_id} waits for a person's approval of deploy {json.dumps(approval['arguments'])} (agent op): "
        f"edgecrew approvals approve {approval['id']} (or deny {approval['id']} --reason ...). Decide it from "
        "the CLI as shown, or in mission control's Approvals (edgecrew serve); this server goes on with the run "
        "once it is decided; send this request again with the same Idempotency-Key for its answer. "
        f"Its result: edgecrew runs show {run_id}"
    )
    _approve(live, approval["id"])
    again = live.client.chat.completions.with_raw_response.create(**ask)
    assert again.parse().choices[0].message.content == "shipped" and "X-Edgecrew-Run-Status" not in again.headers
    assert [r["id"] for r in live.runs(team="ship")] == [run_id]  # one run, answered twice


def test_a_stream_of_a_run_that_waits_for_approval_says_so_then_ends(live: Live) -> None:
    stream = live.client.chat.completions.create(
        model="ship", messages=[{"role": "user", "content": "ship the fix"}], stream=True
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    [approval] = live.get("/approvals", status="pending")
    run_id = approval["run_id"]
    assert content.startswith(f"run {run_id} waits for a person's approval of deploy ")
    assert f"edgecrew approvals approve {approval['id']}" in content and f"its answer: GET /runs/{run_id}" in content
    _approve(live, approval["id"])  # the run goes on in the server
    run = _ended(live, run_id)
    assert run["status"] == "succeeded" and run["output"] == {"text": "shipped"}


def test_the_same_idempotency_key_answers_from_the_first_run(live: Live) -> None:
    ask: dict[str, Any] = {
        "model": "echo",
        "messages": [{"role": "user", "content": "once"}],
        "extra_headers": {"Idempotency-Key": "chat-once"},
    }
    first = live.client.chat.completions.create(**ask)
    again = live.client.chat.completions.create(**ask)
    assert again.id == first.id and again.choices[0].message.content == first.choices[0].message.content
    assert len(live.runs(team="echo")) == 1
    with pytest.raises(openai.ConflictError) as caught:  # 409, as POST /runs answers the same key
        live.client.with_options(max_retries=2).chat.completions.create(
            **{**ask, "messages": [{"role": "user", "content": "other"}]}
        )
    assert "Idempotency-Key" in caught.value.message and first.id.removeprefix("chatcmpl-") in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"  # the client asked once, not three times


# -- failures -----------------------------------------------------------------------------------------


def test_a_failed_run_is_a_502_with_its_error_and_run_id_and_is_not_retried(live: Live) -> None:
    client = live.client.with_options(max_retries=2)  # the server's x-should-retry: false must win
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert error.status_code == 502
    assert isinstance(error.body, dict) and error.body["type"] == "server_error" and error.body["code"] == "run_failed"
    runs = live.runs(team="broken")
    assert len(runs) == 1 and runs[0]["status"] == "failed"
    assert runs[0]["id"] in error.body["message"] and runs[0]["error"] in error.body["message"]
    problem = error.response.json()
    assert problem["status"] == 502 and problem["run_id"] == runs[0]["id"]
    assert error.response.headers["content-type"].startswith("application/problem+json")


def test_a_failed_run_ends_the_stream_with_an_error(live: Live) -> None:
    stream = live.client.chat.completions.create(
        model="broken", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    [run] = live.runs(team="broken")
    assert run["id"] in caught.value.message and isinstance(caught.value.body, dict)
    assert caught.value.body["run_id"] == run["id"] and caught.value.body["code"] == "run_failed"


def test_an_unknown_model_is_404_naming_the_known_teams(live: Live) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        live.client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found" and body["type"] == "not_found_error"
    assert "echo" in body["message"] and "/v1/models" in body["message"]
    assert caught.value.response.json()["status"] == 404  # still a problem document
    with pytest.raises(openai.NotFoundError, match="has no agent 'nobody'"):
        live.client.chat.completions.create(model="echo/nobody", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):  # a model id is a name, never a file to read
        live.client.chat.completions.create(
            model=str(Path(__file__).parent / "x.yaml"), messages=[{"role": "user", "content": "hi"}]
        )
    assert live.runs() == []


def test_a_bad_key_is_refused_and_both_key_headers_work(live: Live) -> None:
    bad = openai.OpenAI(base_url=f"{live.url}/v1", api_key="ec_not_a_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "authentication_error"
    assert caught.value.body["code"] == "invalid_api_key" and "not valid" in caught.value.body["message"]
    reader = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.keys["read"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="'runs' scope"):
        reader.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    answer = httpx.post(
        f"{live.url}/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-API-Key": live.keys["runs"]},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "the answer is 42"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"messages": []}, "messages", "at least 1"),
        ({"n": 2}, "n", "n must be 1"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tools are not supported"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role", "'user'"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "content", "only text parts"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "body",
            "last message must come from the user",
        ),
        ({"model": ""}, "model", "at least 1"),
        (
            {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": " \n\t"}]},
            "body",
            "last message is empty",
        ),
    ],
)
def test_a_malformed_request_is_422_naming_the_field(live: Live, body: dict[str, Any], field: str, words: str) -> None:
    request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        live.client.chat.completions.create(**request)
    problem = caught.value.response.json()
    assert problem["status"] == 422 and problem["error"]["type"] == "invalid_request_error"
    assert any(field in e["loc"] for e in problem["errors"]) and words in problem["detail"]
    assert live.runs() == []


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"n": True}, "n", "n must be the integer 1"),
        ({"n": "1"}, "n", "n must be the integer 1"),
        ({"n": 1.0}, "n", "n must be the integer 1"),
        ({"stream": "yes"}, "stream", "stream must be true or false"),
        ({"stream": 1}, "stream", "stream must be true or false"),
        ({"stream": True, "stream_options": {"include_usage": "no"}}, "stream_options.include_usage", "true or false"),
    ],
)
def test_booleans_and_integers_are_strict(
    client: TestClient, keys: dict[str, str], body: dict[str, Any], param: str, words: str
) -> None:
    """``n: true`` was read as 1 and ``stream: "yes"`` as true (pydantic's lax coercion): a client that
    sent them meant something else, and is told which field is wrong instead."""
    request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **body}
    answer = client.post("/v1/chat/completions", json=request, headers={"X-API-Key": keys["runs"]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert words in error["message"] and param in error["message"]
    assert client.get("/runs", headers={"X-API-Key": keys["read"]}).json()["items"] == []


def test_a_message_longer_than_a_task_is_refused_naming_it(client: TestClient, keys: dict[str, str]) -> None:
    """A message is at most as long as a task of POST /runs (it was up to 1,000,000 characters)."""
    limit = TASK_MAX_CHARS
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * (limit + 1)}]
    answer = client.post(
        "/v1/chat/completions", json={"model": "echo", "messages": messages}, headers={"X-API-Key": keys["runs"]}
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == "messages[1].content" and error["code"] == "invalid_request"
    assert f"at most {limit} characters" in error["message"] and "messages[1].content" in error["message"]
    runs = client.post("/runs", json={"team": "echo", "task": "x" * (limit + 1)}, headers={"X-API-Key": keys["runs"]})
    assert runs.status_code == 422 and f"at most {limit} characters" in runs.text  # the same limit
    assert client.get("/runs", headers={"X-API-Key": keys["read"]}).json()["items"] == []
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["Message"]["properties"]["content"]["maxLength"] == limit
    assert schema["StartRun"]["properties"]["task"]["maxLength"] == limit
    fits = [{"role": "user", "content": "y" * limit}]
    answer = client.post("/v1/chat/completions", json={"model": "echo", "messages": fits}, headers=auth(keys["runs"]))
    assert answer.status_code == 200, answer.text


# -- the parts, without a server ----------------------------------------------------------------------


def test_compose_task_puts_earlier_messages_in_front_and_needs_a_user_last() -> None:
    assert compose_task([ChatMessage("user", "just this")]) == "just this"
    task = compose_task([ChatMessage("system", "S"), ChatMessage("user", "U1"), ChatMessage("user", "U2")])
    assert task == "Conversation so far:\nsystem: S\nuser: U1\n\nReply to the user's latest message: U2"
    with pytest.raises(UserError, match="last message must come from the user"):
        compose_task([ChatMessage("user", "q"), ChatMessage("assistant", "a")])
    with pytest.raises(UserError, match="last message is empty"):
        compose_task([ChatMessage("user", "q"), ChatMessage("assistant", "a"), ChatMessage("user", "\u00a0\n")])


def test_answer_text_takes_a_lone_text_field_and_writes_anything_else_as_json() -> None:
    assert answer_text({"text": "hello"}) == "hello"
    assert answer_text({"text": "hello", "n": 1}) == '{"text": "hello", "n": 1}'
    assert answer_text({"writer": {"text": "é"}}) == '{"writer": {"text": "é"}}'


@pytest.mark.parametrize("text", ["", "short", "word " * 40, "x" * 130, "a " + "y" * 100 + " b"])
def test_pieces_join_back_to_the_text(text: str) -> None:
    parts = list(pieces(text, size=16))
    assert "".join(parts) == text and all(0 < len(p) <= 16 for p in parts)


def test_a_one_agent_team_keeps_the_agents_settings_and_its_teams_policy() -> None:
    team: TeamSpec = load_team_text(JUDGE)
    alone = single_agent_team(team, "grader")
    assert alone.name == "judge/grader" and list(alone.agents) == ["grader"]
    assert alone.graph.start == "grader" and [e.label() for e in alone.graph.edges] == ["grader -> end"]
    assert alone.agents["grader"] == team.agents["grader"]  # model, schema, limits, preamble, approval
    assert alone.raw["agents"] == {"grader": team.raw["agents"]["grader"]}


# -- the real model -------------------------------------------------------------------------------------

SOLO_LOCAL = """
name: local-chat
agents:
  solo:
    model: local
    system: You are a helpful assistant. Answer in one short sentence.
    limits: {max_tokens: 48, max_steps: 2}
graph: {start: solo, edges: [{from: solo, to: end}]}
"""


@pytest.mark.real_model
def test_a_chat_on_the_real_model_answers_and_counts_tokens(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded model needs the [local] extra (make test installs it)")
    write(project_dir / "teams" / "local-chat.yaml", SOLO_LOCAL)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    try:
        with serve_in_thread(create_app()) as server:
            _, key = ApiKeyStore(server.app.state.rt.store).create("chat", ("runs",))
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=300)
            completion = client.chat.completions.create(
                model="local-chat", messages=[{"role": "user", "content": "What color is the sky on a clear day?"}]
            )
            client.close()
    finally:
        durable.shutdown()
    assert (completion.choices[0].message.content or "").strip()
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
