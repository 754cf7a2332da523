"""The run page's trace (ui/trace.py), the live text of model calls (engine/live.py), streaming through
routing, and runs started from a step of another run."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from edgecrew.domain.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    EventRecord,
    ModelCalled,
    ModelChosen,
    RunCancelled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
)
from edgecrew.domain.messages import Message, ModelRequest
from edgecrew.domain.runs import Outcome, RunStatus
from edgecrew.engine.live import LiveText
from edgecrew.engine.routing import call_with_fallback
from edgecrew.engine.service import RunService
from edgecrew.models.registry import ModelRegistry
from edgecrew.models.scripted import ScriptedModel
from edgecrew.ui import trace
from edgecrew.ui.filters import domid, numbered
from edgecrew.ui.views import graph_state, graph_svg
from tests.teams import TRIO
from tests.unit.engine_helpers import run_team, teardown

T0 = 1_000.0


def rec(i: int, at: float, event: Event, step: str | None = None, agent: str | None = None) -> EventRecord:
    return EventRecord(i, "r1", f"k{i}", event.kind.value, step, agent, event.to_data(), T0 + at)


CALL = ModelCalled(alias="fake", prompt_tokens=10, completion_tokens=4, cached_tokens=5, latency_s=0.9)


def finished_run() -> list[EventRecord]:
    return [
        rec(1, 0.0, RunStarted(team="t", agents=("planner", "op"))),
        rec(2, 0.1, StepStarted(visit=0, model="fake"), "v000.planner", "planner"),
        rec(3, 0.2, ModelChosen(requested="tag:coding", alias="fake"), "v000.planner", "planner"),
        rec(
            4,
            1.1,
            ModelCalled(alias="fake", prompt_tokens=10, completion_tokens=4, cached_tokens=5, latency_s=0.9),
            "v000.planner",
            "planner",
        ),
        rec(5, 1.2, StepFinished(outcome=Outcome.FINAL, output={"steps": ["1. a", "2. b"]}), "v000.planner", "planner"),
        rec(6, 1.3, StepStarted(visit=1, model="fake"), "v001.op", "op"),
        rec(7, 1.5, ApprovalRequested(approval="a1", tool="deploy"), "v001.op", "op"),
        rec(8, 3.5, ApprovalDecided(approval="a1", approved=True), "v001.op", "op"),
        rec(9, 3.6, ToolCalled(tool="deploy", result="ok", duration_s=0.1), "v001.op", "op"),
        rec(10, 4.0, ModelCalled(alias="fake", error="boom"), "v001.op", "op"),
        rec(11, 4.1, StepFinished(outcome=Outcome.ERROR, error="boom"), "v001.op", "op"),
        rec(12, 4.2, RunFinished(status=RunStatus.FAILED, error="boom")),
    ]


def test_a_trace_places_steps_and_calls_on_the_runs_time_axis() -> None:
    built = trace.build(finished_run())
    assert [s.key for s in built.steps] == ["v000.planner", "v001.op"]
    planner, op = built.steps
    assert planner.state == "done" and op.state == "failed"
    assert planner.model_calls[0].start == pytest.approx(T0 + 0.2)  # its event minus its latency
    assert [e.type for e in planner.routing] == ["model_chosen"]
    assert op.waits[0].duration == pytest.approx(2.0)
    rows = trace.rows(built, now=T0 + 10)
    assert [(r.kind, r.label) for r in rows] == [
        ("step", "planner"),
        ("model", "model fake"),
        ("step", "op"),
        ("wait", "approval of deploy"),
        ("tool", "tool deploy"),
        ("model", "model fake"),
    ]
    assert all(0 <= r.left <= 100 and 0 <= r.left + r.width <= 100.01 for r in rows)
    assert rows[-1].state == "failed"
    sm = trace.summary(built, now=T0 + 10)
    assert (sm.model_calls, sm.tool_calls, sm.failed_calls, sm.steps) == (2, 1, 1, 2)
    assert sm.cached_share == pytest.approx(0.5) and sm.models == ("fake",)
    assert sm.duration_s == pytest.approx(4.2)


def test_a_running_step_runs_to_now_and_a_pending_approval_is_an_open_wait() -> None:
    events = finished_run()[:7]  # op asked for approval; no one decided yet
    built = trace.build(events)
    assert built.end is None and built.steps[-1].state == "running"
    assert built.steps[-1].open_wait is not None
    rows = trace.rows(built, now=T0 + 5)
    assert rows[-1].kind == "wait" and rows[-1].seconds == pytest.approx(3.5)
    assert trace.state_of_nodes(built, ["planner", "op", "critic"]) == {
        "planner": "done",
        "op": "running",
        "critic": "pending",
    }


def test_a_cancelled_run_marks_the_running_step_cancelled_and_the_rest_unreached() -> None:
    events = [*finished_run()[:7], rec(20, 5.0, RunCancelled(reason="asked"))]
    built = trace.build(events)
    assert built.steps[-1].state == "cancelled" and built.status == "cancelled"
    assert trace.state_of_nodes(built, ["planner", "op", "critic"])["critic"] == "unreached"
    from edgecrew.specs.loader import load_team_text

    spec = load_team_text(
        "name: t\nagents:\n  planner: {model: fake, system: p}\n  op: {model: fake, system: o}\n"
        "  critic: {model: fake, system: c}\ngraph:\n  start: planner\n  edges:\n"
        "    - {from: planner, to: op}\n    - {from: op, to: critic}\n    - {from: critic, to: end}\n",
        "t.yaml",
    )
    svg = str(graph_svg(spec, graph_state(events)))
    assert 'class="node visited" data-node="planner"' in svg
    assert 'class="node state-cancelled" data-node="op"' in svg
    assert 'class="node unreached" data-node="critic"' in svg
    assert 'class="node end unreached"' in svg  # not red: the run's status says how it ended


def test_the_timeline_groups_events_by_step_in_order() -> None:
    events = finished_run()
    items = trace.timeline(events, trace.build(events))
    shape = [(i.step.key, len(i.events)) if i.step else i.event.type for i in items]  # type: ignore[union-attr]
    assert shape == ["run_started", ("v000.planner", 4), ("v001.op", 6), "run_finished"]


def test_template_helpers() -> None:
    assert domid("v001.op") == "v001-op"
    assert numbered("1. Research") and numbered("2) go") and not numbered("Research 1.")


def test_live_text_shows_a_call_while_it_is_written() -> None:
    live = LiveText()
    append = live.begin("r1", "v001.op.m0", "v001.op", "op", "fake")
    append("hello")
    append(" world")
    (w,) = live.of_run("r1")
    assert (w.text, w.agent, w.step_key) == ("hello world", "op", "v001.op")
    version = w.version
    append("!")
    assert live.of_run("r1")[0].version > version
    assert live.of_run("other") == []
    live.end("r1", "v001.op.m0")
    assert live.of_run("r1") == []
    append("late")  # a piece after the end is dropped
    assert live.of_run("r1") == []


class Source:
    """The model source of one model (routing's port; the pool in a runtime)."""

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model

    @contextlib.asynccontextmanager
    async def use(self, alias: str) -> AsyncIterator[ScriptedModel]:
        yield self.model


async def test_routing_streams_text_as_it_comes_and_returns_the_same_response() -> None:
    model = ScriptedModel([{"text": "one two three four", "delay": 0.2}])
    registry = ModelRegistry()
    registry.register("fake", model)
    pieces: list[str] = []
    request = ModelRequest(messages=(Message(role="user", content="go"),))
    routed = await call_with_fallback(registry, Source(model), "fake", request, 10, lambda _e: None, pieces.append)
    assert pieces == ["one", " two", " three", " four"]
    assert routed.response is not None and routed.response.message.content == "one two three four"


@pytest.fixture
def _dbos() -> Iterator[None]:
    yield
    teardown()


@pytest.mark.usefixtures("_dbos")
async def test_a_run_from_a_step_copies_the_outputs_before_it_and_runs_on_from_there() -> None:
    model = ScriptedModel(
        {
            "planner": [{"json": {"steps": ["a", "b"]}}],
            "writer": ["draft 1", "draft 2"],
            "critic": [
                {"json": {"verdict": "revise"}},
                {"json": {"verdict": "approve"}},
            ],
        }
    )
    run, rt = await run_team(TRIO, model)
    assert run.status == "succeeded"
    assert [c.agent for c in model.calls] == ["planner", "writer", "critic", "writer", "critic"]
    svc = RunService(rt)
    started = await svc.start_from_step(run.id, "v003.writer")
    again = await svc.follow(started.run.id, timeout_s=60)
    assert again.status == "succeeded"
    # Only the writer's and critic's later visits ran again; the first three were copied.
    assert [c.agent for c in model.calls[5:]] == ["writer", "critic"]
    assert again.output == {"verdict": "approve"}
    steps = svc.steps(again.id)
    assert [s.key for s in steps] == ["v000.planner", "v001.writer", "v002.critic", "v003.writer", "v004.critic"]
    assert [s.output for s in steps[:3]] == [s.output for s in svc.steps(run.id)[:3]]
    copied = [e for e in svc.event_page(again.id) if e.type == "step_finished" and e.data.get("copied_from")]
    assert len(copied) == 3 and {e.data["copied_from"] for e in copied} == {run.id}
    assert again.trigger == {
        "kind": "from_step",
        "run": run.id,
        "step": "v003.writer",
        "seed": {s.key: s.output for s in svc.steps(run.id)[:3]},
    }
    with pytest.raises(Exception, match="has no step"):
        await svc.start_from_step(run.id, "v009.nobody")
