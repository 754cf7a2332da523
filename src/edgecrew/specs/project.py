"""A project: ``edgecrew.yaml`` (models, plugins, inline teams), ``teams/*.yaml`` and built-in teams.

Teams are discovered cheaply (by name) and validated when used, so one broken file does not hide the
others from ``edgecrew teams list``. Project teams override built-in teams of the same name.
Problems in ``edgecrew.yaml`` are reported at once: after shape errors the models are still checked,
each broken model replaced by a placeholder that is known (for fallbacks) but not checked itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

from edgecrew.domain.specs import TeamSpec
from edgecrew.errors import NotFoundError, SpecError, SpecIssue, UserError, validation_problem
from edgecrew.models.registry import BUILTIN_MODELS, ModelDef
from edgecrew.specs.alerts import AlertDoc
from edgecrew.specs.jobs import PolicyDoc
from edgecrew.specs.loader import AgentDoc, Catalog, build_agent, build_team, declared_elsewhere
from edgecrew.specs.models import ModelDoc, build_models
from edgecrew.specs.repair import ANY, DROP, Rule, repair
from edgecrew.specs.routines import ROUTINE_NAME, RoutineDoc
from edgecrew.specs.yamlsrc import line_of, read_yaml, to_plain
from edgecrew.tools.mcp import McpServerConfig, McpServers

CONFIG_FILE = "edgecrew.yaml"


class ProjectDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    models: dict[str, ModelDoc] = {}
    plugins: list[str] = []
    teams: list[dict[str, Any]] = []
    mcp_servers: McpServers = {}
    routines: dict[Annotated[str, StringConstraints(pattern=ROUTINE_NAME)], RoutineDoc] = {}
    policies: dict[Annotated[str, StringConstraints(pattern=ROUTINE_NAME)], PolicyDoc] = {}
    alerts: dict[Annotated[str, StringConstraints(pattern=ROUTINE_NAME)], AlertDoc] = {}

    @field_validator("teams", mode="before")
    @classmethod
    def _teams_are_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict):  # routines, policies and alerts are keyed by name; teams are not
            raise ValueError(
                "teams is a list, one team per item: write `- name: my-team` then its agents and graph "
                "(or put each team in teams/NAME.yaml)"
            )
        return value


@dataclass(frozen=True)
class AgentSource:
    """A library agent: one file of the project's ``agents/`` (or a built-in one)."""

    name: str
    file: Path
    builtin: bool = False


@dataclass(frozen=True)
class TeamSource:
    name: str
    file: Path
    loc: tuple[Any, ...]  # where the team sits in its file: () for a whole file
    builtin: bool = False


@dataclass
class Project:
    """What a project directory declares."""

    dir: Path
    config_file: Path | None
    models: dict[str, ModelDef] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    mcp_servers: dict[str, McpServerConfig] = field(default_factory=dict)
    # The teams by name (``teams``) and the agent library (``agents``: agents/*.yaml, built-in): read
    # again when a file was added, removed or renamed in teams/ or agents/, or edgecrew.yaml changed
    # (``rescan``), so a running server runs a team file written after it started.
    _teams: dict[str, TeamSource] = field(default_factory=dict, repr=False)
    sources: list[TeamSource] = field(default_factory=list)  # every project team, duplicates included
    # Problems across files, reported by `edgecrew validate`: duplicate team names, routines naming no team.
    duplicates: list[SpecIssue] = field(default_factory=list)
    _agents: dict[str, AgentSource] = field(default_factory=dict, repr=False)
    routines: dict[str, RoutineDoc] = field(default_factory=dict)  # edgecrew.yaml's routines:, by name
    policies: dict[str, PolicyDoc] = field(default_factory=dict)  # policies: (when jobs may start)
    alerts: dict[str, AlertDoc] = field(default_factory=dict)  # alerts: (usage alert rules)
    # agent_docs() as last built, with the (path, mtime, size) of every file it read
    _agent_docs: tuple[tuple[Any, ...], dict[str, dict[str, Any] | SpecError]] | None = field(
        default=None, repr=False, compare=False
    )
    # Teams as last built, by file, place and catalog; each with the parsed document and agent library
    # it was built from (read_yaml's and agent_docs' cached objects: the same objects while unchanged).
    _built: dict[tuple[Any, ...], tuple[Any, Any, TeamSpec]] = field(default_factory=dict, repr=False, compare=False)
    # Team names two project files both use, with the problem of each second file (``duplicates``' own)
    _clashes: dict[str, list[SpecIssue]] = field(default_factory=dict, repr=False, compare=False)
    # Library agent names two project files both declare (the first file's is kept, but not used: which
    # was meant is not for edgecrew to guess), with the problem of each later file
    _agent_clashes: dict[str, list[SpecIssue]] = field(default_factory=dict, repr=False, compare=False)
    # What the team and agent files looked like when last read (None: not read from a directory yet)
    _scanned: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def teams(self) -> dict[str, TeamSource]:
        self.rescan()
        return self._teams

    @property
    def agents(self) -> dict[str, AgentSource]:
        self.rescan()
        return self._agents

    def rescan(self) -> None:
        """Read the teams and the agent library again when their folders or edgecrew.yaml changed since
        they were read (three ``stat`` calls when nothing did; a file's content is read again anyway
        whenever it changes). The models, tools, routines, policies and alerts of
        edgecrew.yaml stay as they were read: a server takes those at its start. A project whose files
        no longer load keeps what it had (``edgecrew validate`` says what is wrong)."""
        if self._scanned is None:
            return
        now = _files_stamp(self.dir)
        if now == self._scanned:
            return
        self._scanned = now
        try:
            fresh = load_project(self.dir)
        except (SpecError, UserError):
            return
        self._teams, self.sources, self.duplicates = fresh._teams, fresh.sources, fresh.duplicates
        self._agents, self._clashes, self._agent_clashes = fresh._agents, fresh._clashes, fresh._agent_clashes

    def add(self, source: TeamSource) -> None:
        """Register a project team; a second project team with the same name is a spec problem."""
        self.sources.append(source)
        earlier = self.teams.get(source.name)
        if earlier is not None and not earlier.builtin:
            issue = SpecIssue(
                str(source.file),
                None,
                f"team name '{source.name}' is also used by {earlier.file}",
                "give each team its own name",
            )
            self.duplicates.append(issue)
            self._clashes.setdefault(source.name, []).append(issue)
            return
        self._teams[source.name] = source

    def builtin_teams_overridden(self) -> dict[str, list[str]]:
        """Built-in teams that ``use:`` a library agent this project's ``agents/`` replaces (a project agent
        wins by name in every team, the built-in ones too): team name -> the replaced agents it uses."""
        builtin = {_team_name(read_yaml(file), file) for file in _builtin_files("agents")}
        replaced = {name for name, source in self.agents.items() if not source.builtin and name in builtin}
        found: dict[str, list[str]] = {}
        for name, source in self.teams.items():
            doc = read_yaml(source.file) if source.builtin and replaced else None
            agents = doc.get("agents") if isinstance(doc, dict) else None
            uses = {e.get("use") for e in agents.values() if isinstance(e, dict)} if isinstance(agents, dict) else set()
            if hits := sorted(replaced & uses):
                found[name] = hits
        return found

    def agent_docs(self) -> dict[str, dict[str, Any] | SpecError]:
        """The agent library's fields by name (what a team's ``use: NAME`` reads), or the SpecError of a
        file whose shape is broken (a team names it; ``edgecrew validate`` reports it in full). Built
        again only when a library file changed (every run's team load reads it)."""
        key = tuple((name, *_stamp(source.file)) for name, source in sorted(self.agents.items()))
        if self._agent_docs is not None and self._agent_docs[0] == key:
            return self._agent_docs[1]
        docs: dict[str, dict[str, Any] | SpecError] = {}
        for name, source in self.agents.items():
            if name in self._agent_clashes:
                docs[name] = SpecError(self._agent_clashes[name])
                continue
            try:
                build_agent(read_yaml(source.file), str(source.file))  # its shape; meaning: with the team
                doc = to_plain(read_yaml(source.file), str(source.file))
            except SpecError as exc:
                docs[name] = exc
                continue
            docs[name] = {k: v for k, v in doc.items() if k != "name"}
        self._agent_docs = (key, docs)
        return docs

    def agent_files(self) -> dict[str, str]:
        """The file that declares each library agent, by its name."""
        return {name: str(source.file) for name, source in self.agents.items()}

    def load_agent(self, name: str, catalog: Catalog | None = None) -> AgentDoc:
        """A library agent, validated (SpecError with file:line when it is not valid)."""
        if name not in self.agents:
            known = ", ".join(sorted(self.agents)) or "none"
            elsewhere = declared_elsewhere(name, self.agent_files())
            raise NotFoundError(
                f"no library agent '{name}'"
                + (f": {elsewhere}" if elsewhere else f" (known: {known})")
                + "; see `edgecrew agents list`"
            )
        if name in self._agent_clashes:
            raise SpecError(self._agent_clashes[name])
        source = self.agents[name]
        return build_agent(read_yaml(source.file), str(source.file), catalog)[1]

    def load_source(self, source: TeamSource, catalog: Catalog | None = None) -> TeamSpec:
        """The team at ``source``, validated against ``catalog``; built again only when its file, the
        agent library or what the catalog names changed (every run starts with this)."""
        doc = read_yaml(source.file)
        agents = catalog.agents if catalog is not None else None
        key = (str(source.file), source.loc, _catalog_key(catalog))
        hit = self._built.get(key)
        if hit is not None and hit[0] is doc and hit[1] is agents:
            return hit[2]
        team = build_team(doc, str(source.file), catalog, source.loc)
        if len(self._built) >= 64:
            self._built.pop(next(iter(self._built)))
        self._built[key] = (doc, agents, team)
        return team

    def team_source(self, name_or_path: str) -> TeamSource:
        path = Path(name_or_path)
        if name_or_path.endswith((".yaml", ".yml")) and path.exists():
            return TeamSource(_team_name(read_yaml(path), path), path.resolve(), ())
        return self.named_source(name_or_path)

    def named_source(self, name: str) -> TeamSource:
        """A team of this project (or built in) by name only: callers over the network use this, so
        that a team name can never make the server read a YAML file of its choosing."""
        if name not in self.teams:
            import difflib

            close = difflib.get_close_matches(name, sorted(self.teams), n=1)
            meant = f"did you mean '{close[0]}'? " if close else ""
            known = ", ".join(sorted(self.teams)) or "none"
            raise NotFoundError(f"no team '{name}' ({meant}known: {known}); see `edgecrew teams list`")
        if name in self._clashes:  # which of the files was meant is not for edgecrew to guess
            raise SpecError(self._clashes[name])
        return self.teams[name]

    def load_team(self, name_or_path: str, catalog: Catalog | None = None) -> TeamSpec:
        return self.load_source(self.team_source(name_or_path), catalog)

    def import_plugins(self) -> None:
        """Import plugin modules (``tools.py`` files or dotted module names) so their tools register.

        A plugin that is missing, does not parse or fails while importing is reported as a UserError
        naming the file and line, never as a traceback.
        """
        for plugin in self.plugins:
            candidate = self.dir / plugin
            try:
                if plugin.endswith(".py"):
                    if not candidate.exists():
                        raise UserError(f"{self.config_file}: plugin file '{plugin}' does not exist in {self.dir}")
                    module_name = f"edgecrew_plugin_{candidate.stem}_{abs(hash(str(candidate))) % 10**8}"
                    if module_name in sys.modules:
                        continue
                    spec = importlib.util.spec_from_file_location(module_name, candidate)
                    assert spec is not None and spec.loader is not None
                    module = importlib.util.module_from_spec(spec)
                    sys.modules[module_name] = module
                    try:
                        spec.loader.exec_module(module)
                    except BaseException:
                        del sys.modules[module_name]
                        raise
                else:
                    importlib.import_module(plugin)
            except UserError:
                raise
            except SyntaxError as exc:
                raise UserError(f"{exc.filename}:{exc.lineno}: plugin '{plugin}' does not parse: {exc.msg}") from None
            except ModuleNotFoundError as exc:
                raise UserError(
                    f"{self.config_file}: plugin module '{plugin}' cannot be imported: {exc}; "
                    "list a .py file of the project or an installed module"
                ) from None
            except Exception as exc:
                where = _failing_line(exc, candidate)
                raise UserError(
                    f"{where}: plugin '{plugin}' failed while importing: {type(exc).__name__}: {exc}"
                ) from None


def _failing_line(exc: BaseException, file: Path) -> str:
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == file]
    return f"{file}:{frames[-1].lineno}" if frames else str(file)


def builtin_team_files() -> Iterable[Path]:
    return _builtin_files("teams")


def _builtin_files(folder_name: str) -> Iterable[Path]:
    folder = resources.files("edgecrew") / folder_name
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            yield Path(str(entry))


def _library(directory: Path) -> tuple[dict[str, AgentSource], dict[str, list[SpecIssue]]]:
    """Built-in library agents, then the project's ``agents/*.yaml`` (a project agent wins by name); and
    the names two project files both declare, with the problem of each later file."""
    found: dict[str, AgentSource] = {}
    for file in _builtin_files("agents"):
        name = _team_name(read_yaml(file), file)
        found[name] = AgentSource(name, file, builtin=True)
    clashes: dict[str, list[SpecIssue]] = {}
    folder = directory / "agents"
    if folder.is_dir():
        for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            try:
                name = _team_name(read_yaml(file), file)
            except SpecError:
                name = file.stem  # reported in full when the agent is validated
            earlier = found.get(name)
            if earlier is not None and not earlier.builtin:
                said = f"agent name '{name}' is also used by {earlier.file}"
                issue = SpecIssue(str(file), None, said, "give each agent its own name")
                clashes.setdefault(name, []).append(issue)
                continue
            found[name] = AgentSource(name, file)
    return found, clashes


def _catalog_key(catalog: Catalog | None) -> tuple[Any, ...] | None:
    """What a team's validation depends on in ``catalog``, but the agent library (compared by identity)."""
    if catalog is None:
        return None
    normalize = catalog.normalize_tool
    return (catalog.tools, catalog.models, id(getattr(normalize, "__self__", normalize)))


def _team_name(doc: Any, file: Path) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("name"), str):
        return str(doc["name"])
    return file.stem


# In place of a broken section or entry of edgecrew.yaml (an unknown key in it may be a misspelling of
# any field): drop it; a broken model becomes a placeholder that build_models finds nothing wrong with,
# so it is not checked itself and the fallbacks that name it stay valid.
_CONFIG_REPAIRS = (
    Rule((ANY,), DROP),
    Rule(("models", ANY), {"backend": "scripted"}),
    Rule(("mcp_servers", ANY), DROP),
    Rule(("routines", ANY), DROP),
    Rule(("policies", ANY), DROP),
    Rule(("alerts", ANY), DROP),
)


def _read_config(config: Path, directory: Path) -> tuple[ProjectDoc, dict[str, ModelDef], list[SpecIssue]]:
    """edgecrew.yaml's sections and models (repaired where broken) and every problem in it, of shape or
    meaning; raised at once only when nothing can be repaired."""
    doc = read_yaml(config) or {}
    plain = to_plain(doc, str(config))
    issues: list[SpecIssue] = []
    try:
        parsed = ProjectDoc.model_validate(plain)
    except ValidationError as exc:
        issues = [SpecIssue(str(config), line_of(doc, tuple(e["loc"])), validation_problem(e)) for e in exc.errors()]
        repaired = repair(plain, exc, ProjectDoc, _CONFIG_REPAIRS, suspect=lambda loc: loc)
        if repaired is None:
            raise SpecError(issues) from None
        parsed = repaired[0]
    models, model_issues = build_models(parsed.models, doc, str(config), directory)
    return parsed, models, issues + model_issues


def load_project(directory: Path) -> Project:
    """Read a project directory; a missing edgecrew.yaml is fine (built-in teams and models)."""
    directory = directory.resolve()
    if not directory.is_dir():  # a typo in -p or EDGECREW_PROJECT would otherwise be an empty project
        what = "is not a directory" if directory.exists() else "does not exist"
        raise UserError(f"the project directory {directory} {what}; check -p or EDGECREW_PROJECT")
    project = Project(dir=directory, config_file=None)
    for file in builtin_team_files():
        name = file.stem
        project._teams[name] = TeamSource(name, file, (), builtin=True)

    config = directory / CONFIG_FILE
    config_issues: list[SpecIssue] = []
    if config.exists():
        project.config_file = config
        parsed, project.models, config_issues = _read_config(config, directory)
        project.plugins = tuple(parsed.plugins)
        project.mcp_servers = dict(parsed.mcp_servers)
        project.routines = dict(parsed.routines)
        project.policies = dict(parsed.policies)
        project.alerts = dict(parsed.alerts)
        for i, team in enumerate(parsed.teams):
            name = str(team.get("name") or f"team-{i + 1}")
            project.add(TeamSource(name, config, ("teams", i)))

    project._agents, project._agent_clashes = _library(directory)
    project.duplicates.extend(issue for issues in project._agent_clashes.values() for issue in issues)
    teams_dir = directory / "teams"
    if teams_dir.is_dir():
        for file in sorted([*teams_dir.glob("*.yaml"), *teams_dir.glob("*.yml")]):
            try:
                name = _team_name(read_yaml(file), file)
            except SpecError:
                name = file.stem  # reported in full when the team is validated
            project.add(TeamSource(name, file, ()))
    if project.config_file is not None and project.routines:
        raw = read_yaml(project.config_file)
        for name, routine in project.routines.items():
            if routine.team not in project.teams:
                project.duplicates.append(
                    SpecIssue(
                        str(project.config_file),
                        line_of(raw, ("routines", name, "team")),
                        f"routines.{name}.team: no team '{routine.team}'",
                        f"name one of: {', '.join(sorted(project.teams))}",
                    )
                )
    if project.config_file is not None and project.alerts:
        project.duplicates += _alerts_naming_no_model(project)
    if config_issues:  # edgecrew.yaml's every problem at once, a routine naming no team among them
        routines = [i for i in project.duplicates if i.file == str(project.config_file)]
        raise SpecError(sorted(config_issues + routines, key=lambda i: i.line or 0))
    project._scanned = _files_stamp(directory)
    return project


def _alerts_naming_no_model(project: Project) -> list[SpecIssue]:
    """A model_calls rule's ``model:`` that is no alias here: no call would ever match, and the rule
    would say "0 model call(s)" for ever."""
    assert project.config_file is not None
    known = set(BUILTIN_MODELS) | set(project.models)
    raw = read_yaml(project.config_file)
    return [
        SpecIssue(
            str(project.config_file),
            line_of(raw, ("alerts", name, "model")),
            f"alerts.{name}.model: no model alias '{rule.model}'",
            f"name one of: {', '.join(sorted(known))}",
        )
        for name, rule in project.alerts.items()
        if rule.model is not None and rule.model not in known
    ]


def _files_stamp(directory: Path) -> tuple[Any, ...]:
    """What ``Project.rescan`` compares: the stamps of teams/ and agents/ (a file added, removed or renamed
    there, as editors save by renaming, changes its folder's) and of edgecrew.yaml. Three ``stat`` calls:
    a run's start reads the teams and the library several times."""
    stamps: list[tuple[int, int]] = []
    for path in _watched(directory):
        try:
            stat = os.stat(path)
            stamps.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            stamps.append((0, 0))
    return tuple(stamps)


@lru_cache(maxsize=64)
def _watched(directory: Path) -> tuple[str, str, str]:
    return (str(directory / "teams"), str(directory / "agents"), str(directory / CONFIG_FILE))


def _stamp(path: Path) -> tuple[str, int, int]:
    """A file's identity for a cache: its path, modification time and size (zeros when it is gone)."""
    try:
        stat = path.stat()
    except OSError:
        return (str(path), 0, 0)
    return (str(path), stat.st_mtime_ns, stat.st_size)
