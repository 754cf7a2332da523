"""What the platform tools know about a project directory: its name, kind, Python version and files.

Read from the project's own files (pyproject.toml, the ``.platform/project.yaml`` that repo.create
writes, a Dockerfile), never from the conversation, so ci.write, k8s.manifests and docs.generate agree
on one project however a model names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgecrew.platform.workspace import PROJECT_MARKER, read_pyproject

__all__ = ["DEFAULT_PYTHON", "POLICY_FILE", "PROJECT_FILE", "ProjectFacts", "project_facts"]

DEFAULT_PYTHON = "3.12"
POLICY_FILE = ".platform/branch-protection.yaml"  # written by repo.create
PROJECT_FILE = PROJECT_MARKER  # the name, kind and template repo.create used


@dataclass(frozen=True)
class ProjectFacts:
    """A project's name, kind (None when not made by repo.create), Python version and image file."""

    dir: Path
    name: str
    kind: str | None
    python: str
    has_dockerfile: bool
    description: str


def project_facts(project: Path) -> ProjectFacts:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    meta = read_pyproject(project).get("project", {})
    recorded: dict[str, object] = {}
    marker = project / PROJECT_FILE
    if marker.is_file():
        try:
            loaded = YAML(typ="safe", pure=True).load(marker.read_text(encoding="utf-8"))
        except YAMLError:
            loaded = None
        recorded = loaded if isinstance(loaded, dict) else {}
    name = str(meta.get("name") or recorded.get("name") or project.name)
    found = re.search(r"3\.\d+", str(meta.get("requires-python", "")))
    return ProjectFacts(
        dir=project,
        name=name,
        kind=str(recorded["kind"]) if recorded.get("kind") else None,
        python=found.group(0) if found else DEFAULT_PYTHON,
        has_dockerfile=(project / "Dockerfile").is_file(),
        description=str(meta.get("description", "")),
    )
