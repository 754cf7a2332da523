"""ScriptedModel: deterministic replies for tests and benchmarks, recording every call.

Replies come from a list (shared, or one list per agent), or from a function of the request. A reply
is a string (final text), ``{"json": {...}}`` (structured output), ``{"tool": name, "args": {...}}``
(one tool call), ``{"tool_calls": [...]}``, ``{"text": ...}``, or ``{"error": "unavailable"}`` (raises
that model error: unavailable, timeout, context_overflow, auth, rate_limit, invalid or error); any
reply may add ``delay`` seconds.
With ``record_path`` every call is also appended to a JSON-lines file, so a test can count calls made
by another process (the crash tests kill ``edgecrew run`` and count through this file).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecrew.domain.messages import Message, ModelRequest, ModelResponse, StreamDelta, ToolCall, Usage
from edgecrew.domain.stops import stopped_message
from edgecrew.errors import (
    ContextOverflowError,
    InvalidOutputError,
    ModelAuthError,
    ModelError,
    ModelRateLimitError,
    ModelTimeoutError,
    ModelUnavailableError,
)

Reply = str | Mapping[str, Any]
ReplyFunction = Callable[[ModelRequest, int], Reply]


@dataclass(frozen=True)
class RecordedCall:
    index: int
    agent: str
    step: str
    request: ModelRequest


class ScriptedModel:
    """A model that answers from a script; ``calls`` holds every request it received."""

    def __init__(
        self,
        replies: Sequence[Reply] | Mapping[str, Sequence[Reply]] | ReplyFunction,
        *,
        name: str = "scripted",
        delay: float = 0.0,
        record_path: str | Path | None = None,
        cycle: bool = False,
    ) -> None:
        self.name = name
        self._replies = replies
        self._delay = delay
        self._record_path = Path(record_path) if record_path else None
        self._cycle = cycle
        self._lock = threading.Lock()
        self._seen: dict[str, list[str]] = {}  # script name -> distinct call keys, in first-seen order
        self._loaded = False
        self.calls: list[RecordedCall] = []

    def _position(self, script: str, req: ModelRequest, index: int) -> int:
        """The Nth distinct call of a script gets the Nth reply; a retried call (same step) the same one.

        Keys already in the record file count too, so a run resumed in another process continues
        the script where the killed process left it instead of starting over.
        """
        if not self._loaded and self._record_path is not None and self._record_path.exists():
            for line in self._record_path.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry["phase"] == "start" and entry["step"]:
                    name = entry["agent"] if isinstance(self._replies, Mapping) else ""
                    keys = self._seen.setdefault(name, [])
                    if entry["step"] not in keys:
                        keys.append(entry["step"])
        self._loaded = True
        key = req.metadata.get("step") or f"#call{index}"
        keys = self._seen.setdefault(script, [])
        if key not in keys:
            keys.append(key)
        return keys.index(key)

    def _next_reply(self, req: ModelRequest, index: int) -> Reply:
        agent = req.metadata.get("agent", "")
        if callable(self._replies):
            return self._replies(req, index)
        if isinstance(self._replies, Mapping):
            script: Sequence[Reply] | None = self._replies.get(agent) or self._replies.get("*")
            if script is None:
                raise ModelError(f"scripted model '{self.name}' has no replies for agent '{agent}'")
            position = self._position(agent, req, index)
        else:
            script, position = self._replies, self._position("", req, index)
        if not script:
            raise ModelError(f"scripted model '{self.name}' has an empty script")
        if position >= len(script):
            if not self._cycle:
                raise ModelError(
                    f"scripted model '{self.name}' ran out of replies (call {position + 1} for agent '{agent}')"
                )
            position %= len(script)
        return script[position]

    def _record(self, req: ModelRequest, index: int, phase: str) -> None:
        if self._record_path is None:
            return
        line = json.dumps(
            {
                "index": index,
                "phase": phase,
                "agent": req.metadata.get("agent", ""),
                "step": req.metadata.get("step", ""),
                "run": req.metadata.get("run", ""),
                "pid": os.getpid(),
            }
        )
        with open(self._record_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _take(self, req: ModelRequest) -> tuple[int, Reply, float]:
        """Record the call and pick its reply and delay."""
        with self._lock:
            index = len(self.calls)
            self.calls.append(RecordedCall(index, req.metadata.get("agent", ""), req.metadata.get("step", ""), req))
            reply = self._next_reply(req, index)
        self._record(req, index, "start")
        delay = float(reply.get("delay", self._delay)) if isinstance(reply, Mapping) else self._delay
        return index, reply, delay

    def _respond(self, req: ModelRequest, index: int, reply: Reply, started: float) -> ModelResponse:
        try:
            message = stopped_message(_to_message(reply, index), req)
        except InvalidOutputError as exc:  # an unusable reply costs its tokens and time, as a real model's does
            exc.spent = ModelResponse(
                message=Message(
                    role="assistant", content=str(reply.get("message", "")) if isinstance(reply, Mapping) else ""
                ),
                usage=Usage(prompt_tokens=sum(len(m.content.split()) for m in req.messages), completion_tokens=1),
                model=self.name,
                latency_s=time.perf_counter() - started,
            )
            raise
        self._record(req, index, "end")
        completion = max(1, len((message.content or json.dumps([c.arguments for c in message.tool_calls])).split()))
        prompt = sum(len(m.content.split()) for m in req.messages)
        return ModelResponse(
            message=message,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
            model=self.name,
            latency_s=time.perf_counter() - started,
            time_to_first_token_s=time.perf_counter() - started,
        )

    async def request(self, req: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        index, reply, delay = self._take(req)
        if delay > 0:
            await asyncio.sleep(delay)
        return self._respond(req, index, reply, started)

    async def stream(self, req: ModelRequest) -> AsyncIterator[StreamDelta]:
        """Like a request, but a text or JSON reply with a ``delay`` comes word by word across it, as
        a real model's would (a tool call or an error comes whole, at the end)."""
        started = time.perf_counter()
        index, reply, delay = self._take(req)
        try:
            text = "" if req.tools else (stopped_message(_to_message(reply, index), req).content or "")
        except ModelError:
            text = ""
        words = text.split(" ")
        if delay > 0 and len(words) > 1:
            for i, word in enumerate(words):
                await asyncio.sleep(delay / len(words))
                yield StreamDelta(text=word if i == 0 else " " + word)
        else:
            if delay > 0:
                await asyncio.sleep(delay)
            if text:
                yield StreamDelta(text=text)
        response = self._respond(req, index, reply, started)
        if req.tools and response.message.content:
            yield StreamDelta(text=response.message.content)
        yield StreamDelta(response=response)


_ERRORS: dict[str, type[ModelError]] = {
    "unavailable": ModelUnavailableError,
    "timeout": ModelTimeoutError,
    "context_overflow": ContextOverflowError,
    "auth": ModelAuthError,
    "rate_limit": ModelRateLimitError,
    "invalid": InvalidOutputError,
    "error": ModelError,
}


def _to_message(reply: Reply, index: int) -> Message:
    if isinstance(reply, str):
        return Message(role="assistant", content=reply)
    if "error" in reply:
        kind = str(reply["error"])
        if kind not in _ERRORS:
            raise ModelError(
                f"scripted reply {index + 1}: unknown error kind '{kind}'; use one of {', '.join(_ERRORS)}"
            )
        raise _ERRORS[kind](str(reply.get("message", f"scripted {kind} error")))
    if "json" in reply:
        return Message(role="assistant", content=json.dumps(reply["json"]))
    if "tool" in reply:
        call = ToolCall(id=f"call_{index}_0", name=str(reply["tool"]), arguments=dict(reply.get("args") or {}))
        return Message(role="assistant", content=str(reply.get("text", "")), tool_calls=(call,))
    if "tool_calls" in reply:
        calls = tuple(
            ToolCall(
                id=f"call_{index}_{i}", name=str(c["name"]), arguments=dict(c.get("args") or c.get("arguments") or {})
            )
            for i, c in enumerate(reply["tool_calls"])
        )
        return Message(role="assistant", content=str(reply.get("text", "")), tool_calls=calls)
    if "text" in reply:
        return Message(role="assistant", content=str(reply["text"]))
    raise ModelError(f"scripted reply {index + 1} has none of text/json/tool/tool_calls: {dict(reply)!r}")
