"""Several tool calls in one model reply: the agent loop runs each, in order, as its own tool step.

The loop already iterated over ``Message.tool_calls``; these tests pin that down for replies of
several calls, on the fakes (milliseconds), on DBOS (each call a durable step with its own event),
and from the embedded model's envelope (``{"tool_calls": [...]}``, parsed by ``parse_reply``) through
the engine, so the grammar's shape and the loop agree.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from edgecrew.domain.messages import ModelRequest, ModelResponse, StreamDelta
from edgecrew.domain.runs import Outcome
from edgecrew.domain.specs import AgentSpec, Limits
from edgecrew.engine.agent import run_turn
from edgecrew.engine.fakes import FakeTurnIO
from edgecrew.models.base import stream_by_request
from edgecrew.models.llamacpp_grammar import parse_reply
from edgecrew.models.scripted import ScriptedModel
from edgecrew.tools.base import ToolRegistry, spec_from_function
from edgecrew.tools.builtins import register_builtins
from tests.unit.engine_helpers import run_team, teardown

WORKER = AgentSpec("worker", "use tools", model="fake", tools=("echo", "fail"), limits=Limits(max_steps=4))


def echo(text: str) -> str:
    """Echo text back."""
    return f"echo:{text}"


def fail(path: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot read {path}")


def calls(*pairs: tuple[str, dict[str, str]]) -> dict[str, list[dict[str, object]]]:
    return {"tool_calls": [{"name": name, "args": args} for name, args in pairs]}


async def test_each_call_of_a_reply_runs_in_order_and_its_result_goes_back_by_id() -> None:
    io = FakeTurnIO([calls(("echo", {"text": "a"}), ("echo", {"text": "b"})), "done"], (echo, fail))
    result = await run_turn(WORKER, "ship it", io, "v000.worker", {"agent": "worker"})
    assert (result.outcome, result.model_calls, result.tool_calls) == (Outcome.FINAL, 2, 2)
    assert [(c.key, c.call.arguments["text"]) for c in io.tool_calls] == [
        ("v000.worker.m0.t0", "a"),
        ("v000.worker.m0.t1", "b"),
    ]
    *_, reply, first, second = io.requests[1].messages
    assert [c.id for c in reply.tool_calls] == ["call_0_0", "call_0_1"]
    assert [(m.role, m.content, m.tool_call_id) for m in (first, second)] == [
        ("tool", "echo:a", "call_0_0"),
        ("tool", "echo:b", "call_0_1"),
    ]


async def test_a_failed_call_does_not_stop_the_next_call_of_the_same_reply() -> None:
    io = FakeTurnIO([calls(("fail", {"path": "x"}), ("echo", {"text": "b"})), "done"], (echo, fail))
    result = await run_turn(WORKER, "ship it", io, "v000.worker", {"agent": "worker"})
    assert result.outcome == Outcome.FINAL
    assert [(c.call.name, c.observation.is_error) for c in io.tool_calls] == [("fail", True), ("echo", False)]


async def test_failed_calls_of_one_reply_count_towards_the_agents_tool_error_limit() -> None:
    strict = AgentSpec("worker", "use tools", model="fake", tools=("fail",), limits=Limits(max_tool_errors=2))
    io = FakeTurnIO([calls(("fail", {"path": "a"}), ("fail", {"path": "b"}), ("fail", {"path": "c"}))], (fail,))
    result = await run_turn(strict, "read", io, "v000.worker", {})
    assert result.outcome == Outcome.TOOL_ERRORS and len(io.tool_calls) == 2  # the third never runs


async def test_the_loop_guard_counts_identical_calls_inside_one_reply() -> None:
    same = ("echo", {"text": "same"})
    io = FakeTurnIO([calls(same, same, same)], (echo,))
    result = await run_turn(WORKER, "ship it", io, "v000.worker", {})
    assert result.outcome == Outcome.LOOP_DETECTED and len(io.tool_calls) == 2


class EnvelopeModel:
    """Replies in the embedded model's JSON envelope, read by the embedded model's own parser."""

    name = "envelope"

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)

    async def request(self, req: ModelRequest) -> ModelResponse:
        return ModelResponse(message=parse_reply(self.texts.pop(0), req), model=self.name)

    def stream(self, req: ModelRequest) -> AsyncIterator[StreamDelta]:
        return stream_by_request(self, req)


async def test_the_embedded_models_envelope_of_several_calls_runs_each_call() -> None:
    envelope = {"tool_calls": [{"tool": "echo", "arguments": {"text": t}} for t in ("paris", "london")]}
    final = json.dumps({"final": "Paris and London are echoed."})
    io = FakeTurnIO(EnvelopeModel([json.dumps(envelope), final]), (echo,))
    result = await run_turn(WORKER, "echo two cities", io, "v000.worker", {})
    assert result.output == {"text": "Paris and London are echoed."}
    assert [c.observation.content for c in io.tool_calls] == ["echo:paris", "echo:london"]


# -- durably, on DBOS --------------------------------------------------------------------------------

TOOLED = """
name: tooled
agents:
  worker:
    model: fake
    system: use tools
    tools: [echo]
    limits: {max_steps: 3}
graph:
  start: worker
  edges: [{from: worker, to: end}]
"""


@pytest.fixture
def _dbos() -> Iterator[None]:
    yield
    teardown()


@pytest.mark.usefixtures("_dbos")
async def test_each_call_of_a_reply_is_its_own_durable_step_and_event() -> None:
    seen: list[str] = []
    registry = ToolRegistry()
    register_builtins(registry)

    def echo(text: str) -> str:
        """Echo text back."""
        seen.append(text)
        return f"echo:{text}"

    registry.register(spec_from_function(echo))
    model = ScriptedModel([calls(("echo", {"text": "a"}), ("echo", {"text": "b"})), "done"])
    run, rt = await run_team(TOOLED, model, tools=registry)
    assert run.status == "succeeded" and seen == ["a", "b"]
    events = [e for e in rt.store.events(run.id) if e.type == "tool_called"]
    assert [(e.key.rsplit(".", 2)[-2], e.data["arguments"]) for e in events] == [
        ("t0", {"text": "a"}),
        ("t1", {"text": "b"}),
    ]
    fed = model.calls[1].request.messages[-2:]
    assert [(m.role, m.content) for m in fed] == [("tool", "echo:a"), ("tool", "echo:b")]
