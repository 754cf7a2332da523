"""LiteLLM adapter: every provider that is not embedded (Ollama, OpenAI, Anthropic, vLLM, Triton, any
OpenAI-compatible server) behind one ChatModel.

The decision that shapes it: failure behaviour is ours, not LiteLLM's. LiteLLM's and the provider
SDK's own retries are switched off (``num_retries=0``, ``max_retries=0``); each provider error is
mapped onto edgecrew's tree, and only :data:`TRANSIENT_MODEL_ERRORS` are retried, with exponential
backoff and jitter, honouring the provider's Retry-After, at most ``max_retries`` times (a Retry-After
too long to wait inside one call is left to the caller: the error carries it). So a call fails the same
way whichever provider is behind it, and tests can count the requests a server received.

LiteLLM is imported on first use (it takes seconds), with its bundled model cost map so that importing
it never reaches for the network. Replies are checked by the validator every adapter shares
(:mod:`edgecrew.models.replies`): tool arguments must be JSON objects valid against the tool's schema
and structured output must satisfy ``output_schema``, or the call raises :class:`InvalidOutputError`.
The API key is held privately and scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgecrew.domain.messages import Message, ModelRequest, ModelResponse, StreamDelta, Usage
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
from edgecrew.models.replies import ProposedCall, reply_message, response_of, validator

_SHOWN = 300  # characters of a provider message quoted in an error message
_MAX_BACKOFF_S = 8.0  # one backoff wait never exceeds this...
_MAX_RETRY_AFTER_S = 30.0  # ...and a Retry-After longer than this is handed to the caller instead
# Keys of ``extra`` that would take over what the adapter owns (the request, retries, credentials).
_RESERVED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "response_format",
        "max_tokens",
        "temperature",
        "timeout",
        "num_retries",
        "max_retries",
        "api_key",
        "api_base",
        "base_url",
    }
)


class LiteLLMModel:
    """A model reached through LiteLLM: ``model`` is a LiteLLM id such as ``"ollama/llama3"``.

    ``timeout_s`` bounds each attempt (and, when streaming, each wait for the next chunk); ``temperature``
    samples the replies of requests that leave it to the model (None: 0, greedy); ``extra`` is passed to
    ``litellm.acompletion`` as is (``tool_choice``, ``top_p``, ``drop_params``...).
    """

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        extra: Mapping[str, Any] | None = None,
        temperature: float | None = None,
    ) -> None:
        label = name or model or "?"
        if not model or not model.strip():
            raise UserError(f"model '{label}' (litellm) needs 'model', the provider's model id")
        if timeout_s <= 0:
            raise UserError(f"model '{label}': timeout_s must be positive, got {timeout_s}")
        if max_retries < 0:
            raise UserError(f"model '{label}': max_retries must be 0 or more, got {max_retries}")
        if temperature is not None and not 0 <= temperature <= 2:
            raise UserError(f"model '{label}': temperature must be between 0 and 2, got {temperature}")
        clash = sorted(set(extra or {}) & _RESERVED)
        if clash:
            raise UserError(
                f"model '{label}': extra may not set {', '.join(clash)}; the adapter sets them from the "
                "request and the model's own settings"
            )
        self.name = label
        self.model = model.strip()
        self.api_base = api_base
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.extra: dict[str, Any] = dict(extra or {})
        self.temperature = temperature
        self.__api_key = api_key or None
        # Flipped once a provider rejects response_format json_schema; later calls ask for json_object.
        self._json_schema_ok = True

    def __repr__(self) -> str:  # never shows the key
        base = f", api_base={self.api_base!r}" if self.api_base else ""
        return f"LiteLLMModel({self.model!r}, name={self.name!r}{base})"

    # -- the port ------------------------------------------------------------------------------------

    async def request(self, req: ModelRequest) -> ModelResponse:
        litellm = await _litellm()
        for attempt in range(self.max_retries + 1):
            try:
                return await self._request_once(litellm, req)
            except TRANSIENT_MODEL_ERRORS as exc:
                await self._backoff_or_raise(exc, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, req: ModelRequest) -> AsyncIterator[StreamDelta]:
        """Yield text as it arrives, then the full response.

        A failure before the first delta is retried like a request; once text has been handed out, a
        failure is raised as it is (the caller has already seen part of the reply).
        """
        litellm = await _litellm()
        for attempt in range(self.max_retries + 1):
            started = False
            try:
                async with contextlib.aclosing(self._stream_once(litellm, req)) as deltas:
                    async for delta in deltas:
                        started = True
                        yield delta
                return
            except TRANSIENT_MODEL_ERRORS as exc:
                if started:
                    raise
                await self._backoff_or_raise(exc, attempt)

    # -- one attempt ---------------------------------------------------------------------------------

    async def _request_once(self, litellm: Any, req: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        raw = await self._call(litellm, req, stream=False)
        latency = time.perf_counter() - started
        choice = raw.choices[0] if raw.choices else None
        if choice is None:
            raise InvalidOutputError(f"{self._who()}: the provider returned no choices")
        message = choice.message
        reply = _Reply(text=message.content or "", finish_reason=choice.finish_reason)
        for index, call in enumerate(message.tool_calls or ()):
            fn = call.function
            reply.add_call(index, call.id, fn.name, fn.arguments)
        return response_of(
            lambda: self._message(reply, req),
            reply.text,
            usage=_usage(getattr(raw, "usage", None)),
            model=self.name,
            latency_s=latency,
        )

    async def _stream_once(self, litellm: Any, req: ModelRequest) -> AsyncGenerator[StreamDelta, None]:
        started = time.perf_counter()
        chunks = await self._call(litellm, req, stream=True)
        reply = _Reply()
        usage: Any = None
        first: float | None = None
        iterator = chunks.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._timed_out("waiting for the next streamed chunk") from None
                except Exception as exc:
                    raise self._map(exc) from None
                usage = getattr(chunk, "usage", None) or usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                reply.finish_reason = choice.finish_reason or reply.finish_reason
                for call in getattr(delta, "tool_calls", None) or ():
                    fn = call.function
                    reply.add_call(call.index or 0, call.id, fn.name if fn else None, fn.arguments if fn else None)
                text = delta.content or ""
                if text:
                    first = time.perf_counter() - started if first is None else first
                    reply.text += text
                    yield StreamDelta(text=text)
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
        latency = time.perf_counter() - started
        yield StreamDelta(
            response=response_of(
                lambda: self._message(reply, req),
                reply.text,
                usage=_usage(usage),
                model=self.name,
                latency_s=latency,
                time_to_first_token_s=first,
            )
        )

    async def _call(self, litellm: Any, req: ModelRequest, *, stream: bool) -> Any:
        """One LiteLLM call, mapped to edgecrew errors; a json_schema rejection is retried as json_object."""
        while True:
            json_schema = self._json_schema_ok
            kwargs = self._kwargs(req, stream=stream, json_schema=json_schema)
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await litellm.acompletion(**kwargs)
            except TimeoutError:
                raise self._timed_out("waiting for the reply") from None
            except Exception as exc:
                if req.output_schema is not None and json_schema and _rejects_json_schema(exc):
                    self._json_schema_ok = False
                    continue
                raise self._map(exc) from None

    def _kwargs(self, req: ModelRequest, *, stream: bool, json_schema: bool) -> dict[str, Any]:
        messages = [_to_openai(m) for m in req.messages]
        kwargs: dict[str, Any] = {
            **self.extra,
            "model": self.model,
            "messages": messages,
            "max_tokens": req.max_tokens,
            "temperature": self._temperature(req),
            "timeout": self.timeout_s,
            "num_retries": 0,  # our retries, not LiteLLM's...
            "max_retries": 0,  # ...nor the provider SDK's
            "stream": stream,
        }
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        if req.stop and req.output_schema is None:  # as the embedded model: stops end plain replies only
            kwargs["stop"] = _stops(self.extra.get("stop"), req.stop)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.__api_key:
            kwargs["api_key"] = self.__api_key
        if req.tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters or {"type": "object", "properties": {}},
                    },
                }
                for t in req.tools
            ]
            if req.tool_choice == "required":
                kwargs.setdefault("tool_choice", "required")
        schema = req.output_schema
        if schema is not None:
            validator(schema, "the output schema")  # a bad schema is the user's mistake, not the provider's
            if json_schema:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": False},
                }
            else:
                # "schema" is how llama.cpp-style servers take a schema with json_object; others ignore it.
                kwargs["response_format"] = {"type": "json_object", "schema": schema}
                hint = f"Reply with JSON only, satisfying this JSON Schema: {json.dumps(schema)}"
                if messages and messages[0]["role"] == "system":
                    messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{hint}"}
                else:
                    messages.insert(0, {"role": "system", "content": hint})
        return kwargs

    def _temperature(self, req: ModelRequest) -> float:
        """The request's own temperature, else the alias's, else 0 (greedy)."""
        chosen = req.requested_temperature
        if chosen is None:
            chosen = self.temperature if self.temperature is not None else 0.0
        return float(chosen)

    # -- replies ---------------------------------------------------------------------------------------

    def _message(self, reply: _Reply, req: ModelRequest) -> Message:
        calls = [ProposedCall(call.name, call.arguments, call.id) for _, call in sorted(reply.calls.items())]
        return reply_message(
            req, text=reply.text, calls=calls, truncated=reply.finish_reason == "length", who=self._who()
        )

    # -- failures --------------------------------------------------------------------------------------

    def _who(self) -> str:
        return f"model '{self.name}'" if self.name == self.model else f"model '{self.name}' ({self.model})"

    def _timed_out(self, waiting: str) -> ModelTimeoutError:
        return ModelTimeoutError(f"{self._who()}: no answer within {self.timeout_s:g}s {waiting}")

    def _map(self, exc: Exception) -> ModelError:
        return map_error(exc, who=self._who(), secret=self.__api_key)

    async def _backoff_or_raise(self, exc: ModelError, attempt: int) -> None:
        retry_after = exc.retry_after if isinstance(exc, ModelRateLimitError) else None
        if attempt >= self.max_retries or (retry_after is not None and retry_after > _MAX_RETRY_AFTER_S):
            if attempt > 0:
                exc.args = (f"{exc.args[0] if exc.args else exc} (gave up after {attempt + 1} attempts)",)
            raise exc
        if retry_after is not None:
            delay = retry_after
        else:
            ceiling = min(_MAX_BACKOFF_S, self.backoff_s * 2**attempt)
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter": spread, never near zero
        await asyncio.sleep(delay)


# -- error mapping -------------------------------------------------------------------------------------


def map_error(exc: Exception, *, who: str, secret: str | None = None) -> ModelError:
    """The edgecrew error for a LiteLLM (or provider SDK) exception, its message free of ``secret``."""
    errors = _import_litellm().exceptions
    original = getattr(exc, "original_exception", None)
    if isinstance(exc, errors.MidStreamFallbackError) and isinstance(original, Exception):
        return map_error(original, who=who, secret=secret)  # a stream broke: what broke it?

    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    detail = _detail(exc, secret)
    code = f"HTTP {status}: " if status else ""
    if isinstance(exc, errors.ContextWindowExceededError) or (status in (400, 413, 422) and _CONTEXT.search(detail)):
        return ContextOverflowError(
            f"{who}: the prompt does not fit the model's context ({code}{detail}); shorten the conversation "
            "or use a model with a longer context"
        )
    if isinstance(exc, errors.Timeout) or status == 408 or _timed_out_underneath(exc):
        return ModelTimeoutError(f"{who}: the provider timed out ({code}{detail})")
    if isinstance(exc, errors.RateLimitError) or status == 429:
        after = _retry_after(exc)
        wait = f"; it asked to retry after {after:g}s" if after is not None else ""
        return ModelRateLimitError(f"{who}: rate-limited by the provider ({code}{detail}){wait}", retry_after=after)
    if isinstance(exc, errors.AuthenticationError | errors.PermissionDeniedError) or status in (401, 403):
        return ModelAuthError(
            f"{who}: the provider rejected the credentials ({code}{detail}); check the API key "
            "(api_key_env) and that it may use this model"
        )
    if isinstance(exc, errors.APIConnectionError) or _connection_failed_underneath(exc):  # no HTTP answer at all
        return ModelUnavailableError(f"{who}: the connection to the provider failed ({detail})")
    if isinstance(exc, errors.ServiceUnavailableError | errors.InternalServerError | errors.BadGatewayError) or (
        status is not None and status >= 500
    ):
        return ModelUnavailableError(f"{who}: the provider is unavailable or failing ({code}{detail})")
    if isinstance(exc, errors.NotFoundError) or status == 404:
        return ModelError(
            f"{who}: the provider does not know this model or endpoint ({code}{detail}); check 'model' and 'api_base'"
        )
    if isinstance(exc, errors.BadRequestError | errors.UnprocessableEntityError) or status is not None:
        return ModelError(f"{who}: the provider refused the request ({code}{detail})")
    return ModelError(f"{who}: the call failed ({type(exc).__name__}: {detail})")


_CONTEXT = re.compile(r"context (length|window|size)|maximum context|too many tokens|prompt is too long", re.I)
_PREFIXES = re.compile(r"^(litellm\.\w+:\s*|\w+Error:\s*|\w+Exception\s*-\s*)+")


def _timed_out_underneath(exc: BaseException) -> bool:
    """Whether the failure was a timeout somewhere down the chain (httpx, aiohttp, asyncio name theirs so)."""
    return any(isinstance(e, TimeoutError) or _named(e, "Timeout") for e in _chain(exc))


def _connection_failed_underneath(exc: BaseException) -> bool:
    """Whether no HTTP answer came at all (LiteLLM reports a refused connection as a 500)."""
    return any(isinstance(e, ConnectionError) or _named(e, "ConnectionError", "ConnectError") for e in _chain(exc))


def _chain(exc: BaseException, depth: int = 8) -> Iterator[BaseException]:
    cause: BaseException | None = exc
    while cause is not None and depth > 0:
        yield cause
        cause, depth = cause.__cause__ or cause.__context__, depth - 1


def _named(exc: BaseException, *parts: str) -> bool:
    return any(part in cls.__name__ for cls in type(exc).__mro__ for part in parts)


def _detail(exc: BaseException, secret: str | None) -> str:
    text = getattr(exc, "message", None)
    text = text if isinstance(text, str) and text else str(exc)
    text = _PREFIXES.sub("", text.strip()) or type(exc).__name__
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (retry-after-ms or Retry-After), when it said so."""
    sources = (
        getattr(exc, "litellm_response_headers", None),  # where LiteLLM keeps the provider's headers
        getattr(exc, "headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    )
    for source in sources:
        if not source:
            continue
        headers = {str(k).lower(): str(v) for k, v in dict(source).items()}
        try:
            if "retry-after-ms" in headers:
                return max(float(headers["retry-after-ms"]) / 1000, 0.0)
            if "retry-after" in headers:
                value = headers["retry-after"].strip()
                try:
                    return max(float(value), 0.0)
                except ValueError:
                    when = email.utils.parsedate_to_datetime(value)
                    return max(when.timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, OverflowError):
            continue
    return None


def _rejects_json_schema(exc: BaseException) -> bool:
    """Whether a failure is the provider refusing ``response_format={"type": "json_schema"}``."""
    status = getattr(exc, "status_code", None)
    if status in (401, 403, 404, 408, 429) or "RateLimit" in type(exc).__name__:
        return False
    text = str(getattr(exc, "message", None) or exc).lower()
    return "json_schema" in text or "response_format" in text or "response format" in text


# -- plumbing ------------------------------------------------------------------------------------------


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: str = ""


@dataclass
class _Reply:
    """A reply as it is put together: whole, or from streamed deltas."""

    text: str = ""
    finish_reason: str | None = None
    calls: dict[int, _PartialCall] = field(default_factory=dict)

    def add_call(self, index: int, call_id: str | None, name: str | None, arguments: str | None) -> None:
        call = self.calls.setdefault(index, _PartialCall())
        call.id = call.id or call_id or None
        call.name = call.name or name or ""  # sent once, or repeated whole: never in pieces
        if isinstance(arguments, str):
            call.arguments += arguments
        elif arguments is not None:  # some providers hand back a parsed object
            call.arguments += json.dumps(arguments)


def _stops(alias: Any, request: tuple[str, ...]) -> list[str]:
    """The alias's own stop strings (``extra: {stop: ...}``, a string or a list), then the request's."""
    own = [alias] if isinstance(alias, str) else list(alias or ())
    return list(dict.fromkeys([*own, *request]))


def _to_openai(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.role == "tool":
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
    return out


def _usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    details = getattr(raw, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return Usage(
        prompt_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
        cached_tokens=int(cached or 0),
    )


_import_lock = threading.Lock()
_module: Any = None


async def _litellm() -> Any:
    """The litellm module, imported once, off the event loop (the first import takes seconds)."""
    return _module if _module is not None else await asyncio.to_thread(_import_litellm)


def _import_litellm() -> Any:
    global _module
    with _import_lock:
        if _module is None:
            # The bundled cost map: otherwise LiteLLM fetches one from the internet on import, which
            # stalls offline machines. A user's explicit setting wins.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            try:
                import litellm
            except ImportError:
                raise UserError("LiteLLM is not installed; run `pip install 'edgecrew[litellm]'`") from None
            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner with every error
            # LiteLLM gives its loggers plain-text handlers of their own; drop them so that its lines
            # go through the process's logging setup (JSON and redaction under `edgecrew serve`).
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                lg = logging.getLogger(name)
                lg.handlers.clear()
                lg.propagate = True
            _module = litellm
        return _module
