"""files.read / files.write / files.list: confined to the run's workspace directory.

Paths are resolved (symlinks included) and must stay inside the workspace; anything else is refused.
Per-agent path policies arrive with the permissions work; this module is the one place that checks.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path, PurePosixPath

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

MAX_READ_BYTES = 64_000


def _resolve(ctx: ToolContext, path: str) -> tuple[Path, Path, str]:
    """The folder ``path`` lives in (the workspace, or a mount such as a project's files at
    ``project/``), the path resolved, and the mount's name ("" for the workspace)."""
    parts = Path(os.path.normpath(path or ".")).parts
    for name, folder in ctx.mounts:
        if parts[:1] == (name,):
            base = Path(folder).resolve()
            return base, base.joinpath(*parts[1:]).resolve(), name
    root = Path(ctx.workspace).resolve()
    return root, (root / path).resolve(), ""


def _shown(base: Path, target: Path, mount: str) -> str:
    """A path as the agent and its file policy see it: relative to the workspace."""
    relative = target.relative_to(base)
    return str(PurePosixPath(mount, relative)) if mount else str(relative)


def _inside(ctx: ToolContext, path: str, mode: str = "read") -> Path:
    base, target, mount = _resolve(ctx, path)
    if target != base and base not in target.parents:
        raise ToolError(f"path '{path}' is outside the workspace; use a relative path like 'notes.md'")
    if ctx.files is not None:
        ctx.files.check(_shown(base, target, mount), mode, f"agent '{ctx.agent}'")
    return target


def files_read(path: str, ctx: ToolContext, missing_ok: bool = False) -> str:
    """Read a text file from the workspace (``missing_ok``: a missing file reads as empty text)."""
    target = _inside(ctx, path)
    if not target.is_file():
        if target.is_dir():  # not missing: missing_ok would read it as empty and hide it
            raise ToolError(f"'{path}' is a folder, not a file; files.list lists what is in it")
        if missing_ok and not target.exists():
            return ""
        raise ToolError(f"no such file '{path}' in the workspace")
    with target.open("rb") as f:
        data = f.read(MAX_READ_BYTES + 1)
    cut = len(data) > MAX_READ_BYTES
    # A character the cut splits is left out (the decoder is not told the text ended), never shown as U+FFFD.
    head = codecs.getincrementaldecoder(_encoding(data))(errors="replace").decode(data[:MAX_READ_BYTES], final=not cut)
    if not cut:
        return head
    # Cut: said at the end, or the agent would take the first part for the whole file.
    size = target.stat().st_size
    return f"{head}\n[cut: '{path}' has {size} bytes; these are the first {MAX_READ_BYTES}]"


def _encoding(data: bytes) -> str:
    """UTF-8, unless the file opens with another Unicode encoding's byte order mark (an okr.json that
    Windows' Notepad saved as "Unicode" is UTF-16: read as UTF-8 it was noise, "not valid JSON"); a UTF-8
    one is dropped (JSON readers refuse it)."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16's: FF FE 00 00 opens both
        return "utf-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def files_write(path: str, content: str, ctx: ToolContext) -> str:
    """Write a text file in the workspace (creating folders), replacing what was there."""
    target = _inside(ctx, path, "write")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    return f"wrote {len(content.encode())} bytes to {path}"


def files_list(ctx: ToolContext, path: str = ".") -> list[str]:
    """List files under a workspace folder (relative paths)."""
    root = _inside(ctx, path)
    base, _, mount = _resolve(ctx, path)
    found = [_shown(base, p, mount) for p in root.rglob("*") if p.is_file()]
    if not mount and root == base:  # the whole workspace: the mounted folders' files too
        for name, folder in ctx.mounts:
            under = Path(folder).resolve()
            found += [_shown(under, p, name) for p in under.rglob("*") if p.is_file()]
    return sorted(f for f in set(found) if ctx.files is None or ctx.files.allows(f, "read"))[:500]


def register(registry: ToolRegistry) -> None:
    registry.register(spec_from_function(files_read, name="files.read"))
    registry.register(spec_from_function(files_write, name="files.write"))
    registry.register(spec_from_function(files_list, name="files.list"))
