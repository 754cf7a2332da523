"""Mission control's projects pages: the list with a create form (/ui/projects), and one project
(/ui/projects/{project}): its manager and members, case file (with an append form), artifacts with
lock, unlock and publish buttons, the files in its folder (each shown on a page of its own, coloured like a
task's code, or downloaded), and its knowledge graph drawn like a team graph (``views.graph_svg`` over the
graph's facts, so the two pictures look and lay out alike), and its 20 newest long-term memories (read-only).
Changes are plain form posts answered with a redirect, as elsewhere; they need the ``runs`` scope.
"""

from __future__ import annotations

import ast
import asyncio
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from edgecrew.domain.conditions import Condition
from edgecrew.domain.specs import AgentSpec, Edge, Graph, TeamSpec
from edgecrew.errors import EdgecrewError
from edgecrew.memory import MemoryService, ScopeRef
from edgecrew.projects import ARTIFACT_KINDS, BEHAVIOURS, Fact, Node, ProjectService
from edgecrew.projects.records import when
from edgecrew.ui import views
from edgecrew.ui.pages import Checked, Viewer, back, need, page

__all__ = ["knowledge_graph_svg", "router"]

router = APIRouter(include_in_schema=False)
DRAWN = 60  # nodes drawn at most (the newest facts first); the list below the picture has them all
FILES_SHOWN = 200
MEMORIES_SHOWN = 20  # the newest of the project's long-term memories; `edgecrew memory list` has them all
MEMORY_CHARS = 240  # of a memory's text on the page, on one line
Field = Annotated[str, Form(max_length=200)]
LongText = Annotated[str, Form(max_length=100_000)]


def _svc(request: Request) -> ProjectService:
    return ProjectService.of(request.app.state.rt)


def knowledge_graph_svg(name: str, nodes: list[Node], facts: list[Fact]) -> Markup:
    """A knowledge graph drawn by the team graph's own drawing: each node a box, each fact an arrow
    whose tooltip is its relation, laid out from the node that reaches the most others."""
    if not facts:
        return Markup('<p class="empty">No facts yet.</p>')
    shown = facts[-DRAWN * 2 :]
    names = list(dict.fromkeys(n for f in shown for n in (f.subject, f.object)))[:DRAWN]
    kinds = {n.name: n.kind or "" for n in nodes}
    out: dict[str, list[str]] = defaultdict(list)
    for f in shown:
        out[f.subject].append(f.object)

    def reach(start: str) -> int:
        seen, todo = {start}, [start]
        while todo:
            for nxt in out[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return len(seen)

    start = max(names, key=lambda n: (reach(n), -names.index(n)))
    agents = {n: AgentSpec(name=n, system="", role=kinds.get(n, "")) for n in names}
    edges = tuple(
        Edge(sources=(f.subject,), targets=(f.object,), when=_label(f.relation), index=i)
        for i, f in enumerate(shown)
        if f.subject in agents and f.object in agents
    )
    spec = TeamSpec(name=name, agents=agents, graph=Graph(start=start, edges=edges))
    return views.graph_svg(spec)


def _label(relation: str) -> Condition:
    # graph_svg shows an edge's condition as its tooltip: here the relation, a label that is never evaluated
    return Condition(source=relation, tree=ast.Expression(body=ast.Constant(value=True)))


@router.get("/ui/projects")
async def projects_page(request: Request, session: Viewer, notice: str = "") -> HTMLResponse:
    svc = _svc(request)
    listed = await asyncio.to_thread(svc.list_projects, limit=200)
    return page(request, "projects.html", session, projects=listed, when=when, notice=notice)


@router.post("/ui/projects")
async def create_project(
    request: Request,
    session: Checked,
    name: Field = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    manager: Field = "",
) -> Response:
    need(session, "runs")
    svc = _svc(request)
    try:
        made = await asyncio.to_thread(
            svc.create, name, description, manager=manager.strip() or None, created_by=session.name
        )
    except EdgecrewError as exc:
        return back("/ui/projects", str(exc))
    return RedirectResponse(f"/ui/projects/{made.id}", status_code=303)


@router.get("/ui/projects/{project}")
async def project_page(request: Request, project: str, session: Viewer, notice: str = "") -> HTMLResponse:
    svc = _svc(request)

    def read() -> dict[str, Any]:
        p = svc.get(project)
        nodes, facts = svc.graph.nodes("project", p.id), svc.graph.facts("project", p.id)
        return {
            "project": p,
            "members": svc.members(p.id),
            "case_file": svc.case_file(p.id),
            "artifacts": svc.artifacts(p.id),
            "files": svc.list_files(p.id, limit=FILES_SHOWN),
            "folder": svc.files(p.id),
            "runs": svc.runs(p.id, limit=10),
            "facts": facts,
            "graph": knowledge_graph_svg(p.name, nodes, facts),
            **_memories(request, p.id),
        }

    shown = await asyncio.to_thread(read)
    return page(
        request, "project.html", session, **shown, when=when, kinds=ARTIFACT_KINDS, behaviours=BEHAVIOURS,
        notice=notice,
    )  # fmt: skip


def _memories(request: Request, project_id: str) -> dict[str, Any]:
    """The project's newest long-term memories, each text on one line and cut, and how many it holds."""
    memory = MemoryService.of(request.app.state.rt)
    scope = [ScopeRef("project", project_id)]
    shown = [{"record": r, "line": _one_line(r.text, MEMORY_CHARS)} for r in memory.latest(scope, limit=MEMORIES_SHOWN)]
    return {"memories": shown, "memory_count": memory.count(scope) if shown else 0}


def _one_line(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@router.get("/ui/projects/{project}/files/{path:path}")
async def file_page(request: Request, project: str, path: str, session: Viewer) -> HTMLResponse:
    svc = _svc(request)

    def read() -> dict[str, Any]:
        p = svc.get(project)
        found, on_disk = svc.file(p.id, path)
        with on_disk.open("rb") as f:
            head = f.read(views.SHOWN_BYTES)
        text, cut = (None, False) if b"\0" in head else views.shown_text(head, found.size)
        shown, styles = views.highlighted(found.path, text) if text is not None else (None, None)
        return {"project": p, "file": found, "text": text, "highlighted": shown, "styles": styles, "cut": cut}

    shown = await asyncio.to_thread(read)
    return page(request, "project_file.html", session, **shown, when=when, shown_kib=views.SHOWN_BYTES // 1024)


@router.get("/ui/projects/{project}/raw/{path:path}")
async def file_raw(request: Request, project: str, path: str, session: Viewer) -> Response:
    _, on_disk = await asyncio.to_thread(_svc(request).file, project, path)
    return FileResponse(
        on_disk, media_type="application/octet-stream", filename=on_disk.name,
        headers={"X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


@router.post("/ui/projects/{project}/members")
async def add_member(
    request: Request, project: str, session: Checked, name: Field = "", kind: Field = "human",
    behaviour: Field = "", role: Field = "",
) -> Response:  # fmt: skip
    need(session, "runs")
    here = f"/ui/projects/{project}"
    try:
        await asyncio.to_thread(_svc(request).add_member, project, kind, name, behaviour=behaviour or None, role=role)
    except EdgecrewError as exc:
        return back(here, str(exc))
    return back(here, f"{name} joined the project")


@router.post("/ui/projects/{project}/case-file")
async def append_case_file(request: Request, project: str, session: Checked, text: LongText = "") -> Response:
    need(session, "runs")
    here = f"/ui/projects/{project}"
    try:
        cf = await asyncio.to_thread(_svc(request).append_case_file, project, text, author=session.name)
    except EdgecrewError as exc:
        return back(here, str(exc))
    return back(here, f"case file is now version {cf.version}")


@router.post("/ui/projects/{project}/facts")
async def add_fact(
    request: Request, project: str, session: Checked, subject: Field = "", relation: Field = "", object: Field = ""
) -> Response:
    need(session, "runs")
    here = f"/ui/projects/{project}"
    svc = _svc(request)

    def add() -> str:
        kind, ident = svc.scope("project", project)
        fact, new = svc.graph.add_fact(kind, ident, subject, relation, object, added_by=session.name)
        return f"{'recorded' if new else 'already known'}: {fact}"

    try:
        said = await asyncio.to_thread(add)
    except EdgecrewError as exc:
        return back(here, str(exc))
    return back(here, said)


@router.post("/ui/projects/{project}/artifacts")
async def write_artifact(
    request: Request, project: str, session: Checked, name: Field = "", kind: Field = "cognitive",
    content: Annotated[str, Form(max_length=1_000_000)] = "",
) -> Response:  # fmt: skip
    need(session, "runs")
    here = f"/ui/projects/{project}"
    svc = _svc(request)

    def write() -> str:
        if not any(a.name == " ".join(name.split()) for a in svc.artifacts(project)):
            svc.create_artifact(project, name, kind, owner=session.name)
        version = svc.write_artifact(project, name, content, author=session.name).version
        return f"wrote {name} version {version}"

    try:
        said = await asyncio.to_thread(write)
    except EdgecrewError as exc:
        return back(here, str(exc))
    return back(here, said)


@router.post("/ui/projects/{project}/artifacts/{artifact}/{action}")
async def change_artifact(request: Request, project: str, artifact: str, action: str, session: Checked) -> Response:
    need(session, "runs")
    here = f"/ui/projects/{project}"
    svc = _svc(request)
    actions = {
        "lock": lambda: svc.lock_artifact(project, artifact, by=session.name),
        "unlock": lambda: svc.unlock_artifact(project, artifact, by=session.name),
        "publish": lambda: svc.publish_artifact(project, artifact, by=session.name),
    }
    if action not in actions:
        return back(here, f"unknown action '{action}'; use lock, unlock or publish")
    try:
        done = await asyncio.to_thread(actions[action])
    except EdgecrewError as exc:
        return back(here, str(exc))
    state = done.lock_note() if action != "publish" else f"version {done.published_version} published"
    return back(here, f"{done.name}: {state}")
