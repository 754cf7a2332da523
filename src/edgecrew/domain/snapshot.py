"""A team as a run recorded it: the validated document stored with the run, read back into a TeamSpec.

The loader (specs/) validates a YAML document and produces this plain snapshot; the snapshot alone
is what a run keeps, so a run resumed after its YAML changed still runs the team it started with.
The one design decision: the domain owns the snapshot → TeamSpec mapping, and the loader builds its
TeamSpec through it too, so a fresh team and a resumed one cannot differ. The snapshot was
validated when it was made; fields added by later versions are read with the domain's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgecrew.domain.conditions import compile_condition
from edgecrew.domain.specs import AgentKind, AgentSpec, Edge, Example, Graph, Limits, MemoryRecallSpec, TeamSpec

__all__ = ["team_from_snapshot"]

_LIMITS = ("max_steps", "max_tokens", "timeout_s", "max_tool_errors")


def team_from_snapshot(raw: Mapping[str, Any], source: str = "<snapshot>") -> TeamSpec:
    """The TeamSpec of a validated team document (as stored with each run)."""
    preamble, approval = raw.get("preamble", ""), raw.get("approval", "always")
    agents = {name: _agent(name, doc, preamble, approval) for name, doc in raw["agents"].items()}
    edges = tuple(
        Edge(
            sources=_names(e["from"]),
            targets=_names(e["to"]),
            when=compile_condition(e["when"]) if e.get("when") is not None else None,
            max_loops=e.get("max_loops"),
            index=i,
            on_failure=bool(e.get("on_failure", False)),
        )
        for i, e in enumerate(raw["graph"].get("edges", ()))
    )
    team_limits = raw.get("limits") or {}
    return TeamSpec(
        name=raw["name"],
        agents=agents,
        graph=Graph(start=raw["graph"]["start"], edges=edges),
        description=raw.get("description", ""),
        example=str(raw.get("example", "")),
        max_visits=team_limits.get("max_visits", TeamSpec.max_visits),
        output=raw.get("output"),
        failed_when=compile_condition(raw["failed_when"]) if raw.get("failed_when") is not None else None,
        needs_project=bool(raw.get("needs_project", False)),
        internal=bool(raw.get("internal", False)),
        source=source,
        raw=raw,
    )


def _agent(name: str, doc: Mapping[str, Any], preamble: str, approval: str) -> AgentSpec:
    model = doc.get("model", "local")
    limits = doc.get("limits") or {}
    files = doc.get("files") or {}
    tool = doc.get("tool") or ""
    kind: AgentKind = "tool" if tool else "template" if doc.get("template") is not None else "model"
    return AgentSpec(
        name=name,
        system=doc.get("system") or "",
        model=f"tag:{model['tag']}" if isinstance(model, Mapping) else model,
        temperature=float(doc["temperature"]) if doc.get("temperature") is not None else None,
        role=doc.get("role", ""),
        tools=(tool,) if tool else tuple(doc.get("tools", ())),
        output_schema=doc.get("output_schema"),
        limits=Limits(**{k: limits[k] for k in _LIMITS if k in limits}),
        plan_first=doc.get("plan_first", True),
        preamble=preamble,
        file_read=tuple(files.get("read", ("**",))),
        file_write=tuple(files.get("write", ("**",))),
        approval=approval,
        kind=kind,
        tool=tool,
        arguments=doc.get("arguments") or {},
        on_denied="continue" if doc.get("on_denied") == "continue" else "fail",
        template=doc.get("template") or "",
        input=doc.get("input") or "",
        examples=tuple(Example(e["input"], e["output"]) for e in doc.get("examples") or ()),
        tools_per_step=doc.get("tools_per_step") or 0,
        memory=MemoryRecallSpec(
            recall=(doc.get("memory") or {}).get("recall", 0),
            scopes=tuple((doc.get("memory") or {}).get("scopes", MemoryRecallSpec.scopes)),
        ),
    )


def _names(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)
