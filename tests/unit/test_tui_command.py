"""`edgecrew tui` without Textual says how to install it; the TUI, an entry point, never reads the store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import edgecrew
from edgecrew.cli.tui import tui
from tests.unit.test_layers import store_reads


def test_without_textual_the_command_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "textual" or m.startswith(("textual.", "edgecrew.tui"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "textual", None)  # what `import textual` meets when it is not installed
    command = typer.Typer()
    command.command()(tui)
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 1, result.output
    assert "needs Textual" in result.output and "pip install 'edgecrew[tui]'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_tui_reaches_runs_only_through_the_use_cases() -> None:
    package = Path(edgecrew.__file__).parent / "tui"
    found = [f"{file.name}:{line}" for file in sorted(package.rglob("*.py")) for line in store_reads(file.read_text())]
    assert found == [], "the TUI must go through the use cases, not rt.store: " + ", ".join(found)
