"""MemoryStore: the rows of long-term memory and the vector index that finds them.

The one design decision: ``memories`` (text, scope, embedding bytes) is the source of truth and the
vector index is derived from it, created on first use and back-filled from the rows it lacks. So a
database that cannot hold an index still works, by exact search in Python over the stored vectors,
and says so (``SearchResult.note``, and a warning in the log), instead of failing:

- SQLite: a sqlite-vec ``vec0`` table in the same database file, with the memory's scope as its
  partition key. The standard library's ``sqlite3`` is often built without extension loading (pyenv,
  macOS), so the RunStore opens the file through ``sqlean`` (the same SQLite, extensions allowed)
  when it is installed, loads sqlite-vec on each connection, and this index uses that one engine.
- Postgres: a pgvector table (``vector(dim)``, HNSW index, cosine) when the server has the extension.

Vectors are float32 and L2-normalized (the embedder's promise), so a score is the cosine similarity.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from edgecrew.errors import NotFoundError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

if TYPE_CHECKING:
    import numpy as np  # imported where used: a run without memory never loads it

__all__ = ["MemoryRecord", "MemoryStore", "NewMemory", "ScoredMemory", "SearchResult", "scope_key"]

log = logging.getLogger("edgecrew.memory")
m = t.memories


@dataclass(frozen=True)
class MemoryRecord:
    """One remembered text (its vector stays in the store)."""

    id: int
    scope: str
    scope_id: str
    text: str
    tags: tuple[str, ...]
    agent: str | None
    run_id: str | None
    model: str
    created_at: float


@dataclass(frozen=True)
class NewMemory:
    """A memory to add; ``vector`` is float32, L2-normalized, of the store's dimension."""

    text: str
    scope: str
    scope_id: str
    vector: np.ndarray
    tags: tuple[str, ...] = ()
    agent: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class ScoredMemory:
    record: MemoryRecord
    score: float  # cosine similarity to the query, -1..1


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[ScoredMemory, ...]
    backend: str  # sqlite-vec | pgvector | exact
    note: str | None = None  # why the search was exact when an index was expected


def scope_key(scope: str, scope_id: str) -> str:
    return f"{scope}:{scope_id}"


class MemoryStore:
    """Memories of one embedding model (``model``, ``dim``) in the store's database."""

    def __init__(self, store: RunStore, *, model: str, dim: int) -> None:
        self.store = store
        self.model = model
        self.dim = dim
        self._table = "memvec_" + re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:40] + f"_{dim}"
        self._lock = threading.Lock()
        self._index: _Index | None = None

    # -- the index --------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._ready().name

    @property
    def note(self) -> str | None:
        return self._ready().note

    def _ready(self) -> _Index:
        with self._lock:
            if self._index is None:
                self._index = self._open_index()
            return self._index

    def _open_index(self) -> _Index:
        engine = self.store.engine
        if engine.dialect.name == "sqlite":
            index: _Index = _SqliteVec.open(engine, self._table, self.dim)
        elif engine.dialect.name == "postgresql":
            index = _PgVector.open(engine, self._table, self.dim)
        else:
            index = _Exact(engine, f"no vector index on {engine.dialect.name}")
        if index.note:
            log.warning("memory: exact search in Python over the stored vectors: %s", index.note)
        index.backfill(self.model)
        return index

    # -- writes -----------------------------------------------------------------------------------
    def add(self, memories: Sequence[NewMemory]) -> list[MemoryRecord]:
        """Add memories in one transaction (rows and index entries together); returns them in order."""
        index = self._ready()
        now = time.time()
        records: list[MemoryRecord] = []
        with index.engine.begin() as conn:
            for new in memories:
                vector = self._checked(new.vector)
                inserted = conn.execute(
                    m.insert().values(
                        scope=new.scope,
                        scope_id=new.scope_id,
                        text=new.text,
                        tags=list(new.tags),
                        agent=new.agent,
                        run_id=new.run_id,
                        model=self.model,
                        dim=self.dim,
                        embedding=vector.tobytes(),
                        created_at=now,
                    )
                ).inserted_primary_key
                assert inserted is not None  # an INSERT of one row always has its key
                row_id = inserted[0]
                record = MemoryRecord(
                    int(row_id), new.scope, new.scope_id, new.text, tuple(new.tags), new.agent, new.run_id,
                    self.model, now,
                )  # fmt: skip
                index.insert(conn, [(record.id, scope_key(new.scope, new.scope_id), vector)])
                records.append(record)
        return records

    def delete(self, ids: Iterable[int]) -> int:
        """Delete these memories (and their index entries); returns how many there were."""
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        index = self._ready()
        gone = 0
        with index.engine.begin() as conn:
            for i in range(0, len(wanted), 500):  # under SQLite's limit of bound parameters
                part = wanted[i : i + 500]
                gone += conn.execute(m.delete().where(m.c.id.in_(part))).rowcount or 0
                index.delete(conn, part)
        return gone

    # -- reads ------------------------------------------------------------------------------------
    def get(self, memory_id: int) -> MemoryRecord:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(*_RECORD_COLS).where(m.c.id == memory_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no memory {memory_id}")
        return _record(row)

    def find(
        self, scopes: Sequence[tuple[str, str]], *, tags: Sequence[str] = (), limit: int = 1000
    ) -> list[MemoryRecord]:
        """Memories of these scopes (any model) carrying every tag in ``tags``, newest first."""
        if not scopes:
            return []
        query = (
            sa.select(*_RECORD_COLS)
            .where(sa.or_(*[(m.c.scope == s) & (m.c.scope_id == i) for s, i in scopes]))
            .order_by(m.c.id.desc())
        )
        with self.store.engine.connect() as conn:
            rows = [_record(r) for r in conn.execute(query).mappings()]
        return [r for r in rows if set(tags) <= set(r.tags)][:limit]

    def newest(
        self, scopes: Sequence[tuple[str, str]] | None = None, *, tags: Sequence[str] = (), limit: int = 50
    ) -> list[MemoryRecord]:
        """The newest ``limit`` memories (any model) of these scopes, or of every scope (``None``), that
        carry every tag in ``tags``, newest first; unlike :meth:`find` it reads no more rows than it shows."""
        if scopes is not None and not scopes:
            return []
        query = sa.select(*_RECORD_COLS).order_by(m.c.id.desc())
        if scopes is not None:
            query = query.where(sa.or_(*[(m.c.scope == s) & (m.c.scope_id == i) for s, i in scopes]))
        if not tags:
            query = query.limit(limit)
        found: list[MemoryRecord] = []
        with self.store.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                record = _record(row)
                if set(tags) <= set(record.tags):
                    found.append(record)
                    if len(found) >= limit:
                        break
        return found

    def count_in(self, scopes: Sequence[tuple[str, str]] | None = None) -> int:
        """How many memories (any model) these scopes hold, or every scope (``None``)."""
        if scopes is not None and not scopes:
            return 0
        query = sa.select(sa.func.count()).select_from(m)
        if scopes is not None:
            query = query.where(sa.or_(*[(m.c.scope == s) & (m.c.scope_id == i) for s, i in scopes]))
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def scopes(self) -> list[tuple[str, str]]:
        """Every (scope, scope id) that holds a memory."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(m.c.scope, m.c.scope_id).distinct().order_by(m.c.scope, m.c.scope_id))
            return [(str(s), str(i)) for s, i in rows]

    def count(self) -> int:
        with self.store.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(m).where(m.c.model == self.model)).scalar() or 0
            )

    def search(self, vector: np.ndarray, scopes: Sequence[tuple[str, str]], k: int) -> SearchResult:
        """The ``k`` memories of these scopes nearest to ``vector``, best first."""
        index = self._ready()
        if not scopes or k <= 0:
            return SearchResult((), index.name, index.note)
        keys = [scope_key(s, i) for s, i in scopes]
        with index.engine.connect() as conn:
            nearest = index.search(conn, self._checked(vector), keys, k, self.model)
        return SearchResult(self._scored(nearest), index.name, index.note)

    def exact_search(self, vector: np.ndarray, scopes: Sequence[tuple[str, str]], k: int) -> SearchResult:
        """Brute force over the stored vectors: the fallback, and the reference the benchmark checks
        the index against."""
        keys = [scope_key(s, i) for s, i in scopes]
        with self.store.engine.connect() as conn:
            nearest = _exact_search(conn, self._checked(vector), keys, k, self.model)
        return SearchResult(self._scored(nearest), "exact")

    def _scored(self, nearest: list[tuple[int, float]]) -> tuple[ScoredMemory, ...]:
        if not nearest:
            return ()
        ids = [i for i, _ in nearest]
        with self.store.engine.connect() as conn:
            rows = {
                r["id"]: _record(r) for r in conn.execute(sa.select(*_RECORD_COLS).where(m.c.id.in_(ids))).mappings()
            }
        return tuple(ScoredMemory(rows[i], score) for i, score in nearest if i in rows)

    def _checked(self, vector: np.ndarray) -> np.ndarray:
        import numpy as np

        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise ValueError(f"a {v.shape[0]}-dimensional vector given to a {self.dim}-dimensional memory store")
        return v


_RECORD_COLS = (m.c.id, m.c.scope, m.c.scope_id, m.c.text, m.c.tags, m.c.agent, m.c.run_id, m.c.model, m.c.created_at)


def _record(row: Any) -> MemoryRecord:
    tags = row["tags"]
    if isinstance(tags, str):  # a driver that hands JSON back as text
        tags = json.loads(tags)
    return MemoryRecord(
        id=int(row["id"]),
        scope=row["scope"],
        scope_id=row["scope_id"],
        text=row["text"],
        tags=tuple(tags or ()),
        agent=row["agent"],
        run_id=row["run_id"],
        model=row["model"],
        created_at=float(row["created_at"]),
    )


def _exact_search(conn: Connection, q: np.ndarray, keys: Sequence[str], k: int, model: str) -> list[tuple[int, float]]:
    import numpy as np

    scopes = [key.split(":", 1) for key in keys]
    query = sa.select(m.c.id, m.c.embedding).where(
        m.c.model == model, sa.or_(*[(m.c.scope == s) & (m.c.scope_id == i) for s, i in scopes])
    )
    rows = conn.execute(query).all()
    if not rows:
        return []
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    scores = vectors @ q
    top = np.argsort(-scores, kind="stable")[:k]
    return [(int(ids[i]), float(scores[i])) for i in top]


# -- index backends -------------------------------------------------------------------------------


class _Index:
    """A vector index over ``memories``; this base is the exact search itself (no index)."""

    name = "exact"

    def __init__(self, engine: Engine, note: str | None = None) -> None:
        self.engine = engine  # the engine its writes go through (rows and entries in one transaction)
        self.note = note

    def insert(self, conn: Connection, entries: Sequence[tuple[int, str, np.ndarray]]) -> None:
        return None

    def delete(self, conn: Connection, ids: Sequence[int]) -> None:
        return None

    def search(
        self, conn: Connection, q: np.ndarray, keys: Sequence[str], k: int, model: str
    ) -> list[tuple[int, float]]:
        return _exact_search(conn, q, keys, k, model)

    def backfill(self, model: str) -> None:
        """Index the memories of ``model`` that have no entry yet (written by a process without the index)."""
        return None


class _Exact(_Index):
    pass


def _missing(conn: Connection, model: str, indexed: str) -> list[tuple[int, str, np.ndarray]]:
    import numpy as np

    rows = conn.execute(
        sa.text(
            f"SELECT id, scope, scope_id, embedding FROM memories WHERE model = :model AND id NOT IN (SELECT {indexed})"
        ),
        {"model": model},
    ).all()
    return [(int(r[0]), scope_key(r[1], r[2]), np.frombuffer(r[3], dtype=np.float32)) for r in rows]


class _SqliteVec(_Index):
    """sqlite-vec's ``vec0`` table, cosine distance, partitioned by scope (a KNN per scope, merged)."""

    name = "sqlite-vec"

    def __init__(self, engine: Engine, table: str, dim: int) -> None:
        super().__init__(engine)
        self.table, self.dim = table, dim

    @classmethod
    def open(cls, store_engine: Engine, table: str, dim: int) -> _Index:
        database = store_engine.url.database
        if not database or database == ":memory:":
            return _Exact(store_engine, "an in-memory SQLite database has no vector index (use a file)")
        # The store's own engine, never a second one on the same file: the store opens SQLite through
        # sqlean (extensions allowed) when it is installed and loads sqlite-vec on each connection
        # (repo.open_store). Two SQLite libraries writing one file in one process corrupt it.
        if not getattr(store_engine.dialect.dbapi, "__name__", "").startswith("sqlean"):
            return _Exact(store_engine, "the store's SQLite cannot load sqlite-vec; install sqlean-py and sqlite-vec")
        index = cls(store_engine, table, dim)
        try:
            with store_engine.begin() as conn:
                conn.exec_driver_sql(
                    f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0("
                    f"embedding float[{dim}] distance_metric=cosine, scope_key text partition key)"
                )
        except Exception as exc:  # the extension did not load: the memories stay usable
            return _Exact(store_engine, f"sqlite-vec is not available ({exc})")
        return index

    def insert(self, conn: Connection, entries: Sequence[tuple[int, str, np.ndarray]]) -> None:
        import numpy as np

        if entries:
            conn.exec_driver_sql(
                f"INSERT INTO {self.table}(rowid, embedding, scope_key) VALUES (?, ?, ?)",
                [(i, v.astype(np.float32).tobytes(), key) for i, key, v in entries],
            )

    def delete(self, conn: Connection, ids: Sequence[int]) -> None:
        conn.exec_driver_sql(f"DELETE FROM {self.table} WHERE rowid IN ({','.join('?' * len(ids))})", tuple(ids))

    def search(
        self, conn: Connection, q: np.ndarray, keys: Sequence[str], k: int, model: str
    ) -> list[tuple[int, float]]:
        # A KNN with `scope_key IN (...)` returns k per partition: merge them by distance.
        marks = ",".join("?" * len(keys))
        rows = conn.exec_driver_sql(
            f"SELECT rowid, distance FROM {self.table} WHERE embedding MATCH ? AND k = ? AND scope_key IN ({marks})",
            (q.tobytes(), k, *keys),
        ).all()
        best = sorted(((float(d), int(i)) for i, d in rows))[:k]
        return [(i, 1.0 - d) for d, i in best]

    def backfill(self, model: str) -> None:
        with self.engine.begin() as conn:
            missing = _missing(conn, model, f"rowid FROM {self.table}")
            self.insert(conn, missing)
        if missing:
            log.info("memory: indexed %d memories that had no sqlite-vec entry", len(missing))


class _PgVector(_Index):
    """A pgvector table beside ``memories`` (``vector(dim)``, HNSW, cosine), rows cascade-deleted."""

    name = "pgvector"

    def __init__(self, engine: Engine, table: str, dim: int) -> None:
        super().__init__(engine)
        self.table, self.dim = table, dim

    @classmethod
    def open(cls, engine: Engine, table: str, dim: int) -> _Index:
        with engine.connect() as conn:
            available = conn.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
        if available is None:
            return _Exact(engine, "the Postgres server has no pgvector extension (install postgresql-NN-pgvector)")
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7420119)"))  # processes starting together
                conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
                conn.execute(
                    sa.text(
                        f"CREATE TABLE IF NOT EXISTS {table} (memory_id integer PRIMARY KEY "
                        f"REFERENCES memories(id) ON DELETE CASCADE, scope_key text NOT NULL, "
                        f"embedding vector({dim}) NOT NULL)"
                    )
                )
                conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {table}_scope ON {table} (scope_key)"))
                conn.execute(
                    sa.text(
                        f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)"
                    )
                )
        except sa.exc.DBAPIError as exc:  # e.g. no right to create the extension
            reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            return _Exact(engine, f"pgvector could not be set up ({reason})")
        return cls(engine, table, dim)

    def insert(self, conn: Connection, entries: Sequence[tuple[int, str, np.ndarray]]) -> None:
        if entries:
            conn.execute(
                sa.text(
                    f"INSERT INTO {self.table} (memory_id, scope_key, embedding) VALUES (:i, :k, CAST(:v AS vector))"
                ),
                [{"i": i, "k": key, "v": _pg_vector(v)} for i, key, v in entries],
            )

    def delete(self, conn: Connection, ids: Sequence[int]) -> None:
        return None  # ON DELETE CASCADE

    def search(
        self, conn: Connection, q: np.ndarray, keys: Sequence[str], k: int, model: str
    ) -> list[tuple[int, float]]:
        # HNSW filters after it walks the graph: a small scope may come back short, so ask for more
        # candidates, and scan exactly when the index still returned fewer than the scope holds.
        conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 10 * k))}"))
        query = sa.text(
            f"SELECT memory_id, embedding <=> CAST(:q AS vector) AS d FROM {self.table} "
            f"WHERE scope_key = ANY(:keys) ORDER BY d LIMIT :k"
        )
        params = {"q": _pg_vector(q), "keys": list(keys), "k": k}
        rows = conn.execute(query, params).all()
        if len(rows) < k:
            total = conn.execute(
                sa.text(f"SELECT count(*) FROM {self.table} WHERE scope_key = ANY(:keys)"), {"keys": list(keys)}
            ).scalar()
            if (total or 0) > len(rows):
                conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
                rows = conn.execute(query, params).all()
        conn.rollback()  # end the transaction the SET LOCALs live in
        return [(int(i), 1.0 - float(d)) for i, d in rows]

    def backfill(self, model: str) -> None:
        with self.engine.begin() as conn:
            missing = _missing(conn, model, f"memory_id FROM {self.table}")
            self.insert(conn, missing)
        if missing:
            log.info("memory: indexed %d memories that had no pgvector entry", len(missing))


def _pg_vector(v: np.ndarray) -> str:
    import numpy as np

    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(v, dtype=np.float32)) + "]"
