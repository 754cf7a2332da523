"""The engine's logic on its in-memory fakes: graph routing and the agent turn loop, without DBOS.

The same behaviours run durably in test_engine.py (integration); here each test takes milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from edgecrew.domain.messages import ToolCall
from edgecrew.domain.runs import Outcome
from edgecrew.domain.specs import AgentSpec, Limits
from edgecrew.engine.agent import FINAL_NUDGE, PLAN_FIRST, Observation, TurnResult, run_turn
from edgecrew.engine.fakes import FakeTurnIO, FakeTurnRunner
from edgecrew.engine.graph import MAX_CONTEXT_CHARS, GraphResult
from edgecrew.models.scripted import ScriptedModel
from edgecrew.specs.loader import load_team_text
from edgecrew.tools.base import ToolSpec, spec_from_function
from tests.teams import CHAIN, FAN, JOIN_NEVER, REVIEW

# -- the graph -------------------------------------------------------------------------------------


async def run(yaml_text: str, model: Any, task: str = "do it") -> tuple[GraphResult, FakeTurnRunner]:
    runner = FakeTurnRunner(load_team_text(yaml_text), FakeTurnIO(model))
    return await runner.run(task), runner


async def test_chain_runs_each_agent_in_order_and_shows_it_the_earlier_outputs() -> None:
    result, runner = await run(CHAIN, {"a": ["A"], "b": ["B"], "c": ["C"]}, task="say letters")
    assert (result.ok, result.output, result.visits) == (True, {"text": "C"}, 3)
    assert runner.batches == [["v000.a"], ["v001.b"], ["v002.c"]]
    assert runner.context("v000.a") == "Task: say letters"
    assert runner.context("v002.c") == "Task: say letters\n\nOutput of a:\nA\n\nOutput of b:\nB"
    assert [(r.agent, r.edge, r.targets) for r in runner.routes] == [
        ("a", "a -> b", ("b",)),
        ("b", "b -> c", ("c",)),
        ("c", "c -> end", ("end",)),
    ]
    assert runner.preloads == [["b"], ["c"], []]  # who may run next, while the current agent works
    assert [r.metadata["step"] for r in runner.io.requests] == ["v000.a.m0", "v001.b.m0", "v002.c.m0"]


async def test_conditional_edge_loops_until_the_critic_approves() -> None:
    replies = {
        "writer": ["draft 1", "draft 2"],
        "critic": [{"json": {"verdict": "revise"}}, {"json": {"verdict": "approve"}}],
    }
    result, runner = await run(REVIEW, replies)
    assert result.ok and result.output == {"verdict": "approve"}
    assert runner.path == ["writer", "critic", "writer", "critic"]
    # the board keeps each agent's latest output, most recent last, structured outputs as JSON
    assert runner.context("v002.writer").endswith(
        'Output of writer:\ndraft 1\n\nOutput of critic:\n{"verdict": "revise"}'
    )
    assert runner.context("v003.critic").count("Output of") == 2 and "draft 2" in runner.context("v003.critic")


async def test_max_loops_bounds_a_critic_that_never_approves() -> None:
    model = ScriptedModel({"writer": ["draft"], "critic": [{"json": {"verdict": "revise"}}]}, cycle=True)
    result, runner = await run(REVIEW, model)
    assert result.ok and result.output == {"verdict": "revise"}
    assert runner.path == ["writer", "critic"] * 3  # the first draft, then two bounded revisions
    assert [(r.edge, r.targets) for r in runner.routes if r.agent == "critic"] == [
        ("critic -> writer when verdict == 'revise'", ("writer",)),
        ("critic -> writer when verdict == 'revise'", ("writer",)),
        ("critic -> end", ("end",)),
    ]


async def test_max_visits_stops_a_run_before_its_loops_are_spent() -> None:
    spec = REVIEW.replace("name: review\n", "name: review\nlimits: {max_visits: 3}\n")
    model = ScriptedModel({"writer": ["draft"], "critic": [{"json": {"verdict": "revise"}}]}, cycle=True)
    result, runner = await run(spec, model)
    assert not result.ok and result.error == "run exceeded the team's max_visits (3)"
    assert runner.path == ["writer", "critic", "writer"] and result.visits == 3


async def test_fan_out_runs_branches_together_and_the_join_waits_for_both() -> None:
    result, runner = await run(FAN, {"plan": ["P"], "left": ["L"], "right": ["R"], "merge": ["M"]})
    assert result.ok and result.output == {"text": "M"}
    assert runner.batches == [["v000.plan"], ["v001.left", "v002.right"], ["v003.merge"]]  # one batch runs at once
    assert runner.context("v003.merge").count("Output of") == 3
    assert [r.targets for r in runner.routes if r.agent in ("left", "right")] == [("merge",), ("merge",)]
    assert runner.preloads[:2] == [["left", "right"], ["merge"]]


async def test_a_join_that_can_never_complete_fails_the_run() -> None:
    replies = {"plan": [{"json": {"go": "left"}}], "left": ["L"], "right": ["R"], "merge": ["M"]}
    result, runner = await run(JOIN_NEVER, replies)
    assert not result.ok
    assert result.error == (
        "join into 'merge' never completed: still waiting for right (a condition routed it elsewhere)"
    )
    assert runner.path == ["plan", "left"]


async def test_an_output_no_edge_matches_fails_with_a_clear_error() -> None:
    spec = REVIEW.replace(
        "    - {from: critic, to: end}\n", "    - {from: critic, to: end, when: \"verdict == 'approve'\"}\n"
    )
    model = ScriptedModel({"writer": ["d"], "critic": [{"json": {"verdict": "revise"}}]}, cycle=True)
    result, runner = await run(spec, model)
    assert not result.ok and result.output == {"verdict": "revise"}
    assert (result.error or "").startswith("""no edge from 'critic' matched its output {"verdict": "revise"}""")
    assert runner.path == ["writer", "critic"] * 3


async def test_a_turn_that_does_not_end_final_fails_the_run_there() -> None:
    result, runner = await run(CHAIN, {"a": ["A"], "b": [{"error": "unavailable", "message": "server down"}]})
    assert not result.ok and result.visits == 2 and runner.path == ["a", "b"]
    assert result.error == "agent 'b' (v001.b) ended with error: server down"


SPLIT = """\
name: split
agents: {plan: {model: fake, system: plan}, left: {model: fake, system: left}, right: {model: fake, system: right}}
graph: {start: plan, edges: [{from: plan, to: [left, right]}]}  # left and right have no edges: each ends the run
"""


async def test_the_run_output_is_the_named_agent_or_every_final_output() -> None:
    named, _ = await run(
        CHAIN.replace("name: chain\n", "name: chain\noutput: a\n"), {"a": ["A"], "b": ["B"], "c": ["C"]}
    )
    assert named.ok and named.output == {"text": "A"}
    result, runner = await run(SPLIT, {"plan": ["P"], "left": ["L"], "right": ["R"]})
    assert result.ok and result.output == {"left": {"text": "L"}, "right": {"text": "R"}}
    assert [(r.agent, r.edge, r.targets) for r in runner.routes][1:] == [
        ("left", None, ("end",)),
        ("right", None, ("end",)),
    ]


async def test_long_outputs_are_cut_in_the_next_agents_context() -> None:
    _, runner = await run(CHAIN, {"a": ["x" * 3000], "b": ["B"], "c": ["C"]})
    shown = runner.context("v001.b").split("Output of a:\n")[1]
    assert shown == "x" * MAX_CONTEXT_CHARS + " [...]"


# -- the agent turn --------------------------------------------------------------------------------


def echo(text: str) -> str:
    """Echo text back."""
    return f"echo:{text}"


def broken(path: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot read {path}")


async def nap(seconds: float) -> str:
    """Rest a while."""
    await asyncio.sleep(seconds)
    return "rested"


def deploy(target: str) -> str:
    """Deploy to a target."""
    return f"deployed {target}"


WORKER = AgentSpec("worker", "use tools", model="fake", tools=("echo",), limits=Limits(max_steps=5))
JUDGE = AgentSpec(
    "judge",
    "judge",
    model="fake",
    output_schema={
        "type": "object",
        "properties": {"score": {"type": "integer", "maximum": 10}},
        "required": ["score"],
    },
    limits=Limits(max_steps=3),
)


async def turn(
    agent: AgentSpec, model: Any, tools: Sequence[Any] = (echo,), **kw: Any
) -> tuple[TurnResult, FakeTurnIO]:
    io = FakeTurnIO(model, tools, **kw)
    return await run_turn(agent, "ship it", io, f"v000.{agent.name}", {"agent": agent.name}), io


async def test_a_text_answer_ends_the_turn_final() -> None:
    result, io = await turn(WORKER, ["done"])
    assert (result.outcome, result.output, result.error, result.model_calls) == (
        Outcome.FINAL,
        {"text": "done"},
        None,
        1,
    )
    assert [m.role for m in result.messages] == ["system", "user", "assistant"]
    assert result.messages[0].content == f"use tools\n\n{PLAN_FIRST}" and result.messages[1].content == "ship it"
    assert result.prompt_tokens > 0 and result.completion_tokens == 1
    assert io.checkpoints == ["before_model_call", "after_model_call"]
    assert [t.name for t in io.requests[0].tools] == ["echo"]


async def test_tool_results_are_fed_back_to_the_model() -> None:
    result, io = await turn(WORKER, [{"tool": "echo", "args": {"text": "hi"}}, "done"])
    assert result.outcome == Outcome.FINAL and (result.model_calls, result.tool_calls) == (2, 1)
    [call] = io.tool_calls
    assert (call.key, call.observation.content, call.observation.is_error) == ("v000.worker.m0.t0", "echo:hi", False)
    fed = io.requests[1].messages[-1]
    assert (fed.role, fed.content, fed.name, fed.tool_call_id) == ("tool", "echo:hi", "echo", "call_0_0")


async def test_bad_arguments_and_unknown_or_refused_tools_become_observations() -> None:
    replies = [
        {"tool": "echo", "args": {"wrong": 1}},
        {"tool": "deploy", "args": {"target": "prod"}},  # registered, but not on the worker's allow-list
        {"tool": "nosuch", "args": {}},
        {"tool": "ECHO", "args": {"text": "ok"}},  # names are matched loosely
        "finished",
    ]
    patient = replace(WORKER, limits=Limits(max_steps=5, max_tool_errors=4))
    result, io = await turn(patient, replies, (echo, deploy))
    assert result.outcome == Outcome.FINAL, result.error
    seen = [c.observation.content for c in io.tool_calls]
    assert "invalid arguments for echo" in seen[0] and "text" in seen[0]
    assert seen[1] == "error: tool 'deploy' is not allowed for agent 'worker'; allowed: echo"
    assert seen[2] == "error: there is no tool 'nosuch'; allowed: echo"
    assert seen[3] == "echo:ok"


async def test_too_many_failed_tool_calls_end_the_turn_with_tool_errors() -> None:
    agent = AgentSpec("reader", "read", tools=("broken",), limits=Limits(max_tool_errors=2))
    replies = [{"tool": "broken", "args": {"path": f"f{i}"}} for i in range(5)]
    result, _ = await turn(agent, replies, (broken,))
    assert result.outcome == Outcome.TOOL_ERRORS and result.model_calls == 2
    assert result.error == "2 failed tool calls; last: error: tool 'broken' failed: ValueError: cannot read f1"


async def test_the_third_identical_tool_call_ends_the_turn_with_loop_detected() -> None:
    result, io = await turn(WORKER, ScriptedModel([{"tool": "echo", "args": {"text": "same"}}], cycle=True))
    assert result.outcome == Outcome.LOOP_DETECTED
    assert result.error == "'echo' called 3 times with the same arguments"
    assert len(io.tool_calls) == 2  # the third identical call never runs


async def test_a_model_that_keeps_calling_tools_runs_out_of_steps() -> None:
    result, io = await turn(WORKER, [{"tool": "echo", "args": {"text": str(i)}} for i in range(10)])
    assert result.outcome == Outcome.MAX_STEPS and result.error == "no final output within 5 model calls"
    assert len(io.requests) == 5 and result.output == {"text": ""}
    assert io.requests[-1].tools == () and io.requests[-1].messages[-1].content == FINAL_NUDGE


async def test_a_last_answer_that_repeats_the_last_step_instruction_is_no_answer() -> None:
    # SmolLM2 as the twin's math expert, asked "what is 17*23": two python.run calls that printed
    # nothing, then the engine's own instruction written back as the answer the user would read.
    def reply(request: Any, index: int) -> Any:
        if request.tools:
            return {"tool": "echo", "args": {"text": str(index)}}
        return "No more tool calls. Answer now with what you have found."

    result, io = await turn(replace(WORKER, limits=Limits(max_steps=3)), reply)
    assert io.requests[-1].messages[-1].content == FINAL_NUDGE and len(io.tool_calls) == 2
    assert result.outcome == Outcome.MAX_STEPS and result.output == {"text": ""}
    assert result.error == (
        "no final output within 3 model calls; the last reply: it repeated the last-step instruction"
        " instead of answering"
    )
    # An answer that only shares a few of its words is an answer.
    kept, _ = await turn(
        replace(WORKER, limits=Limits(max_steps=3)),
        lambda request, index: {"tool": "echo", "args": {"text": str(index)}} if request.tools else "Now: 42.",
    )
    assert kept.outcome == Outcome.FINAL and kept.output == {"text": "Now: 42."}


async def test_the_last_step_offers_no_tools_so_a_tool_happy_model_answers() -> None:
    def reply(request: Any, index: int) -> Any:
        return {"tool": "echo", "args": {"text": str(index)}} if request.tools else "summary"

    result, io = await turn(WORKER, reply)
    assert result.outcome == Outcome.FINAL and result.output == {"text": "summary"}
    assert len(io.tool_calls) == 4 and all(r.tools for r in io.requests[:-1])


async def test_invalid_structured_output_is_retried_with_the_schema_error() -> None:
    result, io = await turn(JUDGE, ["not json", {"json": {"score": 99}}, '```json\n{"score": 7}\n```'])
    assert result.outcome == Outcome.FINAL and result.output == {"score": 7}
    assert "not JSON" in io.requests[1].messages[-1].content
    assert "99 is greater than the maximum of 10 at score" in io.requests[2].messages[-1].content
    assert io.requests[0].output_schema == dict(JUDGE.output_schema or {})


async def test_output_never_valid_ends_with_invalid_output() -> None:
    result, _ = await turn(JUDGE, ScriptedModel([{"json": {"score": "high"}}], cycle=True))
    assert result.outcome == Outcome.INVALID_OUTPUT and result.output == {}
    # The error says why the last reply was refused, not only that no reply was usable.
    last = "'high' is not of type 'integer' at score"
    assert result.error == f"no final output within 3 model calls; the last reply: {last}"


async def test_replies_never_usable_end_with_the_last_reason() -> None:
    broken = {"error": "invalid", "message": "broken tool call JSON"}
    result, _ = await turn(JUDGE, ScriptedModel(["not json", broken, broken]))
    assert result.outcome == Outcome.INVALID_OUTPUT
    assert result.error == "no final output within 3 model calls; the last reply: broken tool call JSON"


async def test_a_malformed_reply_is_sent_back_for_another_try() -> None:
    result, io = await turn(WORKER, [{"error": "invalid", "message": "broken tool call JSON"}, "fixed"])
    assert result.outcome == Outcome.FINAL and result.output == {"text": "fixed"}
    assert io.requests[1].messages[-1].content == "Your last reply was not usable: broken tool call JSON. Try again."


async def test_a_failing_model_ends_the_turn_with_error() -> None:
    def explode(request: Any, index: int) -> Any:
        raise ValueError("backend exploded")

    result, _ = await turn(WORKER, explode)
    assert result.outcome == Outcome.ERROR and result.error == "model 'fake' failed: ValueError: backend exploded"
    result, io = await turn(WORKER, [{"error": "unavailable", "message": "server down"}])
    assert result.outcome == Outcome.ERROR and result.error == "server down"
    assert io.model_calls[0].result.kind == "error"


async def test_a_model_past_the_time_limit_ends_the_turn_with_timeout() -> None:
    agent = AgentSpec("slow", "answer", model="fake", limits=Limits(timeout_s=0.02))
    result, io = await turn(agent, [{"text": "late", "delay": 5}])
    assert result.outcome == Outcome.TIMEOUT and "model 'fake' did not answer within" in (result.error or "")
    assert 0 < io.model_calls[0].timeout_s <= 0.02


async def test_tool_time_counts_toward_the_turn_timeout() -> None:
    agent = AgentSpec("napper", "work", tools=("nap",), limits=Limits(timeout_s=0.1))
    result, io = await turn(agent, [{"tool": "nap", "args": {"seconds": 5}}, "done"], (nap,))
    assert result.outcome == Outcome.TIMEOUT and result.error == "turn ran past 0.1s"
    [cut] = io.tool_calls  # cut at the time the agent had left, then the turn is over
    assert cut.observation == Observation("error: tool 'nap' ran past the agent's time limit", True)


RISKY = spec_from_function(deploy, risk="risky")


def deployer(approval: str = "always", timeout_s: float = 300) -> AgentSpec:
    return AgentSpec("op", "operate", tools=("deploy",), approval=approval, limits=Limits(timeout_s=timeout_s))


def ships(*targets: str) -> list[Any]:
    return [{"tool": "deploy", "args": {"target": t}} for t in targets] + ["done"]


async def test_a_denied_call_is_an_observation_and_never_runs() -> None:
    async def deny(agent: AgentSpec, call: ToolCall) -> bool:
        return False

    result, io = await turn(deployer(), ships("prod"), [RISKY], approve=deny)
    assert result.outcome == Outcome.FINAL and io.approvals == [("op", "deploy", False)]
    assert io.tool_calls[0].observation.content == "error: a person denied this call to 'deploy'"


async def test_approval_policies_ask_every_call_once_per_tool_or_never() -> None:
    async def allow(agent: AgentSpec, call: ToolCall) -> bool:
        return True

    asked: dict[str, int] = {}
    for policy in ("always", "once", "never"):
        result, io = await turn(deployer(policy), ships("a", "b"), [RISKY], approve=allow)
        assert result.outcome == Outcome.FINAL
        assert [c.observation.content for c in io.tool_calls] == ["deployed a", "deployed b"]
        asked[policy] = len(io.approvals)
    assert asked == {"always": 2, "once": 1, "never": 0}


async def test_time_waiting_for_a_person_is_left_out_of_the_turn_clock() -> None:
    async def slow_person(agent: AgentSpec, call: ToolCall) -> bool:
        await asyncio.sleep(0.25)
        return True

    # two waits, together longer than the agent's whole limit
    result, io = await turn(deployer(timeout_s=0.45), ships("a", "b"), [RISKY], approve=slow_person)
    assert (result.outcome, result.error, result.tool_calls) == (Outcome.FINAL, None, 2)
    assert all(c.observation.waited_s >= 0.25 for c in io.tool_calls)
    assert io.model_calls[-1].timeout_s > 0.15  # what the agent has left of its own time, waits left out


def test_fake_tools_accept_functions_and_specs() -> None:
    io = FakeTurnIO(["x"], [echo, RISKY])
    assert isinstance(io.tools.get("deploy"), ToolSpec) and io.canonical_tool("Echo") == "echo"
    assert [d.name for d in io.tool_definitions(deployer())] == ["deploy"]


# -- failure edges: a failed turn handled by the graph instead of failing the run -------------------

STRICT_WRITER = """\
name: guarded
agents:
  writer:
    system: write
    model: fake
    output_schema: {type: object, properties: {title: {type: string}}, required: [title]}
  fixer: {model: fake, system: fix what the writer could not}
graph:
  start: writer
  edges:
    - {from: writer, to: end}
    - {from: writer, to: fixer, on_failure: true}
    - {from: fixer, to: end}
"""


async def test_a_failure_edge_hands_a_failed_turn_to_its_handler() -> None:
    """A small model that never gets the schema right failed the whole run; with a failure edge its
    failure goes to another agent, which reads what went wrong as the writer's output."""
    model = ScriptedModel({"writer": ["no json here"], "fixer": ["a plain title"]}, cycle=True)
    result, runner = await run(STRICT_WRITER, model)
    assert result.ok and result.output == {"text": "a plain title"}, result
    assert runner.path == ["writer", "fixer"]
    assert [(r.agent, r.edge) for r in runner.routes] == [
        ("writer", "writer -> fixer on failure"),
        ("fixer", "fixer -> end"),
    ]
    shown = runner.context("v001.fixer")
    assert 'Output of writer:\n{"outcome": "invalid_output", "error": ' in shown
    assert runner.preloads[0] == []  # a failure edge's target is not loaded ahead of a failure


async def test_a_bounded_failure_edge_retries_the_agent_then_the_run_fails() -> None:
    retry = """\
name: retry
agents:
  a: {model: fake, system: answer}
graph:
  start: a
  edges:
    - {from: a, to: end}
    - {from: a, to: a, on_failure: true, max_loops: 1, when: "outcome == 'error'"}
"""
    flaky = ScriptedModel({"a": [{"error": "unavailable", "message": "server down"}, "ok now"]})
    result, runner = await run(retry, flaky)
    assert result.ok and result.output == {"text": "ok now"} and runner.path == ["a", "a"]
    down = ScriptedModel({"a": [{"error": "unavailable", "message": "server down"}]}, cycle=True)
    result, runner = await run(retry, down)
    assert not result.ok and runner.path == ["a", "a"]  # one retry, then no failure edge holds
    assert (result.error or "").startswith("agent 'a' (v001.a) ended with error: server down (no failure edge from 'a'")


async def test_without_a_failure_edge_a_failed_turn_fails_the_run_as_before() -> None:
    plain = (
        STRICT_WRITER.replace("    - {from: writer, to: fixer, on_failure: true}\n", "")
        .replace("  fixer: {model: fake, system: fix what the writer could not}\n", "")
        .replace("    - {from: fixer, to: end}\n", "")
    )
    result, runner = await run(plain, ScriptedModel({"writer": ["no json here"]}, cycle=True))
    assert not result.ok and runner.path == ["writer"]
    assert (result.error or "").startswith("agent 'writer' (v000.writer) ended with invalid_output")


async def test_a_team_whose_answer_says_it_failed_fails_the_run() -> None:
    checked = """\
name: checked
output: judge
failed_when: "verdict == 'reject'"
agents:
  judge:
    model: fake
    system: judge
    output_schema: {type: object, properties: {verdict: {enum: [ok, reject]}}, required: [verdict]}
graph: {start: judge, edges: [{from: judge, to: end}]}
"""
    result, _ = await run(checked, {"judge": [{"json": {"verdict": "reject"}}]})
    assert not result.ok and result.output == {"verdict": "reject"}
    assert result.error == "the team's answer says its work failed (failed_when: verdict == 'reject')"
    result, _ = await run(checked, {"judge": [{"json": {"verdict": "ok"}}]})
    assert result.ok and result.output == {"verdict": "ok"}
