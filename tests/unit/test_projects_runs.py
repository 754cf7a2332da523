"""A project's runs on the real engine (DBOS, ScriptedModel): Monday's run writes project/okr.json, an
artifact and a fact through the agents' tools; after a restart (the engine shut down, a new runtime)
Tuesday's run of another team reads them back, while Monday's scratch files stay in Monday's
workspace."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.domain.events import ToolCalled
from edgecrew.engine import durable
from edgecrew.engine.service import RunService, TeamFile
from edgecrew.errors import NotFoundError
from edgecrew.models.scripted import ScriptedModel
from edgecrew.projects import ProjectService
from edgecrew.store import repo

REVISION = "0013"

MONDAY = """
name: monday
agents:
  strategist:
    model: fake
    system: set the OKRs
    tools: [files.write, artifacts.write, kg.add_fact]
    files: {write: ["project/*", "scratch/*"]}
graph: {start: strategist, edges: [{from: strategist, to: end}]}
"""
TUESDAY = """
name: tuesday
agents:
  planner:
    model: fake
    system: plan the day from the OKRs
    tools: [files.read, artifacts.read, kg.neighbours, files.list]
    files: {read: ["project/*", "scratch/*"]}
graph: {start: planner, edges: [{from: planner, to: end}]}
"""


@pytest.fixture(autouse=True)
def _engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if repo.HEAD < REVISION:
        monkeypatch.setattr(repo, "HEAD", REVISION)
    yield
    durable.shutdown()


async def _run(team: str, yaml_text: str, model: ScriptedModel, project: str) -> tuple[str, list[ToolCalled]]:
    rt = bootstrap()
    rt.models.register("fake", model)
    spec_file = rt.settings.project_dir / "teams" / f"{team}.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(textwrap.dedent(yaml_text))
    svc = RunService(rt)
    started = await svc.start(TeamFile(spec_file), "go", project=project)
    run = await svc.follow(started.run.id, timeout_s=60)
    await started.handle.get_result()
    assert run.status.value == "succeeded", run.error
    calls = [e.payload for e in rt.store.events(run.id) if isinstance(e.payload, ToolCalled)]
    return run.id, calls


async def test_monday_writes_and_tuesday_reads_after_a_restart() -> None:
    launch = ProjectService.of(bootstrap()).create("Launch")
    okr = json.dumps({"objective": "ship the box"})
    monday = ScriptedModel(
        {
            "strategist": [
                {"tool": "files.write", "args": {"path": "project/okr.json", "content": okr}},
                {"tool": "files.write", "args": {"path": "scratch/thoughts.md", "content": "mine"}},
                {"tool": "artifacts.write", "args": {"name": "okr", "content": "O1: ship", "kind": "intellectual"}},
                {"tool": "kg.add_fact", "args": {"subject": "OKR", "relation": "owned_by", "object": "strategist"}},
                "OKRs set",
            ]
        }
    )
    monday_run, calls = await _run("monday", MONDAY, monday, "Launch")
    assert [c.is_error for c in calls] == [False] * 4, [c.result for c in calls]
    durable.shutdown()  # a restart: the engine stops, a new runtime and store engine start

    tuesday = ScriptedModel(
        {
            "planner": [
                {"tool": "files.read", "args": {"path": "project/okr.json"}},
                {"tool": "files.read", "args": {"path": "scratch/thoughts.md"}},
                {"tool": "artifacts.read", "args": {"name": "okr"}},
                {"tool": "kg.neighbours", "args": {"node": "OKR"}},
                "plan made",
            ]
        }
    )
    tuesday_run, calls = await _run("tuesday", TUESDAY, tuesday, launch.id)
    read_okr, read_scratch, read_artifact, near = calls
    assert not read_okr.is_error and "ship the box" in read_okr.result
    assert read_scratch.is_error and "no such file 'scratch/thoughts.md'" in read_scratch.result  # Monday's own
    assert "O1: ship" in read_artifact.result and "strategist" in near.result
    projects = ProjectService.of(bootstrap())
    assert projects.runs("Launch") == [tuesday_run, monday_run]
    assert (projects.files(launch.id) / "okr.json").read_text() == okr


async def test_an_unknown_project_is_refused_before_the_run_is_recorded() -> None:
    rt = bootstrap()
    rt.models.register("fake", ScriptedModel(["x"]))
    spec_file = rt.settings.project_dir / "teams" / "monday.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(textwrap.dedent(MONDAY))
    with pytest.raises(NotFoundError, match="no project 'Nope'"):
        await RunService(rt).start(TeamFile(spec_file), "go", project="Nope")
    assert rt.store.list_runs() == []


READER = """
name: reader
needs_project: true
agents:
  first:
    model: fake
    system: say something
  okrs:
    role: reads the project's OKRs
    tool: files.read
    arguments: {path: project/okr.json}
graph: {start: first, edges: [{from: first, to: okrs}, {from: okrs, to: end}]}
"""


async def test_a_run_from_a_step_works_in_the_project_its_first_run_worked_in() -> None:
    rt = bootstrap()
    launch = ProjectService.of(rt).create("Launch")
    (ProjectService.of(rt).files(launch.id) / "okr.json").write_text('{"objective": "ship the box"}')
    first, _calls = await _run("reader", READER, ScriptedModel(["first answer"]), "Launch")
    svc = RunService(rt)
    # The team needs a project: without the first run's, the run from its step would be refused.
    started = await svc.start_from_step(first, "v001.okrs")
    again = await svc.follow(started.run.id, timeout_s=60)
    await started.handle.get_result()
    assert again.status.value == "succeeded", again.error
    assert ProjectService.of(rt).project_id_of_run(again.id) == launch.id
    assert "ship the box" in json.dumps(again.output)
