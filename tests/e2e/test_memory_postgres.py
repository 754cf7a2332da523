"""Long-term memory on a real PostgreSQL server: pgvector when the server has it, else exact search
in Python over the stored vectors, said in the log and in memory.recall's answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from edgecrew.memory import HashingEmbedder, MemoryService, ScopeRef, register_memory_tools
from edgecrew.store import RunStore, open_store
from edgecrew.store.memory import MemoryStore, NewMemory
from edgecrew.tools.base import ToolContext, ToolRegistry
from tests import pg

pytestmark = pytest.mark.skipif(not pg.available(), reason="PostgreSQL server binaries are missing")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pg.postgres_server() as url:
        yield url


@pytest.fixture
def runs(pg_url: str) -> Iterator[RunStore]:
    store = open_store(pg_url)
    with store.engine.begin() as conn:  # each test starts with no memories (the server is shared)
        conn.execute(sa.text("DELETE FROM memories"))
    yield store
    store.engine.dispose()


def _has_pgvector(runs: RunStore) -> bool:
    with runs.engine.connect() as conn:
        return conn.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first() is not None


async def test_memory_tools_on_postgres_say_which_search_ran(
    runs: RunStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs.create_run("pg-mon", "crew", "t", {}, str(tmp_path), trigger={"kind": "routine", "project": "okr"})
    runs.create_run("pg-tue", "crew", "t", {}, str(tmp_path), trigger={"kind": "routine", "project": "okr"})
    runs.create_run("pg-x", "crew", "t", {}, str(tmp_path), trigger={"kind": "routine", "project": "blog"})
    registry = ToolRegistry()
    register_memory_tools(registry, MemoryService.open(runs, embedder=HashingEmbedder()))

    def ctx(run: str, agent: str) -> ToolContext:
        return ToolContext(run, agent, tmp_path)

    await registry.get("memory.remember").call({"text": "The launch is on May 4"}, ctx("pg-mon", "strategist"))
    found = await registry.get("memory.recall").call({"query": "when is the launch"}, ctx("pg-tue", "planner"))
    assert [m["text"] for m in found["memories"]] == ["The launch is on May 4"]
    other = await registry.get("memory.recall").call({"query": "when is the launch"}, ctx("pg-x", "planner"))
    assert other["memories"] == []

    if _has_pgvector(runs):
        assert found["backend"] == "pgvector" and found["note"] is None
    else:
        assert found["backend"] == "exact"
        assert "no pgvector extension" in found["note"] and "exact search" in found["summary"]
        assert any("exact search in Python" in r.getMessage() and "pgvector" in r.getMessage() for r in caplog.records)


def test_postgres_search_matches_exact_search(runs: RunStore) -> None:
    store = MemoryStore(runs, model="random-24", dim=24)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 24)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store.add([NewMemory(f"m{i}", "team", "ab"[i % 2], vector=v) for i, v in enumerate(x)])
    q = x[5] + 0.1 * x[6]
    q /= np.linalg.norm(q)
    index = store.search(q, [("team", "a")], 5)
    exact = store.exact_search(q, [("team", "a")], 5)
    assert index.backend == ("pgvector" if _has_pgvector(runs) else "exact")
    assert [h.record.id for h in index.hits] == [h.record.id for h in exact.hits]
    assert all(h.record.scope_id == "a" for h in index.hits)
    removed = [h.record.id for h in index.hits[:2]]
    assert store.delete(removed) == 2
    assert not {h.record.id for h in store.search(q, [("team", "a")], 5).hits} & set(removed)


def test_memory_scopes_survive_a_reopen(runs: RunStore, pg_url: str) -> None:
    MemoryService.open(runs, embedder=HashingEmbedder()).remember("persisted fact", "agent", "archivist")
    reopened = MemoryService.open(open_store(pg_url), embedder=HashingEmbedder())
    assert [h.text for h in reopened.recall("fact", [ScopeRef("agent", "archivist")]).hits] == ["persisted fact"]
