"""Entry points reach the store only through the use cases (RunService, ApprovalService, the runtime's
``tasks`` and ``keys``); the import-level layer order itself is import-linter's (pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import edgecrew

SRC = Path(edgecrew.__file__).parent
ENTRY_POINTS = ("cli", "api", "ui", "tui", "app.py", "mcp_server.py")


def store_reads(source: str) -> list[int]:
    """Lines where ``<anything>.store`` is read (the raw run store)."""
    tree = ast.parse(source)
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "store"]


def test_the_check_finds_a_store_read() -> None:
    assert store_reads("rt.store.count_runs()\nrt.settings.store_url\n") == [1]


def test_no_entry_point_reads_the_store() -> None:
    found = []
    for entry in ENTRY_POINTS:
        path = SRC / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            found += [f"{file.relative_to(SRC)}:{line}" for line in store_reads(file.read_text())]
    assert found == [], "entry points must go through the use cases, not rt.store: " + ", ".join(found)
