"""A third-party model backend for tests: ``echo``, known in process or from a distribution's entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgecrew.models import backends
from edgecrew.models.backends import BackendConfig, BuildContext, ConfigProblem, ModelBackend
from edgecrew.models.base import ChatModel
from edgecrew.models.scripted import ScriptedModel

# The plugin module an installed distribution ships: it names the same backend object as ECHO.
PLUGIN = "from tests.unit.backend_plugin import ECHO as BACKEND\n"


class EchoConfig(BackendConfig):
    """The echo backend's own settings."""

    prefix: str = "echo:"
    volume: int = 1

    def describe(self) -> str:
        return f"echoes with {self.prefix!r}"

    def problems(self) -> list[ConfigProblem]:
        return [ConfigProblem("is too loud", "volume: 1")] if self.volume > 10 else []


def build_echo(context: BuildContext, config: EchoConfig) -> ChatModel:
    return ScriptedModel(lambda req, i: f"{config.prefix} from {context.alias}", name=context.alias)


ECHO = ModelBackend("echo", EchoConfig, build_echo)


def install(root: Path, monkeypatch: pytest.MonkeyPatch, entry_points: dict[str, str]) -> None:
    """Distribution ``acme-models`` on sys.path: module ``acme_echo``, and ``entry_points`` in our group."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "acme_echo.py").write_text(PLUGIN, encoding="utf-8")
    info = root / "acme_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-models\nVersion: 1.0\n", encoding="utf-8")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{backends.ENTRY_POINT_GROUP}]\n{lines}", encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))


def isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the test a process-wide backend table of its own (entry points read anew, registrations dropped)."""
    monkeypatch.setattr(backends, "_DEFAULT", None)


def forget_plugin_modules() -> None:
    for name in [m for m in sys.modules if m.startswith("acme_")]:
        del sys.modules[name]
