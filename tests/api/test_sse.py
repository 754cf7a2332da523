"""Run events over Server-Sent Events, read by a real HTTP client from a real uvicorn server.

The stream carries every event in order, each with its id, and ends after ``run_finished``;
reconnecting with ``Last-Event-ID`` gives exactly the events after that id; a run waiting for an
approval keeps its stream open, and the events after the decision come down the same stream; a run
cancelled during a step streams that step's end (written after ``run_cancelled``) before it ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecrew.app import create_app
from edgecrew.models.scripted import ScriptedModel
from edgecrew.store.keys import ApiKeyStore
from tests.api.conftest import auth
from tests.api.live import SseEvent, ThreadServer, iter_sse, serve_in_thread, server_settings, write_project
from tests.conftest import write

SSE = {"Accept": "text/event-stream"}
TIMEOUT = httpx.Timeout(60.0)  # a read waits at most this long (the server pings every 15 s)


# a's reply takes a second, on a model the test registers as "slow" (a cancel lands during it)
RELAY = """
name: relay
agents:
  a: {model: slow, system: x}
  b: {model: slow, system: y}
graph: {start: a, edges: [{from: a, to: b}]}
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ThreadServer, httpx.Client]]:
    write(write_project(tmp_path / "project") / "teams" / "relay.yaml", RELAY)
    with serve_in_thread(create_app(server_settings(tmp_path))) as server:
        key = ApiKeyStore(server.app.state.rt.store).create("sse", ("admin",))[1]
        with httpx.Client(base_url=server.url, headers=auth(key), timeout=TIMEOUT) as http:
            yield server, http


def _start(http: httpx.Client, team: str) -> str:
    started = http.post("/runs", json={"team": team, "task": "go"})
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]
    return run_id


def _read_all(
    http: httpx.Client, run_id: str, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
) -> list[SseEvent]:
    with http.stream("GET", f"/runs/{run_id}/events", headers={**SSE, **(headers or {})}, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(iter_sse(response))  # the server ends the stream after the run's last event


def _assert_well_formed(events: list[SseEvent], run_id: str) -> None:
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    for event in events:
        body: dict[str, Any] = event.json()
        assert body["type"] == event.event and str(body["id"]) == event.id and body["run_id"] == run_id


def test_stream_carries_every_event_in_order_and_ends(live: tuple[ThreadServer, httpx.Client]) -> None:
    _server, http = live
    run_id = _start(http, "echo")
    events = _read_all(http, run_id)
    _assert_well_formed(events, run_id)
    types = [e.event for e in events]
    assert types[0] == "run_created" and types[-1] == "run_finished", types
    assert "step_started" in types and "model_called" in types
    assert events[-1].json()["data"]["status"] == "succeeded"
    # the stream and the JSON form of the same operation agree
    stored = http.get(f"/runs/{run_id}/events").json()
    assert [(str(e["id"]), e["type"]) for e in stored] == [(e.id, e.event) for e in events]


def test_reconnect_with_last_event_id_gives_exactly_the_rest(live: tuple[ThreadServer, httpx.Client]) -> None:
    _server, http = live
    run_id = _start(http, "echo")
    everything = _read_all(http, run_id)
    assert len(everything) >= 4
    middle = everything[len(everything) // 2 - 1]
    rest = _read_all(http, run_id, {"Last-Event-ID": str(middle.id)})
    expected = everything[len(everything) // 2 :]
    assert [(e.id, e.event, e.data) for e in rest] == [(e.id, e.event, e.data) for e in expected]
    # the query parameter does the same for clients that cannot set headers; the larger one wins
    by_query = _read_all(http, run_id, params={"after": str(middle.id)})
    assert [e.id for e in by_query] == [e.id for e in rest]
    both = _read_all(http, run_id, {"Last-Event-ID": str(middle.id)}, {"after": str(everything[-2].id)})
    assert [e.id for e in both] == [everything[-1].id]
    assert _read_all(http, run_id, {"Last-Event-ID": str(everything[-1].id)}) == []


def test_a_stream_left_mid_run_resumes_from_its_last_id(live: tuple[ThreadServer, httpx.Client]) -> None:
    """A client that drops the connection after two events and reconnects misses nothing."""
    _server, http = live
    run_id = _start(http, "ship")
    with http.stream("GET", f"/runs/{run_id}/events", headers=SSE) as response:
        first: list[SseEvent] = []
        for event in iter_sse(response):
            first.append(event)
            if len(first) == 2:
                break
    _approve_when_asked(http, run_id)
    rest = _read_all(http, run_id, {"Last-Event-ID": str(first[-1].id)})
    everything = _read_all(http, run_id)
    assert [e.id for e in first + rest] == [e.id for e in everything]
    assert everything[-1].event == "run_finished"


def _approve_when_asked(http: httpx.Client, run_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pending = http.get("/approvals", params={"run": run_id}).json()
        if pending:
            approval_id: str = pending[0]["id"]
            decided = http.post(f"/approvals/{approval_id}/approve", json={"note": "go"})
            assert decided.status_code == 200, decided.text
            return approval_id
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} asked for no approval")


def test_waiting_for_approval_keeps_the_stream_open(live: tuple[ThreadServer, httpx.Client]) -> None:
    _server, http = live
    run_id = _start(http, "ship")
    seen: list[SseEvent] = []
    with http.stream("GET", f"/runs/{run_id}/events", headers=SSE) as response:
        for event in iter_sse(response):
            seen.append(event)
            if event.event == "approval_requested":
                # the run now waits; the stream is still open (we are reading it) and nothing ended it
                assert http.get(f"/runs/{run_id}").json()["status"] == "waiting_approval"
                approval = event.json()["data"]["approval"]
                decided = http.post(f"/approvals/{approval}/approve", json={"note": "ship it"})
                assert decided.status_code == 200, decided.text
    types = [e.event for e in seen]
    asked = types.index("approval_requested")
    assert "approval_decided" in types[asked:] and "tool_called" in types[asked:], types
    assert types[-1] == "run_finished" and seen[-1].json()["data"]["status"] == "succeeded"
    decided_event = seen[types.index("approval_decided")].json()["data"]
    assert decided_event["approved"] is True and decided_event["note"] == "ship it"
    _assert_well_formed(seen, run_id)


def test_stream_of_an_unknown_run_is_a_problem(live: tuple[ThreadServer, httpx.Client]) -> None:
    _server, http = live
    response = http.get("/runs/nothing-here/events", headers=SSE)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_run_whose_workflow_ended_without_finishing_it_is_failed_and_its_stream_ends(
    live: tuple[ThreadServer, httpx.Client],
) -> None:
    """The stream behind SSE and the UI asks DBOS about a live run's workflow: one that ended while the
    store still says running (a process that died between the two) fails the run, so a watcher is not
    left polling a run nobody will finish."""
    import sqlalchemy as sa

    from edgecrew.store import tables as t

    server, http = live
    run_id = _start(http, "echo")
    finished = _read_all(http, run_id)
    assert finished[-1].json()["data"]["status"] == "succeeded"
    store = server.app.state.rt.store
    with store.engine.begin() as conn:  # the store as a process that died before the run's end left it
        conn.execute(sa.delete(t.events).where(t.events.c.run_id == run_id, t.events.c.type == "run_finished"))
        conn.execute(sa.update(t.runs).where(t.runs.c.id == run_id).values(status="running", output=None))
    assert http.get(f"/runs/{run_id}").json()["status"] == "running"

    rest = _read_all(http, run_id, {"Last-Event-ID": str(finished[-2].id)})
    assert [e.event for e in rest] == ["run_finished"]
    end = rest[0].json()["data"]
    assert end["status"] == "failed"
    assert "its workflow ended (success) without finishing the run" in end["error"]
    assert http.get(f"/runs/{run_id}").json()["status"] == "failed"


def test_a_run_cancelled_during_a_step_streams_that_step_end_then_ends(live: tuple[ThreadServer, httpx.Client]) -> None:
    """The cancel lands while a's model call is under way. run_cancelled is written first; a's call and
    a's end come after it, down the same stream, and no route (the run goes nowhere); then it ends."""
    server, http = live
    model = ScriptedModel({"a": [{"text": "A", "delay": 1.0}], "b": ["B"]})
    server.app.state.rt.models.register("slow", model)
    run_id = _start(http, "relay")
    seen: list[SseEvent] = []
    with http.stream("GET", f"/runs/{run_id}/events", headers=SSE) as response:
        for event in iter_sse(response):
            seen.append(event)
            if event.event == "step_started":
                deadline = time.monotonic() + 30
                while not model.calls and time.monotonic() < deadline:  # a's call is under way
                    time.sleep(0.01)
                cancelled = http.post(f"/runs/{run_id}/cancel")
                assert cancelled.status_code == 200, cancelled.text
    _assert_well_formed(seen, run_id)
    types = [e.event for e in seen]
    assert types[types.index("run_cancelled") :] == ["run_cancelled", "model_called", "step_finished"], types
    assert seen[-1].json()["data"]["outcome"] == "final" and seen[-1].json()["agent"] == "a"
    assert [c.agent for c in model.calls] == ["a"]
