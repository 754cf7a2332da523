"""One agent turn: model call, the tool calls it asks for, results fed back, until a final output.

The loop is written against :class:`TurnIO`, so the same code runs durably (each call recorded: in the
call journal, or as a DBOS step in a cluster) and on the in-memory fakes of :mod:`edgecrew.engine.fakes`
in the fast tests. It ends with an :class:`Outcome`: ``final`` (output valid against the agent's schema
when it has one),
``max_steps``, ``loop_detected`` (the same tool call with the same arguments a third time),
``tool_errors``, ``timeout``, ``invalid_output`` or ``error``.

``timeout_s`` bounds the agent's own work only: a tool call that waits for a person's approval
reports how long it waited (:attr:`Observation.waited_s`), and the turn's clock leaves that out.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgecrew.domain.events import ToolsSelected
from edgecrew.domain.messages import (
    MODEL_DEFAULT,
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolDefinition,
    Usage,
)
from edgecrew.domain.runs import Outcome
from edgecrew.domain.specs import AgentSpec
from edgecrew.domain.transcript import latest_message, reply_stops
from edgecrew.tools.retrieval import rank_tools

LOOP_LIMIT = 3  # identical tool calls allowed before the loop guard stops the turn


@dataclass(frozen=True)
class CallResult:
    """A recorded model call: a response, or an error (kind: timeout | invalid | error); ``usage``: what a
    call without a usable response spent all the same (an invalid reply's tokens), when known."""

    response: ModelResponse | None = None
    error: str | None = None
    kind: str = ""
    usage: Usage | None = None


@dataclass(frozen=True)
class Observation:
    """What a tool call returned to the agent."""

    content: str
    is_error: bool = False
    waited_s: float = 0.0  # time spent waiting for a person's decision: not the agent's time
    denied: str | None = None  # a person denied the call, with this note ("" when none): it never ran


class TurnClock:
    """The agent's own time in a turn: wall time since it began, less the time spent waiting for people."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.started = time.monotonic()
        self.excluded_s = 0.0

    def exclude(self, seconds: float) -> None:
        self.excluded_s += max(seconds, 0.0)

    def remaining(self) -> float:
        return self.limit_s - (time.monotonic() - self.started - self.excluded_s)


class TurnIO(Protocol):
    async def call_model(self, key: str, agent: AgentSpec, request: ModelRequest, timeout_s: float) -> CallResult: ...

    async def call_tool(
        self, key: str, agent: AgentSpec, call: ToolCall, timeout_s: float, reason: str
    ) -> Observation: ...

    def tool_definitions(self, agent: AgentSpec) -> Sequence[ToolDefinition]: ...

    def canonical_tool(self, name: str) -> str: ...

    def checkpoint(self, name: str) -> None: ...

    def tools_selected(self, key: str, agent: AgentSpec, selected: ToolsSelected) -> None:
        """Record which tools one model call was offered (the agent's ``tools_per_step``)."""
        ...

    async def recall_memory(self, key: str, agent: AgentSpec, query: str) -> str | None:
        """The agent's long-term memories closest to ``query`` as a block for its prompt (None: none),
        recorded so a replay reads the same (the agent's ``memory.recall``)."""
        ...


@dataclass(frozen=True)
class TurnInput:
    """What one visit is given: the text a model agent reads, and the facts templates read."""

    context: str
    task: str = ""
    outputs: Mapping[str, Any] = field(default_factory=dict)  # each agent's latest output so far

    def scope(self) -> dict[str, Any]:
        """The names a tool agent's arguments and a template agent's template may read."""
        return {"task": self.task, "outputs": self.outputs}


@dataclass
class TurnResult:
    outcome: Outcome
    output: dict[str, Any]
    error: str | None = None
    messages: list[Message] = field(default_factory=list)
    model_calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "output": self.output,
            "error": self.error,
            "messages": [m.to_dict() for m in self.messages],
            "model_calls": self.model_calls,
            "tool_calls": self.tool_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnResult:
        return cls(
            outcome=Outcome(data["outcome"]),
            output=data["output"],
            error=data.get("error"),
            messages=[Message.from_dict(m) for m in data.get("messages", [])],
            model_calls=data.get("model_calls", 0),
            tool_calls=data.get("tool_calls", 0),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
        )


PLAN_FIRST = (
    "Work plan-first: before acting, decide the few steps you will take, then follow them. "
    "Use a tool only when it is needed, and never repeat a call that already gave you its result."
)


def system_prompt(agent: AgentSpec) -> str:
    """The agent's system prompt: its own text, plan-first for tool users, the shape of its answer."""
    parts = [p for p in (agent.preamble.strip(), agent.system.strip()) if p]
    if agent.plan_first and agent.tools:
        parts.append(PLAN_FIRST)
    if agent.output_schema is not None:
        # A compact shape reads better than a full JSON Schema for small models; decoding is
        # constrained to the schema anyway when the backend supports it.
        parts.append("Answer only with JSON shaped like: " + schema_shape(agent.output_schema))
    return "\n\n".join(parts)


def schema_shape(schema: Any) -> str:
    """A one-line sketch of a JSON Schema: {"verdict": "approve" | "revise", "notes": string}."""
    if not isinstance(schema, dict):
        return "value"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        fields = ", ".join(f'"{k}": {schema_shape(v)}' for k, v in (schema.get("properties") or {}).items())
        return "{" + fields + "}"
    if kind == "array":
        return "[" + schema_shape(schema.get("items", {})) + ", ...]"
    return str(kind) if isinstance(kind, str) else "value"


def example_messages(agent: AgentSpec) -> list[Message]:
    """The agent's solved examples as earlier turns, right after its system prompt: the same for every
    turn of the agent, so they stay in the prompt prefix whose KV state is reused."""
    turns: list[Message] = []
    for example in agent.examples:
        answer = example.output if isinstance(example.output, str) else json.dumps(example.output)
        turns += [Message("user", example.input), Message("assistant", answer)]
    return turns


def offered_tools(
    agent: AgentSpec, allowed: tuple[ToolDefinition, ...], context: str, last: Message, io: TurnIO, key: str
) -> tuple[ToolDefinition, ...]:
    """The tools one model call is offered: all the agent may call, or with ``tools_per_step`` the
    most relevant to what the agent has read (its input, and a tool's result when one just came)."""
    k = agent.tools_per_step
    if not k or len(allowed) <= k:
        return allowed
    query = context + ("\n" + last.content if last.role == "tool" else "")
    ranked = rank_tools(query, allowed, k)
    io.tools_selected(
        key,
        agent,
        ToolsSelected(
            tools=tuple(r.item.name for r in ranked),
            scores=tuple(round(r.score, 3) for r in ranked),
            allowed=len(allowed),
        ),
    )
    return tuple(r.item for r in ranked)


FINAL_NUDGE = "This is your last step: no more tool calls. Answer now with what you have found."


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))


_NUDGE_WORDS = f" {_words(FINAL_NUDGE)} "


def _repeats_nudge(text: str) -> bool:
    """Whether ``text`` is :data:`FINAL_NUDGE`, or four or more of its words in a row and nothing else."""
    words = _words(text)
    return len(words.split()) >= 4 and f" {words} " in _NUDGE_WORDS


async def run_turn(agent: AgentSpec, context: str, io: TurnIO, key: str, metadata: dict[str, str]) -> TurnResult:
    """Run one agent turn; ``key`` names the turn, and every call key is derived from it."""
    stop = reply_stops(context)  # a chat's transcript: the reply ends where a new turn would start
    if agent.memory.recall > 0:
        # Recalled memories open the user message: the system prompt and examples stay a shared prefix.
        # A chat's input is the conversation so far, then the latest message: memories close to that
        # message are wanted (the whole conversation diluted the search after the first turn).
        block = await io.recall_memory(f"{key}.mem", agent, latest_message(context))
        if block:
            context = f"{block}\n\n{context}"
    messages = [Message("system", system_prompt(agent)), *example_messages(agent), Message("user", context)]
    result = TurnResult(outcome=Outcome.MAX_STEPS, output={}, messages=messages)
    allowed = tuple(io.tool_definitions(agent))
    seen: Counter[tuple[str, str]] = Counter()
    tool_errors = 0
    clock = TurnClock(agent.limits.timeout_s)
    last_text = ""
    last_problem = ""  # why the latest reply was not usable, for the error when no reply ever is
    for step in range(agent.limits.max_steps):
        remaining = clock.remaining()
        if remaining <= 0:
            return _end(result, Outcome.TIMEOUT, f"turn ran past {agent.limits.timeout_s:g}s")
        tools: tuple[ToolDefinition, ...] = ()
        if allowed and step > 0 and step == agent.limits.max_steps - 1:
            # Small models keep calling tools: the last call offers none, so the turn ends with an
            # answer built from what the tools returned instead of running out of steps.
            messages.append(Message("user", FINAL_NUDGE))
        elif allowed:
            tools = offered_tools(agent, allowed, context, messages[-1], io, f"{key}.m{step}")
        request = ModelRequest(
            messages=tuple(messages),
            tools=tools,
            output_schema=dict(agent.output_schema) if agent.output_schema is not None else None,
            max_tokens=agent.limits.max_tokens,
            temperature=MODEL_DEFAULT if agent.temperature is None else agent.temperature,
            stop=stop,
            metadata={**metadata, "step": f"{key}.m{step}"},
        )
        io.checkpoint("before_model_call")
        call = await io.call_model(f"{key}.m{step}", agent, request, remaining)
        io.checkpoint("after_model_call")
        result.model_calls += 1
        spent = call.response.usage if call.response is not None else call.usage
        if spent is not None:
            result.prompt_tokens += spent.prompt_tokens
            result.completion_tokens += spent.completion_tokens
        if call.response is None:
            if call.kind == "timeout":
                return _end(result, Outcome.TIMEOUT, call.error)
            if call.kind == "invalid":
                # Malformed output is the model's mistake: tell it and let it try again.
                last_problem = call.error or "malformed reply"
                messages.append(Message("user", f"Your last reply was not usable: {call.error}. Try again."))
                continue
            return _end(result, Outcome.ERROR, call.error)
        reply = call.response.message
        messages.append(reply)
        if reply.tool_calls:
            last_problem = ""
            for j, tool_call in enumerate(reply.tool_calls):
                signature = (
                    io.canonical_tool(tool_call.name),
                    json.dumps(tool_call.arguments, sort_keys=True),
                )
                seen[signature] += 1
                if seen[signature] >= LOOP_LIMIT:
                    return _end(
                        result,
                        Outcome.LOOP_DETECTED,
                        f"'{tool_call.name}' called {LOOP_LIMIT} times with the same arguments",
                    )
                observation = await io.call_tool(
                    f"{key}.m{step}.t{j}", agent, tool_call, max(clock.remaining(), 0.001), reply.content
                )
                clock.exclude(observation.waited_s)
                result.tool_calls += 1
                messages.append(Message("tool", observation.content, tool_call_id=tool_call.id, name=tool_call.name))
                if observation.is_error:
                    tool_errors += 1
                    if tool_errors >= agent.limits.max_tool_errors:
                        return _end(
                            result, Outcome.TOOL_ERRORS, f"{tool_errors} failed tool calls; last: {observation.content}"
                        )
            continue
        if messages[-2].content == FINAL_NUDGE and _repeats_nudge(reply.content):
            # A small model may write the instruction back (SmolLM2: "No more tool calls. Answer now
            # with what you have found."): that is the engine's text, never an answer to show.
            last_problem = "it repeated the last-step instruction instead of answering"
            break
        last_text = reply.content
        output, problem = parse_output(agent, reply.content)
        if problem is None:
            result.output = output
            return _end(result, Outcome.FINAL, None)
        last_problem = problem
        messages.append(
            Message(
                "user",
                f"Your answer does not match the required schema: {problem}. "
                "Reply again with only the corrected JSON object.",
            )
        )
        result.outcome = Outcome.INVALID_OUTPUT
    outcome = result.outcome if result.outcome == Outcome.INVALID_OUTPUT else Outcome.MAX_STEPS
    result.output = {"text": last_text} if agent.output_schema is None else {}
    error = f"no final output within {agent.limits.max_steps} model calls"
    if last_problem:
        error += f"; the last reply: {last_problem}"
    return _end(result, outcome, error)


def parse_output(agent: AgentSpec, text: str) -> tuple[dict[str, Any], str | None]:
    """The agent's final output as a dict, or the reason it is not acceptable."""
    if agent.output_schema is None:
        return {"text": text}, None
    try:
        data = json.loads(_strip_fences(text))
    except json.JSONDecodeError as exc:
        return {}, f"not JSON ({exc.msg})"
    import jsonschema  # here, not at the top: only an agent with an output_schema needs it

    errors = sorted(jsonschema.Draft202012Validator(dict(agent.output_schema)).iter_errors(data), key=str)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        return {}, errors[0].message + (f" at {where}" if where else "")
    return data, None


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


def _end(result: TurnResult, outcome: Outcome, error: str | None) -> TurnResult:
    result.outcome = outcome
    result.error = error
    return result
