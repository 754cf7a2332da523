"""The task workspace on disk: code versions and log files under ``<home>/tasks/<task_id>/``.

Every name that reaches the disk is one path component made of safe characters: uploaded file
names are sanitized (their folders dropped), and a log file asked for by name must already be a
safe name *and* resolve inside the task's ``logs`` folder, so no request can read or write
outside the workspace. Writes go to a temporary file in the same folder and are renamed into
place, so a reader sees either the whole file or none of it.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from edgecrew.errors import NotFoundError, UserError

PREVIEW_LINES = 50
PREVIEW_MAX_CHARS = 16_000
NAME_MAX = 200
_SAFE_NAME = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9._-]{{0,{NAME_MAX - 1}}}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# Text types a browser would run or render are served as plain text instead.
_ACTIVE_TYPES = frozenset({"text/html", "text/xml", "application/xml", "image/svg+xml", "application/xhtml+xml"})
LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".ipynb": "jupyter",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".jsx": "javascript",
    ".sh": "shell",
    ".bash": "shell",
    ".rs": "rust",
    ".go": "go",
    ".java": "java",
    ".kt": "kotlin",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".r": "r",
    ".jl": "julia",
    ".sql": "sql",
    ".md": "markdown",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".txt": "text",
}

# os.replace, named here so a test can make the final rename fail like a full disk would.
_replace = os.replace


@dataclass(frozen=True)
class LogFile:
    filename: str
    size: int
    modified: float
    preview: str
    truncated: bool  # the preview stops before the end of the file


def sanitize_filename(name: str) -> str:
    """One safe path component from an uploaded name (``../../x.py`` → ``x.py``): letters without their
    accents (``über.py`` → ``uber.py``), other characters as ``_``, a leading ``_`` kept (``__init__.py``)
    but not a leading ``.`` or ``-``, the extension kept when nothing of the name is (``日本.py`` →
    ``file.py``); UserError when nothing usable is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, ext = os.path.splitext("_" + base)  # a name of leading dots keeps its extension: "....py" is .py
    stem = _UNSAFE_CHARS.sub("_", _ascii(stem[1:])).lstrip(".-")
    ext = _UNSAFE_CHARS.sub("", _ascii(ext))
    if not stem.strip("_"):
        stem = "file" if len(ext) > 1 else ""
    cleaned = (stem + ext if len(ext) > 1 else stem)[:200]
    if not cleaned or not _SAFE_NAME.match(cleaned):
        raise UserError(f"filename {name[:80]!r} has no usable characters; use letters, digits, '.', '_' or '-'")
    return cleaned


def _ascii(text: str) -> str:
    """``text`` with accented letters as their plain ones and other non-ASCII characters dropped."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def language_of(filename: str) -> str | None:
    """The programming language guessed from the extension (None when unknown)."""
    return LANGUAGES.get(Path(filename).suffix.lower())


def media_type_of(filename: str, data: bytes) -> str:
    """What to send the file as: text (UTF-8) under its own type when it is harmless, else bytes."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    if language_of(filename) == "python":
        guessed = "text/x-python"
    if guessed is None or guessed in _ACTIVE_TYPES or not (guessed.startswith("text/") or guessed.endswith("json")):
        guessed = "text/plain"
    return f"{guessed}; charset=utf-8"


class TaskFiles:
    """The folders of every task, under one root (``<home>/tasks``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def code_path(self, task_id: str, version: int, filename: str) -> Path:
        return self.root / task_id / "code" / str(version) / filename

    def logs_dir(self, task_id: str) -> Path:
        return self.root / task_id / "logs"

    def write_code(self, task_id: str, version: int, filename: str, data: bytes) -> Path:
        path = self.code_path(task_id, version, filename)
        write_atomic(path, data)
        return path

    def remove_code(self, task_id: str, version: int, filename: str) -> None:
        """Remove a version's file and its folder (nothing to do when they are already gone)."""
        path = self.code_path(task_id, version, filename)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty (a stray temp file) or already gone: harmless
            path.parent.rmdir()

    def write_log(self, task_id: str, filename: str, text: str) -> None:
        write_atomic(self.logs_dir(task_id) / filename, text.encode("utf-8"))

    def remove_log(self, task_id: str, filename: str) -> None:
        (self.logs_dir(task_id) / filename).unlink(missing_ok=True)

    def list_logs(self, task_id: str) -> list[LogFile]:
        """The task's log files, oldest first, each with the first lines as a preview."""
        folder = self.logs_dir(task_id)
        if not folder.is_dir():
            return []
        found = []
        for entry in os.scandir(folder):
            if not _SAFE_NAME.match(entry.name) or not entry.is_file(follow_symlinks=False):
                continue  # temp files, links and folders are not logs
            stat = entry.stat(follow_symlinks=False)
            preview, truncated = _preview(Path(entry.path))
            found.append(LogFile(entry.name, stat.st_size, stat.st_mtime, preview, truncated))
        return sorted(found, key=lambda f: (f.modified, f.filename))

    def log_path(self, task_id: str, filename: str) -> Path:
        """The path of an existing log file; UserError for a name that is not one safe component,
        NotFoundError when there is no such regular file inside the task's logs folder."""
        if len(filename) > NAME_MAX:
            raise UserError(
                f"log filename {filename[:80]!r}... is {len(filename)} characters long; a log file name has at "
                f"most {NAME_MAX} (GET /tasks/{task_id}/logs lists them)"
            )
        if not _SAFE_NAME.match(filename) or ".." in filename:
            raise UserError(
                f"log filename {filename[:80]!r} is not a plain file name (letters, digits, '.', '_', '-'; no folders)"
            )
        folder = self.logs_dir(task_id).resolve()
        path = (folder / filename).resolve()
        if path.parent != folder or not path.is_file() or (folder / filename).is_symlink():
            raise NotFoundError(f"task {task_id} has no log file {filename!r}; GET /tasks/{task_id}/logs lists them")
        return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        _replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _preview(path: Path) -> tuple[str, bool]:
    with path.open("r", encoding="utf-8", errors="replace") as src:
        text = src.read(PREVIEW_MAX_CHARS + 1)  # never the whole of a big log
    lines = text.splitlines(keepends=True)
    truncated = len(text) > PREVIEW_MAX_CHARS or len(lines) > PREVIEW_LINES
    return "".join(lines[:PREVIEW_LINES])[:PREVIEW_MAX_CHARS], truncated
