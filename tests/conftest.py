"""Shared fixtures: every test gets its own EDGECREW_HOME and project directory."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecrew.settings import reset_settings


@pytest.fixture(autouse=True)
def edgecrew_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("EDGECREW_HOME", str(home))
    monkeypatch.setenv("EDGECREW_PROJECT", str(project))
    monkeypatch.delenv("EDGECREW_FAILPOINTS", raising=False)
    monkeypatch.delenv("EDGECREW_DATABASE_URL", raising=False)
    reset_settings()
    yield home
    reset_settings()


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    return tmp_path / "project"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


REPO = Path(__file__).resolve().parent.parent
