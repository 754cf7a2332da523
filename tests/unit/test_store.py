"""The store: migrations, idempotent event and step writes, the run state machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

import edgecrew.store.repo as repo_module
from edgecrew.domain.events import ModelCalled, StepFinished
from edgecrew.domain.runs import Outcome, RunStatus, can_transition
from edgecrew.errors import NotFoundError, UserError
from edgecrew.store import open_store
from edgecrew.store.migrations import HEAD
from tests import pg


def test_head_constant_matches_the_newest_migration_script() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(repo_module.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


def test_opening_a_new_file_another_process_holds_waits_for_it(tmp_path: Path) -> None:
    """Two processes starting together on a new data dir: the second switched the file to WAL before it
    set its busy timeout, so it gave up after the driver's 5 s ("database is locked") while the first
    migrated the file under load (seen in the suite: `edgecrew run` and a thread deciding its approval)."""
    import subprocess
    import sys
    import time

    path = tmp_path / "e.db"
    hold = (  # a database in rollback-journal mode, as a new file is, locked as a migration locks it
        "import sqlite3, sys, time\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('CREATE TABLE first (x)')\n"
        "db.execute('BEGIN EXCLUSIVE'); db.execute('INSERT INTO first VALUES (1)')\n"
        "print('held', flush=True); time.sleep(6); db.execute('COMMIT')\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    began = time.monotonic()
    store = open_store(f"sqlite:///{path}")
    assert time.monotonic() - began >= 4  # it waited for the holder (past the driver's default 5 s in all)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()
    assert holder.wait(timeout=10) == 0


def test_two_threads_setting_up_a_new_data_dir_together_both_get_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One switched the new file to WAL while the other set the file up, and one of them gave up at
    once with "database is locked" (`edgecrew run` and a thread deciding its approval, in the suite)."""
    import threading

    from edgecrew.bootstrap import bootstrap
    from edgecrew.settings import reset_settings

    for attempt in range(30):
        (tmp_path / f"home{attempt}").mkdir()
        monkeypatch.setenv("EDGECREW_HOME", str(tmp_path / f"home{attempt}"))
        reset_settings()
        errors: list[BaseException] = []

        def set_up(errors: list[BaseException]) -> None:
            try:
                bootstrap()
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=set_up, args=(errors,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], f"attempt {attempt}: {errors}"


def test_open_store_migrates_a_new_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'sub' / 'e.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD
    open_store(f"sqlite:///{tmp_path / 'sub' / 'e.db'}")  # reopening is a no-op


def test_upgrading_an_older_store_keeps_every_row(tmp_path: Path) -> None:
    """Data written under the first release's schema survives every later migration (a table rebuild
    on SQLite must not cascade-delete child rows)."""
    engine = _migrated_to(tmp_path / "old.db", "0003")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (id, team, task, status, spec, created_at, updated_at) "
            "VALUES ('r1', 't', 'x', 'running', '{}', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO steps (run_id, key, agent, visit, status, model_calls, tool_calls, prompt_tokens, "
            "completion_tokens, started_at) VALUES ('r1', 'v000.a', 'a', 0, 'running', 0, 0, 0, 0, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO messages (run_id, step_key, seq, role, content, created_at) "
            "VALUES ('r1', 'v000.a', 0, 'user', 'hi', 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO events (run_id, key, type, data, created_at) VALUES ('r1', 'k', 'run_created', '{}', 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO approvals (id, run_id, call_key, workflow_id, agent, tool, arguments, reason, status, "
            "created_at) VALUES ('a1', 'r1', 'c', 'r1', 'a', 'deploy', '{}', 'why', 'pending', 1)"
        )
    store = repo_module.RunStore(engine)
    store.migrate()
    with engine.connect() as conn:
        counts = {
            table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
            for table in ("runs", "steps", "messages", "events", "approvals")
        }
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert counts == dict.fromkeys(counts, 1)
    assert store.get_run("r1").request_id is None and store.events("r1")[0].key == "k"
    assert store.get_run("r1").trigger is None  # 0009: a run started by a person has no trigger


def test_events_are_idempotent_per_run_and_key(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    store.create_run("r1", "team", "task", {}, str(tmp_path))
    store.emit("r1", "v000.a.m0.model", ModelCalled(prompt_tokens=1), step_key="v000.a", agent="a")
    store.emit("r1", "v000.a.m0.model", ModelCalled(prompt_tokens=2), step_key="v000.a", agent="a")
    store.emit("r1", "v000.a.finished", StepFinished(outcome=Outcome.FINAL))
    events = store.events("r1")
    assert [(e.key, e.data) for e in events] == [
        ("v000.a.m0.model", {"prompt_tokens": 2}),
        ("v000.a.finished", {"outcome": "final"}),
    ]
    assert store.events("r1", after_id=events[0].id)[0].key == "v000.a.finished"


def test_step_upsert_keeps_start_time_and_updates_the_rest(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    store.create_run("r1", "team", "task", {}, str(tmp_path))
    store.upsert_step("r1", "v000.a", agent="a", visit=0, status="running", started_at=1.0)
    store.upsert_step("r1", "v000.a", agent="a", visit=0, status="finished", outcome="final", started_at=5.0)
    [step] = store.steps("r1")
    assert (step.status, step.outcome, step.started_at) == ("finished", "final", 1.0)


def test_terminal_runs_never_change_status(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    store.create_run("r1", "team", "task", {}, str(tmp_path))
    assert store.set_status("r1", RunStatus.RUNNING)
    assert store.set_status("r1", RunStatus.CANCELLED, error="by user")
    assert not store.set_status("r1", RunStatus.SUCCEEDED, output={"x": 1})
    run = store.get_run("r1")
    assert run.status == RunStatus.CANCELLED and run.output is None and run.finished_at is not None


def test_a_status_change_that_lost_a_race_to_an_end_does_not_overwrite_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel read "running", another process then finished the run, and the cancel wrote "cancelled"
    over "succeeded" (a move the state machine forbids): the write now holds only where the read did."""
    url = f"sqlite:///{tmp_path / 'e.db'}"
    store, other = open_store(url), open_store(url)
    store.create_run("r1", "team", "task", {}, str(tmp_path))
    assert store.set_status("r1", RunStatus.RUNNING)
    read = store.run_status

    def read_then_lose_the_race(run_id: str) -> RunStatus:
        seen = read(run_id)
        if seen == RunStatus.RUNNING:  # between this read and the write, the run ends elsewhere
            assert other.set_status(run_id, RunStatus.SUCCEEDED, output={"x": 1})
        return seen

    monkeypatch.setattr(store, "run_status", read_then_lose_the_race)
    assert not store.set_status("r1", RunStatus.CANCELLED, error="by user")
    run = other.get_run("r1")
    assert run.status == RunStatus.SUCCEEDED and run.output == {"x": 1} and run.error is None


def test_state_machine() -> None:
    assert can_transition(RunStatus.QUEUED, RunStatus.RUNNING)
    assert can_transition(RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)
    assert can_transition(RunStatus.RUNNING, RunStatus.RUNNING)
    assert not can_transition(RunStatus.SUCCEEDED, RunStatus.RUNNING)
    assert not can_transition(RunStatus.QUEUED, RunStatus.SUCCEEDED)


def test_run_lookup_by_unique_prefix(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    store.create_run("rabc1", "t", "x", {}, "")
    store.create_run("rabc2", "t", "x", {}, "")
    assert store.get_run("rabc1").id == "rabc1"
    with pytest.raises(UserError, match="ambiguous"):
        store.get_run("rabc")
    with pytest.raises(NotFoundError, match="edgecrew runs list"):
        store.get_run("zzz")


def test_approval_lookup_and_decisions_by_unique_prefix(tmp_path: Path) -> None:
    from edgecrew.store.approvals import ApprovalStore

    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    store.create_run("r1", "t", "x", {}, "")
    approvals = ApprovalStore(store)
    made = [approvals.request("r1", f"k{i}", "wf", "op", "deploy", {"n": i}, "why") for i in range(3)]
    first = made[0].id
    assert approvals.get(first[:6]).id == first
    with pytest.raises(UserError, match="approval id prefix 'a' is ambiguous"):
        approvals.get("a")  # every approval id starts with "a"
    assert approvals.edit(first[:6], {"n": 99}).arguments == {"n": 99}
    decided = approvals.decide(first[:6], "approved", "ok")
    assert (decided.id, decided.status) == (first, "approved")
    with pytest.raises(NotFoundError, match="edgecrew approvals list"):
        approvals.get("azzzz")


@pytest.mark.integration
async def test_dbos_system_database_is_in_wal_mode(edgecrew_home: Path) -> None:
    import sqlite3

    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine import durable

    durable.launch(bootstrap())
    try:
        with sqlite3.connect(edgecrew_home / "dbos.sqlite") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        durable.shutdown()


def test_the_migration_expires_approvals_left_pending_by_ended_runs(tmp_path: Path) -> None:
    """0018: a cancelled run's approval stayed pending in every inbox for ever; a running run's stays."""
    engine = _migrated_to(tmp_path / "old.db", "0017")
    with engine.begin() as conn:
        for run, status in (("r1", "cancelled"), ("r2", "waiting_approval")):
            conn.exec_driver_sql(
                "INSERT INTO runs (id, team, task, status, spec, created_at, updated_at) "
                f"VALUES ('{run}', 't', 'x', '{status}', '{{}}', 1, 1)"
            )
            conn.exec_driver_sql(
                "INSERT INTO approvals (id, run_id, call_key, workflow_id, agent, tool, arguments, reason, status,"
                f" created_at) VALUES ('a-{run}', '{run}', 'k', '{run}', 'op', 'deploy', '{{}}', 'why', 'pending', 1)"
            )
    _migrated_to(tmp_path / "old.db", "0018", engine)
    with engine.connect() as conn:
        rows = dict(conn.exec_driver_sql("SELECT run_id, status FROM approvals").fetchall())
    assert rows == {"r1": "expired", "r2": "pending"}


def _migrated_to(path: Path, revision: str, engine: Any = None) -> Any:
    """A SQLite store at ``path`` (or ``engine``) brought to ``revision`` by the migration scripts."""
    import sqlalchemy as sa
    from alembic import command

    if engine is None:
        engine = sa.create_engine(f"sqlite:///{path}")
        sa.event.listen(engine, "connect", repo_module._sqlite_pragmas)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(repo_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def test_a_failed_or_cancelled_run_ends_the_tasks_it_left_open(tmp_path: Path) -> None:
    """Nothing works on them any more: failed or cancelled with the run, a line on each timeline; tasks of
    other runs and of people, and tasks already finished, are left as they are."""
    from edgecrew.store.tasks import TaskStore

    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    tasks = TaskStore(store, tmp_path / "home")
    for run_id in ("r_1", "rx1", "rok"):  # "r_1": a LIKE wildcard in an id matches only itself
        store.create_run(run_id, "build-loop", "t", {}, "/tmp")
        store.set_status(run_id, RunStatus.RUNNING)
    mine = tasks.create("squares", "print n*n", "build-loop", created_by="generator@r_1")
    started = tasks.create("cubes", "print n**3", "build-loop", created_by="generator@r_1")
    tasks.update(started.id, status="in_progress")
    done = tasks.create("done", "x", created_by="generator@r_1")
    tasks.update(done.id, status="done")
    other = tasks.create("other run", "x", created_by="generator@rx1")
    person = tasks.create("a person's", "x")
    kept = tasks.create("a good run's", "x", created_by="generator@rok")
    store.set_status("rok", RunStatus.SUCCEEDED)
    store.set_status("r_1", RunStatus.FAILED, error="the coder's reply was cut off")
    status = {t.id: t.status for t in tasks.list_tasks(limit=50)}
    assert [status[t.id] for t in (mine, started, done, other, person, kept)] == [
        "failed",
        "failed",
        "done",
        "open",
        "open",
        "open",
    ]
    [said] = tasks.messages(mine.id)
    assert said.sender == "edgecrew" and "the run r_1 that created this task ended failed" in said.content
    store.set_status("rx1", RunStatus.CANCELLED)
    assert tasks.get(other.id).status == "cancelled"


def test_a_task_a_failed_run_ends_names_its_best_version_as_every_finish_does(tmp_path: Path) -> None:
    """Its versions stay the work done: ended by its failed run (a coder's model that timed out on its
    second try), it had no best version, where tasks.finish or a person's PATCH failed names one."""
    from edgecrew.store.tasks import TaskStore

    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    tasks = TaskStore(store, tmp_path / "home")
    for run_id in ("rfail", "rcancel"):
        store.create_run(run_id, "build-loop", "t", {}, "/tmp")
        store.set_status(run_id, RunStatus.RUNNING)
    worked = tasks.create("squares", "print n*n", "build-loop", created_by="create@rfail")
    for code in (b"print(1)\n", b"print(2)\n"):
        tasks.add_code(worked.id, "solution.py", code)
    tasks.add_feedback(worked.id, author="feedback@rfail", verdict="needs_changes", notes="", version=2)
    empty = tasks.create("cubes", "print n**3", "build-loop", created_by="create@rfail")
    stopped = tasks.create("halves", "print n/2", "build-loop", created_by="create@rcancel")
    tasks.add_code(stopped.id, "solution.py", b"print(3)\n")
    store.set_status("rfail", RunStatus.FAILED, error="the coder's model timed out")
    store.set_status("rcancel", RunStatus.CANCELLED)
    assert (tasks.get(worked.id).status, tasks.get(worked.id).best_version) == ("failed", 2)
    assert tasks.best_version(worked.id) == (2, "no version was accepted or run; the latest")
    assert (tasks.get(empty.id).status, tasks.get(empty.id).best_version) == ("failed", None)
    # a cancelled one is left as a person's cancel leaves it
    assert (tasks.get(stopped.id).status, tasks.get(stopped.id).best_version) == ("cancelled", None)


def test_cancelling_a_run_that_ended_since_it_was_read_says_so_and_writes_nothing() -> None:
    """The cancel read the run running, the run then succeeded: the cancel closed its steps and wrote
    run_cancelled into a succeeded run's events (its status now kept by the compare-and-set)."""
    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine.service import RunService
    from edgecrew.errors import ConflictError

    rt = bootstrap()
    rt.store.create_run("r1", "team", "task", {}, "")
    assert rt.store.set_status("r1", RunStatus.RUNNING)
    stale = rt.store.get_run("r1")
    assert rt.store.set_status("r1", RunStatus.SUCCEEDED, output={"x": 1})
    reads = iter([stale])
    real_get = rt.store.get_run
    rt.store.get_run = lambda run_id: next(reads, None) or real_get(run_id)  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match="already succeeded"):
        RunService(rt).cancel("r1")
    assert rt.store.get_run("r1").status == RunStatus.SUCCEEDED
    assert [e.type for e in rt.store.events("r1")] == []


def test_time_per_finished_task_runs_to_its_end_not_its_last_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scoreboard measured a finished task to its last change: a typo fixed on it later moved its
    team's time per task (25 s to 181 s)."""
    import edgecrew.store.tasks as tasks_module
    from edgecrew.store.tasks import TaskStore

    now = [1000.0]
    monkeypatch.setattr(tasks_module.time, "time", lambda: now[0])
    tasks = TaskStore(open_store(f"sqlite:///{tmp_path / 'e.db'}"), tmp_path / "home")
    task = tasks.create("t", "spec", team="build-loop")
    now[0] = 1010.0
    assert tasks.update(task.id, status="done").finished_at == 1010.0
    now[0] = 2000.0
    edited = tasks.update(task.id, description="typo fixed")
    assert edited.finished_at == 1010.0 and edited.updated_at == 2000.0
    assert tasks.update(task.id, status="failed").finished_at == 1010.0  # still ended when it first did
    assert tasks.stats().teams[0].seconds_per_task == 10.0
    now[0] = 3000.0
    assert tasks.update(task.id, status="in_progress").finished_at is None  # reopened
    now[0] = 3005.0
    assert tasks.update(task.id, status="done").finished_at == 3005.0


def test_the_migration_dates_the_end_of_tasks_that_ended_before_it(tmp_path: Path) -> None:
    import sqlalchemy as sa
    from alembic import command

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(repo_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0019")
        for task_id, status in (("t1", "done"), ("t2", "open"), ("t3", "cancelled")):
            conn.exec_driver_sql(
                "INSERT INTO tasks (id, title, description, status, code_seq, created_at, updated_at) "
                f"VALUES ('{task_id}', 'x', '', '{status}', 0, 1, 7)"
            )
        command.upgrade(cfg, "0020")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, finished_at FROM tasks ORDER BY id").all()
    assert [tuple(r) for r in rows] == [("t1", 7.0), ("t2", None), ("t3", 7.0)]


def _alert_rows_at_0021(conn: Any) -> None:
    state = "INSERT INTO alert_states (rule, scope, state, since, updated_at, version, project) VALUES "
    conn.exec_driver_sql(state + "('hot', '', 'firing', 1, 2, 3, '/p/a')")
    conn.exec_driver_sql(state + "('old', 'box', 'firing', 1, 2, 1, NULL)")  # before 0021 kept the project
    event = "INSERT INTO alert_events (rule, scope, kind, severity, threshold, comparison, source, description, at)"
    conn.exec_driver_sql(event + " VALUES ('hot', '', 'firing', 'warning', 1, 'above', 'metric:load1', '', 2)")
    conn.exec_driver_sql(event + " VALUES ('old', 'box', 'firing', 'warning', 1, 'above', 'metric:load1', '', 2)")


def _check_alert_rows_after_0022(store: Any) -> None:
    from edgecrew.store.alerts import AlertStore

    alerts = AlertStore(store)
    states = {(s.project, s.rule): (s.state, s.version) for s in alerts.states()}
    assert states == {("/p/a", "hot"): ("firing", 3), ("", "old"): ("firing", 1)}
    assert {(e.rule, e.project) for e in alerts.history()} == {("hot", "/p/a"), ("old", None)}
    # Another project's rule 'hot' has a state of its own; the first to ask for 'old' claims the old one.
    assert alerts.state("hot", "", project="/p/b").state == "ok"
    claimed = alerts.state("old", "box", project="/p/b")
    assert (claimed.state, claimed.version, claimed.project) == ("firing", 1, "/p/b")
    assert [e.project for e in alerts.history(rule="old")] == ["/p/b"]
    assert alerts.state("old", "box", project="/p/c").state == "ok"
    assert alerts.count(project="/p/c") == 0 and alerts.count(project="/p/a") == 1


def test_the_migration_keys_alert_states_by_project_and_keeps_every_row(tmp_path: Path) -> None:
    """0022: two projects with a rule of one name shared one state; every state and event is kept."""
    engine = _migrated_to(tmp_path / "old.db", "0021")
    with engine.begin() as conn:
        _alert_rows_at_0021(conn)
    store = repo_module.RunStore(engine)
    store.migrate()
    _check_alert_rows_after_0022(store)


@pytest.mark.skipif(not pg.available(), reason="PostgreSQL server binaries are missing (make test installs them)")
def test_the_alert_states_migration_on_postgres() -> None:
    import sqlalchemy as sa
    from alembic import command

    with pg.postgres_server() as url:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(repo_module.__file__).parent / "migrations"))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0021")
            _alert_rows_at_0021(conn)
        store = repo_module.RunStore(engine)
        store.migrate()
        _check_alert_rows_after_0022(store)
        with engine.begin() as conn:  # and back: one state per rule and scope, the latest
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0021")
            rows = conn.exec_driver_sql("SELECT rule, project, state FROM alert_states ORDER BY rule").fetchall()
        assert [tuple(r) for r in rows] == [("hot", "/p/b", "ok"), ("old", "/p/c", "ok")]
        engine.dispose()
