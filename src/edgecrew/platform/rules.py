"""The platform's rules (project names, kinds, branch protection, the Kubernetes version), from YAML.

The defaults ship as ``rules.yaml`` next to this module. A deployment may name its own file
(:attr:`PlatformConfig.rules`) and a project may put ``platform.yaml`` at the root of the workspace;
each top-level section an override has replaces the default's section whole (the workspace's file is
applied last), so what a rule means never depends on merging lists. A broken rules file is a ToolError
naming the file, the key and what to write. The rules guide agents to names and settings the platform
accepts; they are no security boundary (an agent that may write the workspace root may write platform.yaml).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgecrew.errors import ToolError, validation_problem
from edgecrew.platform.config import DEFAULT_RULES, WORKSPACE_RULES
from edgecrew.platform.templates import available

__all__ = ["BranchProtection", "Rules", "check_name", "load_rules", "package_name"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NameRules(_Section):
    pattern: str
    min_length: int = Field(ge=1)
    max_length: int = Field(ge=1, le=63)  # a Kubernetes namespace and Service name is a DNS label
    reserved: list[str] = Field(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        return value


class KindRule(_Section):
    template: str
    description: str = ""


class BranchProtection(_Section):
    branch: str = "main"
    required_reviews: int = Field(default=1, ge=0, le=6)
    dismiss_stale_reviews: bool = True
    require_code_owner_reviews: bool = False
    required_checks: list[str] = Field(default_factory=lambda: ["lint", "test", "build"])
    require_linear_history: bool = True
    allow_force_push: bool = False
    allow_deletion: bool = False


class KubernetesRules(_Section):
    version: str

    @field_validator("version", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            raise ValueError(f'write the version in quotes, like "1.31" (YAML read {value!r} as a number)')
        return value


class Rules(_Section):
    """The platform's rules, and the files they were read from."""

    name: NameRules
    kinds: dict[str, KindRule] = Field(min_length=1)
    branch_protection: BranchProtection
    kubernetes: KubernetesRules
    sources: list[str] = Field(default_factory=list)


def _read(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolError(f"cannot read the platform rules {path}: {exc.strerror or exc}") from None
    except YAMLError as exc:
        raise ToolError(f"the platform rules {path} are not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ToolError(f"the platform rules {path} must be a mapping of sections (name, kinds, ...)")
    return data


def load_rules(workspace: Path | None = None, configured: Path | None = None) -> Rules:
    """The default rules, with the sections of ``configured`` and then of the workspace's platform.yaml."""
    data = _read(DEFAULT_RULES)
    sources = [str(DEFAULT_RULES)]
    overrides = [configured] if configured is not None else []
    if workspace is not None and (workspace / WORKSPACE_RULES).is_file():
        overrides.append(workspace / WORKSPACE_RULES)
    for path in overrides:
        override = _read(path)
        unknown = sorted(set(override) - set(Rules.model_fields) - {"sources"})
        if unknown:
            known = ", ".join(k for k in Rules.model_fields if k != "sources")
            raise ToolError(f"the platform rules {path} have unknown sections {', '.join(unknown)}; known: {known}")
        data.update(override)
        sources.append(str(path))
    where = ", ".join(sources[1:]) or sources[0]
    try:
        rules = Rules.model_validate({**data, "sources": sources})
    except ValidationError as exc:
        problems = "; ".join(validation_problem(e) for e in exc.errors())
        raise ToolError(f"the platform rules ({where}) are invalid: {problems}") from None
    # A kind names a template: one that does not exist would pass validate_name and fail repo.create,
    # whose "unknown template" would not say that the rules named it.
    templates = available()
    for kind, rule in rules.kinds.items():
        if rule.template not in templates:
            raise ToolError(
                f"the platform rules ({where}) are invalid: kinds.{kind}.template: no template "
                f"'{rule.template}'; the templates: {', '.join(templates)}"
            )
    return rules


def package_name(name: str) -> str:
    """The Python package of a project (``payments-api`` -> ``payments_api``)."""
    return name.replace("-", "_")


def _suggest(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", name).lower()).strip("-")
    return re.sub(r"^[^a-z]+", "", slug)


def check_name(rules: Rules, name: str, kind: str | None = None) -> list[dict[str, str]]:
    """Every rule ``name`` (and ``kind``, when given) breaks, each as {rule, message}; [] when valid."""
    problems: list[dict[str, str]] = []
    limits = rules.name
    if not limits.min_length <= len(name) <= limits.max_length:
        problems.append(
            {
                "rule": "name.length",
                "message": f"'{name}' has {len(name)} characters; a name has {limits.min_length} to "
                f"{limits.max_length}",
            }
        )
    if not re.fullmatch(limits.pattern, name):
        suggestion = _suggest(name)
        hint = f"; try '{suggestion}'" if suggestion and re.fullmatch(limits.pattern, suggestion) else ""
        problems.append(
            {
                "rule": "name.pattern",
                "message": f"'{name}' is not lowercase-kebab (letters, digits and single hyphens, starting "
                f"with a letter: {limits.pattern}){hint}",
            }
        )
    if name in limits.reserved:
        problems.append(
            {
                "rule": "name.reserved",
                "message": f"'{name}' is reserved by the platform; prefix it with your team or domain, "
                f"like 'billing-{name}'",
            }
        )
    if kind is not None and kind not in rules.kinds:
        problems.append(
            {"rule": "kinds", "message": f"unknown kind '{kind}'; the platform's kinds: {', '.join(rules.kinds)}"}
        )
    return problems
