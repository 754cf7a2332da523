"""The cluster's lease rule with a fed-in clock: who is alive, who is declared dead, who serves what,
where a model call goes; and the atomic "declare dead" on a real (SQLite) workers table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from edgecrew.cluster.calls import candidates, plan
from edgecrew.cluster.lease import WorkerInfo, alive, disagreements, expired, serving
from edgecrew.cluster.table import WorkerTable
from edgecrew.models.registry import ModelDef, ModelRegistry
from edgecrew.store import tables as t

LEASE = 10.0


def _tables(tmp_path: Path) -> sa.Engine:
    """A SQLite workers table with DBOS's workflow table beside it (attached as schema ``dbos``, as on the
    cluster's Postgres), which a worker reads its running workflows from."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")

    @sa.event.listens_for(engine, "connect")
    def attach(dbapi_conn: Any, _: object) -> None:
        dbapi_conn.execute(f"ATTACH DATABASE '{tmp_path / 'dbos.db'}' AS dbos")

    t.workers.create(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE dbos.workflow_status (workflow_uuid TEXT PRIMARY KEY, executor_id TEXT, status TEXT)")
        )
    return engine


def _workflow(engine: sa.Engine, workflow_id: str, executor: str, status: str = "PENDING") -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO dbos.workflow_status VALUES (:i, :e, :s)"),
            {"i": workflow_id, "e": executor, "s": status},
        )


def _w(
    wid: str, beat: float, aliases: tuple[str, ...] = ("fast",), state: str = "alive", running: int = 0
) -> WorkerInfo:
    return WorkerInfo(wid, "h", 1, aliases, (), heartbeat_at=beat, started_at=0.0, state=state, running=running)


def test_a_worker_is_alive_until_its_lease_runs_out() -> None:
    w = _w("a", beat=100.0)
    assert w.is_alive(110.0, LEASE)  # exactly the lease: still alive
    assert not w.is_alive(110.01, LEASE)
    assert expired([w], 110.0, LEASE) == [] and expired([w], 110.5, LEASE) == [w]


def test_dead_and_stopping_workers() -> None:
    dead, stopping = _w("d", 109.0, state="dead"), _w("s", 109.5, state="stopping")
    assert alive([dead, stopping], 110.0, LEASE) == []
    # A clean stop ends its lease at once (its last heartbeat is recent): recovered too, once.
    assert expired([dead, stopping], 110.0, LEASE) == [stopping]
    assert dead.to_dict(110.0, LEASE)["state"] == "dead"
    assert _w("x", 50.0).to_dict(110.0, LEASE)["state"] == "silent"


def test_serving_lists_live_workers_of_an_alias_least_loaded_first() -> None:
    busy, idle, gone = _w("a", 100, ("coder",), running=1), _w("b", 100, ("coder",)), _w("c", 10, ("coder",))
    assert serving([busy, idle, gone, _w("d", 100)], "coder", 105.0, LEASE) == [idle, busy]


def test_plan_runs_locally_remotely_or_falls_back_along_the_chain() -> None:
    expert = _w("e", 100, ("coder", "fast"))
    chain = ["coder", "fast", "local"]
    assert plan(chain, {"fast"}, [expert], 105.0, LEASE) == ("remote", "coder", [])
    assert plan(chain, {"coder", "fast"}, [expert], 105.0, LEASE) == ("local", "coder", [])
    # The expert's lease ran out: the call falls back to the next alias this worker serves.
    assert plan(chain, {"fast"}, [expert], 200.0, LEASE) == ("local", "fast", ["coder"])
    assert plan(["coder"], set(), [], 105.0, LEASE) == ("local", None, ["coder"])


def test_an_alias_only_another_workers_project_declares_goes_to_that_worker() -> None:
    """A worker whose project lacks `coder` failed the step ("unknown model alias 'coder'") although a live
    worker served it: its call had no candidates at all, so it never went to the alias's queue."""
    here = ModelRegistry({"fast": ModelDef("fast", "scripted")})  # this worker's project: no `coder`
    expert = _w("e", 100, ("coder",))
    assert candidates(here, "coder") == ["coder"]
    assert plan(candidates(here, "coder"), {"fast"}, [expert], 105.0, LEASE) == ("remote", "coder", [])
    # No live worker serves it: passed over, and the step reports the unknown alias as without a cluster.
    assert plan(candidates(here, "coder"), {"fast"}, [], 105.0, LEASE) == ("local", None, ["coder"])
    assert candidates(here, "tag:nothing") == []  # a tag is matched against this project's models only
    full = ModelRegistry(
        {"coder": ModelDef("coder", "scripted", fallbacks=("fast",)), "fast": ModelDef("fast", "scripted")}
    )
    assert candidates(full, "coder") == ["coder", "fast"]


def test_declaring_dead_is_won_once(tmp_path: Path) -> None:
    engine = _tables(tmp_path)
    table = WorkerTable(engine)
    for wid, beat in (("a", 100.0), ("b", 100.0)):
        table.register(_w(wid, beat))
    assert table.heartbeat("a", 115.0, running=2) == "alive"
    assert table.declare_dead(111.0, LEASE, by="a") == ["b"]
    assert table.declare_dead(111.0, LEASE, by="c") == []  # another supervisor finds it already declared
    rows = {w.id: w for w in table.all()}
    assert rows["b"].state == "dead" and rows["b"].declared_by == "a" and rows["a"].running == 2
    assert table.heartbeat("b", 112.0, running=0) == "dead"  # a frozen worker learns it was declared dead
    _workflow(engine, "run-1", "a")
    assert table.stopped("a", 115.5) == 1  # it left a workflow: a live worker recovers it...
    assert table.declare_dead(116.0, LEASE, by="c") == ["a"]  # ...at once, not a lease after its last heartbeat
    assert table.declare_dead(116.5, LEASE, by="d") == []  # once
    assert {w.id: w.state for w in table.all()} == {"a": "stopped", "b": "dead"}
    engine.dispose()


def test_a_cleanly_stopped_worker_shows_its_last_heartbeat(tmp_path: Path) -> None:
    """Status said "heartbeat 1796614448s ago" of a stopped worker: its stop wrote heartbeat_at = 0."""
    engine = _tables(tmp_path)
    table = WorkerTable(engine)
    table.register(_w("a", 100.0))
    table.stopped("a", 103.0)
    table.declare_dead(104.0, LEASE, by="b")
    (row,) = table.all()
    shown = row.to_dict(110.0, LEASE)
    assert shown["state"] == "stopped" and shown["heartbeat_age_s"] == 7.0
    engine.dispose()


def test_workers_that_ended_long_ago_are_forgotten(tmp_path: Path) -> None:
    """Every process that ever joined kept its row, and `cluster status` listed them all for good."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    t.workers.create(engine)
    table = WorkerTable(engine)
    for wid in ("old", "recent", "live", "recovering"):
        table.register(_w(wid, 100.0))
    table.declare_dead(111.0, LEASE, by="x")  # all four dead at 111
    for wid in ("old", "recent", "live"):
        table.recovered(wid, 0)  # "recovering" never finished: kept, whatever its age
    with engine.begin() as conn:
        conn.execute(sa.update(t.workers).where(t.workers.c.id == "recent").values(dead_at=500.0))
        conn.execute(sa.update(t.workers).where(t.workers.c.id == "live").values(state="alive", dead_at=None))
    assert table.prune(before=200.0) == 1
    assert sorted(w.id for w in table.all()) == ["live", "recent", "recovering"]
    engine.dispose()


def test_a_run_queued_with_no_live_worker_is_told_so(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edgecrew.cluster import ClusterService
    from edgecrew.settings import Settings

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    t.workers.create(engine)
    on = Settings(cluster=True, database_url="postgresql://db-host/edgecrew", cluster_lease_s=LEASE)
    service = ClusterService(SimpleNamespace(settings=on, store=SimpleNamespace(engine=engine)))  # type: ignore[arg-type]
    warning = service.no_worker_warning(now=100.0)
    assert warning is not None and warning.startswith("no live cluster worker: the run waits on queue")
    WorkerTable(engine).register(_w("a", 95.0))
    assert service.no_worker_warning(now=100.0) is None
    assert service.no_worker_warning(now=95.0 + LEASE + 1) is not None  # its lease ran out
    off = ClusterService(SimpleNamespace(settings=Settings(), store=SimpleNamespace(engine=engine)))  # type: ignore[arg-type]
    assert off.no_worker_warning(now=200.0) is None
    engine.dispose()


def test_a_models_workers_are_its_live_workers(tmp_path: Path) -> None:
    """GET /cluster's models[].workers listed every worker of the last week that had served the alias, the
    stopped and dead ones too, so the page said "1 of 9" of a model one live worker serves."""
    from types import SimpleNamespace

    from edgecrew.cluster import ClusterService
    from edgecrew.settings import Settings

    engine = _tables(tmp_path)
    table = WorkerTable(engine)
    table.register(_w("live", 100.0, ("fast", "coder")))
    table.register(_w("silent", 50.0, ("fast",)))  # its lease ran out at 60
    table.register(_w("stopped", 100.0, ("fast",)))
    table.stopped("stopped", 100.0)
    table.register(_w("dead", 90.0, ("coder", "lone")))
    table.declare_dead(100.5, LEASE, by="live")  # "silent" and "dead"
    on = Settings(cluster=True, database_url="postgresql://db-host/edgecrew", cluster_lease_s=LEASE)
    models = ModelRegistry({"fast": ModelDef("fast", "scripted")})
    rt = SimpleNamespace(settings=on, store=SimpleNamespace(engine=engine), models=models)
    found = ClusterService(rt).status(now=101.0)  # type: ignore[arg-type]
    by_alias = {m["alias"]: (m["workers"], m["live_workers"]) for m in found.models}
    assert by_alias == {"coder": (["live"], 1), "fast": (["live"], 1), "lone": ([], 0)}
    assert len(found.workers) == 4  # every worker is still listed, with its state
    engine.dispose()


def test_a_lease_shorter_than_two_heartbeats_is_refused() -> None:
    """Lease 1 s, heartbeat 3 s: the second worker was declared dead by the first and exited (75)."""
    from types import SimpleNamespace

    from edgecrew.cluster import ClusterWorker
    from edgecrew.errors import UserError
    from edgecrew.settings import Settings

    url = "postgresql://db-host/edgecrew"
    short = Settings(cluster=True, database_url=url, cluster_lease_s=1, cluster_heartbeat_s=3)
    with pytest.raises(UserError, match=r"EDGECREW_CLUSTER_LEASE_S=1 is too short for EDGECREW_CLUSTER_HEARTBEAT_S=3"):
        ClusterWorker(SimpleNamespace(settings=short))  # type: ignore[arg-type]


def test_an_unknown_worker_model_names_the_option_and_the_project(tmp_path: Path) -> None:
    """`edgecrew worker --models nope` said only "EDGECREW_WORKER_MODELS names unknown model(s) nope"."""
    from types import SimpleNamespace

    from edgecrew.cluster import served_aliases
    from edgecrew.errors import UserError
    from edgecrew.settings import Settings

    settings = Settings(project=tmp_path, worker_models="nope,fast")
    rt = SimpleNamespace(settings=settings, models=ModelRegistry({"fast": ModelDef("fast", "scripted")}))
    with pytest.raises(UserError, match=r"^--models \(EDGECREW_WORKER_MODELS\) names unknown model\(s\) nope") as err:
        served_aliases(rt)  # type: ignore[arg-type]
    assert str(tmp_path) in str(err.value) and "known: fast, local" in str(err.value)


def test_a_worker_model_named_twice_is_served_once(tmp_path: Path) -> None:
    """`edgecrew worker --models fast,fast` said "serving fast, fast" and counted twice among the live workers."""
    from types import SimpleNamespace

    from edgecrew.cluster import served_aliases
    from edgecrew.settings import Settings

    models = ModelRegistry({"fast": ModelDef("fast", "scripted"), "coder": ModelDef("coder", "scripted")})
    rt = SimpleNamespace(settings=Settings(project=tmp_path, worker_models=" coder, fast,coder,fast "), models=models)
    assert served_aliases(rt) == ("coder", "fast")  # type: ignore[arg-type]


def test_live_workers_that_disagree_on_version_or_configuration_are_named() -> None:
    """A worker on another project ran a team with its own model of the same name, and nothing said the
    workers differed: now status and each worker's start say which workers run what."""

    def w(wid: str, version: str, config: str, beat: float = 100.0) -> WorkerInfo:
        return WorkerInfo(wid, "h", 1, ("fast",), (), beat, 0.0, version=version, config=config)

    same = [w("a", "0.1.0", "c1"), w("b", "0.1.0", "c1")]
    assert disagreements(same, 105.0, LEASE) == []
    mixed = [*same, w("c", "0.2.0", "c2")]
    version, config = disagreements(mixed, 105.0, LEASE)
    assert "different edgecrew versions: 0.1.0 on a, b; 0.2.0 on c" in version
    assert "install one version on every machine" in version
    assert "different project configurations (edgecrew.yaml): c1 on a, b; c2 on c" in config
    # Only live workers count, and a worker from before the fields were recorded says nothing.
    assert disagreements([*same, w("c", "0.2.0", "c2", beat=10.0)], 105.0, LEASE) == []
    assert disagreements([*same, w("old", "", "")], 105.0, LEASE) == []


def test_the_workers_table_keeps_a_workers_version_and_configuration(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    t.workers.create(engine)
    table = WorkerTable(engine)
    table.register(WorkerInfo("a", "h", 1, ("fast",), (), 100.0, 0.0, version="0.1.0", config="abc123"))
    table.register(_w("b", 100.0))
    kept = {w.id: (w.version, w.config) for w in table.all()}
    assert kept == {"a": ("0.1.0", "abc123"), "b": ("", "")}
    assert table.all()[0].to_dict(101.0, LEASE)["version"] == "0.1.0"


def test_the_configuration_digest_ignores_layout_and_sees_a_changed_model(tmp_path: Path) -> None:
    from edgecrew.bootstrap import bootstrap
    from edgecrew.cluster.worker import config_digest
    from edgecrew.settings import Settings

    def digest(project: Path, text: str | None) -> str:
        project.mkdir(exist_ok=True)
        if text is not None:
            (project / "edgecrew.yaml").write_text(text)
        return config_digest(bootstrap(Settings(project=project)))

    base = "models:\n  fast: {backend: scripted}\n"
    one = digest(tmp_path / "one", base)
    assert len(one) == 12
    assert digest(tmp_path / "two", "# the same, laid out otherwise\nmodels:\n  fast:\n    backend: scripted\n") == one
    assert digest(tmp_path / "three", "models:\n  fast: {backend: scripted, slots: 2}\n") != one
    assert digest(tmp_path / "none", None) == ""


async def test_workers_back_from_a_database_outage_do_not_declare_each_other_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres stopped for 16 s (lease 10): no worker could heartbeat; the first one back declared the
    other dead before it had renewed its lease, and that one exited (75). A worker that was itself cut off
    for longer than a lease now gives the others a lease to heartbeat again; a worker that stays silent
    after that is declared dead as before."""
    from types import SimpleNamespace

    from dbos import DBOS

    from edgecrew.cluster import ClusterWorker
    from edgecrew.settings import Settings

    monkeypatch.setattr(DBOS, "_recover_pending_workflows", lambda executors: [])  # DBOS does not run here
    engine = _tables(tmp_path)
    settings = Settings(
        cluster=True, database_url="postgresql://db-host/edgecrew", project=tmp_path, cluster_lease_s=LEASE
    )
    rt = SimpleNamespace(
        settings=settings,
        store=SimpleNamespace(engine=engine),
        models=ModelRegistry({"fast": ModelDef("fast", "scripted")}),
        project=SimpleNamespace(config_file=None),
    )
    me = ClusterWorker(rt, exit_when_declared_dead=False)  # type: ignore[arg-type]
    table = WorkerTable(engine)
    table.register(me.info(100.0))
    table.register(_w("other", 100.0))
    assert await me.tick(100.0) == []
    # The database is out of reach from 101 to 116: neither worker heartbeats. This one is back first.
    assert await me.tick(117.0) == []
    assert {w.id: w.state for w in table.all()}["other"] == "alive"
    table.heartbeat("other", 118.0, running=0)  # the other is back too
    assert await me.tick(119.0) == [] and await me.tick(125.0) == []
    # Then the other falls silent for good: declared dead once its lease ran out, as before.
    assert await me.tick(118.0 + LEASE + 1) == ["other"]
    engine.dispose()


def _worker(tmp_path: Path, engine: sa.Engine, heartbeat_s: float = 2.0) -> Any:
    from types import SimpleNamespace

    from edgecrew.cluster import ClusterWorker
    from edgecrew.settings import Settings

    settings = Settings(
        cluster=True,
        database_url="postgresql://db-host/edgecrew",
        project=tmp_path,
        cluster_lease_s=LEASE,
        cluster_heartbeat_s=heartbeat_s,
    )
    rt = SimpleNamespace(
        settings=settings,
        store=SimpleNamespace(engine=engine),
        models=ModelRegistry({"fast": ModelDef("fast", "scripted")}),
        project=SimpleNamespace(config_file=None),
    )
    return ClusterWorker(rt, exit_when_declared_dead=False)  # type: ignore[arg-type]


def test_a_cleanly_stopped_worker_records_its_own_stop(tmp_path: Path) -> None:
    """A worker stopped with Ctrl-C showed `stopping` until another live worker marked it, and for good when
    it was the last one. It now records `stopped` itself; what it left unfinished is recovered by a live
    worker (at once, or once one starts), which takes the recovery over exactly once."""
    engine = _tables(tmp_path)
    table = WorkerTable(engine)
    for wid in ("idle", "busy", "gone"):
        table.register(_w(wid, 100.0))
    _workflow(engine, "done", "idle", "SUCCESS")
    assert table.stopped("idle", 101.0) == 0
    idle = {w.id: w for w in table.all()}["idle"]
    shown = idle.to_dict(101.5, LEASE)
    assert (shown["state"], shown["recovered"], shown["declared_by"], shown["dead_at"]) == ("stopped", 0, None, 101.0)
    assert expired(table.all(), 101.5, LEASE) == []  # nothing to recover: no one touches it
    assert table.declare_dead(101.5, LEASE, by="busy") == []
    assert table.prune(before=102.0) == 1  # and it leaves the list like any ended worker
    # Stopped mid-run: its workflow waits, still PENDING, for a live worker to recover it.
    _workflow(engine, "run-1", "busy")
    _workflow(engine, "step-1", "busy")
    assert table.stopped("busy", 102.0) == 2
    busy = {w.id: w for w in table.all()}["busy"]
    assert busy.to_dict(102.5, LEASE)["state"] == "stopped" and busy.to_dict(102.5, LEASE)["recovered"] is None
    assert [w.id for w in expired(table.all(), 102.5, LEASE)] == ["busy"]
    assert table.declare_dead(102.5, LEASE, by="later") == ["busy"]
    assert table.declare_dead(102.6, LEASE, by="other") == []
    busy = {w.id: w for w in table.all()}["busy"]
    assert (busy.state, busy.declared_by, busy.dead_at) == ("stopped", "later", 102.0)
    # A worker declared dead meanwhile (frozen past its lease) stays dead: its workflows run elsewhere.
    assert table.declare_dead(111.0, LEASE, by="later") == ["gone"]
    assert table.stopped("gone", 112.0) == 0
    assert {w.id: w.state for w in table.all()}["gone"] == "dead"
    engine.dispose()


async def test_a_heartbeat_counts_the_workers_running_workflows_from_dbos_table(tmp_path: Path) -> None:
    """Through the workers table's engine, not DBOS's calls: those retry a lost connection with a growing
    backoff, so the heartbeat hung through a database outage (and logged nothing) and renewed the lease
    seconds after the database was back, when the other worker had already declared it dead."""
    engine = _tables(tmp_path)
    me = _worker(tmp_path, engine)
    WorkerTable(engine).register(me.info(100.0))
    _workflow(engine, "run-1", me.id)
    _workflow(engine, "run-2", me.id, "SUCCESS")
    _workflow(engine, "run-3", "another")
    assert await me.tick(101.0) == []
    assert {w.id: w.running for w in WorkerTable(engine).all()}[me.id] == 1
    engine.dispose()


async def test_a_worker_says_once_that_it_lost_the_database_and_once_that_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker logged nothing while the database was out of reach, so whoever watched it could not tell
    why it sat idle. Now one line when it loses the database (with the error), one when it is back,
    none for each retry between."""
    import asyncio
    import contextlib
    import logging

    from sqlalchemy.pool import NullPool

    folder = tmp_path / "db"
    folder.mkdir()
    _tables(folder).dispose()
    engine = sa.create_engine(f"sqlite:///{folder / 'w.db'}", poolclass=NullPool)  # every look opens the file

    @sa.event.listens_for(engine, "connect")
    def attach(dbapi_conn: Any, _: object) -> None:
        dbapi_conn.execute(f"ATTACH DATABASE '{folder / 'dbos.db'}' AS dbos")

    me = _worker(tmp_path, engine, heartbeat_s=0.02)
    WorkerTable(engine).register(me.info(100.0))
    caplog.set_level(logging.INFO, logger="edgecrew.cluster")
    beat = asyncio.create_task(me._beat())
    try:
        await asyncio.sleep(0.2)
        folder.rename(tmp_path / "away")  # the database is out of reach: every retry fails
        await asyncio.sleep(0.5)
        (tmp_path / "away").rename(folder)
        await asyncio.sleep(0.3)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    said = [r.getMessage() for r in caplog.records if r.name == "edgecrew.cluster"]
    lost = [m for m in said if "lost the database" in m]
    back = [m for m in said if "reached the database again" in m]
    assert len(lost) == 1 and len(back) == 1, said
    # The folder moved away between two heartbeats, or under one's open connection (SQLite's "disk I/O error").
    assert re.search(r"\((unable to open database file|disk I/O error)\)", lost[0]), lost[0]
    assert "tries again every 0.02s" in lost[0]
    assert not [m for m in said if "heartbeat failed" in m]
    assert said.index(lost[0]) < said.index(back[0])
    engine.dispose()


def test_a_model_no_worker_serves_nor_this_workers_project_declares_is_named_with_that_project(
    tmp_path: Path,
) -> None:
    """A worker started on another project took a run whose model its own project lacks: the run failed
    with "unknown model alias 'fast'; known: local, local-gemma", though the project that started it
    declares `fast`. The failure now says which project this worker has, and what to do."""
    from types import SimpleNamespace

    from edgecrew.cluster.calls import CallRouter
    from edgecrew.settings import Settings

    models = ModelRegistry({"local": ModelDef("local", "scripted")})
    rt = SimpleNamespace(settings=Settings(project=tmp_path), models=models, store=SimpleNamespace(engine=None))
    router = CallRouter(rt, {"local"})  # type: ignore[arg-type]
    said = router.unserved(["fast"])
    assert said is not None and "no live worker in the cluster serves model 'fast'" in said
    assert f"its project ({tmp_path}) declares local" in said and "start every worker with the project" in said
    # A model this project declares but this worker does not serve (`--models`): named with what it serves.
    both = ModelRegistry({"fast": ModelDef("fast", "scripted"), "local": ModelDef("local", "scripted")})
    declared = CallRouter(SimpleNamespace(settings=rt.settings, models=both, store=rt.store), {"local"})  # type: ignore[arg-type]
    assert "this worker serves local: `edgecrew worker --models`" in (declared.unserved(["fast"]) or "")
    assert router.unserved([]) is None  # no candidate at all (a tag this project lacks): said by the step
