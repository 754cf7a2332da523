"""The call journal: a team run's model, tool and memory calls recorded in the store (one transaction with
each call's event), read back instead of calling again; DBOS steps in a cluster and for runs recorded that
way; the store's unflushed transactions and the SQLite driver path of its writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from edgecrew.domain.messages import ModelRequest
from edgecrew.domain.runs import RunStatus
from edgecrew.domain.specs import AgentSpec
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.models.scripted import ScriptedModel
from edgecrew.store import tables as t
from edgecrew.store.repo import open_store
from tests.teams import CHAIN, FAN
from tests.unit.engine_helpers import run_team, teardown

pytestmark = pytest.mark.integration

SOLO = """\
name: solo
agents:
  a: {model: fake, system: first}
graph: {start: a, edges: [{from: a, to: end}]}
"""


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    durable.route_model_calls(None)
    teardown()


def _operations(workflow_id: str) -> list[str]:
    from dbos._dbos import _get_dbos_instance

    steps = _get_dbos_instance()._sys_db.list_workflow_steps(workflow_id, load_output=False)
    return [s["function_name"] for s in steps]


async def test_a_run_records_each_call_with_its_event_and_no_dbos_step() -> None:
    model = ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]})
    run, rt = await run_team(CHAIN, model)
    assert run.status == "succeeded"
    with rt.store.engine.connect() as conn:
        journal = conn.execute(sa.select(t.calls).where(t.calls.c.run_id == run.id)).mappings().all()
    assert [(row["key"], row["kind"]) for row in journal] == [
        ("v000.a.m0", "model"),
        ("v001.b.m0", "model"),
        ("v002.c.m0", "model"),
    ]
    assert journal[1]["output"]["response"]["message"]["content"] == "B"
    events = {e.key for e in rt.store.events(run.id) if e.type == "model_called"}
    assert events == {f"{row['key']}.model" for row in journal}
    assert not [name for name in _operations(run.id) if name.startswith("edgecrew.")]  # no per-call DBOS steps
    # The routes and the step ends, written with the next step's start or the run's end, are all there.
    types = [e.type for e in rt.store.events(run.id)]
    assert types.count("route_taken") == 3 and types.count("step_finished") == 3
    assert types.index("route_taken") < types.index("step_started", types.index("step_started") + 1)
    assert [s.status for s in rt.store.steps(run.id)] == ["finished"] * 3


async def test_a_recorded_call_is_read_back_instead_of_called_again() -> None:
    model = ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]})
    run, rt = await run_team(CHAIN, model)
    calls_before = len(model.calls)
    recorded = await durable._journaled(rt, run.id, "v001.b.m0", "model", _never_called)
    assert recorded["response"]["message"]["content"] == "B" and len(model.calls) == calls_before
    status, missing = rt.store.recorded_call(run.id, "v009.z.m0")
    assert (status, missing) == (RunStatus.SUCCEEDED, None)
    rt.store.record_call(run.id, "v001.b.m0", "model", {"other": True})  # the first record of a key stands
    assert rt.store.recorded_call(run.id, "v001.b.m0")[1] == (recorded,)


async def _never_called(record: Any) -> Any:
    raise AssertionError("a recorded call was made again")


async def test_parallel_branches_record_their_calls_in_the_journal_too() -> None:
    model = ScriptedModel({"plan": ["P"], "left": ["L"], "right": ["R"], "merge": ["M"]})
    run, rt = await run_team(FAN, model)
    assert run.status == "succeeded"
    with rt.store.engine.connect() as conn:
        keys = conn.execute(sa.select(t.calls.c.key).where(t.calls.c.run_id == run.id)).scalars().all()
    assert sorted(keys) == ["v000.plan.m0", "v001.left.m0", "v002.right.m0", "v003.merge.m0"]


async def test_a_cluster_worker_records_calls_as_dbos_steps_and_a_resumed_run_keeps_its_way() -> None:
    async def route(
        rt: Runtime, run_id: str, key: str, agent: AgentSpec, request: ModelRequest, timeout_s: float
    ) -> dict[str, Any]:
        return await durable.model_call_step(run_id, key, agent.name, agent.model, request, timeout_s)

    durable.route_model_calls(route)  # what a cluster worker does
    model = ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]})
    run, rt = await run_team(CHAIN, model)
    assert run.status == "succeeded"
    assert _operations(run.id).count("edgecrew.model_call") == 3 and rt.store.call_count(run.id) == 0
    durable.route_model_calls(None)
    # Resumed in a process without the cluster, the run goes on with DBOS steps (its replay finds them).
    assert await durable._calls_as_steps(rt, run.id, run.id, resumed=True)
    # A journal run stays a journal run wherever it resumes; a new run decides by the process.
    journal_run, _ = await run_team(CHAIN, ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]}))
    durable.route_model_calls(route)
    assert not await durable._calls_as_steps(rt, journal_run.id, journal_run.id, resumed=True)
    assert await durable._calls_as_steps(rt, journal_run.id, journal_run.id, resumed=False)


def test_unflushed_transactions_commit_with_synchronous_normal(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with store.transaction() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: a recorded call, a run's status
    with store.transaction(flush=False) as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: rows a replay writes again
        with store.transaction() as inner:  # inside another: part of it
            assert inner is conn


def test_the_sqlite_driver_path_writes_what_sqlalchemy_would(tmp_path: Any) -> None:
    """Rows written through the driver read back as SQLAlchemy's own writes do: JSON (None too), column
    defaults on insert, an update that keeps the excluded columns."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_run("r1", "team", "task", {}, str(tmp_path))
    store.upsert_step("r1", "v0.a", agent="a", visit=0, status="running", started_at=5.0)
    with store.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT output, model_calls, started_at FROM steps").one()
    assert tuple(raw) == (None, 0, 5.0)  # no output given: NULL; the default 0 filled in
    store.upsert_step("r1", "v0.a", agent="a", visit=0, status="finished", output=None, started_at=9.0)
    store.upsert_step("r1", "v0.b", agent="b", visit=1, status="finished", output={"text": "ünï"}, model_calls=2)
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT key, output, status, started_at, model_calls FROM steps ORDER BY key").all()
    assert tuple(rows[0]) == ("v0.a", "null", "finished", 5.0, 0)  # None as JSON null, as SQLAlchemy
    assert json.loads(rows[1][1]) == {"text": "ünï"} and rows[1][4] == 2
    assert [s.output for s in store.steps("r1")] == [None, {"text": "ünï"}]


async def test_a_run_cancelled_in_the_store_alone_stops_before_its_next_call_and_ends_cancelled() -> None:
    """The canceller died between writing the store and telling DBOS: the run still stops at its next
    call, and its workflow ends cancelled instead of waiting for an outcome nobody records."""
    rt, model, run_id = await _chain_with_a_in_flight()
    assert rt.store.set_status(run_id, RunStatus.CANCELLED, error="cancelled by user")
    workflow = await _workflow_cancelled(run_id)
    assert workflow is not None and workflow.status == "CANCELLED"
    assert [c.agent for c in model.calls] == ["a"]  # b's call never started
    assert rt.store.get_run(run_id).status == RunStatus.CANCELLED


async def test_a_run_cancelled_during_a_step_starts_no_other() -> None:
    """The cancel lands while a's call is in flight: a finishes, b's step is never started (it would be
    left "running" in `runs show` for good), and the workflow ends cancelled."""
    import asyncio

    from edgecrew.engine.service import RunService

    rt, _, run_id = await _chain_with_a_in_flight()
    assert RunService(rt).cancel(run_id).status == RunStatus.CANCELLED
    await _workflow_cancelled(run_id)
    await asyncio.sleep(0.6)  # past a's reply: a step started after the cancel would be there now
    assert [(s.agent, s.status) for s in rt.store.steps(run_id)] == [("a", "finished")]
    assert [e.agent for e in rt.store.events(run_id) if e.type == "step_started"] == ["a"]
    assert rt.store.get_run(run_id).status == RunStatus.CANCELLED


def _after_cancel(rt: Runtime, run_id: str) -> list[tuple[str, str]]:
    """(key, type) of the run's events written after its run_cancelled."""
    events = [(e.key, e.type) for e in rt.store.events(run_id)]
    return events[events.index(("run_cancelled", "run_cancelled")) + 1 :]


@pytest.mark.parametrize("team_yaml", [CHAIN, SOLO], ids=["a routes to b", "a routes to the end"])
async def test_a_run_cancelled_during_a_step_routes_nowhere_after_the_cancel(team_yaml: str) -> None:
    """The step in flight writes its end after run_cancelled, but not the route its output picked (to
    the next agent, or to the end): a cancelled run goes nowhere."""
    import asyncio

    from edgecrew.engine.service import RunService

    rt, _, run_id = await _chain_with_a_in_flight(team_yaml=team_yaml)
    RunService(rt).cancel(run_id)
    await _workflow_cancelled(run_id)
    await asyncio.sleep(0.6)  # past a's reply: its end, and any route, are written by now
    after = _after_cancel(rt, run_id)
    assert ("v000.a.finished", "step_finished") in after
    assert [kind for _, kind in after if kind == "route_taken"] == [], after


async def test_a_step_its_runs_cancel_stops_at_its_next_call_ends_cancelled() -> None:
    """a's reply asks for a tool: the turn stops at that call. Its end is still written (outcome and row
    "cancelled"), so no step of the run is left open for a follower to wait on."""
    import asyncio

    from edgecrew.domain.runs import Outcome
    from edgecrew.engine.service import RunService

    rt, _, run_id = await _chain_with_a_in_flight([{"tool": "time.now", "args": {}, "delay": 0.5}, "A"])
    RunService(rt).cancel(run_id)
    await _workflow_cancelled(run_id)
    await asyncio.sleep(0.6)
    assert _after_cancel(rt, run_id) == [("v000.a.m0.model", "model_called"), ("v000.a.finished", "step_finished")]
    [end] = [e for e in rt.store.events(run_id) if e.type == "step_finished"]
    assert end.data["outcome"] == Outcome.CANCELLED.value
    assert [(s.agent, s.status, s.outcome) for s in rt.store.steps(run_id)] == [("a", "cancelled", "cancelled")]
    assert rt.store.call_count(run_id) == 1  # the tool call was never made


async def test_following_a_run_cancelled_during_a_step_shows_that_step_end_then_ends() -> None:
    """RunService.follow (what `edgecrew runs follow`, SSE, the UI and /v1 read) goes on past
    run_cancelled to the end of the step the cancel caught in flight, and then stops."""
    import asyncio

    from edgecrew.domain.events import EventRecord
    from edgecrew.engine.service import RunService

    rt, _, run_id = await _chain_with_a_in_flight()
    seen: list[EventRecord] = []
    following = asyncio.create_task(RunService(rt).follow(run_id, seen.append, timeout_s=20))
    await asyncio.sleep(0.1)
    RunService(rt).cancel(run_id)
    run = await asyncio.wait_for(following, 20)
    assert run.status == RunStatus.CANCELLED
    types = [(e.key, e.type) for e in seen]
    assert types[types.index(("run_cancelled", "run_cancelled")) :] == [
        ("run_cancelled", "run_cancelled"),
        ("v000.a.m0.model", "model_called"),
        ("v000.a.finished", "step_finished"),
    ]
    assert seen[-1].data["outcome"] == "final"  # a's call finished: the engine records a's end as it was


async def test_a_stream_resumed_after_run_cancelled_still_waits_for_the_step_in_flight() -> None:
    """A client that reconnects after run_cancelled (Last-Event-ID) gets a's end too, though a's call
    outlasts the grace a stream gives a run found ended for its end event to land."""
    from edgecrew.domain.events import EventRecord
    from edgecrew.engine.service import RunService

    rt, _, run_id = await _chain_with_a_in_flight([{"text": "A", "delay": 3.0}])
    svc = RunService(rt)
    svc.cancel(run_id)
    seen: list[EventRecord] = []
    await svc.follow(run_id, seen.append, after_id=svc.last_event_id(run_id), timeout_s=20)
    assert [e.key for e in seen] == ["v000.a.m0.model", "v000.a.finished"]


async def test_the_stream_of_a_run_cancelled_before_any_step_ends_at_once() -> None:
    """Nothing was in flight (the run was recorded, its workflow never started): the stream ends with
    run_cancelled, as it did before it learned to wait for steps in flight."""
    import time

    from edgecrew.bootstrap import bootstrap
    from edgecrew.domain.events import EventRecord
    from edgecrew.engine.service import RunService, TeamFile

    rt = bootstrap()
    rt.models.register("fake", ScriptedModel(["A"]))
    team = rt.settings.project_dir / "teams" / "t.yaml"
    team.parent.mkdir(parents=True, exist_ok=True)
    team.write_text(CHAIN)
    svc = RunService(rt)
    run_id = svc.record(TeamFile(team), "go").run.id
    svc.cancel(run_id)
    seen: list[EventRecord] = []
    began = time.monotonic()
    await svc.follow(run_id, seen.append, timeout_s=20)
    assert time.monotonic() - began < 2
    assert [e.type for e in seen] == ["run_created", "run_cancelled"]


def test_store_synchronous_normal_makes_every_commit_unflushed(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """EDGECREW_STORE_SYNCHRONOUS=normal (slow disks): a recorded call's commit no longer waits for the disk."""
    from edgecrew.settings import reset_settings

    monkeypatch.setenv("EDGECREW_STORE_SYNCHRONOUS", "normal")
    reset_settings()
    try:
        store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
        with store.transaction() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
        store.close()
    finally:
        monkeypatch.delenv("EDGECREW_STORE_SYNCHRONOUS")
        reset_settings()
    monkeypatch.setenv("EDGECREW_STORE_SYNCHRONOUS", "sometimes")
    reset_settings()
    try:
        from edgecrew.errors import UserError
        from edgecrew.settings import get_settings

        with pytest.raises(
            UserError, match=r"EDGECREW_STORE_SYNCHRONOUS='sometimes': Input should be 'full' or 'normal'"
        ):
            get_settings()
    finally:
        monkeypatch.delenv("EDGECREW_STORE_SYNCHRONOUS")
        reset_settings()


def test_a_bad_setting_is_a_clear_error_on_the_command_line(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "EDGECREW_HOME": str(tmp_path), "EDGECREW_STORE_SYNCHRONOUS": "sometimes"}
    done = subprocess.run(
        [sys.executable, "-m", "edgecrew", "runs", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "invalid setting: EDGECREW_STORE_SYNCHRONOUS='sometimes'" in done.stderr


async def test_a_fresh_run_makes_no_journal_lookup_before_its_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose workflow began here from QUEUED has nothing in the journal: its calls skip the lookup
    (a resumed run reads it before each call: the crash tests). Its cancel check reads the status in the
    transactions the run makes anyway (the test above)."""
    from edgecrew.store.repo import RunStore

    lookups: list[str] = []
    real = RunStore.recorded_call

    def counted(self: RunStore, run_id: str, key: str) -> Any:
        lookups.append(key)
        return real(self, run_id, key)

    monkeypatch.setattr(RunStore, "recorded_call", counted)
    run, rt = await run_team(CHAIN, ScriptedModel({"a": ["A"], "b": ["B"], "c": ["C"]}))
    assert run.status == "succeeded" and lookups == []
    assert len(rt.store.events(run.id)) > 0


async def _chain_with_a_in_flight(
    a: list[Any] | None = None, team_yaml: str = CHAIN
) -> tuple[Runtime, ScriptedModel, str]:
    """A run of the a -> b -> c chain (or ``team_yaml``) started here, its first call (half a second long,
    replying ``a``'s first reply) under way."""
    import asyncio

    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine.service import RunService, TeamFile

    rt = bootstrap()
    model = ScriptedModel({"a": a or [{"text": "A", "delay": 0.5}], "b": ["B"], "c": ["C"]})
    rt.models.register("fake", model)
    team = rt.settings.project_dir / "teams" / "t.yaml"
    team.parent.mkdir(parents=True, exist_ok=True)
    team.write_text(team_yaml)
    run_id = (await RunService(rt).start(TeamFile(team), "go")).run.id
    for _ in range(200):
        if model.calls:
            break
        await asyncio.sleep(0.01)
    return rt, model, run_id


async def _workflow_cancelled(run_id: str) -> Any:
    """DBOS's view of the run's workflow once it says CANCELLED (or after ten seconds)."""
    import asyncio

    workflow = None
    for _ in range(500):
        workflow = await durable.workflow_status(run_id)
        if workflow is not None and workflow.status == "CANCELLED":
            break
        await asyncio.sleep(0.02)
    return workflow
