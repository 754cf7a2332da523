"""The engine on DBOS with ScriptedModel: routing, fan-out/join, loop bounds, budgets, the loop guard, and
the steps and events each leaves in the store (the same logic without DBOS: test_engine_logic.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from edgecrew.domain.messages import ToolCall
from edgecrew.domain.specs import AgentSpec, Limits
from edgecrew.engine.agent import run_turn
from edgecrew.engine.fakes import FakeTurnIO
from edgecrew.models.scripted import ScriptedModel
from edgecrew.tools.base import ToolRegistry, spec_from_function
from edgecrew.tools.builtins import register_builtins
from tests.teams import CHAIN, FAN, JOIN_NEVER, REVIEW
from tests.unit.engine_helpers import run_team, teardown


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    teardown()


async def test_chain_runs_every_agent_in_order_and_records_events() -> None:
    model = ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]})
    run, rt = await run_team(CHAIN, model, task="say letters")
    assert run.status == "succeeded"
    assert run.output == {"text": "C"}
    assert [c.agent for c in model.calls] == ["a", "b", "c"]
    # b sees the task and a's output
    b_prompt = model.calls[1].request.messages[-1].content
    assert "Task: say letters" in b_prompt and "A" in b_prompt
    types = [e.type for e in rt.store.events(run.id)]
    assert types[:2] == ["run_created", "run_started"] and types[-1] == "run_finished"
    assert types.count("step_started") == 3 and types.count("model_called") == 3
    steps = rt.store.steps(run.id)
    assert [(s.agent, s.outcome) for s in steps] == [("a", "final"), ("b", "final"), ("c", "final")]


async def test_conditional_edge_loops_until_approved() -> None:
    model = ScriptedModel(
        {
            "writer": ["draft 1", "draft 2"],
            "critic": [{"json": {"verdict": "revise", "notes": "x"}}, {"json": {"verdict": "approve"}}],
        }
    )
    run, _ = await run_team(REVIEW, model)
    assert run.status == "succeeded"
    assert [c.agent for c in model.calls] == ["writer", "critic", "writer", "critic"]
    assert run.output == {"verdict": "approve"}


async def test_loop_bound_stops_a_critic_that_never_approves() -> None:
    model = ScriptedModel({"writer": ["draft"], "critic": [{"json": {"verdict": "revise"}}]}, cycle=True)
    run, rt = await run_team(REVIEW, model)
    assert run.status == "succeeded"
    # 1 first draft + 2 bounded revisions, each judged once
    assert [c.agent for c in model.calls].count("writer") == 3
    assert [c.agent for c in model.calls].count("critic") == 3
    routes = [e.data["to"] for e in rt.store.events(run.id) if e.type == "route_taken" and e.agent == "critic"]
    assert routes == [["writer"], ["writer"], ["end"]]


async def test_fan_out_runs_branches_and_join_waits_for_both() -> None:
    model = ScriptedModel({"plan": ["P"], "left": [{"text": "L", "delay": 0.2}], "right": ["R"], "merge": ["M"]})
    run, rt = await run_team(FAN, model)
    assert run.status == "succeeded"
    agents = [c.agent for c in model.calls]
    assert agents[0] == "plan" and sorted(agents[1:3]) == ["left", "right"] and agents[3] == "merge"
    assert model.calls[3].request.messages[-1].content.count("Output of") == 3  # plan, left, right
    assert len(rt.store.steps(run.id)) == 4
    assert run.output == {"text": "M"}


async def test_unmatched_condition_fails_with_a_clear_error() -> None:
    spec = REVIEW.replace(
        "    - {from: critic, to: end}\n", "    - {from: critic, to: end, when: \"verdict == 'approve'\"}\n"
    )
    model = ScriptedModel({"writer": ["d"], "critic": [{"json": {"verdict": "revise"}}]}, cycle=True)
    run, _ = await run_team(spec, model)
    assert run.status == "failed"
    assert "no edge from 'critic' matched" in (run.error or "")


TOOLED = """
name: tooled
agents:
  worker:
    model: fake
    system: use tools
    tools: [echo]
    limits: {max_steps: 5}
graph:
  start: worker
  edges: [{from: worker, to: end}]
"""


def _registry(calls: list[str]) -> ToolRegistry:
    registry = ToolRegistry()
    register_builtins(registry)

    def echo(text: str) -> str:
        """Echo text back."""
        calls.append(text)
        return f"echo:{text}"

    registry.register(spec_from_function(echo))
    return registry


async def test_tool_results_are_fed_back_to_the_model() -> None:
    calls: list[str] = []
    model = ScriptedModel([{"tool": "echo", "args": {"text": "hi"}}, "done"])
    run, rt = await run_team(TOOLED, model, tools=_registry(calls))
    assert run.status == "succeeded" and calls == ["hi"]
    tool_msg = model.calls[1].request.messages[-1]
    assert tool_msg.role == "tool" and tool_msg.content == "echo:hi"
    events = [e for e in rt.store.events(run.id) if e.type == "tool_called"]
    assert events[0].data["tool"] == "echo" and events[0].data["is_error"] is False


async def test_a_long_tool_result_is_an_event_preview_that_parses_and_whole_where_its_docstring_says() -> None:
    registry = _registry([])

    def listing() -> dict[str, Any]:
        """List the files."""
        return {"files": [{"path": f"src/f{i}.py", "text": "x" * 300} for i in range(8)], "total": 8}

    registry.register(spec_from_function(listing))
    model = ScriptedModel([{"tool": "listing", "args": {}}, "done"])
    run, rt = await run_team(TOOLED.replace("tools: [echo]", "tools: [echo, listing]"), model, tools=registry)
    assert run.status == "succeeded"
    whole = model.calls[1].request.messages[-1].content  # what the agent read
    assert len(whole) > 500 and json.loads(whole)["total"] == 8
    [called] = [e for e in rt.store.events(run.id) if e.type == "tool_called"]
    preview = json.loads(called.data["result"])
    assert len(called.data["result"]) <= 500 and preview["total"] == 8 and preview["files"][0]["path"] == "src/f0.py"
    assert called.data["result_truncated"] is True and called.data["result_chars"] == len(whole)
    # The whole result: in the call journal (the event's key without ".tool") and the step's conversation.
    _, recorded = rt.store.recorded_call(run.id, called.key.removesuffix(".tool"))
    assert recorded is not None and recorded[0]["content"] == whole
    assert [m["content"] for m in rt.store.messages(run.id, called.step_key) if m["role"] == "tool"] == [whole]


async def test_a_long_model_reply_is_an_event_preview_marked_cut_and_a_short_one_is_kept_as_it_was() -> None:
    reply = "word " * 300  # 1500 characters: the event kept its first 500, unmarked ("raw reply (500 characters)")
    model = ScriptedModel([{"tool": "echo", "args": {"text": "hi"}}, reply])
    run, rt = await run_team(TOOLED, model, tools=_registry([]))
    assert run.status == "succeeded"
    short, long = [e.data for e in rt.store.events(run.id) if e.type == "model_called"]
    assert "content_truncated" not in short and "content_chars" not in short
    assert long["content"] == reply[:500] and long["content_truncated"] is True
    assert long["content_chars"] == len(reply)


async def test_repeated_identical_tool_call_ends_with_loop_detected() -> None:
    calls: list[str] = []
    model = ScriptedModel([{"tool": "echo", "args": {"text": "same"}}], cycle=True)
    run, rt = await run_team(TOOLED, model, tools=_registry(calls))
    assert run.status == "failed"
    assert calls == ["same", "same"]  # the third identical call is never executed
    step = rt.store.steps(run.id)[0]
    assert step.outcome == "loop_detected"
    assert "loop_detected" in (run.error or "")


async def test_step_budget_ends_the_turn_with_max_steps() -> None:
    calls: list[str] = []
    replies = [{"tool": "echo", "args": {"text": str(i)}} for i in range(10)]
    model = ScriptedModel(replies)
    run, rt = await run_team(TOOLED, model, tools=_registry(calls))
    assert run.status == "failed"
    assert len(model.calls) == 5 and rt.store.steps(run.id)[0].outcome == "max_steps"


async def test_bad_tool_arguments_and_unknown_tools_become_observations() -> None:
    calls: list[str] = []
    model = ScriptedModel(
        [
            {"tool": "echo", "args": {"wrong": 1}},
            {"tool": "files.write", "args": {"path": "x", "content": "y"}},  # not on the allow-list
            {"tool": "ECHO", "args": {"text": "ok"}},  # normalized name
            "finished",
        ]
    )
    run, _ = await run_team(TOOLED, model, tools=_registry(calls))
    assert run.status == "succeeded"
    observations = [c.request.messages[-1].content for c in model.calls[1:]]
    assert "invalid arguments for echo" in observations[0] and "text" in observations[0]
    assert "not allowed for agent 'worker'" in observations[1]
    assert observations[2] == "echo:ok"


STRUCTURED = """
name: structured
agents:
  judge:
    model: fake
    system: judge
    output_schema:
      type: object
      properties: {score: {type: integer, minimum: 0, maximum: 10}}
      required: [score]
    limits: {max_steps: 3}
graph:
  start: judge
  edges: [{from: judge, to: end}]
"""


async def test_invalid_structured_output_is_retried_with_the_schema_error() -> None:
    model = ScriptedModel(["not json", {"json": {"score": 99}}, {"json": {"score": 7}}])
    run, _ = await run_team(STRUCTURED, model)
    assert run.status == "succeeded" and run.output == {"score": 7}
    assert "not JSON" in model.calls[1].request.messages[-1].content
    assert "99 is greater than the maximum of 10" in model.calls[2].request.messages[-1].content


async def test_an_unusable_reply_counts_its_tokens_in_the_event_and_the_step() -> None:
    """A reply the checks refuse (cut off at max_tokens, say) still cost tokens and time: its event and
    its step count them, beside the error."""
    model = ScriptedModel([{"error": "invalid", "message": "cut off at max_tokens"}, {"json": {"score": 7}}])
    run, rt = await run_team(STRUCTURED, model)
    assert run.status == "succeeded" and run.output == {"score": 7}
    refused, answered = [e.data for e in rt.store.events(run.id) if e.type == "model_called"]
    assert "cut off at max_tokens" in refused["error"] and refused["completion_tokens"] == 1
    assert refused["prompt_tokens"] > 0 and refused["latency_s"] >= 0
    [step] = rt.store.steps(run.id)
    assert step.prompt_tokens == refused["prompt_tokens"] + answered["prompt_tokens"]
    assert step.completion_tokens == 1 + answered["completion_tokens"]


async def test_output_never_valid_fails_with_invalid_output() -> None:
    model = ScriptedModel([{"json": {"score": "high"}}], cycle=True)
    run, rt = await run_team(STRUCTURED, model)
    assert run.status == "failed"
    assert rt.store.steps(run.id)[0].outcome == "invalid_output"


SLOW = """
name: slow
agents:
  sleeper:
    model: fake
    system: answer
    limits: {timeout_s: 0.3}
graph:
  start: sleeper
  edges: [{from: sleeper, to: end}]
"""


async def test_turn_timeout_ends_with_timeout_outcome() -> None:
    model = ScriptedModel([{"text": "late", "delay": 5}])
    run, rt = await run_team(SLOW, model)
    assert run.status == "failed"
    step = rt.store.steps(run.id)[0]
    assert step.outcome == "timeout" and "did not answer within" in (step.error or "")


NAPPER = """
name: napper
agents:
  worker: {model: fake, system: work, tools: [nap], limits: {timeout_s: 1}}
graph: {start: worker, edges: [{from: worker, to: end}]}
"""


async def test_tool_time_counts_toward_the_turn_timeout() -> None:
    registry = ToolRegistry()

    async def nap(seconds: float) -> str:
        """Rest a while."""
        await asyncio.sleep(seconds)
        return "rested"

    registry.register(spec_from_function(nap))
    # The first nap leaves 0.7 s of the 1 s limit (room for the engine's writes on a loaded machine);
    # the second is longer than all of it.
    replies = [{"tool": "nap", "args": {"seconds": 0.3}}, {"tool": "nap", "args": {"seconds": 1.2}}, "done"]
    model = ScriptedModel(replies)
    run, rt = await run_team(NAPPER, model, tools=registry)
    assert run.status == "failed" and len(model.calls) == 2
    step = rt.store.steps(run.id)[0]
    assert step.outcome == "timeout" and step.error == "turn ran past 1s"
    second = [e for e in rt.store.events(run.id) if e.type == "tool_called"][1]
    assert "ran past the agent's time limit" in second.data["result"]  # cut at the time the agent had left


async def test_time_waiting_for_a_person_is_left_out_of_the_turn_clock() -> None:
    async def slow_person(agent: AgentSpec, call: ToolCall) -> bool:
        await asyncio.sleep(0.8)
        return True

    agent = AgentSpec("op", "operate", tools=("deploy",), limits=Limits(timeout_s=1.0))
    replies = [{"tool": "deploy", "args": {"to": "a"}}, {"tool": "deploy", "args": {"to": "b"}}, "done"]
    io = FakeTurnIO(replies, [spec_from_function(deploy, risk="risky")], approve=slow_person)
    result = await run_turn(agent, "ship it", io, "v000.op", {})  # two waits: together longer than the limit
    assert (result.outcome.value, result.error, result.tool_calls) == ("final", None, 2)
    timeouts = [c.timeout_s for c in io.model_calls] + [c.timeout_s for c in io.tool_calls]
    assert all(0.5 < t <= 1.0 for t in timeouts), timeouts  # counting a wait would leave 0.2 s or less


def deploy(to: str) -> str:
    """Deploy."""
    return "deployed"


async def test_the_last_step_offers_no_tools_so_a_tool_happy_model_answers() -> None:
    """A model that calls a tool whenever it is offered one still ends its turn with an answer."""
    calls: list[str] = []

    def reply(request, index):  # type: ignore[no-untyped-def]
        return {"tool": "echo", "args": {"text": str(index)}} if request.tools else "summary of what I found"

    model = ScriptedModel(reply)
    run, _ = await run_team(TOOLED, model, tools=_registry(calls))
    assert run.status == "succeeded" and run.output == {"text": "summary of what I found"}
    assert len(calls) == 4 and len(model.calls) == 5  # max_steps 5: four tool rounds, then the answer
    last = model.calls[-1].request
    assert last.tools == () and "last step" in last.messages[-1].content
    assert all(c.request.tools for c in model.calls[:-1])


async def test_function_backed_script_sees_each_request() -> None:
    def reply(request, index):  # type: ignore[no-untyped-def]
        return f"{request.metadata['agent']} call {index}"

    model = ScriptedModel(reply)
    run, _ = await run_team(CHAIN, model)
    assert run.output == {"text": "c call 2"}
    assert [c.step for c in model.calls] == ["v000.a.m0", "v001.b.m0", "v002.c.m0"]


async def test_a_model_bug_fails_the_run_with_the_error_instead_of_hanging() -> None:
    def broken(request, index):  # type: ignore[no-untyped-def]
        raise ValueError("backend exploded")

    run, rt = await run_team(CHAIN, ScriptedModel(broken))
    assert run.status == "failed"
    assert "ValueError: backend exploded" in (run.error or "")
    assert [e.type for e in rt.store.events(run.id)][-1] == "run_finished"


async def test_a_join_that_can_never_complete_fails_the_run() -> None:
    model = ScriptedModel({"plan": [{"json": {"go": "left"}}], "left": ["L"], "right": ["R"], "merge": ["M"]})
    run, _ = await run_team(JOIN_NEVER, model)
    assert run.status == "failed"
    assert "join into 'merge' never completed: still waiting for right" in (run.error or "")


async def test_team_preamble_opens_every_agent_system_prompt() -> None:
    spec = CHAIN.replace("name: chain\n", "name: chain\npreamble: Shared team context.\n")
    model = ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]})
    await run_team(spec, model)
    systems = [c.request.messages[0].content for c in model.calls]
    assert all(s.startswith("Shared team context.\n\n") for s in systems)
    assert systems[0].endswith("first") and systems[2].endswith("third")


async def test_tool_and_template_agents_run_durably_with_their_steps_and_events() -> None:
    def measure(unit: str) -> dict[str, object]:
        """Measure something."""
        return {"value": 42, "unit": unit}

    registry = ToolRegistry()
    registry.register(spec_from_function(measure))
    team = """
    name: t
    agents:
      m: {tool: measure, arguments: {unit: "{{ task }}"}}
      fan: {tool: measure, arguments: {unit: cm}}
      say: {model: fake, system: say it, input: "Value: {{ outputs.m.value }}"}
      answer: {template: "{{ outputs.m.value }} {{ outputs.m.unit }}, {{ outputs.fan.unit }}: {{ outputs.say.text }}"}
    graph:
      start: m
      edges:
        - {from: m, to: [fan, say]}
        - {from: [fan, say], to: answer}
    """
    model = ScriptedModel(["forty-two"])
    run, rt = await run_team(team, model, task="mm", tools=registry)
    assert run.status == "succeeded", run.error
    assert run.output == {"text": "42 mm, cm: forty-two"}
    assert model.calls[0].request.messages[-1].content == "Value: 42"  # the input template, not the board
    started = {e.agent: e.payload for e in rt.store.events(run.id) if e.type == "step_started"}
    assert (started["m"].agent_kind, started["m"].tool, started["m"].model) == ("tool", "measure", "")
    assert started["answer"].agent_kind == "template" and started["say"].model == "fake"
    tools = [e.data["arguments"] for e in rt.store.events(run.id) if e.type == "tool_called"]
    assert sorted(tools, key=str) == [{"unit": "cm"}, {"unit": "mm"}]
    steps = {s.agent: s for s in rt.store.steps(run.id)}
    assert steps["m"].tool_calls == 1 and steps["m"].model_calls == 0 and steps["answer"].outcome == "final"


async def test_a_failure_edge_routes_a_durable_runs_failed_step_and_the_run_goes_on() -> None:
    """The run's snapshot keeps the edge's on_failure (a resumed run routes the same way), the failed
    step is recorded as failed, and the route it took is an event like any other."""
    from tests.unit.test_engine_logic import STRICT_WRITER

    model = ScriptedModel({"writer": ["no json here"], "fixer": ["a plain title"]}, cycle=True)
    run, rt = await run_team(STRICT_WRITER, model)
    assert run.status == "succeeded" and run.output == {"text": "a plain title"}, run.error
    assert run.spec["graph"]["edges"][1]["on_failure"] is True
    outcomes = {s.agent: s.outcome for s in rt.store.steps(run.id)}
    assert outcomes == {"writer": "invalid_output", "fixer": "final"}
    routes = [e.data["edge"] for e in rt.store.events(run.id) if e.type == "route_taken"]
    assert routes == ["writer -> fixer on failure", "fixer -> end"]


async def test_a_run_started_by_another_process_records_the_workspace_it_runs_in() -> None:
    """On a cluster the run row kept the recording process's workspace, a path on another machine, while
    a worker wrote the run's files in its own: the API and the UI pointed at the wrong place."""
    import textwrap

    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine import durable
    from edgecrew.engine.service import RunService, TeamFile

    rt = bootstrap()
    rt.models.register("fake", ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]}))
    path = rt.settings.project_dir / "teams" / "chain.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(CHAIN))
    svc = RunService(rt)
    run_id = svc.record(TeamFile(path), "go").run.id
    with rt.store.engine.begin() as conn:  # as recorded on another machine
        conn.exec_driver_sql("UPDATE runs SET workspace = ? WHERE id = ?", ("/srv/recorder/workspaces/x", run_id))
    handle = await durable.start_workflow(run_id)
    await handle.get_result()
    run = rt.store.get_run(run_id)
    assert run.status == "succeeded" and run.workspace == str(rt.workspace(run_id))
    started = next(e for e in rt.store.events(run_id) if e.type == "run_started")
    assert started.data["workspace"] == run.workspace


async def test_an_agents_temperature_goes_with_each_of_its_model_calls() -> None:
    """`temperature:` on an agent is the request's; an agent without one leaves it to the model alias."""
    spec = CHAIN.replace("a: {model: fake, system: first}", "a: {model: fake, system: first, temperature: 0.9}")
    model = ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]})
    run, _ = await run_team(spec, model)
    assert run.status == "succeeded"
    assert [(c.request.metadata["agent"], c.request.requested_temperature) for c in model.calls] == [
        ("a", 0.9),
        ("b", None),
        ("c", None),
    ]
