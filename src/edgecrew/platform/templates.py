"""Project templates: copier templates shipped in ``templates/``, listed and rendered into the workspace.

The one design decision: copier renders into a private temporary directory first, and the files move
into the workspace only once every one of them has passed the agent's file policy and the destination
was found empty, so a refused or failed render leaves nothing half-written. Copier runs without
prompts (``defaults=True``), without the template's own tasks or Jinja extensions (``unsafe=False``)
and without a VCS (the templates are plain directories, rendered as they are on disk).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgecrew.errors import ToolError
from edgecrew.platform.config import TEMPLATES_DIR, require
from edgecrew.platform.workspace import Workspace

__all__ = ["apply_template", "available", "describe"]

SUFFIX = ".jinja"


def available() -> dict[str, Path]:
    """The shipped templates by name (a directory with a copier.yml)."""
    return {p.name: p for p in sorted(TEMPLATES_DIR.iterdir()) if (p / "copier.yml").is_file()}


def _template(name: str) -> Path:
    templates = available()
    if name not in templates:
        raise ToolError(f"unknown template '{name}'; templates.list shows them: {', '.join(templates)}")
    return templates[name]


def describe(name: str) -> dict[str, Any]:
    """A template's name, description, questions (with their defaults) and the files it makes."""
    from ruamel.yaml import YAML

    path = _template(name)
    config = YAML(typ="safe", pure=True).load((path / "copier.yml").read_text(encoding="utf-8")) or {}
    questions = {
        key: {"help": q.get("help", ""), **({"default": q["default"]} if "default" in q else {})}
        for key, q in config.items()
        if not key.startswith("_") and isinstance(q, dict) and q.get("when") is not False
    }
    files = sorted(
        p.relative_to(path).as_posix().removesuffix(SUFFIX)
        for p in path.rglob("*")
        if p.is_file() and p.name != "copier.yml" and "__pycache__" not in p.parts
    )
    return {"name": name, "description": str(config.get("_description", "")), "questions": questions, "files": files}


def apply_template(ws: Workspace, template: str, dest: Path, data: dict[str, str]) -> list[str]:
    """Render ``template`` with ``data`` into ``dest`` (absent or empty); the written files, relative
    to the workspace."""
    source = _template(template)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ToolError(f"'{ws.rel(dest)}' already exists and is not empty; choose another name or dest")
    require("copier", "copier", "templates.apply")
    import copier
    from copier.errors import CopierError

    with tempfile.TemporaryDirectory(prefix="edgecrew-template-") as tmp:
        out = Path(tmp) / "out"
        try:
            copier.run_copy(
                str(source), out, data=data, defaults=True, unsafe=False, vcs_ref=None, quiet=True, overwrite=True
            )
        except (ValueError, CopierError) as exc:  # a question's validator fails with ValueError
            raise ToolError(f"template '{template}' could not be rendered: {exc}") from None
        rendered = sorted(p for p in out.rglob("*") if p.is_file())
        for file in rendered:
            ws.check(dest / file.relative_to(out), "write")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out, dest, dirs_exist_ok=True)
    return [ws.rel(dest / file.relative_to(out)) for file in rendered]
