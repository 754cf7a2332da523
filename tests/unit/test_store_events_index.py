"""The events' (type, created_at) index (migration 0023): the readers of events by type read along it.

The supervisor's watchers read the last minutes' model and tool calls on every tick; without the index
each read scanned every event of every run. The plans are SQLite's own (``EXPLAIN QUERY PLAN`` of the
statements the readers execute); the speed-up is measured in the commit that added the index, not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import edgecrew.store.repo as repo_module
from edgecrew.domain.events import ModelCalled, ToolCalled
from edgecrew.store import open_store
from edgecrew.store.alerts import AlertStore
from edgecrew.store.incidents import IncidentStore
from edgecrew.store.repo import RunStore
from tests import pg

INDEX = "ix_events_type_created_at"


def _store(tmp_path: Path) -> RunStore:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    store.create_run("r1", "crew", "x", {}, str(tmp_path))
    with store.transaction():
        for i in range(50):
            store.emit("r1", f"m{i}", ModelCalled(alias="local", requested="local"))
            store.emit("r1", f"t{i}", ToolCalled(tool="files.read", result="ok"))
    return store


def _plans_of(store: RunStore, read: Callable[[], object]) -> list[str]:
    """SQLite's plan of each statement on ``events`` that ``read`` executes, with its own parameters."""
    executed: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FROM events" in statement:
            executed.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        read()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    assert executed, "the reader executed no statement on events"
    with store.engine.connect() as conn:
        return [
            " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in executed
        ]


READERS: dict[str, Callable[[RunStore, float], object]] = {
    "supervisor watcher (tools)": lambda store, now: IncidentStore(store).run_events(["tool_called"], now - 600),
    "supervisor watcher (models)": lambda store, now: IncidentStore(store).run_events(["model_called"], now - 120),
    "alert rules over model calls": lambda store, now: AlertStore(store).model_calls(now - 300, now),
    "newest events of one type": lambda store, now: store.events_of_type("model_called", limit=5000),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_the_readers_of_events_by_type_read_along_the_type_index_without_sorting(tmp_path: Path, reader: str) -> None:
    store = _store(tmp_path)
    now = time.time()
    for plan in _plans_of(store, lambda: READERS[reader](store, now)):
        assert f"USING INDEX {INDEX} (type=?" in plan, plan
        assert "SCAN events" not in plan and "TEMP B-TREE" not in plan, plan  # no whole table, no sort
    store.close()


def test_the_runs_list_filter_reads_the_newest_model_calls_along_the_index(tmp_path: Path) -> None:
    store = _store(tmp_path)
    [plan] = _plans_of(store, store.run_filter_choices)
    assert f"INDEX {INDEX} (type=?)" in plan and "SCAN events" not in plan, plan
    assert "FOR ORDER BY" not in plan, plan  # the newest 2000 are the index's last entries, unsorted
    assert store.run_filter_choices() == ([], ["local"])
    store.close()


def test_the_watcher_still_reads_the_newest_calls_of_its_window_oldest_first(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.emit("r1", "late", ToolCalled(tool="http.get", is_error=True, result="error: down"))
    read = IncidentStore(store).run_events(["tool_called"], time.time() - 600, limit=3)
    assert [e.key for e in read] == ["t48", "t49", "late"]
    store.close()


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(repo_module.__file__).parent / "migrations"))
    return cfg


def _event_row(conn: Any) -> None:
    conn.exec_driver_sql(
        "INSERT INTO runs (id, team, task, status, spec, created_at, updated_at) "
        "VALUES ('r1', 't', 'x', 'running', '{}', 1, 1)"
    )
    conn.exec_driver_sql(
        "INSERT INTO events (run_id, key, type, data, created_at) VALUES ('r1', 'k', 'tool_called', '{}', 1)"
    )


def test_the_migration_adds_the_index_and_takes_it_back(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0022")
        _event_row(conn)
        command.upgrade(cfg, "0023")
        assert INDEX in {i["name"] for i in sa.inspect(conn).get_indexes("events")}
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 1
        command.downgrade(cfg, "0022")
        assert INDEX not in {i["name"] for i in sa.inspect(conn).get_indexes("events")}
    engine.dispose()


@pytest.mark.skipif(not pg.available(), reason="PostgreSQL server binaries are missing (make test installs them)")
def test_the_migration_adds_the_index_on_postgres_and_the_watcher_reads_through_it() -> None:
    with pg.postgres_server() as url:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0022")
            _event_row(conn)
        store = RunStore(engine)
        store.migrate()
        with engine.connect() as conn:
            indexes = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("events")}
        assert indexes[INDEX] == ["type", "created_at"]
        assert [e.key for e in IncidentStore(store).run_events(["tool_called"], 0)] == ["k"]
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0022")
            assert INDEX not in {i["name"] for i in sa.inspect(conn).get_indexes("events")}
        engine.dispose()
