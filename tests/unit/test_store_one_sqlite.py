"""One SQLite library per process (the regression of commit 49361c3): memory's sqlite-vec index once
opened the store file through a second copy of SQLite (sqlean) beside the standard library's; the two
do not see each other's POSIX locks, and concurrent writes corrupted the file ("database disk image
is malformed"). The store now opens SQLite through sqlean when it is installed and the index uses that
one engine. These tests hold it: the engine's library, a concurrent write stress in one process that
must leave the file intact with every row readable, and a reader in another process (the standard
library's sqlite3 there is fine: locks work across processes) while this one writes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from edgecrew.domain.events import RunResumed
from edgecrew.memory import HashingEmbedder, MemoryService, ScopeRef
from edgecrew.store import RunStore, open_store
from edgecrew.store import tables as t
from edgecrew.store.repo import sqlite_module

STRESS_S = 3.0


def _open(path: Path) -> RunStore:
    return open_store(f"sqlite:///{path}")


def _memory(store: RunStore) -> MemoryService:
    return MemoryService.open(store, embedder=HashingEmbedder())


def test_the_store_and_the_memory_index_share_one_sqlite_library(tmp_path: Path) -> None:
    pytest.importorskip("sqlean")
    store = _open(tmp_path / "edgecrew.db")
    try:
        dbapi = store.engine.dialect.dbapi
        assert dbapi is sqlite_module() and dbapi is not None and dbapi.__name__.startswith("sqlean")
        assert dbapi is not sqlite3.dbapi2
        with store.engine.connect() as conn:  # sqlite-vec is loaded into that engine's connections
            assert conn.exec_driver_sql("SELECT vec_version()").scalar()
        svc = _memory(store)
        svc.remember("the store file has one SQLite", "project", "p")
        assert svc.store.backend == "sqlite-vec" and svc.store.note is None
        assert svc.store._ready().engine is store.engine  # the index opened no engine of its own
    finally:
        store.engine.dispose()


def test_without_sqlean_the_store_uses_the_standard_library_and_memory_searches_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sqlean", None)  # import sqlean -> ImportError
    store = _open(tmp_path / "edgecrew.db")
    try:
        assert sqlite_module() is None and store.engine.dialect.dbapi is sqlite3.dbapi2
        svc = _memory(store)
        svc.remember("exact search still finds it", "project", "p")
        assert svc.store.backend == "exact" and "sqlean" in (svc.store.note or "")
        assert svc.recall("exact search", [ScopeRef("project", "p")]).hits[0].text == "exact search still finds it"
    finally:
        store.engine.dispose()


def test_concurrent_run_event_and_memory_writes_leave_the_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "edgecrew.db"
    store = _open(path)
    svc = _memory(store)
    svc.remember("warm the index", "project", "warm")  # the index opens (and backfills) once, up front
    deadline = time.monotonic() + STRESS_S
    runs: dict[int, list[str]] = {}
    memories: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def write_runs(n: int) -> None:
        mine = runs.setdefault(n, [])
        try:
            while time.monotonic() < deadline:
                run_id = f"r{n}-{len(mine)}"
                store.create_run(run_id, "crew", f"task {run_id}", {"agents": {}}, str(tmp_path))
                for k in range(3):
                    store.emit(run_id, f"e{k}", RunResumed(executor=f"x{k}"))
                mine.append(run_id)
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    def write_memories(n: int) -> None:
        mine = memories.setdefault(n, [])
        try:
            while time.monotonic() < deadline:
                text = f"memory {len(mine)} of writer {n}: the build on box {n} needs {len(mine)} GiB"
                svc.remember(text, "project", f"p{n}", tags=["stress"])
                mine.append(text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write_runs, args=(i,), name=f"runs-{i}") for i in range(4)]
    threads += [threading.Thread(target=write_memories, args=(i,), name=f"memory-{i}") for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=STRESS_S + 30)
    assert not errors, errors
    written_runs = [r for mine in runs.values() for r in mine]
    written_memories = {n: mine for n, mine in memories.items()}
    # SQLite's busy handler is not fair: a writer may wait seconds for its turn, so only totals are held.
    assert len(written_runs) >= 20 and sum(len(m) for m in written_memories.values()) >= 10, (
        len(written_runs),
        {n: len(m) for n, m in written_memories.items()},
    )
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        stored_runs = set(conn.execute(sa.select(t.runs.c.id)).scalars())
        events = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar()
    assert set(written_runs) <= stored_runs and events == 3 * len(written_runs)
    for run_id in written_runs[:: max(1, len(written_runs) // 50)]:
        assert store.get_run(run_id).task == f"task {run_id}"
        assert [e.key for e in store.events(run_id)] == ["e0", "e1", "e2"]
    for n, texts in written_memories.items():
        if not texts:
            continue
        found = svc.recall(texts[-1], [ScopeRef("project", f"p{n}")], k=1)
        assert found.backend == "sqlite-vec" and found.hits[0].text == texts[-1]
    assert svc.store.count() == 1 + sum(len(m) for m in written_memories.values())
    if svc.store.backend == "sqlite-vec":  # every memory is in the vector index too
        with store.engine.connect() as conn:
            indexed = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {svc.store._table}").scalar()
        assert indexed == svc.store.count()
    store.engine.dispose()
    with sqlite3.connect(path) as plain:  # and a fresh open by another library finds it intact
        assert plain.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


READER = """
import json, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
db.execute("PRAGMA busy_timeout=10000")
mode = db.execute("PRAGMA journal_mode").fetchone()[0]
seen, errors, end = [], [], time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        seen.append(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.Error as exc:
        errors.append(str(exc))
    time.sleep(0.01)
check = db.execute("PRAGMA integrity_check").fetchone()[0]
print(json.dumps({"mode": mode, "seen": seen, "errors": errors, "check": check}))
"""


def test_another_process_reads_runs_while_this_one_writes(tmp_path: Path) -> None:
    path = tmp_path / "edgecrew.db"
    store = _open(path)
    stop = threading.Event()
    written: list[str] = []

    def write() -> None:
        while not stop.is_set():
            run_id = f"r{len(written)}"
            store.create_run(run_id, "crew", "t", {}, str(tmp_path))
            store.emit(run_id, "e", RunResumed(executor="x"))
            written.append(run_id)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reader = subprocess.run(
            [sys.executable, "-c", READER, str(path), "2.0"], capture_output=True, text=True, timeout=60
        )
    finally:
        stop.set()
        writer.join(timeout=30)
    assert reader.returncode == 0, reader.stderr
    seen = json.loads(reader.stdout)
    assert seen["mode"] == "wal" and seen["errors"] == [] and seen["check"] == "ok"
    counts = seen["seen"]
    assert len(counts) > 20 and counts == sorted(counts)  # it saw the runs grow, never a torn file
    assert counts[-1] > counts[0] and counts[-1] <= len(written)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.execute(sa.select(sa.func.count()).select_from(t.runs)).scalar() == len(written)
    store.engine.dispose()
