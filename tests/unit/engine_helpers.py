"""Running teams in-process on DBOS and ScriptedModel for the engine's integration tests."""

from __future__ import annotations

import textwrap
from typing import Any

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService, TeamFile
from edgecrew.models.scripted import ScriptedModel
from edgecrew.specs.loader import load_team_text
from edgecrew.store.repo import RunRecord


async def run_team(
    yaml_text: str, model: ScriptedModel, task: str = "do it", tools: Any = None
) -> tuple[RunRecord, Runtime]:
    """Run a team (given as YAML, agents using model alias 'fake') to the end."""
    rt = bootstrap(tools=tools)
    rt.models.register("fake", model)
    spec_file = rt.settings.project_dir / "teams" / "t.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(textwrap.dedent(yaml_text))
    load_team_text(textwrap.dedent(yaml_text), str(spec_file), rt.catalog())  # fail early on a bad spec
    svc = RunService(rt)
    started = await svc.start(TeamFile(spec_file), task)
    run = await svc.follow(started.run.id, timeout_s=60)
    await started.handle.get_result()
    return run, rt


def teardown() -> None:
    durable.shutdown()
