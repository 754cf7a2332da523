"""Shared fixtures: every test gets its own EDGECREW_HOME and project directory.

Tests that start DBOS are marked ``integration`` here, so ``pytest -m "not integration"`` is the fast
tier: the engine's logic runs there on its in-memory fakes (``edgecrew.engine.fakes``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from edgecrew.settings import reset_settings
from edgecrew.store.repo import sqlite_module


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


# The SQLite library the store opens its file with (sqlean when installed, else the standard library's). A
# test that reads a store's file directly uses it too: two copies of SQLite in one process do not see each
# other's POSIX locks, so a standard-library connection closed beside an open store took itself for the last
# one and deleted the write-ahead log under the store, whose next writes no other process ever saw (the jobs
# kill -9 test's applied policy, in full runs only). See tests/unit/test_store_one_sqlite.py.
STORE_SQLITE: Any = sqlite_module() or sqlite3


def read_store(path: Path) -> contextlib.closing[Any]:
    """A connection to a store's SQLite file through :data:`STORE_SQLITE`, closed at the end of the block."""
    return contextlib.closing(STORE_SQLITE.connect(path, timeout=30))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


REPO = Path(__file__).resolve().parent.parent

# Importing one of these means the test module runs teams on the durable engine.
DURABLE_MODULES = frozenset({"edgecrew.engine.durable", "tests.unit.engine_helpers"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _starts_dbos(item):
            item.add_marker(pytest.mark.integration)


def _starts_dbos(item: pytest.Item) -> bool:
    """End-to-end tests, tests of the app in process (its start-up launches DBOS), and every test of a
    module that imports the durable engine or the helpers that run teams on it."""
    if item.path.parent.name == "e2e" or "client" in getattr(item, "fixturenames", ()):
        return True
    module = getattr(item, "module", None)
    return module is not None and any(_durable(value) for value in vars(module).values())


def _durable(value: Any) -> bool:
    name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
    return name in DURABLE_MODULES
