"""Settings from the environment: an empty variable is the same as an unset one."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecrew.settings import Settings


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (
        "EDGECREW_HOME",
        "EDGECREW_HOST",
        "EDGECREW_DATABASE_URL",
        "EDGECREW_PROJECT",
        "EDGECREW_SANDBOX_MEMORY",
    ):
        monkeypatch.setenv(name, "")
    settings = Settings()
    # EDGECREW_HOME="" was the current directory: a store and workspaces wherever the command ran
    assert settings.home == Path.home() / ".edgecrew" and settings.home.resolve() != tmp_path.resolve()
    assert settings.host == "127.0.0.1" and settings.database_url is None and settings.project is None
    assert settings.sandbox_memory == "512MiB"
    monkeypatch.setenv("EDGECREW_HOME", str(tmp_path / "h"))
    assert Settings().home == tmp_path / "h"
