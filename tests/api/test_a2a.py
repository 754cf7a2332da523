"""A2A both ways, over real HTTP on 127.0.0.1: the official a2a-sdk client against edgecrew's teams
(card, send, stream, get, cancel, keys and scopes), and edgecrew's ``a2a.send`` tool against an agent
that the SDK itself serves (and against edgecrew's own teams)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import add_a2a_routes_to_fastapi, create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import A2AError
from a2a.utils.proto_utils import warn_on_missing_required_fields
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from edgecrew.api.a2a import mount_a2a
from edgecrew.api.a2a_agents import answer_parts, message_text
from edgecrew.app import create_app
from edgecrew.engine import durable
from edgecrew.errors import ToolError
from edgecrew.store.keys import SCOPES, ApiKeyStore
from edgecrew.tools.base import ToolRegistry
from edgecrew.tools.builtins import a2a as a2a_tool
from tests.api.conftest import TOOLS
from tests.api.live import serve_in_thread, server_settings
from tests.conftest import write

PROJECT = """
plugins: [tools.py]
models:
  gated: {backend: scripted, replies: [{tool: deploy, args: {target: prod}}, "shipped"]}
  fake: {backend: scripted, replies: ["the answer is 42"], cycle: true}
  slowpoke: {backend: scripted, replies: [{text: "too late", delay: 20}], cycle: true}
  refused: {backend: scripted, replies: [{error: auth}], cycle: true}
"""
TEAMS = {
    "echo": "name: echo\nagents:\n  solo: {model: fake, system: answer briefly}\n"
    "graph: {start: solo, edges: [{from: solo, to: end}]}\n",
    "duo": "name: duo\ndescription: drafts then checks\nagents:\n  drafter: {model: fake, system: draft}\n"
    "  checker: {model: fake, system: check}\n"
    "graph: {start: drafter, edges: [{from: drafter, to: checker}, {from: checker, to: end}]}\n",
    "slow": "name: slow\nagents:\n  solo: {model: slowpoke, system: take your time}\n"
    "graph: {start: solo, edges: [{from: solo, to: end}]}\n",
    "ship": "name: ship\nagents:\n  op: {model: gated, system: ship it, tools: [deploy]}\n"
    "graph: {start: op, edges: [{from: op, to: end}]}\n",
    "broken": "name: broken\nagents:\n  solo: {model: refused, system: answer}\n"
    "graph: {start: solo, edges: [{from: solo, to: end}]}\n",
}
WAIT_S = 30.0


@dataclass
class Edgecrew:
    """edgecrew under uvicorn with its teams served over A2A, and a key per scope."""

    url: str
    keys: dict[str, str]

    def http(self, scope: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"Authorization": f"Bearer {self.keys[scope]}"}, timeout=WAIT_S)

    async def client(self, http: httpx.AsyncClient, team: str, *, streaming: bool = False) -> Client:
        card = await A2ACardResolver(http, f"{self.url}/a2a/{team}/").get_agent_card()
        return ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)

    def run(self, run_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/runs/{run_id}", headers={"X-API-Key": self.keys["read"]}, timeout=WAIT_S)
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        return run


@pytest.fixture(scope="module")
def edgecrew(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edgecrew]:
    root = tmp_path_factory.mktemp("a2a")
    write(root / "project" / "edgecrew.yaml", PROJECT)
    write(root / "project" / "tools.py", TOOLS)
    for name, text in TEAMS.items():
        write(root / "project" / "teams" / f"{name}.yaml", text)
    app = create_app(server_settings(root))
    mount_a2a(app)
    try:
        with serve_in_thread(app) as server:
            store = ApiKeyStore(app.state.rt.store)
            keys = {scope: store.create(f"a2a-{scope}", (scope,))[1] for scope in SCOPES}
            keys["peer"] = store.create("a2a-peer", ("read", "runs"))[1]
            yield Edgecrew(server.url, keys)
    finally:
        durable.shutdown()


def _message(text: str, message_id: str | None = None, task_id: str = "") -> SendMessageRequest:
    message = Message(message_id=message_id or f"m-{text}-{id(text)}", role=Role.ROLE_USER, parts=[Part(text=text)])
    message.task_id = task_id
    return SendMessageRequest(message=message)


async def _collect(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [event async for event in client.send_message(request)]


def _note(event: StreamResponse) -> str:
    """The text of a status update's message ("" for any other event, or one without a message)."""
    parts = event.status_update.status.message.parts if event.HasField("status_update") else []
    return parts[0].text if parts else ""


def _notes(events: list[StreamResponse]) -> list[str]:
    return [note for note in map(_note, events) if note]


# -- the official client against edgecrew --------------------------------------------------------------


async def test_each_team_has_an_agent_card_behind_the_read_scope(edgecrew: Edgecrew) -> None:
    async with edgecrew.http("read") as http:
        card = await A2ACardResolver(http, f"{edgecrew.url}/a2a/duo/").get_agent_card()
        index = (await http.get(f"{edgecrew.url}/a2a/")).json()
    assert card.name == "duo" and card.description == "drafts then checks"
    assert [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        (f"{edgecrew.url}/a2a/duo/", "JSONRPC", "1.0")
    ]
    assert card.capabilities.streaming and not card.capabilities.push_notifications
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    assert {name for r in card.security_requirements for name in r.schemes} == {"bearer", "apiKey"}
    assert list(card.skills[0].tags) == ["edgecrew", "drafter", "checker"]
    assert warn_on_missing_required_fields(card, "test")  # every field the spec requires is there
    assert {"echo", "duo", "slow", "broken"} <= {c["name"] for c in index["agents"]}
    async with httpx.AsyncClient(timeout=WAIT_S) as anonymous:
        refused = await anonymous.get(f"{edgecrew.url}/a2a/duo/.well-known/agent-card.json")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    async with edgecrew.http("runs") as http:
        assert (await http.get(f"{edgecrew.url}/a2a/duo/.well-known/agent-card.json")).status_code == 403
    async with edgecrew.http("read") as http:
        missing = await http.get(f"{edgecrew.url}/a2a/nope/.well-known/agent-card.json")
        assert missing.status_code == 404 and "no team 'nope'" in missing.json()["detail"]


async def test_an_internal_team_has_no_agent_card_and_takes_no_message(edgecrew: Edgecrew) -> None:
    # Before: the supervisor's own team (internal: true) had a card, and a message started it.
    async with edgecrew.http("read") as http:
        index = (await http.get(f"{edgecrew.url}/a2a/")).json()
        card = await http.get(f"{edgecrew.url}/a2a/supervisor-action/.well-known/agent-card.json")
    assert "supervisor-action" not in {c["name"] for c in index["agents"]} and "echo" in str(index)
    assert card.status_code == 404 and card.json()["detail"].startswith("team 'supervisor-action' is internal")
    async with edgecrew.http("peer") as http:
        sent = await http.post(
            f"{edgecrew.url}/a2a/supervisor-action/",
            json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}},
        )
    assert sent.status_code == 404 and "team 'supervisor-action' is internal" in sent.text


async def test_a_message_is_a_run_whose_id_is_the_task_id_and_whose_answer_is_the_artifact(edgecrew: Edgecrew) -> None:
    async with edgecrew.http("peer") as http:
        client = await edgecrew.client(http, "echo")
        [response] = await _collect(client, _message("what is the answer?"))
        task = response.task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert [(a.name, a.parts[0].text) for a in task.artifacts] == [("answer", "the answer is 42")]
        assert task.history[0].parts[0].text == "what is the answer?"
        got = await client.get_task(GetTaskRequest(id=task.id))
    assert got.status.state == TaskState.TASK_STATE_COMPLETED and got.artifacts[0].parts[0].text == "the answer is 42"
    run = edgecrew.run(task.id)
    assert (run["team"], run["task"], run["status"]) == ("echo", "what is the answer?", "succeeded")


async def test_streaming_shows_each_agent_step_then_the_answer_then_completion(edgecrew: Edgecrew) -> None:
    async with edgecrew.http("peer") as http:
        client = await edgecrew.client(http, "duo", streaming=True)
        events = await _collect(client, _message("draft and check"))
    assert events[0].HasField("task") and events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    notes = _notes(events)
    steps = [n for n in notes if n.startswith(("drafter", "checker"))]
    assert steps == [
        "drafter started on fake",
        "drafter finished (final)",
        "checker started on fake",
        "checker finished (final)",
    ]
    working = [e.status_update for e in events if e.HasField("status_update")][:-1]
    assert {u.status.state for u in working} == {TaskState.TASK_STATE_WORKING}
    assert working[1].status.message.metadata["edgecrew"]["agent"] == "drafter"
    artifact, final = events[-2], events[-1]
    assert artifact.artifact_update.artifact.parts[0].text == "the answer is 42"
    assert final.status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert edgecrew.run(final.status_update.task_id)["status"] == "succeeded"


async def test_cancelling_a_task_cancels_its_run(edgecrew: Edgecrew) -> None:
    async with edgecrew.http("peer") as http:
        client = await edgecrew.client(http, "slow", streaming=True)
        seen: list[StreamResponse] = []
        cancelled: Task | None = None
        async for event in client.send_message(_message("take a while")):
            seen.append(event)
            if "solo started" in _note(event) and cancelled is None:
                cancelled = await client.cancel_task(CancelTaskRequest(id=event.status_update.task_id))
    assert cancelled is not None and cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert seen[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED
    assert "was cancelled" in seen[-1].status_update.status.message.parts[0].text
    assert edgecrew.run(cancelled.id)["status"] == "cancelled"
    async with edgecrew.http("read") as http:
        client = await edgecrew.client(http, "slow")
        got = await client.get_task(GetTaskRequest(id=cancelled.id))
    assert got.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_task_waits_while_a_person_decides_an_approval(edgecrew: Edgecrew) -> None:
    async with edgecrew.http("peer") as http:
        client = await edgecrew.client(http, "ship", streaming=True)
        events: list[StreamResponse] = []
        async for event in client.send_message(_message("ship the fix")):
            events.append(event)
            if "waits for a person to approve deploy" in _note(event):
                assert event.status_update.status.state == TaskState.TASK_STATE_WORKING
                approval = event.status_update.status.message.metadata["edgecrew"]["approval"]
                decided = await http.post(
                    f"{edgecrew.url}/approvals/{approval}/approve",
                    headers={"Authorization": f"Bearer {edgecrew.keys['approve']}"},
                )
                assert decided.status_code == 200, decided.text
    notes = _notes(events)
    assert "op called deploy" in notes and any(n.startswith("approval ") and n.endswith(" approved") for n in notes)
    assert events[-2].artifact_update.artifact.parts[0].text == "shipped"
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_a_failed_run_is_a_failed_task_with_the_runs_error(edgecrew: Edgecrew) -> None:
    async with edgecrew.http("peer") as http:
        client = await edgecrew.client(http, "broken")
        [response] = await _collect(client, _message("try"))
    assert response.task.status.state == TaskState.TASK_STATE_FAILED
    said = response.task.status.message.parts[0].text
    assert said.startswith(f"run {response.task.id} failed: ") and edgecrew.run(response.task.id)["status"] == "failed"


async def test_a_run_started_elsewhere_reads_as_a_task_and_messages_are_not_sent_twice(edgecrew: Edgecrew) -> None:
    started = httpx.post(
        f"{edgecrew.url}/runs", json={"team": "echo", "task": "via REST"}, headers={"X-API-Key": edgecrew.keys["runs"]}
    )
    run_id = started.json()["id"]
    async with edgecrew.http("peer") as http:
        client = await edgecrew.client(http, "echo")
        for _ in range(int(WAIT_S * 10)):
            if edgecrew.run(run_id)["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
        task = await client.get_task(GetTaskRequest(id=run_id))  # never seen over A2A: read from the run
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert (task.history[0].parts[0].text, task.artifacts[0].parts[0].text) == ("via REST", "the answer is 42")
        with pytest.raises(A2AError, match=r"(?i)task not found"):
            await client.get_task(GetTaskRequest(id=run_id[:5]))  # a prefix names no task
        [first] = await _collect(client, _message("once", message_id="msg-once"))
        with pytest.raises(A2AError, match=f"answered already: task {first.task.id} succeeded"):
            await _collect(client, _message("once", message_id="msg-once"))
        with pytest.raises(A2AError, match="each message to an edgecrew team is a task of its own"):
            await _collect(client, _message("and then?", message_id="msg-2", task_id=first.task.id))


async def test_json_rpc_needs_a_key_and_the_scope_of_its_method(edgecrew: Edgecrew) -> None:
    url = f"{edgecrew.url}/a2a/echo/"
    send = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}
    get = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": "r0"}}
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        for body in (send, get, {"not": "json-rpc"}):
            refused = await http.post(url, json=body)
            assert refused.status_code == 401 and refused.headers["content-type"].startswith("application/problem+json")
        garbled = await http.post(url, content=b"{", headers={"Authorization": "Bearer nope"})
        assert garbled.status_code == 401
        for scope, body, needed in (("read", send, "runs"), ("runs", get, "read"), ("approve", get, "read")):
            response = await http.post(url, json=body, headers={"Authorization": f"Bearer {edgecrew.keys[scope]}"})
            assert response.status_code == 403 and f"lacks the '{needed}' scope" in response.json()["detail"]
    async with edgecrew.http("read") as http:
        client = await edgecrew.client(http, "echo")  # the official client shows the refusal too
        with pytest.raises(A2AError, match="403"):
            await _collect(client, _message("not allowed"))
    async with edgecrew.http("admin") as http:
        unknown = await http.post(f"{edgecrew.url}/a2a/nope/", json=send)
        assert unknown.status_code == 404


# -- edgecrew's a2a.send against an agent the SDK serves ------------------------------------------------

TOKEN = "sekrit-token"


class Echo(AgentExecutor):
    """Answers with the message's text as an artifact; "fail" fails the task."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        history = [context.message] if context.message is not None else []
        submitted = Task(id=task_id, context_id=context_id, status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
        submitted.history.extend(history)
        await event_queue.enqueue_event(submitted)
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        if context.get_user_input() == "fail":
            await updater.failed(updater.new_agent_message([Part(text="cannot do that")]))
            return
        await updater.add_artifact([Part(text=f"echo: {context.get_user_input()}")], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def _sdk_agent(app: FastAPI, base: str, prefix: str, *, streaming: bool) -> None:
    card = AgentCard(
        name=f"sdk-{prefix}",
        description="echoes",
        version="1",
        supported_interfaces=[
            AgentInterface(url=f"{base}/{prefix}/", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echoes", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    add_a2a_routes_to_fastapi(
        app,
        agent_card_routes=create_agent_card_routes(card, card_url=f"/{prefix}/.well-known/agent-card.json"),
        jsonrpc_routes=create_jsonrpc_routes(handler, rpc_url=f"/{prefix}/"),
    )


@pytest.fixture(scope="module")
def sdk_url() -> Iterator[str]:
    app = FastAPI()

    @app.middleware("http")
    async def bearer_only(request: Request, call_next: Any) -> Any:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await call_next(request)

    with serve_in_thread(app) as server:
        _sdk_agent(app, server.url, "stream", streaming=True)
        _sdk_agent(app, server.url, "plain", streaming=False)
        yield server.url


@pytest.fixture
def tokens(sdk_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(a2a_tool.TOKENS_ENV, f"other.example:443=wrong,{httpx.URL(sdk_url).netloc.decode()}={TOKEN}")


async def test_the_tool_gets_the_answer_of_a_streaming_and_of_a_plain_agent(sdk_url: str, tokens: None) -> None:
    streamed = await a2a_tool.send(f"{sdk_url}/stream/", "hello", timeout_s=WAIT_S)
    assert (
        streamed["agent"] == "sdk-stream" and streamed["state"] == "completed" and streamed["answer"] == "echo: hello"
    )
    card_url = f"{sdk_url}/plain/.well-known/agent-card.json"  # a card's URL works as well as the base URL
    plain = await a2a_tool.send(card_url, "hi there", timeout_s=WAIT_S)
    assert (plain["agent"], plain["state"], plain["answer"]) == ("sdk-plain", "completed", "echo: hi there")


async def test_a_failed_remote_task_is_a_tool_error_that_says_why(sdk_url: str, tokens: None) -> None:
    with pytest.raises(ToolError, match=r"sdk-stream .*failed: cannot do that"):
        await a2a_tool.send(f"{sdk_url}/stream/", "fail", timeout_s=WAIT_S)


async def test_without_a_token_for_its_host_the_agent_refuses(sdk_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(a2a_tool.TOKENS_ENV, f"elsewhere:80={TOKEN}")
    with pytest.raises(ToolError, match=r"cannot reach the A2A agent .*401"):
        await a2a_tool.send(f"{sdk_url}/stream/", "hello", timeout_s=WAIT_S)
    with pytest.raises(ToolError, match="not an http"):
        await a2a_tool.send("ftp://example.com/agent", "hello")


async def test_the_tool_talks_to_edgecrews_own_teams(edgecrew: Edgecrew, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(a2a_tool.TOKENS_ENV, f"{httpx.URL(edgecrew.url).netloc.decode()}={edgecrew.keys['peer']}")
    answer = await a2a_tool.send(f"{edgecrew.url}/a2a/duo/", "draft it", timeout_s=WAIT_S)
    assert (answer["agent"], answer["state"], answer["answer"]) == ("duo", "completed", "the answer is 42")
    assert edgecrew.run(answer["task_id"])["task"] == "draft it"


# -- the small pieces ----------------------------------------------------------------------------------


def test_the_tool_is_registered_as_risky_with_url_and_message_only() -> None:
    registry = ToolRegistry()
    a2a_tool.register(registry)
    spec = registry.get("a2a.send")
    assert spec.risk == "risky" and set(spec.input_schema["properties"]) == {"url", "message"}


def test_a_token_goes_to_its_host_only() -> None:
    tokens = a2a_tool.host_tokens(" a.example:8443=t1 , b.example=t=2,[::1]:9000=t3, broken")
    assert tokens == {"a.example:8443": "t1", "b.example": "t=2", "[::1]:9000": "t3"}
    assert a2a_tool.token_for(httpx.URL("https://a.example:8443/x"), tokens) == "t1"
    assert a2a_tool.token_for(httpx.URL("https://a.example/x"), tokens) is None  # another port
    assert a2a_tool.token_for(httpx.URL("http://B.example/card.json"), tokens) == "t=2"
    assert a2a_tool.token_for(httpx.URL("http://[::1]:9000/"), tokens) == "t3"
    assert a2a_tool.token_for(httpx.URL("http://c.example/"), tokens) is None


def test_a_message_becomes_a_task_and_an_output_an_answer() -> None:
    message = Message(message_id="m", role=Role.ROLE_USER, parts=[Part(text="plan it")])
    assert message_text(message) == "plan it"
    with pytest.raises(A2AError, match="text and data parts"):
        message_text(Message(message_id="m", role=Role.ROLE_USER, parts=[Part(url="http://x/f.txt")]))
    assert [p.text for p in answer_parts({"text": "hi"})] == ["hi"]
    text, data = answer_parts({"verdict": "ok", "score": 3})
    assert text.text == '{"verdict": "ok", "score": 3}' and data.data.struct_value["verdict"] == "ok"


def test_the_tools_answer_is_the_artifacts_text_or_else_what_the_agent_said() -> None:
    from a2a.types import Artifact, TaskArtifactUpdateEvent, TaskStatusUpdateEvent

    def chunk(text: str, append: bool) -> StreamResponse:
        artifact = Artifact(artifact_id="a", parts=[Part(text=text)])
        return StreamResponse(artifact_update=TaskArtifactUpdateEvent(task_id="t", artifact=artifact, append=append))

    outcome = a2a_tool.Outcome()
    outcome.take(StreamResponse(task=Task(id="t", status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))))
    for piece, append in (("hel", False), ("lo", True)):
        outcome.take(chunk(piece, append))
    said = Message(message_id="s", role=Role.ROLE_AGENT, parts=[Part(text="done")])
    status = TaskStatus(state=TaskState.TASK_STATE_COMPLETED, message=said)
    outcome.take(StreamResponse(status_update=TaskStatusUpdateEvent(task_id="t", status=status)))
    assert (outcome.task_id, outcome.state, outcome.final, outcome.answer) == ("t", "completed", True, "hello")
    asks = a2a_tool.Outcome()
    question = Message(message_id="q", role=Role.ROLE_AGENT, parts=[Part(text="which region?")])
    waiting = TaskStatus(state=TaskState.TASK_STATE_INPUT_REQUIRED, message=question)
    asks.take(StreamResponse(status_update=TaskStatusUpdateEvent(task_id="u", status=waiting)))
    assert (asks.state, asks.final, asks.answer) == ("input_required", False, "which region?")
    replied = a2a_tool.Outcome()
    replied.take(StreamResponse(message=Message(message_id="r", role=Role.ROLE_AGENT, parts=[Part(text="hi")])))
    assert replied.final and replied.answer == "hi"
