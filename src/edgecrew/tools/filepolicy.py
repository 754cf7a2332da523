"""An agent's file policy: which workspace paths it may read and write (fnmatch globs, relative to the
run workspace; ``drafts/*`` covers everything under drafts/). File tools check it through ``ToolContext``."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from edgecrew.errors import ToolError


@dataclass(frozen=True)
class FilePolicy:
    read: tuple[str, ...] = ("**",)
    write: tuple[str, ...] = ("**",)

    def check(self, relative_path: str, mode: str, agent: str = "this agent") -> None:
        globs = self.write if mode == "write" else self.read
        path = relative_path.lstrip("./") or "."
        if not any(g in ("**", "*") or fnmatch.fnmatchcase(path, g) for g in globs):
            raise ToolError(f"{agent} may not {mode} '{relative_path}'; allowed to {mode}: {', '.join(globs)}")

    def allows(self, relative_path: str, mode: str) -> bool:
        try:
            self.check(relative_path, mode)
        except ToolError:
            return False
        return True
