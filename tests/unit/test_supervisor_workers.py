"""The supervisor watching cluster workers, with a fed-in workers table and clock: a worker declared
dead (or silent past its lease) is a ``worker_lost`` incident whose diagnosis names its last heartbeat,
its models, who declared it and how many workflows were recovered; it is healed once live workers
recovered its workflows, escalated when nobody did (no live worker), and ``restart_worker`` is never
pretended: edgecrew cannot restart a remote process, so it escalates and says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.cluster.lease import WorkerInfo
from edgecrew.cluster.table import RECOVERING, WorkerTable
from edgecrew.engine.runtime import Runtime
from edgecrew.ops import Ops
from edgecrew.ops import supervisor as module
from edgecrew.ops.incidents import AWAIT_RECOVERY, Decision, worker_findings, worker_recovery
from edgecrew.ops.supervisor import Supervisor

LEASE = 10.0
T0 = 1_750_000_000.0


def _w(wid: str, beat: float, aliases: tuple[str, ...] = ("fast",), host: str = "h") -> WorkerInfo:
    return WorkerInfo(wid, host, 42, aliases, ("general",), heartbeat_at=beat, started_at=T0 - 100)


def _row(wid: str, beat: float, state: str = "alive", **more: object) -> dict[str, object]:
    row: dict[str, object] = {"id": wid, "host": f"host-{wid}", "pid": 7, "aliases": ["coder"], "tags": ["coding"]}
    return {**row, "state": state, "heartbeat_at": beat, "dead_at": None, "declared_by": None, "recovered": 0, **more}


# -- judging on fed-in rows --------------------------------------------------------------------------


def test_a_dead_worker_is_lost_with_its_heartbeat_models_and_recovery() -> None:
    rows = [
        _row("a", T0 - 30, "dead", dead_at=T0 - 15, declared_by="b", recovered=3),
        _row("b", T0 - 1, aliases=["fast"]),
        _row("c", T0 - 500, "stopped"),  # a clean stop is not a loss
    ]
    [found] = worker_findings(rows, T0, LEASE)
    assert found.kind == "worker_lost" and found.subject == f"a@{int(T0 - 30)}"
    d = found.diagnosis
    assert d["last_heartbeat_at"] == T0 - 30 and d["models"] == ["coder"] and d["tags"] == ["coding"]
    assert d["recovery"] == {"state": "dead", "dead_at": T0 - 15, "declared_by": "b", "recovered": 3}
    assert [w["id"] for w in d["live_workers"]] == ["b"] and d["unserved_models"] == ["coder"]
    assert "declared dead by worker b" in found.error
    # Long gone before the look-back: not a new incident.
    assert worker_findings(rows, T0, LEASE, since=T0 - 10) == []


def test_a_recovered_worker_heals_and_one_nobody_recovered_escalates() -> None:
    live = _row("b", T0 - 1)
    recovered = worker_recovery("a", [_row("a", T0 - 30, "dead", declared_by="b", recovered=2), live], T0, LEASE, 20)
    assert recovered is not None and recovered.healed
    assert recovered.reason == "its 2 workflow(s) were recovered by worker b and run on live workers (b)"
    assert recovered.recovery["declared_by"] == "b" and recovered.recovery["recovered"] == 2
    empty = worker_recovery("a", [_row("a", T0 - 30, "dead", declared_by="b"), live], T0, LEASE, 20)
    assert empty is not None and empty.healed and empty.reason == "it held no unfinished workflow"
    # Silent, and no live worker is left to declare it and recover its workflows.
    alone = [_row("a", T0 - 12)]
    assert worker_recovery("a", alone, T0, LEASE, grace_s=20) is None  # a worker may still start
    lost = worker_recovery("a", alone, T0 + 30, LEASE, grace_s=20)
    assert lost is not None and not lost.healed
    assert lost.reason.startswith(
        "no live worker is left to recover its workflows; restart `edgecrew worker` on host-a"
    )
    assert "cannot restart a process on another machine" in lost.reason
    # Recovered, but nobody is left to run what was recovered.
    orphaned = worker_recovery("a", [_row("a", T0 - 30, "dead", declared_by="b", recovered=4)], T0, LEASE, 20)
    assert orphaned is not None and not orphaned.healed and "no live worker is left to run them" in orphaned.reason


def test_a_recovery_under_way_is_waited_for_and_one_that_never_finished_escalates() -> None:
    rows = [_row("a", T0 - 30, "dead", dead_at=T0 - 5, declared_by="b", recovered=RECOVERING), _row("b", T0)]
    assert worker_recovery("a", rows, T0, LEASE, grace_s=20) is None
    stuck = worker_recovery("a", rows, T0 + 30, LEASE, grace_s=20)
    assert stuck is not None and not stuck.healed and "never finished recovering" in stuck.reason
    assert stuck.recovery["recovered"] is None  # unknown, not "none"
    back = worker_recovery("a", [_row("a", T0 - 1)], T0, LEASE, 20)
    assert back is not None and back.healed and "heartbeats again" in back.reason


# -- the supervisor on a real (SQLite) workers table -------------------------------------------------


@pytest.fixture
def rt(project_dir: Path, edgecrew_home: Path, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("EDGECREW_CLUSTER_LEASE_S", str(LEASE))
    monkeypatch.setenv("EDGECREW_CLUSTER_HEARTBEAT_S", "2")
    monkeypatch.setattr(module, "FOLLOW_POLL_S", 0.01)
    from edgecrew.settings import reset_settings

    reset_settings()
    return bootstrap()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _lost(sup: Supervisor, at: float) -> str:
    [finding] = [f for f in sup.detect(at - 3600, at) if f.kind == "worker_lost"]
    incident = sup.record(finding)
    assert incident is not None
    decision = await sup.decide(incident.id)
    assert decision.action == AWAIT_RECOVERY and decision.decided_by == "rule" and not decision.risky
    assert await sup.apply(incident.id, decision) == f"worker:{finding.diagnosis['worker']['id']}"
    return incident.id


async def test_a_dead_worker_whose_workflows_were_recovered_is_healed(rt: Runtime) -> None:
    sup = Ops.of(rt).supervisor
    sup.clock = clock = Clock(T0)
    table = WorkerTable(rt.store.engine)
    table.register(_w("w1", T0 - 30, ("coder",), host="old-box"))
    table.register(_w("w2", T0))
    assert table.declare_dead(T0, LEASE, by="w2") == ["w1"]  # a live worker won the declaration...
    incident_id = await _lost(sup, T0)
    table.recovered("w1", 3)  # ...and recovered its three workflows
    clock.now = T0 + 1
    table.heartbeat("w2", T0 + 1, running=3)
    done = await sup.follow(incident_id)
    assert done.ok and done.reason == "its 3 workflow(s) were recovered by worker w2 and run on live workers (w2)"
    sup.healed(incident_id, done.reason)
    incident = sup.get(incident_id)
    assert incident.state == "healed" and incident.subject_type == "worker"
    d = incident.diagnosis
    assert d["worker"]["host"] == "old-box" and d["models"] == ["coder"] and d["last_heartbeat_at"] == T0 - 30
    assert d["recovery"]["declared_by"] == "w2" and d["recovery"]["recovered"] == 3
    assert d["recovery"]["live_workers"] == ["w2"]
    assert [e.kind for e in sup.events(incident_id)] == ["detected", "decided", "applied", "failover", "healed"]


async def test_a_worker_lost_with_no_live_worker_escalates_and_says_who_must_restart_it(
    rt: Runtime, project_dir: Path
) -> None:
    sup = Ops.of(rt).supervisor
    sup.clock = clock = Clock(T0)
    table = WorkerTable(rt.store.engine)
    table.register(_w("w1", T0 - 30, ("coder",), host="old-box"))  # the only worker, silent
    assert sup.detect(T0 - 3600, T0 - LEASE) == []  # serve's first look: a lease for workers to declare it
    incident_id = await _lost(sup, T0)
    clock.now = T0 + 60  # past the grace: nobody declared it, nobody recovered anything
    done = await sup.follow(incident_id)
    assert not done.ok and done.reason.startswith("no live worker is left to recover its workflows")
    assert "restart `edgecrew worker` on old-box" in done.reason and "no restart_worker handler" in done.reason
    path = await sup.escalate(incident_id, done.reason)
    incident = sup.get(incident_id)
    assert incident.state == "escalated" and path is not None and Path(path).parent == project_dir / "regressions"
    assert incident.diagnosis["recovery"]["live_workers"] == []
    # The incident workflow decides nothing more: its failover was judged.
    assert (await sup.decide(incident_id)).action == "escalate"


def test_restart_worker_is_not_pretended(rt: Runtime) -> None:
    sup = Ops.of(rt).supervisor
    WorkerTable(rt.store.engine).register(_w("w1", T0 - 30))
    assert sup.detect(T0 - 3600, T0 - LEASE) == []  # serve's first look: a lease for workers to declare it
    [finding] = [f for f in sup.detect(T0 - 3600, T0) if f.kind == "worker_lost"]
    incident = sup.record(finding)
    assert incident is not None and "restart_worker" not in module._ACTIONS
    checked = sup._checked(incident, Decision("restart_worker", "bounce it", {"worker": "w1"}, "model"))
    assert checked.action == "escalate" and "cannot restart a worker process" in checked.reason
    assert sup._checked(incident, Decision("change_model", "swap", {"model": "x"}, "model")).action == "escalate"


async def test_workers_silent_through_a_database_outage_are_given_a_lease_before_they_are_lost(
    rt: Runtime,
) -> None:
    """Postgres stopped past a lease: serve's supervisor, back first, recorded every worker as lost (silent
    past its lease) and escalated them ("no live worker is left to recover its workflows") while they were
    renewing their leases. It could not see the database either: like a worker back from an outage, it
    now gives them a lease to renew before it calls one lost, and the failover's grace counts from then."""
    sup = Ops.of(rt).supervisor
    sup.clock = Clock(T0)
    interval = rt.settings.supervisor_interval_s
    table = WorkerTable(rt.store.engine)
    for wid in ("w1", "w2", "w3"):
        table.register(_w(wid, T0))
    assert sup.detect(T0 - 3600, T0) == []
    # The database is out of reach for 30 s: the supervisor's next good read of the table comes late.
    back = T0 + LEASE + interval + 10
    assert [f.subject for f in sup.detect(T0 - 3600, back) if f.kind == "worker_lost"] == []
    table.heartbeat("w1", back + 1, running=0)  # w1 renews its lease within the grace, then w3
    table.heartbeat("w3", back + 2, running=0)
    assert sup.detect(T0 - 3600, back + 3) == []
    # A worker declared dead by a live one (it was really gone) is lost, grace or not.
    assert table.declare_dead(back + 4, LEASE, by="w1") == ["w2"]
    [dead] = sup.detect(T0 - 3600, back + 4)
    assert dead.diagnosis["worker"]["id"] == "w2"


async def test_a_worker_still_silent_after_the_supervisors_grace_waits_for_the_live_workers_grace(
    rt: Runtime,
) -> None:
    """A worker that died during the outage: the supervisor calls it lost once its own grace is over, and
    gives the live workers (back from the same outage, just as patient) their grace to declare it from
    then, instead of escalating at once because its lease ran out long before."""
    sup = Ops.of(rt).supervisor
    sup.clock = clock = Clock(T0)
    interval = rt.settings.supervisor_interval_s
    table = WorkerTable(rt.store.engine)
    table.register(_w("w1", T0))
    table.register(_w("w2", T0, ("coder",)))
    assert sup.detect(T0 - 3600, T0) == []
    back = T0 + LEASE + interval + 10
    assert sup.detect(T0 - 3600, back) == []  # the outage: both silent, both given a lease
    table.heartbeat("w1", back + 1, running=0)
    clock.now = after = back + LEASE + 1  # w2 stays silent past the supervisor's grace
    table.heartbeat("w1", after, running=0)
    incident_id = await _lost(sup, after)
    follow = asyncio.create_task(sup.follow(incident_id))
    await asyncio.sleep(0.1)
    assert not follow.done()  # w1 has not declared it yet: it too gives it a lease first
    clock.now = after + 2
    table.heartbeat("w1", after + 2, running=0)
    assert table.declare_dead(after + 2, LEASE, by="w1") == ["w2"]
    table.recovered("w2", 1)
    done = await asyncio.wait_for(follow, 5)
    assert done.ok and done.reason == "its 1 workflow(s) were recovered by worker w1 and run on live workers (w1)"


async def test_a_just_started_supervisor_gives_silent_workers_a_lease_before_it_calls_one_lost(
    rt: Runtime,
) -> None:
    """A cluster brought up again (serve and the workers started together, after a power cut): serve's
    first scan found the workers of before silent past their lease, nobody having declared them yet, and
    escalated each at once ("no live worker is left to recover its workflows"), while the workers starting
    with it declared them dead on their first heartbeat and recovered their workflows. A just-started
    supervisor now gives them the lease it gives them after an outage; one still undeclared after it is
    lost, and the failover's grace counts from then."""
    sup = Ops.of(rt).supervisor
    sup.clock = clock = Clock(T0)
    table = WorkerTable(rt.store.engine)
    table.register(_w("old", T0 - 300, ("coder",)))  # a worker of before, still marked alive
    assert sup.detect(T0 - 3600, T0) == []  # serve's first look
    table.register(_w("new", T0 + 2))  # a worker starting with serve declares it on its first heartbeat...
    assert table.declare_dead(T0 + 2, LEASE, by="new") == ["old"]
    clock.now = T0 + 3
    incident_id = await _lost(sup, T0 + 3)  # ...which is a loss at once (a live worker declared it)
    table.recovered("old", 2)
    done = await asyncio.wait_for(sup.follow(incident_id), 5)
    assert done.ok and done.reason == "its 2 workflow(s) were recovered by worker new and run on live workers (new)"


async def test_a_worker_nobody_declares_after_serves_start_is_lost_after_its_lease_then_the_grace(
    rt: Runtime,
) -> None:
    sup = Ops.of(rt).supervisor
    sup.clock = clock = Clock(T0)
    WorkerTable(rt.store.engine).register(_w("old", T0 - 300, ("coder",), host="old-box"))
    assert sup.detect(T0 - 3600, T0) == []  # serve's first look: its lease for the workers
    assert sup.detect(T0 - 3600, T0 + LEASE - 1) == []
    clock.now = T0 + LEASE
    incident_id = await _lost(sup, T0 + LEASE)  # nobody declared it: lost once the lease is over
    follow = asyncio.create_task(sup.follow(incident_id))
    await asyncio.sleep(0.1)
    assert not follow.done()  # the failover's grace counts from the end of that lease, not its silence
    clock.now = T0 + 2 * LEASE + 1
    done = await asyncio.wait_for(follow, 5)
    assert not done.ok and done.reason.startswith("no live worker is left to recover its workflows")
