"""`edgecrew projects list|create|show|files|delete|add-member|case-file`, `edgecrew projects artifacts ...`
and `edgecrew projects graph ...`: projects, their artifacts and knowledge graphs from a terminal.

Every command goes through ``ProjectService.of(rt)``, the service the server and the agents' tools
use, so no server is needed; what a person writes is signed ``cli:<user>`` unless ``--by`` names
someone else.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgecrew.cli.common import console, guard, read_stdin, read_text, runtime, shown
from edgecrew.errors import UserError
from edgecrew.projects import BEHAVIOURS, ProjectService
from edgecrew.projects.records import when

projects_app = typer.Typer(help="Projects: members, case files, artifacts and knowledge graphs.", no_args_is_help=True)
artifacts_app = typer.Typer(help="A project's artifacts: versions, lock, unlock, publish.", no_args_is_help=True)
graph_app = typer.Typer(help="Knowledge graphs: facts, neighbours and paths.", no_args_is_help=True)
projects_app.add_typer(artifacts_app, name="artifacts")
projects_app.add_typer(graph_app, name="graph")

By = Annotated[str | None, typer.Option("--by", help="Who does it (default: cli:<your user name>).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ProjectArg = Annotated[str, typer.Argument(help="The project's name or id.")]
ArtifactArg = Annotated[str, typer.Argument(help="The artifact's name or id.")]


def _svc() -> ProjectService:
    return guard(lambda: ProjectService.of(runtime()))


def _by(given: str | None) -> str:
    return given or f"cli:{getpass.getuser()}"


def _refuse(message: str) -> None:
    raise UserError(message)


def _json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


# -- projects -------------------------------------------------------------------------------------------
@projects_app.command("list")
def projects_list(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50, as_json: AsJson = False
) -> None:
    """List projects, newest first."""
    svc = _svc()
    found = guard(lambda: svc.list_projects(limit=limit))
    if as_json:
        _json([p.__dict__ for p in found])
        return
    if not found:
        console.print('no projects yet — try: edgecrew projects create "Launch" --manager crew/strategist')
        return
    table = Table("id", "name", "manager", "created", "description")
    for p in found:
        table.add_row(p.id, escape(p.name), escape(p.manager or "–"), when(p.created_at), escape(p.description[:60]))
    console.print(table)


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="The project's name (unique).")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    manager: Annotated[str | None, typer.Option(help="The manager agent: team/agent or a library agent.")] = None,
    by: By = None,
) -> None:
    """Create a project (with its case file and files folder)."""
    svc = _svc()
    p = guard(lambda: svc.create(name, description, manager=manager, created_by=_by(by)))
    console.print(f"created project [bold]{escape(p.name)}[/] ({p.id}); its files: {svc.files(p.id)}")


@projects_app.command("show")
def projects_show(project: ProjectArg, as_json: AsJson = False) -> None:
    """A project: manager, members, artifacts, case file, files folder, graph and latest runs."""
    svc = _svc()

    def read() -> dict[str, Any]:
        p = svc.get(project)
        nodes, facts = svc.graph.counts("project", p.id)
        return {
            **p.__dict__,
            "members": [m.__dict__ for m in svc.members(p.id)],
            "artifacts": [{**a.__dict__, "locked": a.locked} for a in svc.artifacts(p.id)],
            "case_file": svc.case_file(p.id).__dict__,
            "files": str(svc.files(p.id)),
            "graph": {"nodes": nodes, "facts": facts},
            "runs": svc.runs(p.id, limit=10),
        }

    shown = guard(read)
    if as_json:
        _json(shown)
        return
    console.print(f"[bold]{escape(shown['name'])}[/] ({shown['id']}) · manager {escape(shown['manager'] or '–')}")
    if shown["description"]:
        console.print(escape(shown["description"]))
    console.print(f"files: {shown['files']}")
    members = ", ".join(
        f"{m['name']} ({m['kind']}{', ' + m['behaviour'] if m['behaviour'] else ''})" for m in shown["members"]
    )
    console.print(f"members: {escape(members) or '–'}")
    for a in shown["artifacts"]:
        lock = f" · locked by {a['locked_by']}" if a["locked"] else ""
        console.print(f"  artifact {escape(a['name'])} ({a['kind']}) v{a['latest']}{escape(lock)}")
    console.print(f"graph: {shown['graph']['nodes']} nodes, {shown['graph']['facts']} facts")
    console.print(f"latest runs: {', '.join(shown['runs']) or '–'}")
    console.print(f"[dim]case file, version {shown['case_file']['version']}:[/]")
    console.print(escape(shown["case_file"]["content"]))


@projects_app.command("files")
def projects_files(
    project: ProjectArg,
    path: Annotated[
        str | None, typer.Argument(help="A file's path in the folder: print it (binary: to a pipe).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List the files in the project's folder (what its runs wrote at project/), or print one of them."""
    svc = _svc()
    if path is not None:
        _, on_disk = guard(lambda: svc.file(project, path))
        data = on_disk.read_bytes()
        if b"\0" in data[:8192] and sys.stdout.isatty():
            binary = f"'{path}' is a binary file ({len(data)} bytes); send it to a file: ... > {on_disk.name}"
            guard(lambda: _refuse(binary))
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    found = guard(lambda: svc.list_files(project))
    if as_json:
        _json([f.__dict__ for f in found])
        return
    if not found:
        console.print(f"no files yet in {svc.files(project)}")
        return
    table = Table("path", "bytes", "changed")
    for f in found:
        table.add_row(escape(f.path), str(f.size), when(f.modified))
    console.print(table)
    console.print(f"[dim]in {svc.files(project)}; print one with: edgecrew projects files {escape(project)} PATH[/]")


@projects_app.command("delete")
def projects_delete(
    project: ProjectArg, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False
) -> None:
    """Delete a project with its artifacts, case file, knowledge graph, long-term memories and files folder."""
    svc = _svc()
    p = guard(lambda: svc.get(project))
    if not yes and not typer.confirm(f"delete project {p.name}, its memories and its files folder {svc.files(p.id)}?"):
        raise typer.Exit(1)
    guard(lambda: svc.delete(p.id))
    console.print(f"deleted project {escape(p.name)} ({p.id})")


@projects_app.command("add-member")
def projects_add_member(
    project: ProjectArg,
    name: Annotated[str, typer.Argument(help="A person's name, or an agent: team/agent or a library agent.")],
    ai: Annotated[bool, typer.Option("--ai/--human", help="An agent or a person.")] = False,
    behaviour: Annotated[str | None, typer.Option(help=f"For an agent: {', '.join(BEHAVIOURS)}.")] = None,
    role: Annotated[str, typer.Option()] = "",
) -> None:
    """Add a person or an agent to a project."""
    svc = _svc()
    m = guard(lambda: svc.add_member(project, "ai" if ai else "human", name, behaviour=behaviour, role=role))
    console.print(f"{escape(m.name)} is now a member ({m.kind}{', ' + m.behaviour if m.behaviour else ''})")


@projects_app.command("case-file")
def projects_case_file(
    project: ProjectArg,
    append: Annotated[str | None, typer.Option(help="Markdown to append ('-': read it from stdin).")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Show this version.")] = None,
    by: By = None,
) -> None:
    """Show a project's case file, or append to it (a new version)."""
    svc = _svc()
    if append is not None:
        text = guard(read_stdin) if append == "-" else append
        cf = guard(lambda: svc.append_case_file(project, text, author=_by(by)))
        console.print(f"case file is now version {cf.version}")
        return
    cf = guard(lambda: svc.case_file(project, version))
    console.print(f"[dim]version {cf.version} by {escape(cf.author)}, {when(cf.created_at)}[/]")
    print(shown(cf.content))


# -- artifacts ------------------------------------------------------------------------------------------
@artifacts_app.command("list")
def artifacts_list(project: ProjectArg, as_json: AsJson = False) -> None:
    """List a project's artifacts."""
    svc = _svc()
    found = guard(lambda: svc.artifacts(project))
    if as_json:
        _json([{**a.__dict__, "locked": a.locked} for a in found])
        return
    if not found:
        console.print(f"no artifacts yet — try: edgecrew projects artifacts write {project} notes --text '...'")
        return
    table = Table("name", "kind", "owner", "version", "published", "lock")
    for a in found:
        table.add_row(
            escape(a.name),
            a.kind,
            escape(a.owner),
            str(a.latest),
            str(a.published_version or "–"),
            escape(a.lock_note()),
        )
    console.print(table)


@artifacts_app.command("show")
def artifacts_show(
    project: ProjectArg,
    artifact: ArtifactArg,
    version: Annotated[int | None, typer.Option(min=1, help="Default: the newest.")] = None,
) -> None:
    """Print an artifact's content (its newest version, or the one named)."""
    svc = _svc()
    a = guard(lambda: svc.artifact(project, artifact))
    v = guard(lambda: svc.artifact_version(project, a.id, version))
    console.print(f"[dim]{escape(a.name)} v{v.version} ({a.kind}) by {escape(v.author)} · {escape(a.lock_note())}[/]")
    print(shown(v.content))


@artifacts_app.command("versions")
def artifacts_versions(project: ProjectArg, artifact: ArtifactArg) -> None:
    """List an artifact's versions."""
    svc = _svc()
    table = Table("version", "author", "when", "note", "characters")
    for v in guard(lambda: svc.artifact_versions(project, artifact)):
        table.add_row(str(v.version), escape(v.author), when(v.created_at), escape(v.note), str(len(v.content)))
    console.print(table)


@artifacts_app.command("write")
def artifacts_write(
    project: ProjectArg,
    artifact: ArtifactArg,
    text: Annotated[str | None, typer.Option(help="The content.")] = None,
    file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Or a file with the content.")] = None,
    kind: Annotated[str, typer.Option(help="For a new artifact: cognitive, intellectual or info.")] = "cognitive",
    note: Annotated[str, typer.Option(help="What changed.")] = "",
    by: By = None,
) -> None:
    """Write a new version of an artifact (created when new); refused while it is locked."""
    if (text is None) == (file is None):
        guard(lambda: _refuse("give the content with --text or --file (one of them)"))
    content = text if text is not None else (guard(lambda: read_text(file)) if file else "")
    svc = _svc()

    def write() -> tuple[str, int]:
        names = {a.name for a in svc.artifacts(project)} | {a.id for a in svc.artifacts(project)}
        if artifact not in names:
            svc.create_artifact(project, artifact, kind, owner=_by(by))
        return artifact, svc.write_artifact(project, artifact, content, author=_by(by), note=note).version

    name, version = guard(write)
    console.print(f"wrote {escape(name)} version {version}")


@artifacts_app.command("lock")
def artifacts_lock(project: ProjectArg, artifact: ArtifactArg, by: By = None) -> None:
    """Lock an artifact against writes."""
    svc = _svc()
    a = guard(lambda: svc.lock_artifact(project, artifact, by=_by(by)))
    console.print(f"{escape(a.name)} is {escape(a.lock_note())}")


@artifacts_app.command("unlock")
def artifacts_unlock(
    project: ProjectArg,
    artifact: ArtifactArg,
    force: Annotated[bool, typer.Option("--force", help="Unlock a lock someone else holds.")] = False,
    by: By = None,
) -> None:
    """Unlock an artifact (only its holder may, unless --force)."""
    svc = _svc()
    a = guard(lambda: svc.unlock_artifact(project, artifact, by=_by(by), force=force))
    console.print(f"{escape(a.name)} is {a.lock_note()}")


@artifacts_app.command("publish")
def artifacts_publish(
    project: ProjectArg,
    artifact: ArtifactArg,
    version: Annotated[int | None, typer.Option(min=1, help="Default: the newest.")] = None,
    by: By = None,
) -> None:
    """Publish a version of an artifact."""
    svc = _svc()
    a = guard(lambda: svc.publish_artifact(project, artifact, by=_by(by), version=version))
    console.print(f"{escape(a.name)}: version {a.published_version} is published")


# -- knowledge graphs -----------------------------------------------------------------------------------
InProject = Annotated[str | None, typer.Option("--in", help="A project's graph (name or id).")]
OfAgent = Annotated[str | None, typer.Option("--agent", help="An agent's graph (team/agent).")]
Workspace = Annotated[bool, typer.Option("--workspace", help="The workspace's graph.")]


def _scope(svc: ProjectService, project: str | None, agent: str | None, workspace: bool) -> tuple[str, str]:
    chosen = [s for s, on in (("project", project), ("agent", agent), ("workspace", workspace)) if on]
    if len(chosen) != 1:
        raise UserError("name one graph: --in PROJECT, --agent TEAM/AGENT or --workspace")
    return svc.scope(chosen[0], project or agent)


@graph_app.command("add")
def graph_add(
    subject: str,
    relation: str,
    obj: Annotated[str, typer.Argument(metavar="OBJECT")],
    project: InProject = None,
    agent: OfAgent = None,
    workspace: Workspace = False,
    by: By = None,
) -> None:
    """Record a fact: SUBJECT --RELATION--> OBJECT."""
    svc = _svc()

    def add() -> tuple[Any, bool]:
        kind, ident = _scope(svc, project, agent, workspace)
        return svc.graph.add_fact(kind, ident, subject, relation, obj, added_by=_by(by))

    fact, new = guard(add)
    console.print(f"{'recorded' if new else 'already known'}: {escape(str(fact))}")


@graph_app.command("show")
def graph_show(project: InProject = None, agent: OfAgent = None, workspace: Workspace = False) -> None:
    """Every fact of a graph."""
    svc = _svc()
    facts = guard(lambda: svc.graph.facts(*_scope(svc, project, agent, workspace)))
    if not facts:
        console.print("no facts yet — add one with: edgecrew projects graph add SUBJECT RELATION OBJECT --in PROJECT")
    for f in facts:
        console.print(f"{f.id:>5}  {escape(str(f))}")


@graph_app.command("neighbours")
def graph_neighbours(
    node: str,
    depth: Annotated[int, typer.Option(min=1, max=6)] = 1,
    project: InProject = None,
    agent: OfAgent = None,
    workspace: Workspace = False,
) -> None:
    """The nodes within DEPTH hops of NODE, nearest first."""
    svc = _svc()
    start, near, facts = guard(lambda: svc.graph.neighbours(*_scope(svc, project, agent, workspace), node, depth=depth))
    console.print(f"{escape(start.name)}: {len(near)} node(s) within {depth} hop(s)")
    for n in near:
        console.print(f"  {n.distance}  {escape(n.name)}")
    for f in facts:
        console.print(f"[dim]  {escape(str(f))}[/]")


@graph_app.command("path")
def graph_path(
    source: Annotated[str, typer.Argument(metavar="FROM")],
    target: Annotated[str, typer.Argument(metavar="TO")],
    directed: Annotated[bool, typer.Option(help="Follow edges only along their arrows.")] = False,
    project: InProject = None,
    agent: OfAgent = None,
    workspace: Workspace = False,
) -> None:
    """A shortest chain of facts from FROM to TO (exit 1 when none)."""
    svc = _svc()
    steps = guard(lambda: svc.graph.path(*_scope(svc, project, agent, workspace), source, target, directed=directed))
    if steps is None:
        console.print(f"no path joins {escape(source)} and {escape(target)} within 6 hops")
        raise typer.Exit(1)
    console.print(f"{len(steps)} hop(s):")
    for s in steps:
        console.print(f"  {escape(str(s))}")
