"""Teams and agents: list, get, and validate a posted team spec (every problem, with line numbers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from edgecrew.api.deps import Read, RuntimeDep
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.domain.specs import AgentSpec, TeamSpec
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import Severity, SpecError, SpecIssue
from edgecrew.specs.loader import load_team_text

router = APIRouter(tags=["teams"], responses=PROBLEM_RESPONSES)


class IssueOut(BaseModel):
    file: str
    line: int | None
    message: str
    hint: str = ""
    severity: Severity = Field(default="error", description="error: the spec is invalid; warning: it runs")

    @classmethod
    def of(cls, i: SpecIssue) -> IssueOut:
        return cls(file=i.file, line=i.line, message=i.message, hint=i.hint, severity=i.severity)


class AgentOut(BaseModel):
    team: str
    name: str
    role: str
    model: str
    tools: list[str]
    system: str
    output_schema: dict[str, Any] | None
    limits: dict[str, Any]

    @classmethod
    def of(cls, team: str, a: AgentSpec) -> AgentOut:
        return cls(
            team=team,
            name=a.name,
            role=a.role,
            model=a.model,
            tools=list(a.tools),
            system=a.system,
            output_schema=dict(a.output_schema) if a.output_schema is not None else None,
            limits=dict(a.limits.__dict__),
        )


class EdgeOut(BaseModel):
    sources: list[str]
    targets: list[str]
    when: str | None
    max_loops: int | None
    on_failure: bool = False  # taken when the source's turn fails (``when`` reads its outcome and error)


class TeamSummary(BaseModel):
    name: str
    builtin: bool
    file: str
    valid: bool
    agents: list[str]
    issues: list[IssueOut]
    warnings: list[IssueOut] = []  # what may not work as meant (it still runs); see POST /teams/validate
    internal: bool = Field(
        default=False,
        description="Its YAML says internal: true: edgecrew starts it itself (the supervisor's), so chat, MCP and"
        " A2A do not offer it. False for an invalid spec.",
    )


class TeamOut(BaseModel):
    name: str
    description: str
    builtin: bool
    file: str
    output: str | None
    agents: list[AgentOut]
    start: str
    edges: list[EdgeOut]
    spec: dict[str, Any] = Field(description="The validated document, as a run snapshots it.")


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a field it does not declare is refused by name, not dropped

    yaml: str = Field(max_length=1_000_000, description="A team spec in YAML.")


class ValidateOut(BaseModel):
    valid: bool
    team: str | None = None
    issues: list[IssueOut]
    warnings: list[IssueOut] = Field(
        default=[], description="What may fail at run time (a team may dead-end...): the spec is valid all the same."
    )


def _team_out(rt: Runtime, name: str, spec: TeamSpec) -> TeamOut:
    source = rt.project.named_source(name)
    return TeamOut(
        name=spec.name,
        description=spec.description,
        builtin=source.builtin,
        file=str(source.file),
        output=spec.output,
        agents=[AgentOut.of(spec.name, a) for a in spec.agents.values()],
        start=spec.graph.start,
        edges=[
            EdgeOut(
                sources=list(e.sources),
                targets=list(e.targets),
                when=e.when.source if e.when else None,
                max_loops=e.max_loops,
                on_failure=e.on_failure,
            )
            for e in spec.graph.edges
        ],
        spec=dict(spec.raw),
    )


@router.get("/teams", response_model=list[TeamSummary])
def list_teams(rt: RuntimeDep, _: Read) -> list[TeamSummary]:
    """Every team this server can run (built-in and the project's), with its validity."""
    catalog = rt.catalog()
    out = []
    for name, source in sorted(rt.project.teams.items()):
        try:
            spec = rt.project.load_source(source, catalog)
            agents, issues, warnings = list(spec.agents), [], [IssueOut.of(i) for i in spec.warnings]
            internal = spec.internal
        except SpecError as exc:
            agents, issues = [], [IssueOut.of(i) for i in exc.issues]
            warnings = [IssueOut.of(i) for i in exc.warnings]
            internal = False
        out.append(
            TeamSummary(
                name=name,
                builtin=source.builtin,
                file=str(source.file),
                valid=not issues,
                agents=agents,
                issues=issues,
                warnings=warnings,
                internal=internal,
            )
        )
    return out


@router.get("/teams/{name}", response_model=TeamOut)
def get_team(name: str, rt: RuntimeDep, _: Read) -> TeamOut:
    """A team's agents and graph (422 with every issue when its spec is invalid)."""
    return _team_out(rt, name, rt.load_named_team(name))


@router.post("/teams/validate", response_model=ValidateOut)
def validate_team(body: ValidateIn, rt: RuntimeDep, _: Read) -> ValidateOut:
    """Check a team spec against this server's models and tools without saving it."""
    try:
        spec = load_team_text(body.yaml, "<posted>", rt.catalog())
    except SpecError as exc:
        warnings = [IssueOut.of(i) for i in exc.warnings]
        return ValidateOut(valid=False, issues=[IssueOut.of(i) for i in exc.issues], warnings=warnings)
    return ValidateOut(valid=True, team=spec.name, issues=[], warnings=[IssueOut.of(i) for i in spec.warnings])


@router.get("/agents", response_model=list[AgentOut], tags=["teams"])
def list_agents(rt: RuntimeDep, _: Read) -> list[AgentOut]:
    """Every agent of every valid team."""
    catalog = rt.catalog()
    out: list[AgentOut] = []
    for _name, source in sorted(rt.project.teams.items()):
        try:
            spec = rt.project.load_source(source, catalog)
        except SpecError:
            continue
        out += [AgentOut.of(spec.name, a) for a in spec.agents.values()]
    return out


@router.get("/agents/{team}/{agent}", response_model=AgentOut, tags=["teams"])
def get_agent(team: str, agent: str, rt: RuntimeDep, _: Read) -> AgentOut:
    from edgecrew.errors import NotFoundError

    spec = rt.load_named_team(team)
    if agent not in spec.agents:
        raise NotFoundError(f"team '{team}' has no agent '{agent}' (it has: {', '.join(spec.agents)})")
    return AgentOut.of(spec.name, spec.agents[agent])
