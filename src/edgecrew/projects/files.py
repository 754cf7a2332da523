"""A project's files folder: ``<home>/projects/<id>/files``, kept across runs and restarts, and how a
run sees it: its workspace gets ``project/``, a link to that folder, while everything else in the
workspace stays the run's own scratch space.

The one design decision: the files stay in one folder per project under the data dir (never copied
in and out of runs), so two runs of a project see each other's writes at once and a crash loses
nothing; the link is only the way in. File tools reach it through the run's *mounts*
(``("project", folder)``), resolve every path under the folder itself and check the agent's file
policy against the workspace-relative path (``project/okr.json``), so per-agent globs still apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgecrew.errors import ConflictError, NotFoundError, UserError

__all__ = ["MOUNT", "ProjectFile", "file_in", "files_in", "link_project_files", "project_dir", "project_files"]

MOUNT = "project"  # the name of the project's folder inside a run's workspace
_ID = re.compile(r"p[0-9a-f]{11}")


def project_dir(home: Path, project_id: str) -> Path:
    """The project's folder under the data dir (its files, and room for more later)."""
    if not _ID.fullmatch(project_id):  # the id names a folder: nothing else may reach the path
        raise UserError(f"project id {project_id[:80]!r} is not a project id (p + 11 hex digits)")
    return Path(home) / "projects" / project_id


def project_files(home: Path, project_id: str) -> Path:
    """The project's persistent files folder (made when missing)."""
    folder = project_dir(home, project_id) / "files"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def link_project_files(workspace: Path, home: Path, project_id: str) -> Path:
    """Give a run's workspace its ``project/`` link to the project's files; returns the link.

    Idempotent (a resumed run links again); a ``project`` that is anything else is refused, never replaced.
    """
    folder = project_files(home, project_id)
    workspace.mkdir(parents=True, exist_ok=True)
    link = workspace / MOUNT
    if link.is_symlink():
        if link.resolve() == folder.resolve():
            return link
        raise ConflictError(f"{link} already links to {link.resolve()}, not to project {project_id}'s files")
    if link.exists():
        raise ConflictError(f"{link} already exists in the run's workspace; a project's run needs that name free")
    link.symlink_to(folder.resolve(), target_is_directory=True)
    return link


@dataclass(frozen=True)
class ProjectFile:
    """A file in a project's folder: its path relative to the folder (``/`` between folders), size, mtime."""

    path: str
    size: int
    modified: float


def _described(folder: Path, target: Path) -> ProjectFile:
    info = target.stat()
    return ProjectFile(target.relative_to(folder).as_posix(), info.st_size, info.st_mtime)


def files_in(folder: Path, limit: int) -> list[ProjectFile]:
    """The files under ``folder`` (sorted by path, at most ``limit``); links leading out of it are left out."""
    root = folder.resolve()
    found = []
    for path in sorted(root.rglob("*")):
        target = path.resolve()
        if path.is_file() and (root in target.parents):
            found.append(_described(root, path))
            if len(found) >= limit:
                break
    return found


def file_in(folder: Path, relative: str, owner: str) -> tuple[ProjectFile, Path]:
    """The file at ``relative`` under ``folder`` (``owner`` names the folder in errors): a path that leaves
    the folder (``..``, an absolute path, a link out of it), a folder or a missing file is refused."""
    if not relative.strip():
        raise UserError(f"give a file's path in {owner}, like 'notes.md'")
    if "\0" in relative:  # the OS refuses it (ValueError): a bad path, not a server error
        shown = relative.replace("\0", "\\x00")
        raise UserError(f"path '{shown}' has a NUL character; no file in {owner} has one")
    root = folder.resolve()
    target = (root / relative).resolve()
    if root not in target.parents:
        raise UserError(f"path '{relative}' is outside {owner}; give a path relative to it, like 'notes.md'")
    if target.is_dir():
        raise UserError(f"'{relative}' is a folder in {owner}, not a file; its files are listed with the project")
    if not target.is_file():
        raise NotFoundError(f"no file '{relative}' in {owner}")
    return _described(root, target), target
