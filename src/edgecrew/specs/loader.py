"""Team specs: shape checks (pydantic) then meaning checks (graph, tools, models, schemas).

Every problem is collected and reported at once, each with file, line and what to change. Shape
errors come from pydantic with their location path, which :func:`line_of` maps back to a YAML line.
Validation is strict: YAML already has types, so ``max_steps: "5"`` is a mistake, not a number.
After shape errors the meaning checks still run, on a copy repaired by :data:`_TEAM_REPAIRS` (see
:mod:`edgecrew.specs.repair`): a part that cannot be trusted is muted, never guessed at.
What may fail only at run time (a node with no default edge, a condition that cannot hold: see
:mod:`edgecrew.specs.edges`) is a warning: the team loads and carries it in ``TeamSpec.warnings``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails

from edgecrew.domain.conditions import ConditionSyntaxError, compile_condition
from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.domain.specs import END, TeamSpec
from edgecrew.domain.templating import NAMES, Reference, TemplateProblem, unguarded_outputs, value_references
from edgecrew.errors import SpecError, SpecIssue, validation_message
from edgecrew.specs.edges import edge_findings
from edgecrew.specs.repair import ANY, DROP, Loc, Rule, repair
from edgecrew.specs.yamlsrc import line_of, parse_yaml, read_yaml, to_plain

__all__ = ["Catalog", "build_agent", "build_team", "load_team", "load_team_text", "parse_yaml"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LimitsDoc(_Strict):
    max_steps: int = Field(default=6, ge=1, le=100)
    max_tokens: int = Field(default=512, ge=1, le=32768)
    timeout_s: float = Field(default=300.0, gt=0)
    max_tool_errors: int = Field(default=3, ge=1, le=100)


class FilesDoc(_Strict):
    read: list[str] = ["**"]  # globs relative to the run workspace ('*' also crosses folders)
    write: list[str] = ["**"]


class TagRefDoc(_Strict):
    tag: str = Field(min_length=1)


class ExampleDoc(_Strict):
    input: str = Field(min_length=1)  # what the agent is given (its user message)
    output: str | dict[str, Any]  # its answer: text, or an object valid against its output_schema


class MemoryDoc(_Strict):
    recall: int = Field(default=0, ge=0, le=20)  # memories put in the system prompt (0: off)
    scopes: list[Literal["project", "team", "agent"]] = ["project", "team", "agent"]


class AgentDoc(_Strict):
    """One agent. Its kind follows from its fields: ``tool:`` makes a tool agent, ``template:`` a
    template agent, anything else is a model agent (which needs ``system``)."""

    system: str | None = Field(default=None, min_length=1)
    role: str = ""
    model: str | TagRefDoc = "local"  # an alias, or {tag: coding} for any model with that tag
    temperature: float | None = Field(default=None, ge=0, le=2)  # its model calls' (None: the alias's)
    tools: list[str] = []
    output_schema: dict[str, Any] | None = None
    limits: LimitsDoc = LimitsDoc()
    plan_first: bool = True
    files: FilesDoc = FilesDoc()
    input: str | None = Field(default=None, min_length=1)  # the user message, as a template (default: task and outputs)
    examples: list[ExampleDoc] = []
    tools_per_step: int | None = Field(default=None, ge=1, le=64)
    tool: str | None = Field(default=None, min_length=1)  # a tool agent: the one tool it calls, no model
    arguments: dict[str, Any] = {}  # ...and its arguments; strings are templates over task and outputs
    on_denied: Literal["fail", "continue"] = "fail"  # ...and what a person's denial of its call does
    template: str | None = Field(default=None, min_length=1)  # a template agent: its answer, rendered
    memory: MemoryDoc = MemoryDoc()  # long-term memories recalled into the prompt

    @property
    def kind(self) -> str:
        return "tool" if self.tool is not None else "template" if self.template is not None else "model"

    @model_validator(mode="wrap")
    @classmethod
    def _system_for_a_model(cls, data: Any, handler: ModelWrapValidatorHandler[AgentDoc]) -> AgentDoc:
        """A model agent needs ``system``: reported as that field missing, beside the agent's other errors."""
        needs_system = isinstance(data, Mapping) and not any(k in data for k in ("system", "tool", "template"))
        try:
            agent = handler(data)
        except ValidationError as exc:
            if not needs_system:
                raise
            errors = [_init_details(e) for e in exc.errors()]
        else:
            if not needs_system:
                return agent
            errors = []
        missing: InitErrorDetails = {"type": "missing", "loc": ("system",), "input": data}
        raise ValidationError.from_exception_data(cls.__name__, [missing, *errors])


def _init_details(error: ErrorDetails) -> InitErrorDetails:
    details: InitErrorDetails = {"type": error["type"], "loc": error["loc"], "input": error["input"]}
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


class EdgeDoc(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)
    source: str | list[str] = Field(alias="from")
    to: str | list[str]
    when: str | None = None
    max_loops: int | None = Field(default=None, ge=1, le=100)
    on_failure: bool = False  # taken when the source's turn fails, instead of failing the run


class GraphDoc(_Strict):
    start: str
    edges: list[EdgeDoc] = []


class TeamLimitsDoc(_Strict):
    max_visits: int = Field(default=50, ge=1, le=10000)


class TeamDoc(_Strict):
    name: str
    description: str = ""
    example: str = ""  # a task as people give this team one: the run form's example and placeholder
    agents: dict[str, AgentDoc] = Field(min_length=1)
    graph: GraphDoc
    limits: TeamLimitsDoc = TeamLimitsDoc()
    output: str | None = None  # whose latest output is the run's answer (default: the agent that ends)
    failed_when: str | None = None  # a condition on the answer that makes the run fail (its work did not succeed)
    # Its runs must work in a project (`--in NAME`, a routine's `project:`): a run in none is refused, a
    # routine naming none is invalid.
    needs_project: bool = False
    # Started by edgecrew itself (the supervisor's actions), never chatted with: left out of the chat page's
    # teams and /v1/models, and refused by POST /sessions and /v1/chat/completions.
    internal: bool = False
    preamble: str = ""  # shared text at the start of every agent's system prompt (its KV state is reused)
    approval: Literal["always", "once", "never"] = "always"  # for risky tools: ask each call, once per tool, never


@dataclass(frozen=True)
class Catalog:
    """What a spec may refer to; ``None`` skips that check (e.g. when validating a lone file)."""

    tools: frozenset[str] | None = None
    models: frozenset[str] | None = None
    normalize_tool: Callable[[str], str] | None = None  # name -> registered name (case, aliases)
    # The agent library: name -> the agent's fields, for team agents that say `use: NAME`; a library
    # agent whose own file is broken maps to a SpecError instead (reported there, named here).
    agents: Mapping[str, Mapping[str, Any] | SpecError] | None = None
    # The file that declares each library agent (by name): a `use:` of a file's stem whose `name:`
    # differs is told which file declares which name.
    agent_files: Mapping[str, str] | None = None
    tool_schema: Callable[[str], Mapping[str, Any]] | None = None  # registered name -> its arguments' JSON Schema


@dataclass
class _Issues:
    """Collects problems with their line, found from their path in the document."""

    doc: Any
    file: str
    prefix: Loc
    items: list[SpecIssue] = field(default_factory=list)
    muted: frozenset[Loc] = frozenset()  # parts a shape error made untrusted: no meaning issue under them
    warnings: list[SpecIssue] = field(default_factory=list)  # what may fail at run time; the spec is valid

    def add(self, loc: Loc, message: str, hint: str = "") -> None:
        if self.trusts(loc):
            self.items.append(SpecIssue(self.file, line_of(self.doc, (*self.prefix, *loc)), message, hint))

    def warn(self, loc: Loc, message: str, hint: str = "") -> None:
        if self.trusts(loc):
            line = line_of(self.doc, (*self.prefix, *loc))
            self.warnings.append(SpecIssue(self.file, line, message, hint, severity="warning"))

    def trusts(self, loc: Loc) -> bool:
        return not any(loc[: len(part)] == part for part in self.muted)

    def sorted_warnings(self) -> tuple[SpecIssue, ...]:
        return tuple(sorted(self.warnings, key=lambda i: i.line or 0))

    def error(self) -> SpecError:
        return SpecError(sorted(self.items, key=lambda i: i.line or 0), self.sorted_warnings())


def load_team(path: Path, catalog: Catalog | None = None) -> TeamSpec:
    return build_team(read_yaml(path), str(path), catalog, loc_prefix=())


def load_team_text(text: str, file: str = "<text>", catalog: Catalog | None = None) -> TeamSpec:
    return build_team(parse_yaml(text, file), file, catalog, loc_prefix=())


def build_team(doc: Any, file: str, catalog: Catalog | None, loc_prefix: Loc) -> TeamSpec:
    """Validate one team document (``doc`` is the whole file; the team sits at ``loc_prefix``)."""
    node = doc
    for key in loc_prefix:
        node = node[key]
    issues = _Issues(doc, file, loc_prefix)
    if not isinstance(node, Mapping):
        what = "the file is empty" if node is None else "a team must be a mapping"
        issues.add(
            (),
            f"{what}: expected a team with name, agents and graph",
            "write 'name:', 'agents:' and 'graph:' at the top level",
        )
        raise issues.error()
    plain, borrowed = _resolve_uses(to_plain(node, file), catalog or Catalog(), issues)
    _check_name(plain, issues)  # before the shape: a team past repair still hears of its name
    team = _shape(plain, issues)
    if team is None:
        raise issues.error()
    issues.muted |= borrowed  # an agent whose library entry is unknown: only that is said of it
    _check_team(team, catalog or Catalog(), issues)
    if issues.trusts(("graph",)):
        for finding in edge_findings(team):
            (issues.add if finding.severity == "error" else issues.warn)(finding.loc, finding.message, finding.hint)
    if issues.items:  # always so after shape errors: a repaired team never becomes a TeamSpec
        raise issues.error()
    return dataclasses.replace(_to_domain(team, file, catalog), warnings=issues.sorted_warnings())


# --- the agent library --------------------------------------------------------------------------------

MERGED_FIELDS = ("limits", "files")  # a team's override of these keeps the library's other keys


def _resolve_uses(plain: Any, catalog: Catalog, issues: _Issues) -> tuple[Any, frozenset[Loc]]:
    """Team agents that say ``use: NAME`` become the library agent NAME with the team's fields on top
    (``limits`` and ``files`` merged key by key). Returns the team and the agents whose NAME is unknown."""
    agents = plain.get("agents") if isinstance(plain, dict) else None
    if not isinstance(agents, dict):
        return plain, frozenset()
    library = catalog.agents or {}
    unknown: set[Loc] = set()
    for name, entry in list(agents.items()):
        if not isinstance(entry, dict) or "use" not in entry:
            continue
        ref, overrides = entry["use"], {k: v for k, v in entry.items() if k != "use"}
        if not isinstance(ref, str) or ref not in library:
            known = ", ".join(sorted(library)) or "none"
            issues.add(
                ("agents", name, "use"),
                f"agent '{name}' uses '{ref}', which is not in the agent library",
                declared_elsewhere(str(ref), catalog.agent_files or {})
                or _suggest(str(ref), library)
                or f"library agents: {known} (see `edgecrew agents list`)",
            )
            agents[name] = {"system": "-", **overrides}
            unknown.add(("agents", name))
            continue
        found = library[ref]
        if isinstance(found, SpecError):
            first = found.issues[0] if found.issues else None
            issues.add(
                ("agents", name, "use"),
                f"agent '{name}' uses '{ref}', whose own file has {len(found.issues)} problem(s)"
                + (f", first: {first}" if first else ""),
                "fix the library agent (edgecrew validate lists its problems)",
            )
            agents[name] = {"system": "-", **overrides}
            unknown.add(("agents", name))
            continue
        merged = copy.deepcopy(dict(found))
        for key, value in overrides.items():
            if key in MERGED_FIELDS and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        agents[name] = merged
    return plain, frozenset(unknown)


def declared_elsewhere(ref: str, files: Mapping[str, str]) -> str | None:
    """When ``ref`` is the stem of a library agent's file whose ``name:`` differs (agents/reviewer.yaml
    saying ``name: gatekeeper``), which file declares which name, and the two ways to agree."""
    for name, file in sorted(files.items()):
        if Path(file).stem == ref and name != ref:
            return f"{file} declares the name '{name}': use '{name}', or set its name: to '{ref}'"
    return None


@dataclass
class _AgentFileIssues(_Issues):
    """Issues of one library agent's file: the team checks speak of ``agents.<name>.<field>``, the file
    holds the fields at its top level."""

    def add(self, loc: Loc, message: str, hint: str = "") -> None:
        super().add(loc[2:] if loc[:1] == ("agents",) else loc, message, hint)


def build_agent(doc: Any, file: str, catalog: Catalog | None = None) -> tuple[str, AgentDoc]:
    """Validate one library agent: a file of ``agents/`` holding ``name`` and an agent's fields."""
    issues = _AgentFileIssues(doc, file, ())
    if not isinstance(doc, Mapping):
        issues.add((), "an agent must be a mapping: name, then its fields (system, model, tools...)")
        raise issues.error()
    plain = dict(to_plain(doc, file))
    name = plain.pop("name", None)
    if not isinstance(name, str) or not _NAME.match(name) or name == END:
        hint = "start with a letter; use letters, digits, '-' or '_'"
        issues.add(("name",), f"agent name {name!r} is not allowed", hint)
        raise issues.error()
    try:
        agent = AgentDoc.model_validate(plain)
    except ValidationError as exc:
        place, own = f"agents.{name}", f"agent '{name}'"  # the file holds one agent, not a team's agents:
        for loc, message, hint in _shape_issues(exc, ("agents", name)):
            issues.add(loc, message.replace(place, own), hint.replace(place, own))
        raise issues.error() from None
    _check_agent(name, agent, catalog or Catalog(), issues)
    if issues.items:
        raise issues.error()
    return name, agent


# --- shape errors ------------------------------------------------------------------------------------


def _shape(plain: Any, issues: _Issues) -> TeamDoc | None:
    """The team; after shape errors (added to ``issues``), the repaired team whose unmuted parts the
    meaning checks may trust, or None when nothing can be trusted."""
    try:
        return TeamDoc.model_validate(plain)
    except ValidationError as exc:
        for loc, message, hint in _shape_issues(exc):
            issues.add(loc, message, hint)
        repaired = repair(plain, exc, TeamDoc, _TEAM_REPAIRS, _suspect)
        if repaired is None:
            return None
        team, issues.muted = repaired
        return team


_ANY_OUTPUT = {"type": "object"}  # a valid schema whose outputs a condition may read any field of
# What the meaning checks may assume in place of a broken (or misspelt) field. No rule for 'agents':
# without them nothing can be checked. A broken edge mutes the whole graph (an edge cannot be left out
# without making agents look unreachable), but not the agents' own checks.
_TEAM_REPAIRS = (
    Rule(("name",), "team", mute=True),
    *(
        Rule((key,), DROP)
        for key in ("description", "example", "limits", "output", "preamble", "approval", "needs_project", "internal")
    ),
    Rule(("agents", ANY), {"system": "-", "output_schema": _ANY_OUTPUT}, mute=True),
    Rule(("agents", ANY, "system"), "-"),
    Rule(("agents", ANY, "model"), DROP, mute=True),
    Rule(("agents", ANY, "output_schema"), _ANY_OUTPUT),
    *(
        Rule(("agents", ANY, key), DROP)
        for key in (
            "role",
            "tools",
            "limits",
            "plan_first",
            "files",
            "input",
            "examples",
            "tools_per_step",
            "temperature",
            "arguments",
            "on_denied",
            "memory",
        )
    ),
    # A broken tool or template keeps the agent's kind (dropped, it would read as a model agent).
    Rule(("agents", ANY, "tool"), "-", mute=True),
    Rule(("agents", ANY, "template"), "-", mute=True),
    Rule(("graph",), {"start": "", "edges": []}, mute=True),
    Rule(("graph", "edges", ANY, "when"), DROP),
    Rule(("graph", "edges", ANY, "max_loops"), 1),  # bounded, as the author meant: no false "cycle"
)


def _suspect(loc: Loc) -> Loc | None:
    """The field an unknown key may be a misspelling of (``edge`` for ``edges``), if any."""
    close = _resembles(loc)
    return (*loc[:-1], close) if close else None


_EXPECTED = {  # pydantic error type -> (what was expected, how to write it)
    "string_type": ("text", "put the value in quotes"),
    "int_type": ("a whole number", "write a number like 3, without quotes"),
    "float_type": ("a number", "write a number like 2.5, without quotes"),
    "bool_type": ("true or false", "write true or false, without quotes"),
    "list_type": ("a list", "write a list like [a, b], or one '- item' per line"),
    "dict_type": ("a mapping", "write 'key: value' lines indented under it"),
    "model_type": ("a mapping", "write 'key: value' lines indented under it"),
}
# Names people often reach for, mapped to ours; used when difflib finds nothing close.
_SYNONYMS = {
    "prompt": "system",
    "system_prompt": "system",
    "instructions": "system",
    "schema": "output_schema",
    "output": "output_schema",
    "condition": "when",
    "if": "when",
    "source": "from",
    "target": "to",
    "loops": "max_loops",
    "entry": "start",
    "nodes": "agents",
    "timeout": "timeout_s",
}
_EITHER = ("from", "to")  # fields typed "agent name or list of agent names"


def _shape_issues(exc: ValidationError, prefix: Loc = ()) -> list[tuple[Loc, str, str]]:
    """Where, what and the fix of each shape error; ``prefix`` puts a part's errors where they are in a
    team (a library agent's fields are ``agents.NAME.*``), so messages and hints name its own fields."""
    out: list[tuple[Loc, str, str]] = []
    unions: dict[Loc, list[Loc]] = {}  # from/to field -> locs of its errors below the union branch
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        branch = next((i for i in range(1, len(loc)) if loc[i - 1] in _EITHER and loc[i] in {"str", "list[str]"}), None)
        if branch is not None:
            unions.setdefault(loc[:branch], []).append(loc[:branch] + loc[branch + 1 :])
            continue
        out.append((loc, _shape_message(err, loc), _shape_hint(err, loc)))
    for loc, branches in unions.items():
        items = [b for b in branches if len(b) > len(loc)]  # the user wrote a list: report its bad items
        for item in items:
            out.append((item, f"{_where(item)}: expected an agent name (text)", "put the value in quotes"))
        if not items:
            out.append(
                (
                    loc,
                    f"{_where(loc)}: expected an agent name or a list of agent names",
                    f"write {loc[-1]}: writer, or {loc[-1]}: [writer, critic]",
                )
            )
    return out


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(loc: Loc) -> str:
    return ".".join(str(k) for k in loc) or "team"


def _shape_message(err: Mapping[str, Any], loc: Loc) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown field '{loc[-1]}' in {_where(loc[:-1])}"
    if err["type"] == "missing":
        return f"missing required field '{loc[-1]}' in {_where(loc[:-1])}"
    if loc == ("agents",) and err["type"] == "too_short":
        return "the team has no agents"
    if err["type"] in _EXPECTED:
        value = err["input"]
        got = "nothing" if value is None else f"{type(value).__name__} {_short(repr(value))}"
        return f"{_where(loc)}: expected {_EXPECTED[err['type']][0]}, got {got}"
    return f"{_where(loc)}: {validation_message(err)}"


def _shape_hint(err: Mapping[str, Any], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden" and loc:
        close = _resembles(loc)
        if close:
            return f"did you mean '{close}'?"
        fields = _fields_for(loc[:-1])
        return "allowed fields: " + ", ".join(sorted(fields)) if fields else "remove it"
    if kind == "missing":
        return f"add '{loc[-1]}: ...' under {_where(loc[:-1])}" if len(loc) > 1 else f"add '{loc[-1]}: ...'"
    if loc == ("agents",) and kind == "too_short":
        return "declare at least one agent under 'agents:'"
    if kind in _EXPECTED:
        return _EXPECTED[kind][1]
    return f"change '{loc[-1]}'" if loc else ""


def _resembles(loc: Loc) -> str | None:
    """The allowed field closest to the unknown key at ``loc`` (by spelling, then by synonym)."""
    fields = _fields_for(loc[:-1])
    wrong = str(loc[-1])
    close = difflib.get_close_matches(wrong, fields, n=1) or [f for f in (_SYNONYMS.get(wrong),) if f in fields]
    return close[0] if close else None


def _fields_for(loc: Loc) -> list[str]:
    """Field names allowed at ``loc`` (a path of keys and indexes from the team root)."""
    model: type[BaseModel] = TeamDoc
    i = 0
    while i < len(loc):
        key = loc[i]
        if (model, key) in ((TeamDoc, "agents"), (GraphDoc, "edges")):
            model = AgentDoc if key == "agents" else EdgeDoc
            i += 2  # skip the agent's name or the edge's index
            continue
        info = model.model_fields.get(key) if isinstance(key, str) else None
        annotation = info.annotation if info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
        i += 1
    return [f.alias or n for n, f in model.model_fields.items()]


# --- meaning checks ----------------------------------------------------------------------------------


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _suggest(name: str, choices: Mapping[str, Any], *extra: str) -> str:
    close = difflib.get_close_matches(name, [*choices, *extra], n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known: " + ", ".join([*choices, *(f"'{e}'" for e in extra)])


def _check_name(plain: Any, issues: _Issues) -> None:
    """The team's name, when it is text (any other value is a shape error)."""
    name = plain.get("name") if isinstance(plain, Mapping) else None
    if isinstance(name, str) and not _NAME.match(name):
        issues.add(
            ("name",),
            f"team name '{name}' is not a valid name",
            "start with a letter; use letters, digits, '-' or '_' (at most 64)",
        )


def _check_team(team: TeamDoc, catalog: Catalog, issues: _Issues) -> None:
    for name, agent in team.agents.items():
        _check_agent(name, agent, catalog, issues)
    _check_templates(team, issues)
    if team.output is not None and team.output not in team.agents:
        issues.add(
            ("output",),
            f"output agent '{team.output}' is not an agent of this team",
            _suggest(team.output, team.agents),
        )
    if team.failed_when is not None:
        _check_failed_when(team, team.failed_when, issues)
    if not issues.trusts(("graph",)):
        return  # its checks would report what a shape error already explains (e.g. "unreachable")
    if team.graph.start not in team.agents:
        issues.add(
            ("graph", "start"),
            f"start node '{team.graph.start}' is not an agent of this team",
            _suggest(team.graph.start, team.agents),
        )
    for i, edge in enumerate(team.graph.edges):
        _check_edge(i, edge, team.agents, issues)
    _check_reachable(team, issues)
    _check_cycles(team, issues)


def _check_failed_when(team: TeamDoc, when: str, issues: _Issues) -> None:
    """``failed_when`` reads the run's answer: the ``output`` agent's fields when the team names one."""
    try:
        cond = compile_condition(when)
    except ConditionSyntaxError as exc:
        issues.add(
            ("failed_when",),
            f"failed_when: {exc}",
            "write a comparison of the answer's fields, e.g. status == 'failed'",
        )
        return
    fields = _output_fields(team.agents.get(team.output)) if team.output is not None else None
    unknown = sorted(n for n in cond.names if fields is not None and n not in fields)
    if unknown:
        issues.add(
            ("failed_when",),
            f"failed_when reads {', '.join(unknown)}, which the answer (agent '{team.output}') does not have",
            f"'{team.output}' outputs: {', '.join(sorted(fields or ()))}",
        )


def _check_agent(name: str, agent: AgentDoc, catalog: Catalog, issues: _Issues) -> None:
    loc: Loc = ("agents", name)
    if not _NAME.match(name) or name == END:
        issues.add(
            loc,
            f"agent name '{name}' is not allowed",
            "start with a letter; use letters, digits, '-' or '_'; 'end' is reserved",
        )
    _check_kind(name, agent, issues)
    if agent.kind == "model":
        _check_model(name, agent, catalog, issues)
    for i, tool in enumerate(agent.tools):
        _check_tool(name, tool, (*loc, "tools", i), catalog, issues)
    if agent.tool is not None:
        _check_tool(name, agent.tool, (*loc, "tool"), catalog, issues)
        _check_arguments(name, agent.tool, agent.arguments, loc, catalog, issues)
    if agent.output_schema is not None:
        _check_schema(agent.output_schema, (*loc, "output_schema"), name, issues)
    for i, example in enumerate(agent.examples):
        _check_example(name, agent, i, example, issues)


# Fields that only one kind of agent reads, and the fields each kind does not read.
_ONLY_MODEL = (
    "system",
    "model",
    "temperature",
    "tools",
    "plan_first",
    "input",
    "examples",
    "tools_per_step",
    "memory",
)
_KIND_FIELDS = {"tool": ("tool", "arguments", "on_denied"), "template": ("template",)}


def _check_kind(name: str, agent: AgentDoc, issues: _Issues) -> None:
    """A field of another kind of agent is a mistake (it would be ignored): say which kind reads it."""
    loc: Loc = ("agents", name)
    written = agent.model_fields_set
    if not (issues.trusts((*loc, "tool")) and issues.trusts((*loc, "template"))):
        return  # a broken 'tool' or 'template' leaves the agent's kind unknown
    if agent.tool is not None and agent.template is not None:
        issues.add(
            (*loc, "template"),
            f"agent '{name}' has both 'tool' and 'template'",
            "a tool agent calls one tool, a template agent renders text: split it into two agents",
        )
        return
    if agent.kind == "model":
        for kind, fields in _KIND_FIELDS.items():
            for key in sorted(set(fields) & written):
                issues.add(
                    (*loc, key),
                    f"agent '{name}' has '{key}', which only a {kind} agent reads",
                    f"add '{fields[0]}:' to make it a {kind} agent, or remove '{key}'",
                )
        return
    stray = [key for key in _ONLY_MODEL if key in written]
    stray += [key for kind, fields in _KIND_FIELDS.items() if kind != agent.kind for key in fields if key in written]
    if "limits" in written and set(agent.limits.model_fields_set) - {"timeout_s"}:
        stray.append("limits")
    for key in stray:
        issues.add(
            (*loc, key),
            f"agent '{name}' is a {agent.kind} agent and uses no model: '{key}' does not apply",
            "remove it" + (" (only limits.timeout_s applies)" if key == "limits" else ""),
        )


def _check_model(name: str, agent: AgentDoc, catalog: Catalog, issues: _Issues) -> None:
    ref = model_ref(agent.model)
    if catalog.models is None or ref in catalog.models:
        return
    loc: Loc = ("agents", name, "model")
    known = sorted(catalog.models)
    if isinstance(agent.model, TagRefDoc):
        tags = [m[len("tag:") :] for m in known if m.startswith("tag:")]
        hint = "tags in use: " + (", ".join(tags) or "none") + "; add `tags: [...]` to a model"
        issues.add(loc, f"agent '{name}' asks for tag '{agent.model.tag}', which no model has", hint)
    else:
        models = dict.fromkeys(m for m in known if not m.startswith("tag:"))
        issues.add(loc, f"agent '{name}' uses unknown model '{agent.model}'", _suggest(ref, models))


def _check_tool(name: str, tool: str, loc: Loc, catalog: Catalog, issues: _Issues) -> None:
    canonical = catalog.normalize_tool(tool) if catalog.normalize_tool else tool
    if catalog.tools is not None and canonical not in catalog.tools:
        close = difflib.get_close_matches(tool, sorted(catalog.tools), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "see `edgecrew tools list`"
        verb = "calls" if loc[-1] == "tool" else "allows"
        issues.add(loc, f"agent '{name}' {verb} unknown tool '{tool}'", hint)


def _check_arguments(
    name: str, tool: str, arguments: Mapping[str, Any], loc: Loc, catalog: Catalog, issues: _Issues
) -> None:
    """A tool agent's arguments by name against the tool's schema (their values may be templates, so
    only the names): one the tool does not take, and the required ones left out."""
    canonical = catalog.normalize_tool(tool) if catalog.normalize_tool else tool
    if catalog.tool_schema is None or catalog.tools is None or canonical not in catalog.tools:
        return  # an unknown tool is reported as such
    schema = catalog.tool_schema(canonical)
    takes = sorted(schema.get("properties") or {})
    if schema.get("additionalProperties") is False:
        for key in arguments:
            if key not in takes:
                close = difflib.get_close_matches(key, takes, n=1)
                issues.add(
                    (*loc, "arguments", key),
                    f"agent '{name}' gives '{canonical}' an argument it does not take: '{key}'",
                    f"did you mean '{close[0]}'?" if close else f"it takes: {', '.join(takes) or 'no arguments'}",
                )
    missing = [key for key in schema.get("required") or () if key not in arguments]
    if missing:
        issues.add(
            (*loc, "tool"),
            f"agent '{name}' calls '{canonical}' without its required argument(s): {', '.join(missing)}",
            "add them under 'arguments:' (a string may be a template, e.g. '{{ task }}')",
        )


def _check_example(name: str, agent: AgentDoc, i: int, example: ExampleDoc, issues: _Issues) -> None:
    loc: Loc = ("agents", name, "examples", i, "output")
    if agent.output_schema is None:
        if not isinstance(example.output, str):
            issues.add(
                loc,
                f"agent '{name}' example {i + 1}: the output is an object, but the agent has no output_schema",
                "write the answer as text, or give the agent an output_schema",
            )
        return
    if not isinstance(example.output, dict):
        issues.add(
            loc,
            f"agent '{name}' example {i + 1}: the output must be an object matching the agent's output_schema",
            "write it as a mapping, e.g. output: {verdict: approve, notes: ...}",
        )
        return
    import jsonschema  # here, not at the top: only a team with output schemas needs it

    try:
        validator = jsonschema.Draft202012Validator(agent.output_schema)
        errors = sorted(validator.iter_errors(example.output), key=str)
    except jsonschema.SchemaError:
        return  # the schema's own problem is reported at output_schema
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        issues.add(
            (*loc, *errors[0].absolute_path),
            f"agent '{name}' example {i + 1} does not match its output_schema: {errors[0].message}"
            + (f" (at {where})" if where else ""),
            "fix the example so that it is an answer the agent may give",
        )


def _check_templates(team: TeamDoc, issues: _Issues) -> None:
    """Tool agents' arguments and template agents' templates: they parse, and read only ``task`` and
    the outputs of this team's agents (and fields those agents output: an agent with a failure edge may
    also have output its failure, ``outcome`` and ``error``)."""
    failing = {s for edge in team.graph.edges if edge.on_failure for s in _as_list(edge.source)}
    for name, agent in team.agents.items():
        sources: list[tuple[Loc, Any]] = [
            (("agents", name, key), text)
            for key, text in (("template", agent.template), ("input", agent.input))
            if text
        ]
        sources += [(("agents", name, "arguments", key), value) for key, value in agent.arguments.items()]
        for loc, value in sources:
            try:
                names, refs = value_references(value)
            except TemplateProblem as exc:
                issues.add(loc, f"agent '{name}': {exc}", "see https://jinja.palletsprojects.com/templates/")
                continue
            for unknown in sorted(names - NAMES):
                issues.add(loc, f"agent '{name}' reads '{unknown}', which a template cannot see", _TEMPLATE_HINT)
            for ref in refs:
                if ref.field is None or ref.agent in team.agents:  # an unknown agent is reported once
                    _check_reference(name, loc, ref, team.agents, issues, failing)
            if name == team.graph.start:  # its first visit comes before every other agent's
                for read in sorted(unguarded_outputs(value) & set(team.agents)):
                    issues.add(
                        loc,
                        f"agent '{name}' starts the run, so outputs.{read} is not there on its first visit",
                        f"guard it: {{% if outputs.{read} is defined %}}...{{% endif %}}",
                    )


_TEMPLATE_HINT = "a template reads task and outputs.<agent>, e.g. {{ outputs.planner.steps }}"


def _check_reference(
    name: str, loc: Loc, ref: Reference, agents: Mapping[str, AgentDoc], issues: _Issues, failing: set[str]
) -> None:
    if ref.agent not in agents:
        issues.add(
            loc,
            f"agent '{name}' reads outputs.{ref.agent}, but there is no agent '{ref.agent}'",
            _suggest(ref.agent, agents),
        )
        return
    fields = _output_fields(agents[ref.agent])
    if fields is not None and ref.agent in failing:
        fields = fields | FAILURE_FIELDS
    if ref.field is not None and fields is not None and ref.field not in fields:
        have = ", ".join(sorted(fields))
        issues.add(
            loc,
            f"agent '{name}' reads outputs.{ref.agent}.{ref.field}, which agent '{ref.agent}' does not output",
            f"'{ref.agent}' outputs: {have}",
        )


def model_ref(model: str | TagRefDoc) -> str:
    """The domain form of an agent's model: the alias, or ``tag:<tag>``."""
    return f"tag:{model.tag}" if isinstance(model, TagRefDoc) else model


def _check_schema(schema: Mapping[str, Any], loc: Loc, agent: str, issues: _Issues) -> None:
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        issues.add(
            (*loc, *exc.path),
            f"agent '{agent}' output_schema is not a valid JSON Schema: {exc.message}"
            + (f" (at {path})" if path else ""),
            "see https://json-schema.org/understanding-json-schema",
        )
        return
    if schema.get("type") != "object":
        issues.add(
            loc,
            f"agent '{agent}' output_schema must describe an object (got type: {schema.get('type')})",
            "set 'type: object' and list the fields under 'properties'",
        )


def _check_edge(i: int, edge: EdgeDoc, agents: Mapping[str, AgentDoc], issues: _Issues) -> None:
    loc: Loc = ("graph", "edges", i)
    sources, targets = _as_list(edge.source), _as_list(edge.to)
    for s in sources:
        if s == END:
            issues.add(
                (*loc, "from"),
                f"edge {i + 1} leaves '{END}', the terminal node",
                f"nothing runs after '{END}': start the edge from an agent",
            )
        elif s not in agents:
            issues.add((*loc, "from"), f"edge {i + 1} comes from unknown agent '{s}'", _suggest(s, agents))
    for t in targets:
        if t != END and t not in agents:
            issues.add((*loc, "to"), f"edge {i + 1} goes to unknown agent '{t}'", _suggest(t, agents, END))
    if not sources or not targets:
        issues.add(loc, f"edge {i + 1} needs at least one 'from' and one 'to'", "name an agent in both")
    if len(sources) > 1 and len(targets) > 1:
        issues.add(
            loc,
            f"edge {i + 1} is both a join and a fan-out",
            "split it: a join edge into one agent, then a fan-out edge from that agent",
        )
    if edge.on_failure and len(sources) > 1:
        issues.add(
            (*loc, "from"),
            f"edge {i + 1} is a failure edge from several agents",
            "a failure edge leaves the one agent whose failure it handles: give each agent its own",
        )
    if edge.on_failure and END in targets:
        issues.add(
            (*loc, "to"),
            f"edge {i + 1} is a failure edge to '{END}'",
            "lead it to an agent that handles the failure; without a failure edge the run fails there anyway",
        )
    if edge.when is None:
        return
    try:
        cond = compile_condition(edge.when)
    except ConditionSyntaxError as exc:
        issues.add(
            (*loc, "when"),
            f"edge {i + 1}: {exc}",
            "write a comparison of output fields, e.g. verdict == 'revise' or len(steps) > 2",
        )
        return
    for s in sources:
        fields = FAILURE_FIELDS if edge.on_failure else _output_fields(agents.get(s))
        unknown = sorted(n for n in cond.names if fields is not None and n not in fields)
        if not unknown or fields is None:
            continue
        have = ", ".join(sorted(fields))
        hint = (
            f"a failure edge's condition reads the failure: {have}"
            if edge.on_failure
            else f"agent '{s}' has no output_schema, so its output is only {{text}}; add an output_schema"
            if agents[s].output_schema is None
            else f"'{s}' outputs: {have}; fix the name or add the field"
        )
        issues.add(
            (*loc, "when"),
            f"edge {i + 1}: condition {edge.when!r} reads {', '.join(unknown)}, which agent '{s}' does not output",
            hint,
        )


FAILURE_FIELDS = frozenset({"outcome", "error"})  # what a failure edge's `when` reads (see engine.graph)


def _output_fields(agent: AgentDoc | None) -> set[str] | None:
    """Fields a condition may read from this agent's output; None means 'unknown, allow any'."""
    if agent is None:
        return None
    if agent.output_schema is None:
        # What the agent loop returns for free-text agents; a tool's output is whatever it returns.
        return None if agent.kind == "tool" else {"text"}
    props = agent.output_schema.get("properties")
    return set(props) if isinstance(props, Mapping) else None


def _pairs(team: TeamDoc) -> list[tuple[str, str, int, bool]]:
    """(source, target, edge index, bounded) for every source x target pair."""
    return [
        (s, t, i, edge.max_loops is not None)
        for i, edge in enumerate(team.graph.edges)
        for s in _as_list(edge.source)
        for t in _as_list(edge.to)
    ]


def _check_reachable(team: TeamDoc, issues: _Issues) -> None:
    if team.graph.start not in team.agents:
        return
    adjacent: dict[str, set[str]] = {}
    for s, t, _, _ in _pairs(team):
        adjacent.setdefault(s, set()).add(t)
    seen, todo = {team.graph.start}, [team.graph.start]
    while todo:
        for nxt in adjacent.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for name in team.agents:
        if name not in seen:
            issues.add(
                ("agents", name),
                f"agent '{name}' is unreachable from start '{team.graph.start}'",
                f"add an edge to '{name}' or remove it",
            )


def _check_cycles(team: TeamDoc, issues: _Issues) -> None:
    """Every cycle must pass through an edge with max_loops: the unbounded edges must form no cycle."""
    adjacent: dict[str, list[tuple[str, int]]] = {}
    for s, t, i, bounded in _pairs(team):
        if not bounded and t != END:
            adjacent.setdefault(s, []).append((t, i))
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt, i in adjacent.get(node, ()):
            if state.get(nxt) == 1:  # a back edge closes a cycle
                cycle = path[path.index(nxt) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    issues.add(
                        ("graph", "edges", i),
                        f"cycle without a bound: {' -> '.join([*cycle, nxt])}",
                        "add max_loops: N to one edge of this cycle",
                    )
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in dict.fromkeys([team.graph.start, *team.agents, *adjacent]):
        if name not in state:
            visit(name)


def _to_domain(team: TeamDoc, file: str, catalog: Catalog | None) -> TeamSpec:
    """The validated document as a snapshot (tool names as registered, as the run uses them), then the
    domain's one snapshot → TeamSpec mapping."""
    normalize = catalog.normalize_tool if catalog and catalog.normalize_tool else None
    raw = team.model_dump(mode="json", by_alias=True)
    if normalize is not None:
        for agent in raw["agents"].values():
            agent["tools"] = [normalize(t) for t in agent["tools"]]
            if agent.get("tool"):
                agent["tool"] = normalize(agent["tool"])
    return team_from_snapshot(raw, source=file)
