"""`edgecrew memory list|search|show|forget`: what agents remember across runs, seen and managed by a person.

Every command goes through ``MemoryService.of(rt)``, the service the agents' memory tools use, so no
server is needed. A project is named by its name or id (``--project``), any other scope by kind and id
(``--scope agent --id crew/planner``); with neither, list and search see every scope.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from edgecrew.cli.common import console, guard, runtime
from edgecrew.errors import NotFoundError, UserError
from edgecrew.memory import SCOPES, MemoryService, ScopeRef
from edgecrew.projects import ProjectService
from edgecrew.projects.records import when

memory_app = typer.Typer(
    help="Long-term memories agents keep across runs: list, search, show, forget.", no_args_is_help=True
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help="A project's name or id.")]
ScopeOpt = Annotated[str | None, typer.Option("--scope", help=f"A scope: {', '.join(SCOPES)} (with --id).")]
IdOpt = Annotated[str | None, typer.Option("--id", help="The scope's id: an agent (team/agent), a team, a project.")]
MemoryArg = Annotated[int, typer.Argument(metavar="ID", help="The memory's id (see `edgecrew memory list`).", min=1)]
LINE = 80  # characters of a memory's text in a table


class _Ctx:
    """The runtime's memory and projects, and the names of the projects memories belong to."""

    def __init__(self) -> None:
        rt = guard(runtime)
        self.memory = MemoryService.of(rt)
        self.projects = ProjectService.of(rt)
        self._names: dict[str, str] = {}

    def scopes(self, project: str | None, scope: str | None, ident: str | None) -> list[ScopeRef] | None:
        """The scopes the options name (None: every scope); UserError naming the option that is wrong."""
        if project is not None and (scope is not None or ident is not None):
            raise UserError("give --project, or --scope with --id, not both")
        if project is not None:
            return [ScopeRef("project", self.projects.get(project).id)]
        if scope is None and ident is None:
            return None
        if scope is None:
            raise UserError(f"--id {ident} needs --scope ({', '.join(SCOPES)})")
        if scope not in SCOPES:
            raise UserError(f"--scope {scope!r} is not a memory scope; use one of {', '.join(SCOPES)}")
        if not ident:
            raise UserError(f"--scope {scope} needs --id: the {scope}'s name")
        if scope == "project":  # a project's name works too; an id no project has is kept as it is
            with contextlib.suppress(NotFoundError):
                ident = self.projects.get(ident).id
        return [ScopeRef(scope, ident)]

    def owner(self, scope: str, scope_id: str) -> str:
        """A scope id as people read it: a project's name, otherwise the id itself."""
        if scope != "project":
            return scope_id
        if scope_id not in self._names:
            try:
                self._names[scope_id] = self.projects.get(scope_id).name
            except NotFoundError:
                self._names[scope_id] = scope_id
        return self._names[scope_id]


def _line(text: str, width: int = LINE) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def _cells(*cells: str) -> list[Text]:
    """A row's cells: the others kept whole, the last (the text) one line cut to fit (the column the table
    narrows, each cell not wrapping: one line a memory however wide the terminal)."""
    *kept, text = cells
    return [*(Text(c) for c in kept), Text(_line(text), no_wrap=True, overflow="ellipsis")]


def _json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _row(ctx: _Ctx, r: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "scope": r.scope,
        "scope_id": r.scope_id,
        "owner": ctx.owner(r.scope, r.scope_id),
        "text": r.text,
        "tags": list(r.tags),
        "agent": r.agent,
        "run_id": r.run_id,
        "created_at": r.created_at,
        **extra,
    }


@memory_app.command("list")
def memory_list(
    project: ProjectOpt = None,
    scope: ScopeOpt = None,
    ident: IdOpt = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only memories with this tag (repeat: all of them).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 50,
    as_json: AsJson = False,
) -> None:
    """List memories, newest first: of a project, of one scope, or (with neither) of every scope."""
    ctx = _Ctx()

    def read() -> tuple[list[Any], int]:
        refs = ctx.scopes(project, scope, ident)
        return ctx.memory.latest(refs, tags=tag or (), limit=limit), ctx.memory.count(refs)

    found, total = guard(read)
    if as_json:
        _json([_row(ctx, r) for r in found])
        return
    if not found:
        console.print("no memories" + (" with these tags" if tag else "") + " here yet")
        return
    table = Table(*(Column(c, no_wrap=True) for c in ("id", "scope", "of", "created", "tags")), "text")
    for r in found:
        table.add_row(
            *_cells(str(r.id), r.scope, ctx.owner(r.scope, r.scope_id), when(r.created_at), ", ".join(r.tags), r.text)
        )
    console.print(table)
    console.print(f"[dim]{len(found)} shown of {total}; the whole of one: edgecrew memory show ID[/]")


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="What to look for, in words (found by meaning).")],
    project: ProjectOpt = None,
    scope: ScopeOpt = None,
    ident: IdOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many, closest first.")] = 5,
    as_json: AsJson = False,
) -> None:
    """The memories closest in meaning to QUERY, with their scores (cosine similarity, higher is closer)."""
    ctx = _Ctx()

    def search() -> Any:
        if not query.strip():
            raise UserError("QUERY is empty: say what to look for")
        refs = ctx.scopes(project, scope, ident)
        return ctx.memory.recall(query, refs if refs is not None else ctx.memory.known_scopes(), k=k)

    found = guard(search)
    if as_json:
        _json({"query": query, "backend": found.backend, "hits": [_row(ctx, h, score=h.score) for h in found.hits]})
        return
    if not found.hits:
        console.print(f"no memories found for {escape(query)!r}")
        return
    table = Table(*(Column(c, no_wrap=True) for c in ("score", "id", "scope", "of", "created")), "text")
    for h in found.hits:
        table.add_row(
            *_cells(f"{h.score:.3f}", str(h.id), h.scope, ctx.owner(h.scope, h.scope_id), when(h.created_at), h.text)
        )
    console.print(table)
    if found.note:
        console.print(f"[dim]{escape(found.note)}[/]")


@memory_app.command("show")
def memory_show(memory_id: MemoryArg, as_json: AsJson = False) -> None:
    """One memory: its whole text, scope, tags, the agent and run that wrote it, and when."""
    ctx = _Ctx()
    r = guard(lambda: ctx.memory.get(memory_id))
    if as_json:
        _json({**_row(ctx, r), "model": r.model})
        return
    owner = ctx.owner(r.scope, r.scope_id)
    of = f"{owner} ({r.scope_id})" if owner != r.scope_id else r.scope_id
    console.print(f"[bold]memory {r.id}[/] · {r.scope} {escape(of)} · {when(r.created_at)}")
    console.print(
        f"tags: {escape(', '.join(r.tags)) or '–'} · agent: {escape(r.agent or '–')} · run: {r.run_id or '–'}"
    )
    console.print(escape(r.text))


@memory_app.command("forget")
def memory_forget(
    memory_id: MemoryArg, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False
) -> None:
    """Forget (delete) one memory; asks first unless --yes."""
    ctx = _Ctx()
    r = guard(lambda: ctx.memory.get(memory_id))
    owner = ctx.owner(r.scope, r.scope_id)
    if not yes and not typer.confirm(f"forget memory {r.id} of {r.scope} {owner}: {_line(r.text, 60)!r}?"):
        raise typer.Exit(1)
    guard(lambda: ctx.memory.forget(r.id))
    console.print(f"forgot memory {r.id} ({r.scope} {escape(owner)})")
