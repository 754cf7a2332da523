"""Typed events: every kind round-trips through a real store in its stored shape, old rows still read,
and no reader picks an event's data apart by key."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from edgecrew.domain.events import (
    EVENT_MODELS,
    ApprovalDecided,
    ApprovalRequested,
    Event,
    EventRecord,
    FallbackAttempt,
    FeedbackGiven,
    MemoryRecalled,
    ModelCalled,
    ModelChosen,
    ModelFallback,
    ModelSkipped,
    RouteTaken,
    RunCancelled,
    RunCreated,
    RunFinished,
    RunResumed,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
    ToolsSelected,
    UnknownEvent,
    parse_event,
    preview_result,
)
from edgecrew.domain.runs import EventType, Outcome, RunStatus
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore, open_store

SRC = Path(__file__).resolve().parents[2] / "src" / "edgecrew"
# Every module that reads stored events: the CLI, the TUI, the UI, metrics, traces and the supervisor.
READERS = sorted(
    str(path.relative_to(SRC))
    for pattern in ("cli/*.py", "tui/*.py", "ui/*.py", "telemetry/*.py", "ops/*.py", "api/metrics.py")
    for path in SRC.glob(pattern)
)

# Each kind as its emitter builds it, with the JSON object it must store (the shape clients read).
EMITTED: list[tuple[Event, dict[str, Any]]] = [
    (RunCreated(team="t", task="go"), {"team": "t", "task": "go"}),
    (RunStarted(team="t", task="go", agents=("a", "b")), {"team": "t", "task": "go", "agents": ["a", "b"]}),
    (RunResumed(executor="host:1:2"), {"executor": "host:1:2"}),
    (RunResumed(lost_worker="host:1:2"), {"lost_worker": "host:1:2"}),
    (StepStarted(visit=0, model="m", role=""), {"visit": 0, "model": "m", "role": ""}),
    (
        ModelCalled(
            alias="m",
            requested="tag:x",
            backend="scripted",
            model="m-1",
            prompt_tokens=3,
            completion_tokens=4,
            cached_tokens=0,
            latency_s=0.5,
            ttft_s=None,
            tokens_per_s=8.0,
            tool_calls=("echo",),
            content="hi",
        ),
        {
            "alias": "m",
            "requested": "tag:x",
            "backend": "scripted",
            "model": "m-1",
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "cached_tokens": 0,
            "latency_s": 0.5,
            "ttft_s": None,
            "tokens_per_s": 8.0,
            "tool_calls": ["echo"],
            "content": "hi",
        },
    ),
    (
        ToolCalled(tool="echo", arguments={"text": "x"}, is_error=False, result="x", duration_s=0.01),
        {"tool": "echo", "arguments": {"text": "x"}, "is_error": False, "result": "x", "duration_s": 0.01},
    ),
    (
        ApprovalRequested(approval="ap1", tool="shell", arguments={"cmd": "ls"}, reason="look"),
        {"approval": "ap1", "tool": "shell", "arguments": {"cmd": "ls"}, "reason": "look"},
    ),
    (
        ApprovalDecided(approval="ap1", approved=True, arguments={"cmd": "ls"}, note=None),
        {"approval": "ap1", "approved": True, "arguments": {"cmd": "ls"}, "note": None},
    ),
    (RouteTaken(from_="a", to=("b",), edge=None), {"from": "a", "to": ["b"], "edge": None}),
    (
        FeedbackGiven(feedback=3, rating=-1, comment="vague", corrected=True, author="me", via="cli"),
        {"feedback": 3, "rating": -1, "comment": "vague", "corrected": True, "author": "me", "via": "cli"},
    ),
    (
        ToolsSelected(tools=("get_weather",), scores=(2.5,), allowed=12),
        {"tools": ["get_weather"], "scores": [2.5], "allowed": 12},
    ),
    (
        MemoryRecalled(query="today", scopes=("project okr",), ids=(3,), scores=(0.8,), backend="sqlite-vec"),
        {"query": "today", "scopes": ["project okr"], "ids": [3], "scores": [0.8], "backend": "sqlite-vec"},
    ),
    (
        StepFinished(
            outcome=Outcome.FINAL,
            output={"answer": 1},
            error=None,
            model_calls=1,
            tool_calls=0,
            prompt_tokens=3,
            completion_tokens=4,
        ),
        {
            "outcome": "final",
            "output": {"answer": 1},
            "error": None,
            "model_calls": 1,
            "tool_calls": 0,
            "prompt_tokens": 3,
            "completion_tokens": 4,
        },
    ),
    (
        RunFinished(status=RunStatus.SUCCEEDED, output="done", error=None, visits=2),
        {"status": "succeeded", "output": "done", "error": None, "visits": 2},
    ),
    (RunCancelled(reason="cancelled by user"), {"reason": "cancelled by user"}),
    (ModelSkipped(alias="small", reason="lacks tools"), {"alias": "small", "reason": "lacks tools"}),
    (ModelChosen(requested="tag:x", alias="m", attempt=1), {"requested": "tag:x", "alias": "m", "attempt": 1}),
    (ModelFallback(from_="a", to="b", error="down"), {"from": "a", "to": "b", "error": "down"}),
]

# Emitters that set only some fields store only those: the shapes these sites always wrote.
PARTIAL: list[tuple[Event, dict[str, Any]]] = [
    (  # the run stream failing a run whose workflow died: no output, no visits
        RunFinished(status=RunStatus.FAILED, error="its workflow ended"),
        {"status": "failed", "error": "its workflow ended"},
    ),
    (  # a failed model call: no usage, with the fallbacks tried
        ModelCalled(alias="b", requested="a", error="down", fallbacks=(FallbackAttempt(alias="a", error="timeout"),)),
        {"alias": "b", "requested": "a", "error": "down", "fallbacks": [{"alias": "a", "error": "timeout"}]},
    ),
]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    store.create_run("r1", "team", "task", {}, str(tmp_path))
    return store


def test_event_types_and_models_cover_each_other_exactly() -> None:
    kinds = [model.kind for model in EVENT_MODELS]
    assert len(kinds) == len(set(kinds)), "two models claim the same kind"
    assert set(kinds) == set(EventType)
    assert {type(event) for event, _ in EMITTED} == set(EVENT_MODELS)  # the round trip below covers every kind


@pytest.mark.parametrize(("event", "stored"), EMITTED + PARTIAL, ids=lambda v: getattr(v, "kind", ""))
def test_each_kind_round_trips_through_the_store_in_its_stored_shape(
    store: RunStore, event: Event, stored: dict[str, Any]
) -> None:
    heard: list[EventRecord] = []
    store.subscribe(lambda record, _new: heard.append(record))
    store.emit("r1", f"k.{event.kind.value}", event, step_key="v0.a", agent="a")
    [row] = store.events("r1")
    assert (row.type, row.data) == (event.kind.value, stored)  # what the API, SSE and `--json` serve
    assert row.payload == event
    assert heard[0].payload == event and heard[0].data == stored
    assert store.events_of_type(event.kind.value)[0].payload == event


def test_a_payload_is_parsed_once() -> None:
    record = EventRecord(1, "r1", "k", "run_cancelled", None, None, {"reason": "x"}, time.time())
    assert record.payload is record.payload


def _insert(store: RunStore, key: str, kind: str, data: dict[str, Any]) -> EventRecord:
    """Write a row as an older (or newer) version might have, bypassing the typed emit."""
    with store.engine.begin() as conn:
        conn.execute(
            t.events.insert().values(
                run_id="r1", key=key, type=kind, step_key=None, agent=None, data=data, created_at=time.time()
            )
        )
    return next(e for e in store.events("r1") if e.key == key)


def test_old_rows_read_with_defaults_and_extra_keys_ignored(store: RunStore) -> None:
    # a model call recorded before events carried the backend, with a key no model knows
    call = _insert(store, "m", "model_called", {"alias": "m", "latency_s": 1.5, "retired_field": 7}).payload
    assert isinstance(call, ModelCalled)
    assert (call.alias, call.backend, call.latency_s, call.ttft_s, call.prompt_tokens) == ("m", "", 1.5, None, 0)
    assert call.ok and call.fallbacks == ()
    assert call.to_data() == {"alias": "m", "latency_s": 1.5}  # only what the row held
    route = _insert(store, "r", "route_taken", {"from": "a"}).payload
    assert isinstance(route, RouteTaken) and (route.from_, route.to, route.edge) == ("a", (), None)
    finished = _insert(store, "f", "run_finished", {"status": "failed", "error": "x"}).payload
    assert isinstance(finished, RunFinished)
    assert (finished.status, finished.output, finished.visits) == (RunStatus.FAILED, None, 0)


def test_unknown_kinds_and_rows_that_fail_their_model_read_as_unknown_events(store: RunStore) -> None:
    newer = _insert(store, "n", "budget_exceeded", {"limit": 5}).payload
    assert newer == UnknownEvent("budget_exceeded", {"limit": 5})
    broken = _insert(store, "b", "run_finished", {"status": "exploded"}).payload
    assert isinstance(broken, UnknownEvent) and broken.kind == "run_finished" and broken.problem
    missing = parse_event("step_finished", {"model_calls": 1})
    assert isinstance(missing, UnknownEvent) and "outcome" in (missing.problem or "")


def test_a_long_json_tool_result_is_stored_as_a_json_preview_marked_cut(store: RunStore) -> None:
    """The event kept a result's first 500 characters: a tool's JSON result became a string cut mid-value
    that no reader could parse back."""
    listing = {"files": [{"path": f"src/f{i}.py", "size": i, "text": "x" * 300} for i in range(30)], "total": 30}
    whole = json.dumps(listing)
    store.emit("r1", "k.tool", ToolCalled.of_result(whole, tool="files.list", is_error=False), step_key="v0.a")
    [row] = store.events("r1")
    preview = json.loads(row.data["result"])  # valid JSON, of the result's shape
    assert len(row.data["result"]) <= 500
    assert preview["total"] == 30 and preview["files"][0]["path"] == "src/f0.py" and preview["files"][0]["size"] == 0
    *shown, rest = preview["files"]
    assert shown[0]["text"].endswith("…") and rest == f"… {30 - len(shown)} more"
    assert (row.data["result_truncated"], row.data["result_chars"]) == (True, len(whole))
    payload = row.payload
    assert isinstance(payload, ToolCalled) and payload.result_truncated and payload.result_chars == len(whole)


@pytest.mark.parametrize(
    "whole",
    [
        "error: tool 'http.get' failed: " + "y" * 900,  # text: its first characters
        '{"text": "' + "x" * 3990 + " [... 2000 more chars]",  # JSON the observation limit already cut
        "[" + "NaN, " * 200 + "1]",  # Python reads it, no JSON reader does
    ],
)
def test_a_long_text_tool_result_keeps_its_first_characters_marked_cut(whole: str) -> None:
    event = ToolCalled.of_result(whole, tool="t")
    assert event.result == whole[:500] and event.result_truncated and event.result_chars == len(whole)


def test_a_short_tool_result_is_stored_whole_in_the_shape_it_always_had() -> None:
    assert ToolCalled.of_result('{"ok": true}', tool="t").to_data() == {"tool": "t", "result": '{"ok": true}'}
    assert preview_result("x" * 500) == "x" * 500


@pytest.mark.parametrize(
    "value",
    [
        list(range(400)),
        {f"key-{i}-" + "k" * 200: i for i in range(40)},
        [[[[[[[[[["deep " * 50] * 3] * 3] * 3] * 3]]]]]],
        {"n": 10**300, "s": "é" * 600, "f": 0.1, "b": True, "none": None},
        "a JSON string " * 60,
    ],
)
def test_a_json_preview_fits_the_limit_and_parses_whatever_the_shape(value: Any) -> None:
    whole = json.dumps(value, ensure_ascii=False)
    preview = preview_result(whole)
    assert len(whole) > 500 >= len(preview)
    assert type(json.loads(preview)) is type(value)


@pytest.mark.parametrize("reader", READERS)
def test_readers_never_pick_event_data_apart_by_key(reader: str) -> None:
    source = (SRC / reader).read_text()
    guesses = re.findall(r"\.data(?:\[|\.get\()|\bd\.get\(|\bd\[", source)
    assert not guesses, f"{reader} reads event data by key ({guesses}); read the typed `event.payload` instead"


def test_the_performance_view_counts_failed_model_calls_per_agent() -> None:
    from edgecrew.domain.events import EventRecord, ModelCalled
    from edgecrew.ui.views import model_stats

    def call(agent: str, error: str | None = None) -> EventRecord:
        payload = ModelCalled(alias="local", latency_s=None if error else 1.0, error=error)
        data = payload.model_dump()
        return EventRecord(id=1, run_id="r", key="k", type="model_called", data=data, created_at=0, agent=agent,
                           step_key="v000." + agent)  # fmt: skip

    stats = model_stats([call("planner"), call("planner", "timed out"), call("summarizer"), call("summarizer")])
    assert stats["error_rate_by_agent"] == [("planner", 50.0), ("summarizer", 0.0)]
    assert stats["latency_by_agent"] == [("planner", 1.0), ("summarizer", 1.0)]


def test_a_loop_edge_and_its_label_lie_inside_the_graphs_picture() -> None:
    import re

    from edgecrew.specs.loader import load_team_text
    from edgecrew.ui.views import graph_svg

    spec = load_team_text(
        """
name: loop
agents:
  writer: {system: write}
  critic: {system: check, output_schema: {type: object, properties: {verdict: {enum: [approve, revise]}}}}
graph:
  start: writer
  edges:
    - {from: writer, to: critic}
    - {from: critic, to: writer, when: "verdict == 'revise'", max_loops: 2}
    - {from: critic, to: end}
"""
    )
    svg = str(graph_svg(spec))
    height = float(re.search(r'viewBox="0 0 [\d.]+ ([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    back = re.search(r'class="edge back" d="M([\d.]+),([\d.]+) C[\d.]+,([\d.]+)', svg)
    assert back is not None
    start, control = float(back.group(2)), float(back.group(3))
    assert start + (control - start) * 0.75 < height  # the arc's lowest point is inside the box
    label = re.search(r'class="edge-label" x="[\d.]+" y="([\d.]+)"[^>]*>([^<]*)<', svg)
    assert label is not None and float(label.group(1)) <= height
    assert label.group(2) == "verdict == &#x27;revise&#x27; · at most 2×"
