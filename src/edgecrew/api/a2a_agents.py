"""The A2A agents behind ``/a2a/{team}/`` on the protocol of the official a2a-sdk (1.0), imported on the
first A2A request rather than at start-up (the SDK, its protobuf types and its SQLAlchemy task stores cost
~0.3 s of imports on a small CPU); the routes are in :mod:`edgecrew.api.a2a`.

The SDK speaks the protocol (its JSON-RPC dispatcher, request handler, event queues and task store
answer ``SendMessage``, ``SendStreamingMessage``, ``GetTask``, ``CancelTask``, ``ListTasks`` and
``SubscribeToTask``); edgecrew plugs three small pieces into it, all over the runs use case:
:class:`RunStarter` starts the team's run when a message arrives, :class:`RunFollower` (the
``AgentExecutor``) turns the run's event stream into task updates (each step's start and end with
its agent, tool calls, approvals; the answer as the artifact ``answer``; a failed run as a failed
task with its error) and cancels the run, and :class:`RunTaskStore` keeps the SDK's tasks in memory
and reads any other task from its run.

The one design decision: the run is the task. The run id is the A2A task id (and the context id
when the client sends none), so a task is also ``/runs/{id}`` with its events, and a task id
outlives the server: after a restart, or once its copy in memory is dropped, GetTask reads the run.
A message's ``messageId`` is its run's idempotency key: a client that sends a message again gets
the first one's task.

Auth is the API keys of the rest of the API: ``runs`` to send, stream and cancel, ``read`` for the
rest and for the agent cards (a card names and describes a team, which GET /teams/{name} also keeps
behind ``read``); each card declares the Bearer and X-API-Key schemes. The routes are left out of
the OpenAPI document: the agent card describes them, and one JSON-RPC route needs a scope per method.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

from a2a.helpers import get_message_text
from a2a.server.agent_execution import AgentExecutor, RequestContext, RequestContextBuilder
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    APIKeySecurityScheme,
    Artifact,
    HTTPAuthSecurityScheme,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SecurityRequirement,
    SecurityScheme,
    SendMessageRequest,
    StringList,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from fastapi import Request, Response
from google.protobuf import json_format, struct_pb2

from edgecrew.context import request_id as current_request_id
from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventRecord,
    RunResumed,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
)
from edgecrew.domain.runs import RunStatus
from edgecrew.domain.specs import TeamSpec
from edgecrew.engine.chat import answer_text, run_failure
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService, TeamName
from edgecrew.errors import ConflictError, IdempotencyKeyReused, UserError
from edgecrew.store.repo import RunRecord
from edgecrew.version import __version__

MAX_ENDED_KEPT = 1000  # ended tasks kept in memory per team (with their history); older ones are read from runs
ANSWER = "answer"  # the artifact that carries a run's answer
KEY_HELP = "an edgecrew API key (`edgecrew keys create NAME --scopes read,runs`): runs to send and cancel, read to get"

_STATES = {
    RunStatus.QUEUED: TaskState.TASK_STATE_SUBMITTED,
    RunStatus.RUNNING: TaskState.TASK_STATE_WORKING,
    RunStatus.WAITING_APPROVAL: TaskState.TASK_STATE_WORKING,  # a person decides elsewhere; the task goes on
    RunStatus.SUCCEEDED: TaskState.TASK_STATE_COMPLETED,
    RunStatus.FAILED: TaskState.TASK_STATE_FAILED,
    RunStatus.CANCELLED: TaskState.TASK_STATE_CANCELED,
}
_ENDED = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)


# -- the card --------------------------------------------------------------------------------------


def team_card(spec: TeamSpec, url: str) -> AgentCard:
    """The agent card of a team served at ``url`` (its JSON-RPC endpoint)."""
    agents = ", ".join(spec.agents)
    about = spec.description or f"the edgecrew team {spec.name}"
    return AgentCard(
        name=spec.name,
        description=about,
        version=__version__,
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_CURRENT
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes={
            "bearer": SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer", description=KEY_HELP)
            ),
            "apiKey": SecurityScheme(
                api_key_security_scheme=APIKeySecurityScheme(location="header", name="X-API-Key", description=KEY_HELP)
            ),
        },
        security_requirements=[
            SecurityRequirement(schemes={"bearer": StringList()}),
            SecurityRequirement(schemes={"apiKey": StringList()}),
        ],
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id=spec.name,
                name=spec.name,
                description=f"{about} (agents: {agents}); each message is one durable run",
                tags=["edgecrew", *spec.agents],
            )
        ],
    )


# -- runs as tasks ---------------------------------------------------------------------------------


def message_text(message: Message) -> str:
    """The task a message gives: its text parts, then its data parts as JSON (files are refused)."""
    if any(p.HasField("raw") or p.HasField("url") for p in message.parts):
        raise InvalidParamsError(message="edgecrew teams take text and data parts; send a file's content as text")
    data = [
        json.dumps(json_format.MessageToDict(p.data), ensure_ascii=False) for p in message.parts if p.HasField("data")
    ]
    return "\n".join([t for t in [get_message_text(message)] if t] + data)


def answer_parts(output: Any) -> list[Part]:
    """A run's answer: its text, plus the structured output as a data part when it is more than text."""
    parts = [Part(text=answer_text(output), media_type="text/plain")]
    structured = output is not None and not isinstance(output, str)
    if structured and not (isinstance(output, dict) and set(output) == {"text"}):
        value = struct_pb2.Value()
        json_format.ParseDict(output, value)
        parts.append(Part(data=value, media_type="application/json"))
    return parts


def _agent_message(task_id: str, context_id: str, text: str, metadata: dict[str, Any] | None = None) -> Message:
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_AGENT,
        task_id=task_id,
        context_id=context_id,
        parts=[Part(text=text)],
        metadata=metadata,
    )


def run_error(run: RunRecord) -> str:
    return run_failure(run)


def task_of_run(run: RunRecord) -> Task:
    """The task a run is, read from the store (its history has the task text only)."""
    status = TaskStatus(state=_STATES[run.status])
    status.timestamp.FromMilliseconds(int((run.finished_at or run.updated_at) * 1000))
    if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        status.message.CopyFrom(_agent_message(run.id, run.id, run_error(run)))
    asked = Message(
        message_id=f"{run.id}-task", role=Role.ROLE_USER, task_id=run.id, context_id=run.id, parts=[Part(text=run.task)]
    )
    task = Task(id=run.id, context_id=run.id, status=status, history=[asked])
    if run.status == RunStatus.SUCCEEDED:
        task.artifacts.append(Artifact(artifact_id=ANSWER, name=ANSWER, parts=answer_parts(run.output)))
    return task


def progress_note(event: EventRecord) -> str | None:
    """One line for a run event an A2A client cares about, or None."""
    who, p = event.agent or "", event.payload
    if isinstance(p, RunStarted):
        return f"run started (agents: {', '.join(p.agents)})" if p.agents else "run started"
    if isinstance(p, RunResumed):
        return (
            f"run resumed on another worker ({p.lost_worker} died)" if p.lost_worker else "run resumed after a restart"
        )
    if isinstance(p, StepStarted):
        return f"{who} started" + (f" on {p.model}" if p.model else "")
    if isinstance(p, StepFinished):
        return f"{who} finished ({p.outcome.value})" + (f": {p.error}" if p.error else "")
    if isinstance(p, ToolCalled):
        return f"{who} called {p.tool}" + (" (it failed)" if p.is_error else "")
    if isinstance(p, ApprovalRequested):
        return f"{who} waits for a person to approve {p.tool} (approval {p.approval})"
    if isinstance(p, ApprovalDecided):
        return f"approval {p.approval} {'approved' if p.approved else 'denied'}"
    return None


def event_metadata(event: EventRecord) -> dict[str, Any]:
    """What a progress message carries for programs: the event's kind, id and agent (and its approval)."""
    about: dict[str, Any] = {"event": event.type, "eventId": event.id, "agent": event.agent or ""}
    if isinstance(event.payload, ApprovalRequested | ApprovalDecided):
        about["approval"] = event.payload.approval
    return {"edgecrew": about}


class RunStarter(RequestContextBuilder):
    """Starts the team's run for a new message; the run id becomes the task id."""

    def __init__(self, rt: Runtime, team: str, starting: set[str]) -> None:
        self.rt = rt
        self.team = team
        self.starting = starting  # runs started here whose task the SDK has not saved yet

    async def build(
        self,
        context: ServerCallContext,
        params: SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        if params is None:
            raise InvalidParamsError(message="a message is required")
        if task_id:
            raise UnsupportedOperationError(
                message=f"task {task_id} has its message already: each message to an edgecrew team is a task of "
                "its own; send it without taskId (the same contextId keeps the conversation together)"
            )
        text, message_id = message_text(params.message), params.message.message_id
        key = "a2a:" + hashlib.sha256(message_id.encode()).hexdigest()[:40] if message_id else None
        try:
            started = await RunService(self.rt).start(
                TeamName(self.team), text, request_id=current_request_id.get(), idempotency_key=key
            )
        except IdempotencyKeyReused as exc:
            raise InvalidParamsError(
                message=f"messageId {message_id!r} was sent before with another text or to another team "
                f"(task {exc.run_id}); give each message its own messageId"
            ) from exc
        except UserError as exc:  # an empty task, a team whose spec broke since the route checked it
            raise InvalidParamsError(message=str(exc)) from exc
        if started.created:
            self.starting.add(started.run.id)
        elif started.run.status.terminal:  # the SDK would only say the task has ended
            raise InvalidParamsError(
                message=f"messageId {message_id!r} was answered already: task {started.run.id} "
                f"{started.run.status.value}; read it with GetTask"
            )
        return RequestContext(
            call_context=context, request=params, task_id=started.run.id, context_id=context_id or started.run.id
        )


@dataclass
class _Following:
    """One task whose run this process follows; ``ended`` once its final state is published."""

    updater: TaskUpdater
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RunFollower(AgentExecutor):
    """Publishes a started run as task updates until it ends; cancelling the task cancels the run."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._following: dict[str, _Following] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        run_id, context_id = context.task_id or "", context.context_id or context.task_id or ""
        following = self._following.setdefault(run_id, _Following(TaskUpdater(event_queue, run_id, context_id)))
        runs = RunService(self.rt)
        after = 0
        try:
            if context.current_task is None:
                history = [context.message] if context.message is not None else []
                status = TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)
                await event_queue.enqueue_event(Task(id=run_id, context_id=context_id, status=status, history=history))
            else:  # the message was sent again after a restart: go on from what the run does next
                after = await asyncio.to_thread(runs.last_event_id, run_id)
            async for batch in runs.events(run_id, after):
                for event in batch:
                    note = progress_note(event)
                    if note is not None:
                        await self._say(following, run_id, context_id, note, event_metadata(event))
            await self._finish(following, runs, run_id)
        finally:
            self._following.pop(run_id, None)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        run_id, context_id = context.task_id or "", context.context_id or context.task_id or ""
        following = self._following.get(run_id) or _Following(TaskUpdater(event_queue, run_id, context_id))
        runs = RunService(self.rt)
        with contextlib.suppress(ConflictError):  # it ended first: _finish says how
            await asyncio.to_thread(runs.cancel, run_id)
        await self._finish(following, runs, run_id)

    async def _say(self, following: _Following, run_id: str, context_id: str, text: str, meta: dict[str, Any]) -> None:
        async with following.lock:
            if not following.ended:
                message = _agent_message(run_id, context_id, text, meta)
                await following.updater.update_status(TaskState.TASK_STATE_WORKING, message=message)

    async def _finish(self, following: _Following, runs: RunService, run_id: str) -> None:
        """Publish how the run ended (once, whoever gets here first: the follower or a cancel)."""
        run = (await runs.summary(run_id)).run
        updater = following.updater
        async with following.lock:
            if following.ended:
                return
            following.ended = True
            if run.status == RunStatus.SUCCEEDED:
                await updater.add_artifact(answer_parts(run.output), artifact_id=ANSWER, name=ANSWER)
                await updater.complete()
                return
            message = _agent_message(run_id, updater.context_id, run_error(run))
            if run.status == RunStatus.CANCELLED:
                await updater.cancel(message)
            elif run.status == RunStatus.FAILED:
                await updater.failed(message)
            else:
                note = f"stopped following run {run_id} while it was {run.status.value}; see /runs/{run_id}"
                await updater.failed(_agent_message(run_id, updater.context_id, note))


class RunTaskStore(TaskStore):
    """The SDK's tasks in memory (the live ones and the last ``MAX_ENDED_KEPT`` ended ones); any other
    task id of this team is read from its run. Saving a task as canceled cancels its run: that is how
    the SDK cancels a task no executor of this process follows (one started before a restart)."""

    def __init__(self, rt: Runtime, team: str, starting: set[str]) -> None:
        self.rt = rt
        self.team = team
        self.starting = starting
        self.memory = InMemoryTaskStore()
        self._ended: OrderedDict[str, ServerCallContext] = OrderedDict()

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await self.memory.save(task, context)
        self.starting.discard(task.id)
        if task.status.state == TaskState.TASK_STATE_CANCELED:
            await self._cancel_run(task.id)
        if task.status.state in _ENDED:
            self._ended[task.id] = context
            self._ended.move_to_end(task.id)
            while len(self._ended) > MAX_ENDED_KEPT:
                oldest, owner = self._ended.popitem(last=False)
                await self.memory.delete(oldest, owner)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        task = await self.memory.get(task_id, context)
        if task is not None or task_id in self.starting:  # a run starting now is no task until the SDK saves it
            return task
        run = await self._run(task_id)
        return task_of_run(run) if run is not None else None

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        return await self.memory.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        await self.memory.delete(task_id, context)
        self._ended.pop(task_id, None)

    async def _run(self, task_id: str) -> RunRecord | None:
        try:
            run = await asyncio.to_thread(RunService(self.rt).get, task_id)
        except UserError:  # no such run, or an id prefix: a task id names one run exactly
            return None
        return run if run.id == task_id and run.team == self.team else None

    async def _cancel_run(self, task_id: str) -> None:
        run = await self._run(task_id)
        if run is not None and not run.status.terminal:
            runs = RunService(self.rt)
            with contextlib.suppress(ConflictError):
                await asyncio.to_thread(runs.cancel, run.id)


# -- the teams' agents -----------------------------------------------------------------------------


@dataclass
class TeamAgent:
    """One team's A2A agent: the SDK's request handler and its JSON-RPC endpoint."""

    handler: DefaultRequestHandler
    endpoint: Callable[[Request], Awaitable[Response]]


class A2AAgents:
    """The teams' agents of one app, each built on its first request (the runtime exists only once
    the app has started), and closed when the app stops."""

    def __init__(self) -> None:
        self._agents: dict[str, TeamAgent] = {}

    def of(self, rt: Runtime, spec: TeamSpec) -> TeamAgent:
        agent = self._agents.get(spec.name)
        if agent is None:
            starting: set[str] = set()
            handler = DefaultRequestHandler(
                agent_executor=RunFollower(rt),
                task_store=RunTaskStore(rt, spec.name, starting),
                agent_card=team_card(spec, f"http://localhost/a2a/{quote(spec.name)}/"),  # streaming: yes
                request_context_builder=RunStarter(rt, spec.name, starting),
            )
            route = create_jsonrpc_routes(handler, rpc_url="/")[0]
            agent = TeamAgent(handler, cast(Callable[[Request], Awaitable[Response]], route.endpoint))
            self._agents[spec.name] = agent
        return agent

    async def aclose(self) -> None:
        agents, self._agents = list(self._agents.values()), {}
        for agent in agents:
            await agent.handler.aclose()


def card_json(spec: TeamSpec, url: str) -> dict[str, Any]:
    """A team's agent card as the JSON the card routes answer with."""
    return agent_card_to_dict(team_card(spec, url))
