"""The run's workspace as the platform tools see it: paths resolved inside it and checked against the
agent's file policy before anything is read or written.

Every path a model passes is relative to the workspace; one that resolves outside it (``..``, an
absolute path, a symlink pointing out) is refused with a ToolError that says how to write it instead.
Writes are checked file by file, so a policy such as ``payments-api/*`` allows exactly those files.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext
from edgecrew.tools.filepolicy import FilePolicy

__all__ = ["Workspace", "read_pyproject"]

Mode = Literal["read", "write"]


@dataclass(frozen=True)
class Workspace:
    """The workspace root, the agent's file policy and the agent's name (for error messages)."""

    root: Path
    policy: FilePolicy | None = None
    agent: str = "agent"

    @classmethod
    def of(cls, ctx: ToolContext) -> Workspace:
        return cls(Path(ctx.workspace).resolve(), ctx.files, ctx.agent)

    def path(self, relative: str, mode: Mode = "read") -> Path:
        """``relative`` resolved inside the workspace, once the policy allows ``mode`` on it (on the
        directory or what is inside it, when it is an existing directory)."""
        target = self._resolve(relative, None)
        if target.is_dir():
            self.check_dir(target, mode)
        else:
            self.check(target, mode)
        return target

    def directory(self, relative: str, mode: Mode | None = "read", *, example: str | None = None) -> Path:
        """Like :meth:`path` for a directory that may not exist yet; ``mode`` None checks only that it
        is inside the workspace (for a new project, whose files are checked one by one). ``example``
        (the call's project name) is the relative path a refusal suggests."""
        target = self._resolve(relative, example)
        if mode is not None:
            self.check_dir(target, mode)
        return target

    def _resolve(self, relative: str, example: str | None) -> Path:
        # An example only from the call itself: a fixed one ('payments-api') misleads about any other project.
        like = f", like '{example}'" if example else ""
        if not relative.strip():
            raise ToolError(f"the path is empty; give a path relative to the workspace{like}")
        target = (self.root / relative.strip()).resolve()
        if target != self.root and self.root not in target.parents:
            raise ToolError(f"path '{relative}' is outside the workspace; use a path relative to it{like}")
        return target

    def check(self, target: Path, mode: Mode) -> None:
        if self.policy is not None:
            self.policy.check(self.rel(target), mode, f"agent '{self.agent}'")

    def check_dir(self, target: Path, mode: Mode) -> None:
        """A directory passes when the policy allows it or what is inside it (``payments-api/*``)."""
        if self.policy is not None and not self.policy.allows(self.rel(target) + "/", mode):
            self.check(target, mode)

    def rel(self, target: Path) -> str:
        """``target`` relative to the workspace, with forward slashes ('.' for the root)."""
        return target.relative_to(self.root).as_posix() or "."

    def project(self, relative: str) -> Path:
        """A project directory that exists in the workspace: one with a pyproject.toml or the
        .platform/project.yaml that repo.create writes (not the workspace itself, nor a project's src/)."""
        target = self.directory(relative, "read")
        if not target.is_dir():
            hint = "repo.create makes one" if not target.exists() else "give the project's directory, not a file"
            raise ToolError(f"no project directory '{relative}' in the workspace ({hint})")
        if not _is_project(target):
            around = [p for p in target.parents if self.root in p.parents and _is_project(p)]
            found = around or sorted(p for p in self.root.iterdir() if p.is_dir() and _is_project(p))
            like = f", like '{self.rel(found[0])}'" if found else ""
            what = "the workspace itself" if target == self.root else f"'{self.rel(target)}'"
            raise ToolError(
                f"{what} is not a project: it has no pyproject.toml or {PROJECT_MARKER}; "
                f"give a project's directory{like} (repo.create makes one)"
            )
        return target

    def write_text(self, target: Path, text: str) -> str:
        """Write ``text`` to ``target`` (inside the workspace, policy checked); returns its relative path."""
        self.check(target, "write")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return self.rel(target)


PROJECT_MARKER = ".platform/project.yaml"  # project.PROJECT_FILE, which repo.create writes


def _is_project(directory: Path) -> bool:
    return (directory / "pyproject.toml").is_file() or (directory / PROJECT_MARKER).is_file()


def read_pyproject(project: Path) -> dict[str, Any]:
    """The project's pyproject.toml as a dict ({} when it has none); a ToolError names a syntax error."""
    path = project / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ToolError(f"{path.name} in '{project.name}' is not valid TOML: {exc}") from None
