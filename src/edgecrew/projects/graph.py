"""Knowledge graphs in the store: nodes and typed edges (facts), each graph one scope (a project, an
agent or the workspace), with breadth-first queries for neighbours (depth n) and a shortest path.

The one design decision: the graph lives in two plain tables and every query walks it one hop per
statement (``WHERE source_id IN frontier OR target_id IN frontier``), in Python. Edge-box graphs hold
thousands of facts, not billions; a hop per statement stays portable across SQLite and Postgres and
bounded by ``MAX_VISITED``, where a recursive CTE would differ per dialect and could not stop early.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from edgecrew.errors import NotFoundError, UserError
from edgecrew.projects.records import SCOPES, Fact, Node
from edgecrew.store import tables as t

__all__ = ["MAX_DEPTH", "Direction", "KnowledgeGraph", "node_key", "relation_name"]

Direction = Literal["both", "out", "in"]
MAX_DEPTH = 6  # hops a query walks at most
MAX_VISITED = 5_000  # nodes a query visits at most (a hub node cannot make it read the whole store)
CHUNK = 500  # ids per IN (...) list: under every dialect's parameter limit


def node_key(name: str) -> str:
    """The name as the graph matches it: trimmed, inner spaces collapsed, lower case."""
    return " ".join(name.split()).lower()


def relation_name(relation: str) -> str:
    """A relation as stored: lower case words joined by underscores ("Works on" -> "works_on")."""
    words = relation.replace("-", " ").replace("_", " ").split()
    name = "_".join(w.lower() for w in words)
    if not name or len(name) > 100:
        raise UserError(f"relation {relation[:120]!r}: give 1 to 100 characters, e.g. 'works_on' or 'depends_on'")
    return name


def _check_name(name: str, what: str) -> str:
    clean = " ".join(name.split())
    if not clean or len(clean) > 200:
        raise UserError(f"{what} {name[:120]!r}: a node name has 1 to 200 characters (not only spaces)")
    return clean


def check_scope(scope: str, scope_id: str | None) -> tuple[str, str]:
    """The scope and its id as stored (the workspace's id is ""), or a UserError saying what to give."""
    if scope not in SCOPES:
        raise UserError(f"scope {scope!r}: use one of {', '.join(SCOPES)}")
    given = (scope_id or "").strip()
    if scope == "workspace":
        return scope, ""
    if not given or len(given) > 200:
        example = "a project id or name" if scope == "project" else "an agent, e.g. 'crew/planner'"
        raise UserError(f"scope {scope} needs a scope_id: {example}")
    return scope, given


class KnowledgeGraph:
    """Nodes and facts of every scope, in the store's database (scopes are checked by the caller)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writes ----------------------------------------------------------------------------------------
    def add_fact(
        self,
        scope: str,
        scope_id: str,
        subject: str,
        relation: str,
        obj: str,
        *,
        added_by: str,
        subject_kind: str | None = None,
        object_kind: str | None = None,
    ) -> tuple[Fact, bool]:
        """Record ``subject --relation--> object`` (nodes made as needed); ``True`` when it is new."""
        subject, obj = _check_name(subject, "subject"), _check_name(obj, "object")
        rel = relation_name(relation)
        for attempt in range(3):  # a concurrent writer may add the same node or fact first
            try:
                with self.engine.begin() as conn:
                    source, subject = self._node_id(conn, scope, scope_id, subject, subject_kind)
                    target, obj = self._node_id(conn, scope, scope_id, obj, object_kind)
                    found = (
                        conn.execute(
                            sa.select(t.kg_edges).where(
                                t.kg_edges.c.source_id == source,
                                t.kg_edges.c.relation == rel,
                                t.kg_edges.c.target_id == target,
                            )
                        )
                        .mappings()
                        .first()
                    )
                    if found is not None:
                        return Fact(found["id"], subject, rel, obj, found["added_by"], found["created_at"]), False
                    now = time.time()
                    edge_id = conn.execute(
                        t.kg_edges.insert()
                        .values(
                            source_id=source, relation=rel, target_id=target, added_by=added_by[:200], created_at=now
                        )
                        .returning(t.kg_edges.c.id)
                    ).scalar_one()
                    return Fact(int(edge_id), subject, rel, obj, added_by[:200], now), True
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _node_id(self, conn: Connection, scope: str, scope_id: str, name: str, kind: str | None) -> tuple[int, str]:
        """The node's id and name as first written (made when missing)."""
        key = node_key(name)
        where = (t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id, t.kg_nodes.c.key == key)
        row = conn.execute(sa.select(t.kg_nodes.c.id, t.kg_nodes.c.name, t.kg_nodes.c.kind).where(*where)).first()
        if row is not None:
            if kind and not row.kind:
                conn.execute(t.kg_nodes.update().where(t.kg_nodes.c.id == row.id).values(kind=kind[:64]))
            return int(row.id), str(row.name)
        values = {"scope": scope, "scope_id": scope_id, "key": key, "name": name, "kind": (kind or None)}
        insert = t.kg_nodes.insert().values(created_at=time.time(), **values).returning(t.kg_nodes.c.id)
        return int(conn.execute(insert).scalar_one()), name

    def remove_fact(self, scope: str, scope_id: str, fact_id: int) -> None:
        with self.engine.begin() as conn:
            ids = sa.select(t.kg_nodes.c.id).where(t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id)
            gone = conn.execute(
                t.kg_edges.delete().where(t.kg_edges.c.id == fact_id, t.kg_edges.c.source_id.in_(ids))
            ).rowcount
            if not gone:
                raise NotFoundError(f"no fact {fact_id} in the {_graph_name(conn, scope, scope_id)}")

    def delete_scope(self, scope: str, scope_id: str) -> None:
        """Remove a whole graph (a deleted project's)."""
        with self.engine.begin() as conn:
            ids = sa.select(t.kg_nodes.c.id).where(t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id)
            conn.execute(t.kg_edges.delete().where(t.kg_edges.c.source_id.in_(ids) | t.kg_edges.c.target_id.in_(ids)))
            conn.execute(t.kg_nodes.delete().where(t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id))

    # -- reads -----------------------------------------------------------------------------------------
    def node(self, scope: str, scope_id: str, name: str) -> Node:
        """The node called ``name`` (any case), or a NotFoundError naming the closest ones."""
        key = node_key(name)
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(t.kg_nodes).where(
                        t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id, t.kg_nodes.c.key == key
                    )
                )
                .mappings()
                .first()
            )
            if row is not None:
                return _node(row)
            keys = (
                conn.execute(
                    sa.select(t.kg_nodes.c.name).where(t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id)
                )
                .scalars()
                .all()
            )
            graph = _graph_name(conn, scope, scope_id)
        close = difflib.get_close_matches(name, list(keys), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "add a fact about it first"
        raise NotFoundError(f"no node {name[:120]!r} in the {graph}; {hint}")

    def nodes(self, scope: str, scope_id: str, *, limit: int = 500) -> list[Node]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(t.kg_nodes)
                    .where(t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id)
                    .order_by(t.kg_nodes.c.id)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [_node(r) for r in rows]

    def facts(self, scope: str, scope_id: str, *, limit: int = 1_000) -> list[Fact]:
        with self.engine.connect() as conn:
            ids = sa.select(t.kg_nodes.c.id).where(t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id)
            rows = (
                conn.execute(
                    sa.select(t.kg_edges).where(t.kg_edges.c.source_id.in_(ids)).order_by(t.kg_edges.c.id).limit(limit)
                )
                .mappings()
                .all()
            )
            return self._facts(conn, rows)

    def counts(self, scope: str, scope_id: str) -> tuple[int, int]:
        """How many nodes and facts the graph holds."""
        with self.engine.connect() as conn:
            ids = sa.select(t.kg_nodes.c.id).where(t.kg_nodes.c.scope == scope, t.kg_nodes.c.scope_id == scope_id)
            nodes = conn.execute(sa.select(sa.func.count()).select_from(ids.subquery())).scalar_one()
            facts = conn.execute(
                sa.select(sa.func.count()).select_from(t.kg_edges).where(t.kg_edges.c.source_id.in_(ids))
            ).scalar_one()
        return int(nodes), int(facts)

    def neighbours(
        self,
        scope: str,
        scope_id: str,
        name: str,
        *,
        depth: int = 1,
        direction: Direction = "both",
        relation: str | None = None,
    ) -> tuple[Node, list[Node], list[Fact]]:
        """The node, the nodes within ``depth`` hops of it (nearest first, each with its distance)
        and the facts walked to reach them."""
        if not 1 <= depth <= MAX_DEPTH:
            raise UserError(f"depth {depth}: give 1 to {MAX_DEPTH} hops")
        rel = relation_name(relation) if relation else None
        start = self.node(scope, scope_id, name)
        distance = {start.id: 0}
        walked: dict[int, Any] = {}
        frontier = [start.id]
        with self.engine.connect() as conn:
            for hop in range(1, depth + 1):
                nxt: list[int] = []
                here = set(frontier)
                for edge in self._edges_at(conn, frontier, direction, rel):
                    walked.setdefault(edge["id"], edge)
                    for end in _far_ends(edge, here, direction):
                        if end not in distance and len(distance) < MAX_VISITED:
                            distance[end] = hop
                            nxt.append(end)
                frontier = nxt
                if not frontier:
                    break
            found = self._nodes_by_id(conn, [n for n in distance if n != start.id])
            facts = self._facts(conn, sorted(walked.values(), key=lambda e: e["id"]))
        near = sorted(
            (_with_distance(found[n], d) for n, d in distance.items() if n in found), key=lambda n: (n.distance, n.name)
        )
        return start, near, facts

    def path(
        self, scope: str, scope_id: str, source: str, target: str, *, max_depth: int = MAX_DEPTH, directed: bool = False
    ) -> list[Fact] | None:
        """The facts of a shortest path from ``source`` to ``target`` (each as stored: a step may run
        against its arrow unless ``directed``); ``[]`` when they are one node, None when none joins them."""
        if not 1 <= max_depth <= MAX_DEPTH:
            raise UserError(f"max_depth {max_depth}: give 1 to {MAX_DEPTH} hops")
        start, goal = self.node(scope, scope_id, source), self.node(scope, scope_id, target)
        if start.id == goal.id:
            return []
        came_from: dict[int, tuple[int, Any] | None] = {start.id: None}
        frontier = [start.id]
        direction: Direction = "out" if directed else "both"
        with self.engine.connect() as conn:
            for _ in range(max_depth):
                nxt: list[int] = []
                here = set(frontier)
                for edge in self._edges_at(conn, frontier, direction, None):
                    for end in _far_ends(edge, here, direction):
                        if end in came_from or len(came_from) >= MAX_VISITED:
                            continue
                        near = edge["source_id"] if end == edge["target_id"] else edge["target_id"]
                        came_from[end] = (near, edge)
                        nxt.append(end)
                if goal.id in came_from:
                    steps: list[Any] = []
                    at = goal.id
                    while (link := came_from[at]) is not None:
                        at, edge = link
                        steps.append(edge)
                    return self._facts(conn, list(reversed(steps)))
                frontier = nxt
                if not frontier:
                    break
        return None

    # -- helpers ---------------------------------------------------------------------------------------
    def _edges_at(
        self, conn: Connection, frontier: Sequence[int], direction: Direction, relation: str | None
    ) -> list[Any]:
        rows: list[Any] = []
        for i in range(0, len(frontier), CHUNK):
            part = list(frontier[i : i + CHUNK])
            outgoing, incoming = t.kg_edges.c.source_id.in_(part), t.kg_edges.c.target_id.in_(part)
            where = outgoing if direction == "out" else incoming if direction == "in" else outgoing | incoming
            query = sa.select(t.kg_edges).where(where).order_by(t.kg_edges.c.id)
            if relation is not None:
                query = query.where(t.kg_edges.c.relation == relation)
            rows += conn.execute(query).mappings().all()
        return rows

    def _nodes_by_id(self, conn: Connection, ids: Iterable[int]) -> dict[int, Node]:
        wanted = list(ids)
        found: dict[int, Node] = {}
        for i in range(0, len(wanted), CHUNK):
            rows = conn.execute(sa.select(t.kg_nodes).where(t.kg_nodes.c.id.in_(wanted[i : i + CHUNK]))).mappings()
            found.update((r["id"], _node(r)) for r in rows)
        return found

    def _facts(self, conn: Connection, edges: Sequence[Any]) -> list[Fact]:
        names = self._nodes_by_id(conn, {e["source_id"] for e in edges} | {e["target_id"] for e in edges})
        return [
            Fact(
                e["id"],
                names[e["source_id"]].name,
                e["relation"],
                names[e["target_id"]].name,
                e["added_by"],
                e["created_at"],
            )
            for e in edges
        ]


def _far_ends(edge: Any, here: set[int], direction: Direction) -> list[int]:
    ends = []
    if direction in ("out", "both") and edge["source_id"] in here:
        ends.append(edge["target_id"])
    if direction in ("in", "both") and edge["target_id"] in here:
        ends.append(edge["source_id"])
    return ends


def _node(row: Any) -> Node:
    return Node(row["id"], row["scope"], row["scope_id"], row["name"], row["kind"])


def _with_distance(node: Node, distance: int) -> Node:
    return Node(node.id, node.scope, node.scope_id, node.name, node.kind, distance)


def _graph_name(conn: Connection, scope: str, scope_id: str) -> str:
    """The graph as the user knows it: a project by its name (and id), read only when an error says it."""
    if scope == "workspace":
        return "workspace graph"
    if scope == "project":
        name = conn.execute(sa.select(t.projects.c.name).where(t.projects.c.id == scope_id)).scalar()
        if name is not None:
            return f"graph of project {name!r} ({scope_id})"
    return f"graph of {scope} {scope_id}"
