"""MemoryService: remember, recall and forget texts across runs, scoped to an agent, a team or a project.

The one design decision: a memory belongs to exactly one scope (``agent`` planner, ``team`` crew,
``project`` okr-2027), and every read names the scopes it may see; nothing is global. The scope ids
of a call come from the run (:meth:`MemoryService.scope_ids`: the agent, the run's team, and the
project a run names in its trigger, until runs carry a project field of their own) unless the caller
names them. Embedding is CPU work in C and the store is synchronous SQL, so the service is
synchronous; the tools run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, Self, TypeVar, get_args

from edgecrew.errors import NotFoundError, UserError
from edgecrew.memory.embedder import Embedder, make_embedder
from edgecrew.settings import Settings
from edgecrew.store.memory import MemoryRecord, MemoryStore, NewMemory
from edgecrew.store.repo import RunStore

__all__ = ["SCOPES", "MemoryConfig", "MemoryHit", "MemoryService", "Recall", "Scope", "ScopeRef"]

Scope = Literal["agent", "team", "project"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
MAX_TEXT = 4_000  # a memory is a fact or a note, not a document
T = TypeVar("T")


@dataclass(frozen=True)
class ScopeRef:
    """One scope by kind and id: ``ScopeRef("project", "okr-2027")``."""

    scope: Scope
    id: str

    def __str__(self) -> str:
        return f"{self.scope} {self.id}"


@dataclass(frozen=True)
class MemoryHit:
    """A recalled memory and how close it is to the query (cosine similarity, higher is closer)."""

    id: int
    text: str
    scope: str
    scope_id: str
    score: float
    tags: tuple[str, ...] = ()
    agent: str | None = None
    run_id: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Recall:
    """The answer to a recall: hits, best first, and how they were found."""

    query: str
    scopes: tuple[ScopeRef, ...]
    hits: tuple[MemoryHit, ...]
    backend: str  # sqlite-vec | pgvector | exact
    note: str | None = None  # why the search was exact (no vector index on this database)


@dataclass(frozen=True)
class MemoryConfig:
    """How memory embeds: ``embedder`` ``e5-small`` (the packaged model) or ``hashing`` (tests)."""

    embedder: str = "e5-small"
    # OpenMP threads of the embedding engine (None: one per core). One by default: on a loaded 2-core
    # box a query took ~360 ms with one thread per core and ~40 ms with one (threads spin for cores).
    threads: int | None = 1
    min_score: float = 0.0  # recall drops hits less similar than this

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryConfig:
        """From the ``memory_*`` settings (EDGECREW_MEMORY_EMBEDDER, _THREADS, _MIN_SCORE), defaults where unset."""
        return cls(
            embedder=str(getattr(settings, "memory_embedder", cls.embedder)),
            threads=getattr(settings, "memory_threads", cls.threads),
            min_score=float(getattr(settings, "memory_min_score", cls.min_score)),
        )


class HasStore(Protocol):
    """What :meth:`MemoryService.of` needs of a runtime."""

    @property
    def store(self) -> RunStore: ...
    @property
    def settings(self) -> Settings: ...
    def extension(self, cls: type[T], make: Callable[[Self], T]) -> T: ...


@dataclass
class MemoryService:
    """Long-term memory over one store and one embedder."""

    store: MemoryStore
    embedder: Embedder
    runs: RunStore | None = None  # to read a run's team and project (None: callers name the scope ids)
    config: MemoryConfig = field(default_factory=MemoryConfig)
    # The project id a run works in, as the composition root knows it (the projects capability);
    # None: the ``project`` of the run's trigger.
    project_of: Callable[[str], str | None] | None = None

    @classmethod
    def open(
        cls,
        runs: RunStore,
        config: MemoryConfig | None = None,
        *,
        embedder: Embedder | None = None,
        project_of: Callable[[str], str | None] | None = None,
    ) -> MemoryService:
        """The service on a runtime's store. Cheap: the model loads, and the index opens, on first use."""
        config = config or MemoryConfig()
        embedder = embedder or make_embedder(config.embedder, threads=config.threads)
        store = MemoryStore(runs, model=embedder.model_id, dim=embedder.dim)
        return cls(store=store, embedder=embedder, runs=runs, config=config, project_of=project_of)

    @classmethod
    def of(cls, rt: HasStore) -> MemoryService:
        """The runtime's service (one per runtime, its extension: one model loaded, one index)."""
        return rt.extension(cls, lambda rt: cls.open(rt.store, MemoryConfig.from_settings(rt.settings)))

    # -- use cases --------------------------------------------------------------------------------
    def remember(
        self,
        text: str,
        scope: Scope,
        scope_id: str,
        *,
        agent: str | None = None,
        run: str | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Store ``text`` in a scope; returns its id."""
        return self.remember_many([text], scope, scope_id, agent=agent, run=run, tags=tags)[0]

    def remember_many(
        self,
        texts: Sequence[str],
        scope: Scope,
        scope_id: str,
        *,
        agent: str | None = None,
        run: str | None = None,
        tags: Sequence[str] = (),
    ) -> list[int]:
        """Store several texts in one scope, embedded in one batch; returns their ids in order."""
        _check_scope(scope, scope_id)
        cleaned = [t.strip() for t in texts]
        for text in cleaned:
            if not text:
                raise UserError("a memory needs some text")
            if len(text) > MAX_TEXT:
                raise UserError(f"a memory holds at most {MAX_TEXT} characters ({len(text)} given): remember a summary")
        vectors = self.embedder.embed_passages(cleaned)
        tagset = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
        records = self.store.add(
            [
                NewMemory(text=text, scope=scope, scope_id=scope_id, vector=v, tags=tagset, agent=agent, run_id=run)
                for text, v in zip(cleaned, vectors, strict=True)
            ]
        )
        return [r.id for r in records]

    def recall(self, query: str, scopes: Sequence[ScopeRef], k: int = 5) -> Recall:
        """The ``k`` memories of these scopes closest in meaning to ``query``, best first."""
        refs = tuple(dict.fromkeys(scopes))
        for ref in refs:
            _check_scope(ref.scope, ref.id)
        if not query.strip() or not refs:
            return Recall(query, refs, (), self.store.backend, self.store.note)
        vector = self.embedder.embed_query(query.strip())
        result = self.store.search(vector, [(r.scope, r.id) for r in refs], k)
        hits = tuple(_hit(s.record, s.score) for s in result.hits if s.score >= self.config.min_score)
        return Recall(query, refs, hits, result.backend, result.note)

    def forget(
        self,
        memory_id: int | None = None,
        *,
        scopes: Sequence[ScopeRef] = (),
        tags: Sequence[str] = (),
    ) -> list[int]:
        """Delete one memory (``memory_id``, which must lie in ``scopes`` when they are given), or every
        memory of ``scopes`` that carries all ``tags``; returns the ids deleted."""
        keys = [(r.scope, r.id) for r in scopes]
        if memory_id is not None:
            record = self.store.get(memory_id)
            if keys and (record.scope, record.scope_id) not in keys:
                seen = ", ".join(str(r) for r in scopes)
                raise NotFoundError(f"no memory {memory_id} in {seen}")
            ids = [record.id]
        else:
            if not keys:
                raise UserError("name a memory id, or the scopes (and tags) whose memories to forget")
            ids = [r.id for r in self.store.find(keys, tags=tags, limit=100_000)]
        self.store.delete(ids)
        return ids

    def get(self, memory_id: int) -> MemoryRecord:
        return self.store.get(memory_id)

    def latest(
        self, scopes: Sequence[ScopeRef] | None = None, *, tags: Sequence[str] = (), limit: int = 50
    ) -> list[MemoryRecord]:
        """The newest memories of these scopes (``None``: of every scope) carrying all ``tags``, newest first."""
        for ref in scopes or ():
            _check_scope(ref.scope, ref.id)
        keys = None if scopes is None else [(r.scope, r.id) for r in scopes]
        return self.store.newest(keys, tags=tags, limit=limit)

    def count(self, scopes: Sequence[ScopeRef] | None = None) -> int:
        """How many memories these scopes (``None``: every scope) hold."""
        return self.store.count_in(None if scopes is None else [(r.scope, r.id) for r in scopes])

    def known_scopes(self) -> list[ScopeRef]:
        """Every scope that holds a memory (what a person's search looks in when it names none)."""
        return [ScopeRef(s, i) for s, i in self.store.scopes() if s in SCOPES]

    # -- scopes of a run --------------------------------------------------------------------------
    def scope_ids(self, run_id: str | None, agent: str | None) -> dict[Scope, str | None]:
        """The agent, team and project a call in this run belongs to (None where the run names none)."""
        team: str | None = None
        project: str | None = None
        if self.runs is not None and run_id:
            try:
                run = self.runs.get_run(run_id)
            except NotFoundError:  # a call outside a run (a test, a tool called by hand)
                run = None
            if run is not None:
                team = run.team.split("/", 1)[0]  # "team/agent" is a chat with one agent of the team
                project = self.project_of(run_id) if self.project_of is not None else None
                project = project or _project_of(run.trigger)
        return {"agent": agent or None, "team": team, "project": project}


def _project_of(trigger: Mapping[str, object] | None) -> str | None:
    value = (trigger or {}).get("project")
    return str(value) if value else None


def _check_scope(scope: str, scope_id: str) -> None:
    if scope not in SCOPES:
        raise UserError(f"unknown memory scope {scope!r}; use one of {', '.join(SCOPES)}")
    if not scope_id or len(scope_id) > 200:
        raise UserError(f"a {scope} memory needs the {scope}'s name (1 to 200 characters)")


def _hit(record: MemoryRecord, score: float) -> MemoryHit:
    return MemoryHit(
        id=record.id,
        text=record.text,
        scope=record.scope,
        scope_id=record.scope_id,
        score=round(score, 4),
        tags=record.tags,
        agent=record.agent,
        run_id=record.run_id,
        created_at=record.created_at,
    )
