"""A third-party model backend named in edgecrew.yaml serves a team run on the durable engine.

The backend is known the two public ways: registered in process, and as an entry point of an
installed distribution (a real ``*.dist-info`` on ``sys.path``, read through importlib.metadata).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecrew.engine import durable
from edgecrew.models.backends import register_backend
from edgecrew.models.scripted import ScriptedModel
from tests.conftest import write
from tests.unit.backend_plugin import ECHO, forget_plugin_modules, install, isolate
from tests.unit.engine_helpers import run_team

TEAM = """
name: t
agents:
  a: {model: shout, system: x}
graph: {start: a, edges: [{from: a, to: end}]}
"""


@pytest.fixture(params=["registered", "entry point"])
def echo(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The ``echo`` backend, known the public way the parameter names."""
    isolate(monkeypatch)
    if request.param == "registered":
        register_backend(ECHO)
    else:
        install(tmp_path / "site", monkeypatch, {"echo": "acme_echo:BACKEND"})
    yield str(request.param)
    forget_plugin_modules()
    durable.shutdown()


async def test_a_third_party_backend_named_in_the_project_serves_a_team_run(echo: str, project_dir: Path) -> None:
    write(project_dir / "edgecrew.yaml", "models:\n  shout: {backend: echo, prefix: ECHO, tags: [loud]}\n")
    run, rt = await run_team(TEAM, ScriptedModel(["unused"]))
    assert run.status == "succeeded" and run.output == {"text": "ECHO from shout"}, run.error
    called = next(e for e in rt.store.events(run.id) if e.type == "model_called")
    assert (called.data["alias"], called.data["backend"]) == ("shout", "echo")
    definition = rt.models.definition("shout")
    assert definition.tags == ("loud",) and definition.to_dict()["prefix"] == "ECHO"
    assert definition.describe() == "echoes with 'ECHO'"
    assert definition.source == str(project_dir / "edgecrew.yaml")
