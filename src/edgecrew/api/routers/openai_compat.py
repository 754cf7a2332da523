"""An OpenAI-compatible face: ``GET /v1/models`` and ``POST /v1/chat/completions`` over team runs.

Any OpenAI client can talk to a team (model ``echo``) or to one agent of it (``echo/solo``); each
completion is a real durable run, listed under /runs with its events (the completion's id is
``chatcmpl-<run id>``). Errors stay RFC 9457 problems, with an OpenAI-style ``error`` member
added so OpenAI clients show a useful message. Streaming sends the role at once, SSE comments while
the run works, then the answer in pieces once the run has ended: the answer is the run's output,
not a model's token stream. A client that disconnects does not stop the run: it goes on, and its
answer stays readable under /runs/{id}.

A run that waits for a person's approval is answered at once, as MCP's team tools answer it: an
OpenAI client cannot decide it, and one that waited would time out and retry (each retry a new run
without an ``Idempotency-Key``). The message says so in the words MCP uses (:class:`Waiting`), with
``X-Edgecrew-Run-Status: waiting_approval``; the run goes on in this server once a person decides, and
the same request with the same ``Idempotency-Key`` then answers from it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from edgecrew.api.deps import RunsDep, StartRuns
from edgecrew.api.problems import PROBLEM_JSON, PROBLEM_RESPONSES, PROBLEM_SCHEMA, problem
from edgecrew.api.routers.feedback import FeedbackOut, Rate, rate
from edgecrew.api.routers.runs import with_warnings
from edgecrew.api.shapes import sse_stream
from edgecrew.context import request_id as current_request_id
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.chat import ChatAnswer, ChatMessage, ChatService, ChatStart, pieces
from edgecrew.engine.service import TASK_MAX_CHARS, TASK_PATTERN
from edgecrew.engine.sessions import ChatSessions
from edgecrew.errors import IdempotencyKeyReused, ModelNotFound, SpecError

STATUS_HEADER = "X-Edgecrew-Run-Status"  # waiting_approval: the message is no answer, it says how to decide
APPROVALS_HEADER = "X-Edgecrew-Approvals"  # the ids of the approvals the run waits for, comma-separated
KEEPALIVE_S = 10  # an SSE comment this often while the run works, so proxies keep the stream open
SEP = "\n"  # lines end as OpenAI's own streams end them (some clients split on a blank line only)

# OpenAI-style error types by status (the names llama.cpp's server uses), and codes where one fits.
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_ERROR_CODES = {
    401: "invalid_api_key",
    403: "insufficient_scope",
    404: "not_found",  # model_not_found when it is the model (ModelNotFound)
    409: "conflict",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limit_exceeded",
    502: "run_failed",
}


def openai_error(status: int, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": message, "type": kind, "param": param, "code": code or _ERROR_CODES.get(status)}


def with_openai_error(response: Response, code: str | None = None, **extra: Any) -> Response:
    """The same problem response, with ``error: {message, type, param, code}`` and ``extra`` members added;
    a refused request names its first field at fault as OpenAI does (``param``: ``messages[1].content``),
    and the message says it in those words too."""
    if response.media_type != PROBLEM_JSON and response.headers.get("content-type") != PROBLEM_JSON:
        return response
    body = json.loads(bytes(response.body)) | extra
    message, param = body.get("detail") or body.get("title", ""), None
    if body.get("errors"):
        fields = [p for e in body["errors"] if (p := _param(e["loc"]))]
        param = fields[0] if fields else None
        if fields:
            message = "invalid request: " + "; ".join(
                f"{_param(e['loc']) or 'body'}: {e['msg']}" for e in body["errors"][:5]
            )
    body["error"] = openai_error(response.status_code, message, code, param) | extra
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    return JSONResponse(body, status_code=response.status_code, headers=headers, media_type=PROBLEM_JSON)


def _param(loc: list[str]) -> str | None:
    """A validation error's place as OpenAI names a parameter: ``["body", "messages", "1", "content"]``
    is ``messages[1].content``; None for the body as a whole."""
    if not loc or loc[0] != "body":
        return None
    out = ""
    for part in loc[1:]:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or None


class OpenAIErrorRoute(APIRoute):
    """A route whose failures (auth, validation, unknown model...) go through the app's problem
    handlers as usual and then gain the OpenAI ``error`` member."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except Exception as exc:
                handler = next(
                    (h for k in type(exc).__mro__ if (h := request.app.exception_handlers.get(k)) is not None), None
                )
                if handler is None:
                    raise
                code = "model_not_found" if isinstance(exc, ModelNotFound) else None
                return with_openai_error(await handler(request, exc), code)

        return route


router = APIRouter(prefix="/v1", tags=["openai"], responses=PROBLEM_RESPONSES, route_class=OpenAIErrorRoute)


# -- request and response shapes -------------------------------------------------------------------


class Message(BaseModel):
    """A chat message; content is text, or a list of text parts (joined with newlines)."""

    role: Literal["system", "developer", "user", "assistant"]
    # As long as a task of POST /runs (the runs use case's one limit), whichever message it is.
    content: str = Field(max_length=TASK_MAX_CHARS)
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts = []
        for i, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise ValueError(f"content part {i} is {kind!r}; only text parts are supported")
            if not isinstance(part.get("text"), str):
                raise ValueError(f"content part {i} needs a 'text' string")
            texts.append(part["text"])
        return "\n".join(texts)


def _strict_bool(name: str) -> Any:
    """A ``mode="before"`` check that ``name`` is a JSON boolean (pydantic reads "yes" and 1 as true)."""

    def check(cls: type[BaseModel], value: Any) -> Any:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false (a JSON boolean), not {json.dumps(value)[:40]}")
        return value

    return field_validator(name, mode="before")(classmethod(check))


class StreamOptions(BaseModel):
    include_usage: StrictBool = False

    _include_usage = _strict_bool("include_usage")


class ChatRequest(BaseModel):
    """The OpenAI chat request; sampling settings (temperature, max_tokens...) are accepted and
    ignored, since each agent's model settings come from its team spec."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200, description="A team name, or team/agent (see GET /v1/models).")
    messages: list[Message] = Field(min_length=1, max_length=1000)
    # Strict, as OpenAI's own API is: "yes" or 1 for stream, true or "1" for n, are refused by name.
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    # Declared with the only values they may take, so the schema says what the server accepts;
    # the validators run first to say why in words.
    n: StrictInt | None = Field(default=None, ge=1, le=1, description="One choice only.")
    tools: list[Any] | None = Field(default=None, max_length=0, description="Not supported: agents have their own.")
    functions: list[Any] | None = Field(default=None, max_length=0, description="Not supported (see tools).")

    @field_validator("n", mode="before")
    @classmethod
    def _one_choice(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"n must be the integer 1 or left out, not {json.dumps(value)[:40]}")
        if value is not None and value != 1:
            raise ValueError("edgecrew answers with one choice: n must be 1 or left out")
        return value

    _stream = _strict_bool("stream")

    @field_validator("tools", "functions", mode="before")
    @classmethod
    def _no_tools(cls, value: Any) -> Any:
        if isinstance(value, list) and value:
            raise ValueError("tools are not supported here: agents use the tools their team spec allows them")
        return value

    @model_validator(mode="after")
    def _ends_with_user(self) -> ChatRequest:
        if self.messages[-1].role != "user":
            raise ValueError(
                f"the last message must come from the user (it is the task the team works on), "
                f"not from the {self.messages[-1].role}"
            )
        if re.search(TASK_PATTERN, self.messages[-1].content) is None:
            # Earlier messages made the task look non-empty, and the team ran on an empty request.
            raise ValueError("the last message is empty: it is the task the team works on, so say what it should do")
        return self

    def conversation(self) -> list[ChatMessage]:
        return [ChatMessage(m.role, m.content) for m in self.messages]


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "edgecrew"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, answer: ChatAnswer) -> Usage:
        total = answer.prompt_tokens + answer.completion_tokens
        return cls(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens, total_tokens=total)


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: None = None


# -- routes ----------------------------------------------------------------------------------------


def get_chat(runs: RunsDep) -> ChatService:
    return ChatService(runs)


ChatDep = Annotated[ChatService, Depends(get_chat)]


@router.get("/models", response_model=ModelList)
async def list_models(chat: ChatDep, _: StartRuns) -> ModelList:
    """Every valid team (``id`` = its name) and each of its agents (``id`` = ``team/agent``); not the internal
    teams edgecrew starts itself (``internal: true``)."""
    found = await asyncio.to_thread(chat.models)
    return ModelList(data=[ModelOut(id=m.id, created=m.created) for m in found])


@router.get("/models/{team}", response_model=ModelOut)
async def get_model(team: str, chat: ChatDep, _: StartRuns) -> ModelOut:
    """One model of GET /v1/models, as OpenAI's ``models.retrieve`` reads it: a team."""
    return await _model(chat, team)


@router.get("/models/{team}/{agent}", response_model=ModelOut)
async def get_agent_model(team: str, agent: str, chat: ChatDep, _: StartRuns) -> ModelOut:
    """One model of GET /v1/models: an agent of a team (``team/agent``)."""
    return await _model(chat, f"{team}/{agent}")


async def _model(chat: ChatService, model_id: str) -> ModelOut:
    found = await asyncio.to_thread(chat.models)
    for m in found:
        if m.id == model_id:
            return ModelOut(id=m.id, created=m.created)
    # An unknown team or agent says which ones exist; an invalid team is left out of the list, so here too.
    try:
        await asyncio.to_thread(chat.team_for, model_id)
    except SpecError as exc:
        raise ModelNotFound(f"no model '{model_id}': its team is not valid: {exc}") from exc
    raise ModelNotFound(f"no model '{model_id}'; see GET /v1/models")


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {"content": sse_stream((), "JSON: a chat.completion.chunk, then [DONE]")},
        502: {
            "description": "The run failed or was cancelled: the detail has its error, `run_id` names it.",
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        },
    },
)
async def chat_completions(
    body: ChatRequest,
    request: Request,
    chat: ChatDep,
    _: StartRuns,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=256, description="Start the run at most once: a retry with the same key answers from it."),
    ] = None,
    x_edgecrew_session: Annotated[
        str | None,
        Header(
            max_length=32,
            pattern=r"^s[0-9a-f]{1,31}$",
            description="A chat session (POST /sessions): the last message is its next turn, its recent turns "
            "the context.",
        ),
    ] = None,
) -> Response:
    """Run the team (or agent) named by ``model`` on the conversation and answer with its output.

    The run goes on if the client goes away (the handler stops waiting for it); a failed run answers
    502 with its error and run id. A run that waits for a person's approval is answered at once: the
    message says which calls wait and how to decide them, ``X-Edgecrew-Run-Status: waiting_approval``
    and ``X-Edgecrew-Approvals`` (their ids) say it is no answer; the same request with the same
    ``Idempotency-Key`` answers from the run once it has ended. Clients that retry on timeout (the
    openai client does, twice) should send an ``Idempotency-Key`` for slow teams, or each retry starts
    another run.
    """
    try:
        if x_edgecrew_session is not None:  # the turn is stored in the session; its turns are the context
            pending = await ChatSessions(chat.runs).begin_v1(
                x_edgecrew_session, body.model, body.conversation(),
                request_id=current_request_id.get(), idempotency_key=idempotency_key,
            )  # fmt: skip
            started = ChatStart(
                pending.run_id, body.model, int(pending.started.run.created_at), tuple(pending.started.notices)
            )
        else:
            started = await chat.start(
                body.model, body.conversation(), request_id=current_request_id.get(), idempotency_key=idempotency_key
            )
    except IdempotencyKeyReused as exc:
        # 409 as on POST /runs (the key is shared): the body is valid, it conflicts with the key's run.
        reused = problem(
            409,
            str(exc),
            title="Idempotency key reused",
            instance="/v1/chat/completions",
            headers={"x-should-retry": "false"},  # OpenAI's clients retry a 409 unless told not to
        )
        return with_openai_error(reused, run_id=exc.run_id)
    completion_id = f"chatcmpl-{started.run_id}"
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = _chunks(
            chat, started.run_id, completion_id, started.created, body.model, include_usage, idempotency_key
        )
        # As POST /runs says it: a spec warning, or no live cluster worker (the answer waits on its queue).
        streamed = EventSourceResponse(
            chunks, ping=KEEPALIVE_S, send_timeout=30, headers={"X-Run-ID": started.run_id}, sep=SEP
        )
        return with_warnings(streamed, started.notices)
    answer = await _unless_gone(request, chat.answer(started.run_id, stop_when_waiting=True))
    if answer is None:  # nobody is listening any more; the run is recorded and goes on
        return Response(status_code=499, headers={"X-Run-ID": started.run_id})
    headers = {"X-Run-ID": started.run_id}
    if answer.waiting:
        text, approvals = await asyncio.to_thread(_waiting, chat, started.run_id, idempotency_key)
        headers |= {STATUS_HEADER: answer.run.status.value, APPROVALS_HEADER: ",".join(approvals)}
    elif not answer.ok:
        return with_warnings(_run_failed(answer), started.notices)
    else:
        text = answer.text
        if x_edgecrew_session is not None:  # the answer as the session's turn now (a later read would store it too)
            await asyncio.to_thread(ChatSessions(chat.runs).settle, x_edgecrew_session)
    completion = ChatCompletion(
        id=completion_id,
        created=started.created,
        model=body.model,
        choices=[Choice(message=AssistantMessage(content=text))],
        usage=Usage.of(answer),
    )
    answered = JSONResponse(completion.model_dump(mode="json"), headers=headers)
    return with_warnings(answered, started.notices)


def _waiting(chat: ChatService, run_id: str, idempotency_key: str | None) -> tuple[str, list[str]]:
    """What a client is told of a run waiting for a person (MCP's words, then how /v1 goes on), and
    the ids of the approvals it waits for."""
    waiting = ApprovalService(chat.rt).waiting(run_id)
    again = (
        "send this request again with the same Idempotency-Key for its answer"
        if idempotency_key
        else f"its answer: GET /runs/{run_id}"
    )
    goes_on = f"this server goes on with the run once it is decided; {again}"
    return waiting.message(goes_on), [a.id for a in waiting.approvals]


async def _unless_gone(request: Request, waiting: Coroutine[Any, Any, ChatAnswer]) -> ChatAnswer | None:
    """``waiting``'s result, or None once the client has disconnected (checked every second)."""
    task = asyncio.ensure_future(waiting)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if done:
                return task.result()
            if await request.is_disconnected():
                return None
    finally:
        task.cancel()


def _run_failed(answer: ChatAnswer) -> Response:
    # Not retried by OpenAI clients: a retry would start another run, and the failure is recorded.
    response = problem(
        502,
        answer.error,
        title="The run failed",
        instance=f"/runs/{answer.run.id}",
        headers={"x-should-retry": "false", "X-Run-ID": answer.run.id},
    )
    return with_openai_error(response, run_id=answer.run.id)


async def _chunks(
    chat: ChatService,
    run_id: str,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
    idempotency_key: str | None,
) -> AsyncIterator[ServerSentEvent]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> ServerSentEvent:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        if include_usage:
            data["usage"] = None
        return ServerSentEvent(data=json.dumps(data, ensure_ascii=False), sep=SEP)

    yield chunk({"role": "assistant", "content": ""})
    yield ServerSentEvent(comment=f"run {run_id} started; follow it at /runs/{run_id}/events", sep=SEP)
    answer = await chat.answer(run_id, stop_when_waiting=True)
    if answer.waiting:  # the same message as a non-streamed answer, and the comment says what it is
        text, _ = await asyncio.to_thread(_waiting, chat, run_id, idempotency_key)
        yield ServerSentEvent(comment=f"run {run_id} waits for a person's approval", sep=SEP)
    elif not answer.ok:
        error = openai_error(502, answer.error) | {"run_id": run_id}
        yield ServerSentEvent(data=json.dumps({"error": error}, ensure_ascii=False), sep=SEP)
        return
    else:
        text = answer.text
    for piece in pieces(text):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    if include_usage:
        usage = Usage.of(answer).model_dump()
        final = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        yield ServerSentEvent(data=json.dumps(final | {"choices": [], "usage": usage}), sep=SEP)
    yield ServerSentEvent(data="[DONE]", sep=SEP)


# -- feedback on an answer -------------------------------------------------------------------------


class ChatFeedback(Rate):
    """A rating of a chat completion's answer: ``id`` is the completion's id (``chatcmpl-<run id>``)."""

    id: str = Field(min_length=1, max_length=200, pattern=r"^(chatcmpl-)?r[0-9a-f]{1,64}$")


@router.post("/feedback", status_code=201, response_model=FeedbackOut)
async def chat_feedback(body: ChatFeedback, runs: RunsDep, who: StartRuns) -> FeedbackOut:
    """Rate a completion's answer (up or down, a comment, the answer you wanted): the same feedback as
    POST /runs/{id}/feedback, for clients that only know the OpenAI-style completion id."""
    rating = Rate(rating=body.rating, comment=body.comment, correction=body.correction)
    return await asyncio.to_thread(rate, runs, body.id.removeprefix("chatcmpl-"), rating, who, "v1")
