"""The agents' memory tools: memory.remember, memory.recall and memory.forget.

Closures over one runtime's :class:`MemoryService` (:func:`register_memory_tools`; unbound, they
are only listed). The scope ids come from the call's context (the agent, the run's team and
project); an agent may name a project, never another agent or team, so it reads and writes only
its own agent memory, its team's, and the projects it names. ``remember`` and ``recall`` are
``safe``; ``forget`` is ``risky`` (it waits for a person unless the team's approval policy says
``never``): it deletes shared team and project memory and cannot be undone. Every answer opens with
a one-line ``summary``, which small models read first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from edgecrew.errors import ToolError
from edgecrew.memory.service import SCOPES, MemoryService, Recall, Scope, ScopeRef
from edgecrew.tools.base import Risk, ToolContext, ToolRegistry, as_tool_errors, spec_from_function

__all__ = ["MEMORY_TOOLS", "register_memory_tools"]

MEMORY_TOOLS = ("memory.remember", "memory.recall", "memory.forget")
SHOWN = 1_000  # characters of one memory shown in a recall


class RememberOut(BaseModel):
    summary: str
    id: int
    scope: str
    scope_id: str


class RecalledMemory(BaseModel):
    id: int
    text: str
    scope: str
    scope_id: str
    score: float = Field(description="Cosine similarity to the query (higher is closer).")
    tags: list[str] = []
    agent: str | None = None
    created: str = Field(description="When it was remembered (UTC, ISO).")


class RecallOut(BaseModel):
    summary: str
    memories: list[RecalledMemory]
    backend: str = Field(description="sqlite-vec | pgvector | exact")
    note: str | None = Field(default=None, description="Why the search was exact, when it was.")


class ForgetOut(BaseModel):
    summary: str
    forgotten: list[int]


ProjectArg = Annotated[
    str | None,
    Field(max_length=200, description="The project's id (default: the run's project)."),
]
Tags = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=16, description="Labels, e.g. okr.")]


def register_memory_tools(registry: ToolRegistry, service: MemoryService | None = None) -> None:
    """Register the memory tools bound to ``service``; unbound (None) they are only listed (validation and
    `edgecrew tools list` need their names) and a call says so. Registering again replaces them."""
    tools = _MemoryTools(service)
    specs: list[tuple[str, Callable[..., Any], Risk, type[BaseModel]]] = [
        ("memory.remember", tools.remember, "safe", RememberOut),
        ("memory.recall", tools.recall, "safe", RecallOut),
        ("memory.forget", tools.forget, "risky", ForgetOut),
    ]
    for name, fn, risk, out in specs:
        spec = spec_from_function(fn, name=name, timeout_s=60.0, risk=risk)
        registry.register(replace(spec, output_model=out))


class _MemoryTools:
    """The tools' functions (their docstrings are the descriptions)."""

    def __init__(self, service: MemoryService | None) -> None:
        self._service = service

    @property
    def service(self) -> MemoryService:
        if self._service is None:
            raise ToolError("memory is not open in this process (the tools are only listed here)")
        return self._service

    def _scope(self, scope: Scope | None, ctx: ToolContext, project: str | None) -> ScopeRef:
        ids = self.service.scope_ids(ctx.run_id, ctx.agent)
        ids["project"] = project or ids["project"]
        if scope is None:
            scope = "project" if ids["project"] else "team" if ids["team"] else "agent"
        scope_id = ids[scope]
        if not scope_id:
            hint = "pass project=<id>" if scope == "project" else "use scope agent"
            raise ToolError(f"this run has no {scope} to remember in: {hint}")
        return ScopeRef(scope, scope_id)

    def _scopes(self, scopes: list[Scope] | None, ctx: ToolContext, project: str | None) -> list[ScopeRef]:
        ids = self.service.scope_ids(ctx.run_id, ctx.agent)
        ids["project"] = project or ids["project"]
        wanted = scopes or list(SCOPES)
        refs = [ScopeRef(s, i) for s in wanted if (i := ids[s])]
        if not refs:
            raise ToolError(f"this run has no {' or '.join(wanted)} to recall from: pass project=<id>")
        return refs

    def remember(
        self,
        text: Annotated[str, Field(min_length=1, max_length=4_000, description="The fact or note, self-contained.")],
        ctx: ToolContext,
        scope: Annotated[
            Scope | None,
            Field(
                description="Who may recall it: project, team or agent (you only). Default: the project, else the team."
            ),
        ] = None,
        tags: Tags = [],  # noqa: B006 (pydantic copies defaults)
        project: ProjectArg = None,
    ) -> dict[str, Any]:
        """Remember a fact or note for later runs (yours or your team's or project's); returns its id."""
        ref = self._scope(scope, ctx, project)
        with as_tool_errors():
            memory_id = self.service.remember(text, ref.scope, ref.id, agent=ctx.agent, run=ctx.run_id, tags=tags)
        summary = f"remembered memory {memory_id} in {ref}"
        return RememberOut(summary=summary, id=memory_id, scope=ref.scope, scope_id=ref.id).model_dump()

    def recall(
        self,
        query: Annotated[str, Field(min_length=1, max_length=2_000, description="What you want to know.")],
        ctx: ToolContext,
        k: Annotated[int, Field(ge=1, le=20, description="How many memories at most.")] = 5,
        scopes: Annotated[
            list[Scope] | None, Field(description="Where to look (default: project, team and your own).")
        ] = None,
        project: ProjectArg = None,
    ) -> dict[str, Any]:
        """Recall the memories closest in meaning to a query, from earlier runs of your project, team and you."""
        refs = self._scopes(scopes, ctx, project)
        with as_tool_errors():
            found = self.service.recall(query, refs, k)
        return _recall_out(found).model_dump()

    def forget(
        self,
        ctx: ToolContext,
        id: Annotated[int | None, Field(ge=1, description="The memory's id (memory.recall shows it).")] = None,
        scope: Annotated[Scope | None, Field(description="Or forget every memory of this scope...")] = None,
        tags: Annotated[list[str], Field(max_length=16, description="...that carries all these tags.")] = [],  # noqa: B006
        project: ProjectArg = None,
    ) -> dict[str, Any]:
        """Forget one memory by id, or every memory of a scope with the given tags (cannot be undone)."""
        if id is None and scope is None:
            raise ToolError("name the memory's id, or a scope (and tags) whose memories to forget")
        visible = self._scopes(None, ctx, project)
        targets = visible if scope is None else [self._scope(scope, ctx, project)]
        with as_tool_errors():
            ids = self.service.forget(id, scopes=targets, tags=tags if id is None else ())
        where = f" of {targets[0]}" if id is None else ""
        summary = f"forgot {len(ids)} memor{'y' if len(ids) == 1 else 'ies'}{where}"
        return ForgetOut(summary=summary, forgotten=ids).model_dump()


def _recall_out(found: Recall) -> RecallOut:
    memories = [
        RecalledMemory(
            id=h.id,
            text=h.text[:SHOWN],
            scope=h.scope,
            scope_id=h.scope_id,
            score=h.score,
            tags=list(h.tags),
            agent=h.agent,
            created=datetime.fromtimestamp(h.created_at, UTC).isoformat(timespec="seconds"),
        )
        for h in found.hits
    ]
    where = ", ".join(str(s) for s in found.scopes)
    if memories:
        summary = (
            f"{len(memories)} memor{'y' if len(memories) == 1 else 'ies'} from {where}; best: {memories[0].text[:120]}"
        )
    else:
        summary = f"no memories in {where} match"
    if found.note:
        summary += f" (exact search: {found.note})"
    return RecallOut(summary=summary, memories=memories, backend=found.backend, note=found.note)
