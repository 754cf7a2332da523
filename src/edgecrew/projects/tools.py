"""The agents' tools on projects: kg.add_fact, kg.neighbours, kg.path, artifacts.read,
artifacts.write, artifacts.list and project.case_file.

Closures over one runtime's :class:`ProjectService` (registered by :func:`register_project_tools`,
no module state); unbound, they are only listed. A tool called in a run of a project works in that
project when none is named, and an agent's own graph is ``team/agent``. Every answer opens with a
one-line ``summary`` (small models read it first) and has an output schema; service errors (a locked
artifact, an unknown node) come back as ToolError, so the model reads what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from edgecrew.errors import ToolError
from edgecrew.projects.graph import MAX_DEPTH
from edgecrew.projects.records import Fact, Project
from edgecrew.projects.service import ProjectService
from edgecrew.tools.base import ToolContext, ToolRegistry, as_tool_errors, spec_from_function

__all__ = ["PROJECT_TOOLS", "register_project_tools"]

PROJECT_TOOLS = (
    "kg.add_fact",
    "kg.neighbours",
    "kg.path",
    "artifacts.read",
    "artifacts.write",
    "artifacts.list",
    "project.case_file",
)
SHOWN = 16_000  # characters of an artifact or case file a tool returns
LISTED = 100

ScopeArg = Annotated[
    Literal["project", "agent", "workspace"],
    Field(description="Whose graph: this run's project (default), an agent's, or the whole workspace's."),
]
ScopeId = Annotated[
    str | None,
    Field(max_length=200, description="A project's name or id, or an agent 'team/agent'; default: this run's."),
]
ProjectArg = Annotated[
    str | None, Field(max_length=200, description="A project's name or id; default: the project of this run.")
]
NodeName = Annotated[str, Field(min_length=1, max_length=200)]


class FactOut(BaseModel):
    subject: str
    relation: str
    object: str


class NodeOut(BaseModel):
    name: str
    kind: str | None = None
    distance: int


class AddFactOut(BaseModel):
    summary: str
    fact: FactOut
    new: bool
    graph: str


class NeighboursOut(BaseModel):
    summary: str
    node: str
    neighbours: list[NodeOut]
    facts: list[FactOut]


class PathOut(BaseModel):
    summary: str
    found: bool
    hops: int | None = None
    steps: list[FactOut]


class ArtifactOut(BaseModel):
    name: str
    kind: str
    owner: str
    latest_version: int
    locked: bool
    lock: str
    published_version: int | None = None


class ReadOut(BaseModel):
    summary: str
    artifact: ArtifactOut
    version: int
    author: str
    content: str
    truncated: bool


class WriteOut(BaseModel):
    summary: str
    artifact: ArtifactOut
    version: int
    created: bool


class ListOut(BaseModel):
    summary: str
    project: str
    artifacts: list[ArtifactOut]


class CaseFileOut(BaseModel):
    summary: str
    project: str
    version: int
    content: str
    truncated: bool


def register_project_tools(registry: ToolRegistry, service: ProjectService | None = None) -> None:
    """Register the project tools, bound to a runtime's project service (None: only listed; a call says
    so). Registering again replaces them: bootstrap binds them once the store is open."""
    bound = _ProjectTools(service)
    specs: list[tuple[str, Callable[..., Any], type[BaseModel]]] = [
        ("kg.add_fact", bound.add_fact, AddFactOut),
        ("kg.neighbours", bound.neighbours, NeighboursOut),
        ("kg.path", bound.path, PathOut),
        ("artifacts.read", bound.read, ReadOut),
        ("artifacts.write", bound.write, WriteOut),
        ("artifacts.list", bound.list, ListOut),
        ("project.case_file", bound.case_file, CaseFileOut),
    ]
    for name, fn, out in specs:
        spec = spec_from_function(fn, name=name, timeout_s=30.0, risk="safe")  # the store only, no outside effect
        aliases = ("kg.neighbors",) if name == "kg.neighbours" else ()
        registry.register(replace(spec, aliases=aliases, output_model=out))


def _fact(f: Fact) -> dict[str, Any]:
    return {"subject": f.subject, "relation": f.relation, "object": f.object}


class _ProjectTools:
    """The tools' functions, bound to one runtime's service (their docstrings are the descriptions)."""

    def __init__(self, service: ProjectService | None) -> None:
        self._service = service

    @property
    def service(self) -> ProjectService:
        if self._service is None:
            raise ToolError("projects are not open in this process (the tools are only listed here)")
        return self._service

    def _project(self, ctx: ToolContext, given: str | None) -> Project:
        if given:
            return self.service.get(given)
        found = self.service.project_of_run(ctx.run_id)
        if found is None:
            raise ToolError(
                "this run works in no project: start it in one (`edgecrew run TEAM TASK --in NAME`, `project` in "
                "POST /runs, a routine's `project:`), or name one with the 'project' argument (a name or id)"
            )
        return found

    def _scope(self, ctx: ToolContext, scope: str, scope_id: str | None) -> tuple[str, str, str]:
        """The scope, its id as stored, and the graph's name as the model reads it."""
        if scope == "project":
            project = self._project(ctx, scope_id)
            return "project", project.id, f"project {project.name}"
        if scope == "agent":
            ref = scope_id or self.service.agent_of_run(ctx.run_id, ctx.agent)
            kind, ident = self.service.scope("agent", ref)
            return kind, ident, f"agent {ident}"
        return "workspace", "", "workspace"

    def add_fact(
        self,
        subject: NodeName,
        relation: Annotated[str, Field(min_length=1, max_length=100, description="e.g. works_on, depends_on")],
        object: NodeName,
        ctx: ToolContext,
        scope: ScopeArg = "project",
        scope_id: ScopeId = None,
    ) -> dict[str, Any]:
        """Record a fact in a knowledge graph: subject --relation--> object (nodes are made as needed)."""
        with as_tool_errors():
            kind, ident, graph = self._scope(ctx, scope, scope_id)
            by = self.service.agent_of_run(ctx.run_id, ctx.agent)
            fact, new = self.service.graph.add_fact(kind, ident, subject, relation, object, added_by=by)
        said = "recorded" if new else "already known"
        return {"summary": f"{said} in the {graph} graph: {fact}", "fact": _fact(fact), "new": new, "graph": graph}

    def neighbours(
        self,
        node: NodeName,
        ctx: ToolContext,
        depth: Annotated[int, Field(ge=1, le=MAX_DEPTH, description="Hops from the node.")] = 1,
        scope: ScopeArg = "project",
        scope_id: ScopeId = None,
        relation: Annotated[str | None, Field(max_length=100, description="Only edges of this relation.")] = None,
        direction: Literal["both", "out", "in"] = "both",
    ) -> dict[str, Any]:
        """The nodes within `depth` hops of a node in a knowledge graph, nearest first, with the facts linking them."""
        with as_tool_errors():
            kind, ident, graph = self._scope(ctx, scope, scope_id)
            start, near, facts = self.service.graph.neighbours(
                kind, ident, node, depth=depth, direction=direction, relation=relation
            )
        names = ", ".join(n.name for n in near[:10]) + (" …" if len(near) > 10 else "")
        summary = f"{start.name} has {len(near)} node(s) within {depth} hop(s) in the {graph} graph" + (
            f": {names}" if near else ""
        )
        return {
            "summary": summary,
            "node": start.name,
            "neighbours": [{"name": n.name, "kind": n.kind, "distance": n.distance} for n in near[:LISTED]],
            "facts": [_fact(f) for f in facts[:LISTED]],
        }

    def path(
        self,
        source: Annotated[str, Field(alias="from", min_length=1, max_length=200, description="Start node.")],
        target: Annotated[str, Field(alias="to", min_length=1, max_length=200, description="End node.")],
        ctx: ToolContext,
        scope: ScopeArg = "project",
        scope_id: ScopeId = None,
        directed: Annotated[bool, Field(description="Follow edges only along their arrows.")] = False,
    ) -> dict[str, Any]:
        """A shortest chain of facts joining two nodes of a knowledge graph."""
        with as_tool_errors():
            kind, ident, graph = self._scope(ctx, scope, scope_id)
            steps = self.service.graph.path(kind, ident, source, target, directed=directed)
        if steps is None:
            summary = f"no path within {MAX_DEPTH} hops joins {source} and {target} in the {graph} graph"
            return {"summary": summary, "found": False, "hops": None, "steps": []}
        chain = "; ".join(str(s) for s in steps) or f"{source} is {target}"
        return {
            "summary": f"{len(steps)} hop(s) from {source} to {target}: {chain}",
            "found": True,
            "hops": len(steps),
            "steps": [_fact(s) for s in steps],
        }

    def read(
        self,
        name: Annotated[str, Field(min_length=1, max_length=200, description="The artifact's name (or id).")],
        ctx: ToolContext,
        version: Annotated[int | None, Field(ge=1, description="A version; default: the newest.")] = None,
        project: ProjectArg = None,
    ) -> dict[str, Any]:
        """Read an artifact of the project (its newest version, or the one named)."""
        with as_tool_errors():
            p = self._project(ctx, project)
            artifact = self.service.artifact(p.id, name)
            found = self.service.artifact_version(p.id, artifact.id, version)
        shown = found.content[:SHOWN]
        return {
            "summary": f"{artifact.name} v{found.version} ({artifact.kind}, {artifact.lock_note()}) by {found.author}",
            "artifact": _artifact_out(artifact),
            "version": found.version,
            "author": found.author,
            "content": shown,
            "truncated": len(shown) < len(found.content),
        }

    def write(
        self,
        name: Annotated[str, Field(min_length=1, max_length=200, description="The artifact's name.")],
        content: Annotated[str, Field(max_length=1_000_000)],
        ctx: ToolContext,
        kind: Annotated[
            Literal["cognitive", "intellectual", "info"],
            Field(description="For a new artifact: cognitive (notes, lists), intellectual (reports, plans), info."),
        ] = "cognitive",
        note: Annotated[str, Field(max_length=2000, description="What changed.")] = "",
        project: ProjectArg = None,
    ) -> dict[str, Any]:
        """Write a new version of an artifact of the project (created if new); a locked artifact refuses."""
        by = self.service.agent_of_run(ctx.run_id, ctx.agent) if self._service is not None else ctx.agent
        with as_tool_errors():
            p = self._project(ctx, project)
            created = not any(a.name == " ".join(name.split()) or a.id == name for a in self.service.artifacts(p.id))
            if created:
                artifact = self.service.create_artifact(p.id, name, kind, owner=by)
            else:
                artifact = self.service.artifact(p.id, name)
            written = self.service.write_artifact(
                p.id, artifact.id, content, author=by, note=note or f"run {ctx.run_id}"
            )
            artifact = self.service.artifact(p.id, artifact.id)
        said = "created" if created else "wrote"
        return {
            "summary": f"{said} {artifact.name} v{written.version} in project {p.name} ({len(content)} characters)",
            "artifact": _artifact_out(artifact),
            "version": written.version,
            "created": created,
        }

    def list(
        self,
        ctx: ToolContext,
        kind: Literal["cognitive", "intellectual", "info"] | None = None,
        project: ProjectArg = None,
    ) -> dict[str, Any]:
        """List the artifacts of the project: name, kind, owner, newest version, lock and published version."""
        with as_tool_errors():
            p = self._project(ctx, project)
            found = self.service.artifacts(p.id, kind=kind)
        names = ", ".join(f"{a.name} v{a.latest}" + (" (locked)" if a.locked else "") for a in found[:10])
        summary = f"project {p.name} has {len(found)} artifact(s)" + (f": {names}" if found else "")
        return {"summary": summary, "project": p.name, "artifacts": [_artifact_out(a) for a in found[:LISTED]]}

    def case_file(
        self,
        ctx: ToolContext,
        action: Annotated[Literal["read", "append"], Field(description="read it, or append text to it")] = "read",
        text: Annotated[str | None, Field(max_length=100_000, description="Markdown to append.")] = None,
        project: ProjectArg = None,
    ) -> dict[str, Any]:
        """Read the project's case file (markdown), or append a paragraph to it (a new version)."""
        with as_tool_errors():
            p = self._project(ctx, project)
            if action == "append":
                if not text or not text.strip():
                    raise ToolError("append needs 'text': the markdown to add to the case file")
                by = self.service.agent_of_run(ctx.run_id, ctx.agent)
                current = self.service.append_case_file(p.id, text, author=by, note=f"run {ctx.run_id}")
                said = f"appended {len(text)} characters to"
            else:
                current = self.service.case_file(p.id)
                said = "read"
        shown = current.content[:SHOWN]
        return {
            "summary": f"{said} the case file of project {p.name} (version {current.version})",
            "project": p.name,
            "version": current.version,
            "content": shown,
            "truncated": len(shown) < len(current.content),
        }


def _artifact_out(a: Any) -> dict[str, Any]:
    return {
        "name": a.name,
        "kind": a.kind,
        "owner": a.owner,
        "latest_version": a.latest,
        "locked": a.locked,
        "lock": a.lock_note(),
        "published_version": a.published_version,
    }
