"""a2a.send: ask an agent outside edgecrew, any A2A server, to do something, and wait for its answer.

The official a2a-sdk's client (imported when the tool runs) fetches the agent card, sends the message
(streaming when the card says the agent streams), and the tool follows the task to a final state
within ``timeout_s``, cancelling it when that runs out. The answer is the task's artifacts' text (the
status message's or the reply's when there are none); a failed, rejected or cancelled task is a
ToolError that says why, so the agent sees it as a failed call.

The one design decision: secrets never pass through the model. The model names a URL and a message;
the bearer token for a host comes from ``EDGECREW_A2A_TOKENS`` (``host:port=token,host=token``, read
at each call), and is sent only to that host, whatever other URL an agent card names. The tool is
``risky``: it sends what the model wrote to another machine, which may act on it, so a person approves
each call unless the team's ``approval:`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, cast

from pydantic import Field

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolRegistry, ToolSpec, spec_from_function

if TYPE_CHECKING:
    import httpx
    from a2a.client import Client
    from a2a.types import Message, StreamResponse, Task

TOKENS_ENV = "EDGECREW_A2A_TOKENS"
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 1.0  # between GetTask calls, for an agent whose stream ended before its task did
_FINAL = ("completed", "failed", "canceled", "rejected")
_WAITING = ("input_required", "auth_required")  # the remote agent waits for the caller


def host_tokens(text: str) -> dict[str, str]:
    """``host:port=token,host=token`` as a mapping (hosts lower-cased; a token may contain ``=``)."""
    tokens: dict[str, str] = {}
    for item in text.split(","):
        host, sep, token = item.partition("=")
        if sep and host.strip() and token.strip():
            tokens[host.strip().lower()] = token.strip()
    return tokens


def token_for(url: httpx.URL, tokens: dict[str, str]) -> str | None:
    """The token for a URL's host: by ``host:port`` (the scheme's port when the URL has none), then by host."""
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host.lower()
    named = f"[{host}]" if ":" in host else host  # an IPv6 address is written in brackets before its port
    return tokens.get(f"{named}:{port}") or tokens.get(named) or tokens.get(host)


class HostTokens:
    """Adds ``Authorization: Bearer`` to requests for the hosts that have a token, and to no other.

    A callable, which httpx takes as ``auth`` as it takes an ``httpx.Auth``: subclassing that would
    import httpx with this module, which every runtime imports to register the tool."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens

    def __call__(self, request: httpx.Request) -> httpx.Request:
        token = token_for(request.url, self.tokens)
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        return request


@dataclass
class Outcome:
    """What the remote agent has said so far about one message's task."""

    task_id: str = ""
    state: str = "submitted"
    status_text: str = ""
    reply: str | None = None  # the agent answered with a message instead of a task
    artifacts: dict[str, list[str]] = field(default_factory=dict)  # artifact id -> its parts' text

    @property
    def final(self) -> bool:
        return self.reply is not None or self.state in _FINAL

    def take(self, response: StreamResponse) -> None:
        if response.HasField("message"):
            self.reply = _text(response.message.parts)
        elif response.HasField("task"):
            self.take_task(response.task)
        elif response.HasField("status_update"):
            self.task_id = self.task_id or response.status_update.task_id
            self._status(response.status_update.status.state, response.status_update.status.message)
        elif response.HasField("artifact_update"):
            update = response.artifact_update
            parts = self.artifacts.setdefault(update.artifact.artifact_id, []) if update.append else []
            parts.append(_text(update.artifact.parts))
            self.artifacts[update.artifact.artifact_id] = parts

    def take_task(self, task: Task) -> None:
        self.task_id = task.id
        self._status(task.status.state, task.status.message)
        for artifact in task.artifacts:
            self.artifacts[artifact.artifact_id] = [_text(artifact.parts)]
        if not self.status_text and task.history:
            from a2a.types import Role

            said = [m for m in task.history if m.role == Role.ROLE_AGENT]
            self.status_text = _text(said[-1].parts) if said else ""

    def _status(self, state: int, message: Message) -> None:
        from a2a.types import TaskState

        self.state = TaskState.Name(state).removeprefix("TASK_STATE_").lower()
        self.status_text = _text(message.parts) or self.status_text

    @property
    def answer(self) -> str:
        if self.reply is not None:
            return self.reply
        texts = ["".join(chunks) for chunks in self.artifacts.values() if "".join(chunks)]
        return "\n\n".join(texts) or self.status_text


def _text(parts: Any) -> str:
    """The text of message or artifact parts; data parts as JSON when there is no text."""
    import json

    from google.protobuf import json_format

    texts = [p.text for p in parts if p.HasField("text")]
    if texts:
        return "\n".join(texts)
    data = [json.dumps(json_format.MessageToDict(p.data), ensure_ascii=False) for p in parts if p.HasField("data")]
    return "\n".join(data)


def _card_location(url: str) -> tuple[str, str | None]:
    """(base URL, card path) for an agent's base URL or the URL of its card (one that ends in .json)."""
    import httpx

    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ToolError(f"'{url}' is not an http(s) URL; give the agent's base URL or its agent card's URL")
    if parsed.path.endswith(".json"):
        return url, ""
    return url, None


async def send(url: str, message: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Send ``message`` to the A2A agent at ``url`` and follow its task to a final state."""
    import httpx
    from a2a.client import A2ACardResolver, A2AClientError, ClientConfig, ClientFactory
    from a2a.types import Message, Part, Role, SendMessageRequest

    base, card_path = _card_location(url)
    tokens = host_tokens(os.environ.get(TOKENS_ENV, ""))
    timeout = httpx.Timeout(timeout_s + 10, connect=10)
    async with httpx.AsyncClient(auth=HostTokens(tokens), timeout=timeout) as http:
        factory = ClientFactory(ClientConfig(httpx_client=http, streaming=True))
        resolver = A2ACardResolver(http, base) if card_path is None else A2ACardResolver(http, base, card_path)
        try:
            card = await resolver.get_agent_card()
            client = factory.create(card)
        except (A2AClientError, ValueError) as exc:
            raise ToolError(f"cannot reach the A2A agent at {url}: {exc}") from exc
        request = SendMessageRequest(
            message=Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=message)])
        )
        outcome = Outcome()
        try:
            async with asyncio.timeout(timeout_s):
                await _follow(client, request, outcome)
        except TimeoutError:
            await _cancel(client, outcome.task_id)
            raise ToolError(
                f"the agent {card.name} at {url} did not finish within {timeout_s:g} s "
                f"(task {outcome.task_id or 'not started'}, {outcome.state}); it was asked to cancel the task"
            ) from None
        except A2AClientError as exc:
            raise ToolError(f"the agent {card.name} at {url} failed: {exc}") from exc
    result = {"agent": card.name, "task_id": outcome.task_id, "state": outcome.state, "answer": outcome.answer}
    if outcome.reply is not None:
        result["state"] = "completed"
    elif outcome.state in _WAITING:
        result["note"] = "the agent asks for more: send a new message that includes everything it needs"
    elif outcome.state != "completed":
        raise ToolError(f"the agent {card.name} at {url}: task {outcome.task_id} {outcome.state}: {outcome.answer}")
    return result


async def _follow(client: Client, request: Any, outcome: Outcome) -> None:
    """Send, read the replies until a final state, then ask for the task until it has one."""
    from a2a.types import GetTaskRequest

    async with contextlib.aclosing(
        cast("AsyncGenerator[StreamResponse, None]", client.send_message(request))
    ) as stream:
        async for response in stream:
            outcome.take(response)
            if outcome.final:
                break
    while not outcome.final and outcome.state not in _WAITING and outcome.task_id:
        await asyncio.sleep(POLL_S)
        outcome.take_task(await client.get_task(GetTaskRequest(id=outcome.task_id)))


async def _cancel(client: Client, task_id: str) -> None:
    from a2a.types import CancelTaskRequest

    if task_id:
        with contextlib.suppress(Exception):  # best effort: the timeout is what the agent is told about
            await asyncio.wait_for(client.cancel_task(CancelTaskRequest(id=task_id)), timeout=10)


def a2a_tools(*, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[ToolSpec]:
    """The ``a2a.send`` ToolSpec, waiting at most ``timeout_s`` for an answer."""

    async def a2a_send(
        url: Annotated[str, Field(min_length=8, max_length=2000)],
        message: Annotated[str, Field(min_length=1, max_length=100_000)],
    ) -> dict[str, Any]:
        """Send a message to an agent outside this team over A2A and get its answer; url is the
        agent's base URL (e.g. http://host:8765/a2a/team/) or its agent card's URL."""
        return await send(url, message, timeout_s=timeout_s)

    return [spec_from_function(a2a_send, name="a2a.send", risk="risky", timeout_s=timeout_s + 30)]


def register(registry: ToolRegistry, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    for spec in a2a_tools(timeout_s=timeout_s):
        registry.register(spec)
