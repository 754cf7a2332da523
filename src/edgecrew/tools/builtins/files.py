"""files.read / files.write / files.list: confined to the run's workspace directory.

Paths are resolved (symlinks included) and must stay inside the workspace; anything else is refused.
Per-agent path policies arrive with the permissions work; this module is the one place that checks.
"""

from __future__ import annotations

from pathlib import Path

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

MAX_READ_BYTES = 64_000


def _inside(ctx: ToolContext, path: str, mode: str = "read") -> Path:
    root = Path(ctx.workspace).resolve()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ToolError(f"path '{path}' is outside the workspace; use a relative path like 'notes.md'")
    if ctx.files is not None:
        ctx.files.check(str(target.relative_to(root)), mode, f"agent '{ctx.agent}'")
    return target


def files_read(path: str, ctx: ToolContext) -> str:
    """Read a text file from the workspace."""
    target = _inside(ctx, path)
    if not target.is_file():
        raise ToolError(f"no such file '{path}' in the workspace")
    return target.read_bytes()[:MAX_READ_BYTES].decode("utf-8", errors="replace")


def files_write(path: str, content: str, ctx: ToolContext) -> str:
    """Write a text file in the workspace (creating folders), replacing what was there."""
    target = _inside(ctx, path, "write")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    return f"wrote {len(content.encode())} bytes to {path}"


def files_list(ctx: ToolContext, path: str = ".") -> list[str]:
    """List files under a workspace folder (relative paths)."""
    root = _inside(ctx, path)
    base = Path(ctx.workspace).resolve()
    found = (str(p.relative_to(base)) for p in root.rglob("*") if p.is_file())
    return sorted(f for f in found if ctx.files is None or ctx.files.allows(f, "read"))[:500]


def register(registry: ToolRegistry) -> None:
    registry.register(spec_from_function(files_read, name="files.read"))
    registry.register(spec_from_function(files_write, name="files.write"))
    registry.register(spec_from_function(files_list, name="files.list"))
