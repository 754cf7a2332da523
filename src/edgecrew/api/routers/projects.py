"""/projects and /graph: projects with their members and case file, artifacts with versions, lock,
unlock and publish, and the knowledge graphs (a project's, an agent's or the workspace's).

A project in a path is its id or its name; an artifact is its id or its name within the project.
Reads need the ``read`` scope, writes the ``runs`` scope; what is written without an author is signed
with the API key's name. A locked artifact answers a write with 409 naming who locked it and when.
Everything goes through ``ProjectService.of(rt)`` (never the store).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from edgecrew.api.deps import Read, RuntimeDep, StartRuns
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.api.shapes import Limit, Offset, Out, Page
from edgecrew.projects import MAX_DEPTH, Artifact, Fact, Node, Project, ProjectFile, ProjectService
from edgecrew.projects.graph import Direction
from edgecrew.projects.service import ADDRESS_PATTERN, AGENT_PATTERN, NAME_PATTERN, RELATION_PATTERN

router = APIRouter(tags=["projects"], responses=PROBLEM_RESPONSES)

ProjectRef = Annotated[str, Path(min_length=1, max_length=200, description="A project's id or name.")]
ArtifactRef = Annotated[str, Path(min_length=1, max_length=200, description="An artifact's id or name.")]
VersionNo = Annotated[int, Path(ge=1, le=2**31, description="A version number.")]
NodeQ = Annotated[str, Query(min_length=1, max_length=200, description="A node's name (any case).")]
Text = Annotated[str, Field(max_length=1_000_000)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
# A project's or an artifact's name: it addresses it in URLs, so it has no '/'.
AddressName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=ADDRESS_PATTERN, description="No '/': it addresses it in URLs.")
]
Agent = Annotated[str, Field(max_length=161, pattern=AGENT_PATTERN, description="'team/agent' or a library agent.")]


def _projects(rt: RuntimeDep) -> ProjectService:
    return ProjectService.of(rt)


# -- shapes ---------------------------------------------------------------------------------------------
class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AddressName
    description: str = Field(default="", max_length=20_000)
    manager: Agent | None = Field(default=None, description="The manager agent: 'team/agent'.")


class ProjectPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AddressName | None = None
    description: str | None = Field(default=None, max_length=20_000)
    manager: str | None = Field(
        default=None, max_length=161, pattern=f"^$|{AGENT_PATTERN}", description="The manager agent; '' removes it."
    )


class ProjectOut(Out):
    id: str
    name: str
    description: str
    manager: str | None = None
    created_by: str | None = None
    created_at: float
    updated_at: float


class ProjectPage(Page[ProjectOut]):
    pass


class HumanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a behaviour sent for a person is refused, not dropped

    kind: Literal["human"]
    name: Name = Field(description="The person's name.")
    role: str = Field(default="", max_length=200)


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["ai"]
    name: Agent = Field(description="An agent: 'team/agent' or a library agent's name.")
    behaviour: Literal["autonomous", "semi", "reactive", "scheduled"] = "reactive"
    role: str = Field(default="", max_length=200)


MemberIn = Annotated[HumanIn | AgentIn, Field(discriminator="kind")]


class MemberOut(Out):
    kind: str
    name: str
    behaviour: str
    role: str
    created_at: float


class ProjectDetail(ProjectOut):
    members: list[MemberOut]
    artifacts: int
    case_file_version: int
    runs: list[str] = Field(description="The project's latest runs, newest first.")


class CaseFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Text
    note: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=200)


class AppendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(min_length=1, max_length=100_000, pattern=NAME_PATTERN)]
    note: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=200)


class CaseFileOut(Out):
    version: int
    content: str
    author: str
    note: str
    created_at: float


class ArtifactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AddressName
    kind: Literal["cognitive", "intellectual", "info"]
    owner: str | None = Field(
        default=None, max_length=200, pattern=NAME_PATTERN, description="Default: the API key's name."
    )
    content: Text | None = Field(default=None, description="Version 1, if given.")


class ArtifactOut(Out):
    id: str
    name: str
    kind: str
    owner: str
    latest: int = Field(description="The newest version (0: none yet).")
    locked: bool
    locked_by: str | None = None
    locked_at: float | None = None
    published_version: int | None = None
    published_by: str | None = None
    published_at: float | None = None
    created_at: float
    updated_at: float


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Text
    note: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=200)


class VersionOut(Out):
    version: int
    content: str
    author: str
    note: str
    created_at: float


class UnlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(default=False, description="Unlock a lock someone else holds.")


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, le=2**31, description="Default: the newest.")


class FactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo'd field ("objct") is refused by name, not dropped

    subject: Name
    relation: Annotated[str, Field(min_length=1, max_length=100, pattern=RELATION_PATTERN, examples=["works_on"])]
    object: Name
    subject_kind: str | None = Field(default=None, max_length=64)
    object_kind: str | None = Field(default=None, max_length=64)


class AgentFactIn(FactIn):
    agent: str | None = Field(
        default=None, max_length=161, pattern=AGENT_PATTERN, description="An agent's graph; none: the workspace's."
    )


class FactOut(Out):
    id: int
    subject: str
    relation: str
    object: str
    added_by: str
    created_at: float


class FactAdded(FactOut):
    new: bool


class NodeOut(Out):
    id: int
    name: str
    kind: str | None = None
    distance: int


class GraphOut(BaseModel):
    scope: str
    scope_id: str
    nodes: list[NodeOut]
    facts: list[FactOut]


class NeighboursOut(BaseModel):
    node: NodeOut
    neighbours: list[NodeOut]
    facts: list[FactOut]


class PathOut(BaseModel):
    found: bool
    hops: int | None = None
    steps: list[FactOut]


def _created(body: BaseModel, location: str) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json"), status_code=201, headers={"Location": location})


def _artifact(a: Artifact) -> ArtifactOut:
    return ArtifactOut.model_validate({**a.__dict__, "locked": a.locked})


def _detail(svc: ProjectService, p: Project) -> ProjectDetail:
    return ProjectDetail.model_validate(
        {
            **ProjectOut.of(p).model_dump(),
            "members": [MemberOut.of(m) for m in svc.members(p.id)],
            "artifacts": len(svc.artifacts(p.id)),
            "case_file_version": svc.case_file(p.id).version,
            "runs": svc.runs(p.id, limit=20),
        }
    )


# -- projects -------------------------------------------------------------------------------------------
@router.post("/projects", status_code=201, response_model=ProjectOut)
def create_project(body: ProjectIn, rt: RuntimeDep, principal: StartRuns) -> JSONResponse:
    """Create a project, with version 1 of its case file and an empty files folder."""
    p = _projects(rt).create(body.name, body.description, manager=body.manager, created_by=principal.name)
    return _created(ProjectOut.of(p), f"/projects/{p.id}")


@router.get("/projects", response_model=ProjectPage)
def list_projects(rt: RuntimeDep, _: Read, limit: Limit = 50, offset: Offset = 0) -> Page[ProjectOut]:
    """Projects, newest first."""
    svc = _projects(rt)
    items = [ProjectOut.of(p) for p in svc.list_projects(limit=limit, offset=offset)]
    return ProjectPage.of(items, svc.count(), limit, offset)


@router.get("/projects/{project}", response_model=ProjectDetail)
def get_project(project: ProjectRef, rt: RuntimeDep, _: Read) -> ProjectDetail:
    """A project with its members, how many artifacts it has, its case file's version and latest runs."""
    svc = _projects(rt)
    return _detail(svc, svc.get(project))


@router.patch("/projects/{project}", response_model=ProjectOut)
def update_project(project: ProjectRef, body: ProjectPatch, rt: RuntimeDep, _: StartRuns) -> ProjectOut:
    """Rename a project, or change its description or manager."""
    changed = _projects(rt).update(project, name=body.name, description=body.description, manager=body.manager)
    return ProjectOut.of(changed)


@router.delete("/projects/{project}", status_code=204)
def delete_project(project: ProjectRef, rt: RuntimeDep, _: StartRuns) -> Response:
    """Delete a project with its members, case file, artifacts, knowledge graph and files folder."""
    _projects(rt).delete(project)
    return Response(status_code=204)


# -- members --------------------------------------------------------------------------------------------
@router.get("/projects/{project}/members", response_model=list[MemberOut])
def list_members(project: ProjectRef, rt: RuntimeDep, _: Read) -> list[MemberOut]:
    return [MemberOut.of(m) for m in _projects(rt).members(project)]


@router.post("/projects/{project}/members", status_code=201, response_model=MemberOut)
def add_member(project: ProjectRef, body: MemberIn, rt: RuntimeDep, _: StartRuns) -> JSONResponse:
    """Add a person or an agent (with its behaviour) to the project; 409 when already a member."""
    svc = _projects(rt)
    behaviour = body.behaviour if isinstance(body, AgentIn) else None
    m = svc.add_member(project, body.kind, body.name, behaviour=behaviour, role=body.role)
    return _created(MemberOut.of(m), f"/projects/{svc.get(project).id}/members")


@router.delete("/projects/{project}/members", status_code=204)
def remove_member(
    project: ProjectRef,
    rt: RuntimeDep,
    _: StartRuns,
    name: Annotated[str, Query(min_length=1, max_length=200, description="The member's name.")],
) -> Response:
    """Remove a member (named in the query: an agent's name holds a '/')."""
    _projects(rt).remove_member(project, name)
    return Response(status_code=204)


# -- case file ------------------------------------------------------------------------------------------
@router.get("/projects/{project}/case-file", response_model=CaseFileOut)
def read_case_file(
    project: ProjectRef,
    rt: RuntimeDep,
    _: Read,
    version: Annotated[int | None, Query(ge=1, le=2**31, description="Default: the newest.")] = None,
) -> CaseFileOut:
    """The project's case file (markdown), or one of its versions."""
    return CaseFileOut.of(_projects(rt).case_file(project, version))


@router.get("/projects/{project}/case-file/versions", response_model=list[CaseFileOut])
def case_file_versions(project: ProjectRef, rt: RuntimeDep, _: Read) -> list[CaseFileOut]:
    """Every version of the case file, oldest first."""
    return [CaseFileOut.of(v) for v in _projects(rt).case_file_history(project)]


@router.put("/projects/{project}/case-file", response_model=CaseFileOut)
def write_case_file(project: ProjectRef, body: CaseFileIn, rt: RuntimeDep, principal: StartRuns) -> CaseFileOut:
    """A new version of the case file with this content."""
    author = body.author or principal.name
    return CaseFileOut.of(_projects(rt).write_case_file(project, body.content, author=author, note=body.note))


@router.post("/projects/{project}/case-file/append", response_model=CaseFileOut)
def append_case_file(project: ProjectRef, body: AppendIn, rt: RuntimeDep, principal: StartRuns) -> CaseFileOut:
    """A new version of the case file: the current one with this text added as a paragraph."""
    author = body.author or principal.name
    return CaseFileOut.of(_projects(rt).append_case_file(project, body.text, author=author, note=body.note))


# -- artifacts ------------------------------------------------------------------------------------------
@router.get("/projects/{project}/artifacts", response_model=list[ArtifactOut])
def list_artifacts(
    project: ProjectRef,
    rt: RuntimeDep,
    _: Read,
    kind: Annotated[Literal["cognitive", "intellectual", "info"] | None, Query()] = None,
) -> list[ArtifactOut]:
    """The project's artifacts by name, optionally of one kind."""
    return [_artifact(a) for a in _projects(rt).artifacts(project, kind=kind)]


@router.post("/projects/{project}/artifacts", status_code=201, response_model=ArtifactOut)
def create_artifact(project: ProjectRef, body: ArtifactIn, rt: RuntimeDep, principal: StartRuns) -> JSONResponse:
    """Create an artifact (and its version 1 when ``content`` is given); 409 when the name is taken."""
    svc = _projects(rt)
    a = svc.create_artifact(project, body.name, body.kind, owner=body.owner or principal.name, content=body.content)
    return _created(_artifact(a), f"/projects/{a.project_id}/artifacts/{a.id}")


@router.get("/projects/{project}/artifacts/{artifact}", response_model=ArtifactOut)
def get_artifact(project: ProjectRef, artifact: ArtifactRef, rt: RuntimeDep, _: Read) -> ArtifactOut:
    return _artifact(_projects(rt).artifact(project, artifact))


@router.delete("/projects/{project}/artifacts/{artifact}", status_code=204)
def delete_artifact(project: ProjectRef, artifact: ArtifactRef, rt: RuntimeDep, _: StartRuns) -> Response:
    """Delete an artifact with its versions; 409 while it is locked."""
    _projects(rt).delete_artifact(project, artifact)
    return Response(status_code=204)


@router.get("/projects/{project}/artifacts/{artifact}/versions", response_model=list[VersionOut])
def artifact_versions(project: ProjectRef, artifact: ArtifactRef, rt: RuntimeDep, _: Read) -> list[VersionOut]:
    """Every version of the artifact, oldest first."""
    return [VersionOut.of(v) for v in _projects(rt).artifact_versions(project, artifact)]


@router.get("/projects/{project}/artifacts/{artifact}/versions/{version}", response_model=VersionOut)
def artifact_version(
    project: ProjectRef, artifact: ArtifactRef, version: VersionNo, rt: RuntimeDep, _: Read
) -> VersionOut:
    return VersionOut.of(_projects(rt).artifact_version(project, artifact, version))


@router.post("/projects/{project}/artifacts/{artifact}/versions", status_code=201, response_model=VersionOut)
def write_artifact(
    project: ProjectRef, artifact: ArtifactRef, body: VersionIn, rt: RuntimeDep, principal: StartRuns
) -> JSONResponse:
    """Write a new version; 409 while the artifact is locked (the problem names who locked it and when)."""
    svc = _projects(rt)
    v = svc.write_artifact(project, artifact, body.content, author=body.author or principal.name, note=body.note)
    a = svc.artifact(project, v.artifact_id)
    return _created(VersionOut.of(v), f"/projects/{a.project_id}/artifacts/{a.id}/versions/{v.version}")


@router.post("/projects/{project}/artifacts/{artifact}/lock", response_model=ArtifactOut)
def lock_artifact(project: ProjectRef, artifact: ArtifactRef, rt: RuntimeDep, principal: StartRuns) -> ArtifactOut:
    """Lock the artifact against writes, in the API key's name; 409 when someone else holds the lock."""
    return _artifact(_projects(rt).lock_artifact(project, artifact, by=principal.name))


@router.post("/projects/{project}/artifacts/{artifact}/unlock", response_model=ArtifactOut)
def unlock_artifact(
    project: ProjectRef, artifact: ArtifactRef, rt: RuntimeDep, principal: StartRuns, body: UnlockIn | None = None
) -> ArtifactOut:
    """Unlock the artifact; a lock someone else holds needs ``force`` (409 otherwise)."""
    force = body.force if body is not None else False
    return _artifact(_projects(rt).unlock_artifact(project, artifact, by=principal.name, force=force))


@router.post("/projects/{project}/artifacts/{artifact}/publish", response_model=ArtifactOut)
def publish_artifact(
    project: ProjectRef, artifact: ArtifactRef, rt: RuntimeDep, principal: StartRuns, body: PublishIn | None = None
) -> ArtifactOut:
    """Publish a version (the newest by default); 404 when the artifact has no such version."""
    version = body.version if body is not None else None
    return _artifact(_projects(rt).publish_artifact(project, artifact, by=principal.name, version=version))


# -- files ----------------------------------------------------------------------------------------------
class FileOut(Out):
    path: str = Field(description="Relative to the project's folder ('/' between folders); runs see it at project/.")
    size: int
    modified: float


FilePath = Annotated[
    str, Path(min_length=1, max_length=1000, description="A path from GET /projects/{project}/files, like 'notes.md'.")
]
FILE_DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, byte for byte, as an attachment.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("/projects/{project}/files", response_model=list[FileOut])
def list_files(
    project: ProjectRef,
    rt: RuntimeDep,
    _: Read,
    limit: Annotated[int, Query(ge=1, le=5000, description="At most this many, by path.")] = 500,
) -> list[FileOut]:
    """The files in the project's folder: what its runs wrote at ``project/``, by path."""
    return [FileOut.of(f) for f in _projects(rt).list_files(project, limit=limit)]


@router.get("/projects/{project}/files/{path:path}", response_class=FileResponse, responses=FILE_DOWNLOAD)
def download_file(project: ProjectRef, path: FilePath, rt: RuntimeDep, _: Read) -> FileResponse:
    """One file of the project's folder as an attachment (a path out of the folder is refused with 400, a
    folder too; a missing file is 404)."""
    found, on_disk = _projects(rt).file(project, path)
    return FileResponse(
        on_disk,
        media_type=_media_type(found),
        filename=on_disk.name,
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _media_type(found: ProjectFile) -> str:
    import mimetypes

    guessed, _ = mimetypes.guess_type(found.path)
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


# -- knowledge graphs -----------------------------------------------------------------------------------
# A project's graph is under its project; the workspace's graph and agents' graphs (``?agent=team/agent``)
# are under /graph. Both families share these bodies.
AgentQ = Annotated[
    str | None,
    Query(max_length=161, pattern=AGENT_PATTERN, description="An agent's graph ('team/agent'); none: the workspace's."),
]
Depth = Annotated[int, Query(ge=1, le=MAX_DEPTH, description="Hops from the node.")]
DirectionQ = Annotated[Literal["both", "out", "in"], Query(description="Along the arrows, against them, or both.")]
RelationQ = Annotated[
    str | None, Query(max_length=100, pattern=RELATION_PATTERN, description="Only edges of this relation.")
]
FromQ = Annotated[str, Query(alias="from", min_length=1, max_length=200, description="The start node.")]
ToQ = Annotated[str, Query(alias="to", min_length=1, max_length=200, description="The end node.")]
DirectedQ = Annotated[bool, Query(description="Follow edges only along their arrows.")]
GraphLimit = Annotated[int, Query(ge=1, le=5000, description="At most this many nodes and facts.")]
FactId = Annotated[int, Path(ge=1, le=2**62, description="A fact's id.")]
KNOWN_FACT: dict[int | str, dict[str, Any]] = {200: {"model": FactAdded, "description": "Known already (new: false)."}}


def _node(n: Node) -> NodeOut:
    return NodeOut.of(n)


def _facts(facts: list[Fact]) -> list[FactOut]:
    return [FactOut.of(f) for f in facts]


def _other(svc: ProjectService, agent: str | None) -> tuple[str, str]:
    return svc.scope("agent", agent) if agent else svc.scope("workspace", None)


def _graph(svc: ProjectService, kind: str, ident: str, limit: int) -> GraphOut:
    nodes = [_node(n) for n in svc.graph.nodes(kind, ident, limit=limit)]
    return GraphOut(scope=kind, scope_id=ident, nodes=nodes, facts=_facts(svc.graph.facts(kind, ident, limit=limit)))


def _add(svc: ProjectService, kind: str, ident: str, body: FactIn, by: str) -> JSONResponse:
    fact, new = svc.graph.add_fact(
        kind, ident, body.subject, body.relation, body.object, added_by=by,
        subject_kind=body.subject_kind, object_kind=body.object_kind,
    )  # fmt: skip
    added = FactAdded.model_validate({**FactOut.of(fact).model_dump(), "new": new})
    return JSONResponse(added.model_dump(mode="json"), status_code=201 if new else 200)


def _neighbours(
    svc: ProjectService, kind: str, ident: str, node: str, depth: int, direction: Direction, relation: str | None
) -> NeighboursOut:
    start, near, facts = svc.graph.neighbours(kind, ident, node, depth=depth, direction=direction, relation=relation)
    return NeighboursOut(node=_node(start), neighbours=[_node(n) for n in near], facts=_facts(facts))


def _path(svc: ProjectService, kind: str, ident: str, source: str, target: str, directed: bool) -> PathOut:
    steps = svc.graph.path(kind, ident, source, target, directed=directed)
    if steps is None:
        return PathOut(found=False, steps=[])
    return PathOut(found=True, hops=len(steps), steps=_facts(steps))


@router.get("/projects/{project}/graph", response_model=GraphOut)
def project_graph(project: ProjectRef, rt: RuntimeDep, _: Read, limit: GraphLimit = 1000) -> GraphOut:
    """The project's knowledge graph: its nodes and facts."""
    svc = _projects(rt)
    return _graph(svc, *svc.scope("project", project), limit)


@router.post("/projects/{project}/graph/facts", status_code=201, response_model=FactAdded, responses=KNOWN_FACT)
def add_project_fact(project: ProjectRef, body: FactIn, rt: RuntimeDep, principal: StartRuns) -> JSONResponse:
    """Record ``subject --relation--> object`` in the project's graph (201; 200 with ``new`` false when known)."""
    svc = _projects(rt)
    return _add(svc, *svc.scope("project", project), body, principal.name)


@router.delete("/projects/{project}/graph/facts/{fact_id}", status_code=204)
def remove_project_fact(project: ProjectRef, fact_id: FactId, rt: RuntimeDep, _: StartRuns) -> Response:
    """Remove a fact from the project's graph (its nodes stay)."""
    svc = _projects(rt)
    svc.graph.remove_fact(*svc.scope("project", project), fact_id)
    return Response(status_code=204)


@router.get("/projects/{project}/graph/neighbours", response_model=NeighboursOut)
def project_neighbours(
    project: ProjectRef,
    rt: RuntimeDep,
    _: Read,
    node: NodeQ,
    depth: Depth = 1,
    direction: DirectionQ = "both",
    relation: RelationQ = None,
) -> NeighboursOut:
    """The nodes within ``depth`` hops of a node of the project's graph, nearest first, and the facts walked."""
    svc = _projects(rt)
    return _neighbours(svc, *svc.scope("project", project), node, depth, direction, relation)


@router.get("/projects/{project}/graph/path", response_model=PathOut)
def project_path(
    project: ProjectRef, rt: RuntimeDep, _: Read, source: FromQ, target: ToQ, directed: DirectedQ = False
) -> PathOut:
    """A shortest chain of facts joining two nodes of the project's graph (``found`` false: none in 6 hops)."""
    svc = _projects(rt)
    return _path(svc, *svc.scope("project", project), source, target, directed)


@router.get("/graph", response_model=GraphOut)
def get_graph(rt: RuntimeDep, _: Read, agent: AgentQ = None, limit: GraphLimit = 1000) -> GraphOut:
    """The workspace's knowledge graph, or an agent's: its nodes and facts."""
    svc = _projects(rt)
    return _graph(svc, *_other(svc, agent), limit)


@router.post("/graph/facts", status_code=201, response_model=FactAdded, responses=KNOWN_FACT)
def add_fact(body: AgentFactIn, rt: RuntimeDep, principal: StartRuns) -> JSONResponse:
    """Record a fact in the workspace's graph, or an agent's (201; 200 with ``new`` false when known)."""
    svc = _projects(rt)
    return _add(svc, *_other(svc, body.agent), body, principal.name)


@router.delete("/graph/facts/{fact_id}", status_code=204)
def remove_fact(fact_id: FactId, rt: RuntimeDep, _: StartRuns, agent: AgentQ = None) -> Response:
    """Remove a fact from the workspace's graph, or an agent's."""
    svc = _projects(rt)
    svc.graph.remove_fact(*_other(svc, agent), fact_id)
    return Response(status_code=204)


@router.get("/graph/neighbours", response_model=NeighboursOut)
def neighbours(
    rt: RuntimeDep,
    _: Read,
    node: NodeQ,
    agent: AgentQ = None,
    depth: Depth = 1,
    direction: DirectionQ = "both",
    relation: RelationQ = None,
) -> NeighboursOut:
    """The nodes within ``depth`` hops of a node of the workspace's graph (or an agent's), nearest first."""
    svc = _projects(rt)
    return _neighbours(svc, *_other(svc, agent), node, depth, direction, relation)


@router.get("/graph/path", response_model=PathOut)
def path(
    rt: RuntimeDep, _: Read, source: FromQ, target: ToQ, agent: AgentQ = None, directed: DirectedQ = False
) -> PathOut:
    """A shortest chain of facts joining two nodes of the workspace's graph (or an agent's)."""
    svc = _projects(rt)
    return _path(svc, *_other(svc, agent), source, target, directed)
