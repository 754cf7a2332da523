"""Which models a run loads ahead of their calls: the next agents' while the current one works, and never
a model no agent calls."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine.service import RunService, TeamFile
from edgecrew.models.scripted import ScriptedModel
from tests.unit.engine_helpers import teardown

pytestmark = pytest.mark.integration

MODEL_THEN_TEMPLATE = """\
name: noted
agents:
  a: {model: fake, system: first}
  b: {model: fake, system: second}
  note: {template: "noted: {{ outputs.b }}"}
graph:
  start: a
  edges:
    - {from: a, to: b}
    - {from: b, to: note}
    - {from: note, to: end}
"""


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    teardown()


async def _run(monkeypatch: pytest.MonkeyPatch, team: str) -> list[str]:
    """Run ``team`` on the scripted model 'fake'; every alias the run preloaded."""
    rt = bootstrap()
    rt.models.register("fake", ScriptedModel({"a": ["A"], "b": ["B"]}))
    path = rt.settings.project_dir / "teams" / "t.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(team))
    preloads: list[str] = []
    real_preload = rt.pool.preload

    def preload(alias: str, *, evict: bool = True) -> Any:
        preloads.append(alias)
        return real_preload(alias, evict=evict)

    monkeypatch.setattr(rt.pool, "preload", preload)
    svc = RunService(rt)
    started = await svc.start(TeamFile(path), "do it")
    run = await svc.follow(started.run.id, timeout_s=60)
    await started.handle.get_result()
    assert run.status == "succeeded", run.error
    return preloads


async def test_an_agent_without_a_model_preloads_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # The template agent's `model` is the default 'local' (the embedded model), which it never calls:
    # loading it would take the box's memory and a core for nothing.
    preloads = await _run(monkeypatch, MODEL_THEN_TEMPLATE)
    assert preloads == ["fake"]  # b's, while a works; nothing while b works (the template agent is next)
