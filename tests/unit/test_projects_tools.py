"""The agents' project tools through the registry, as the engine calls them: kg.add_fact,
kg.neighbours, kg.path, artifacts.read/write/list and project.case_file, working in the run's project
by default; a locked artifact refuses artifacts.write with the holder's name and time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgecrew.errors import ToolError
from edgecrew.projects import PROJECT_TOOLS, ProjectService, register_project_tools
from edgecrew.store import repo
from edgecrew.store.repo import open_store
from edgecrew.tools.base import ToolContext, ToolRegistry

REVISION = "0013"


@pytest.fixture(autouse=True)
def _head_at_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    if repo.HEAD < REVISION:
        monkeypatch.setattr(repo, "HEAD", REVISION)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ProjectService, ToolRegistry, ToolContext]:
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    service = ProjectService(store, tmp_path / "home")
    registry = ToolRegistry()
    register_project_tools(registry, service)
    project = service.create("Launch", "Ship it.")
    store.create_run("r1", "crew", "align", {}, str(tmp_path / "ws"))
    service.attach_run("r1", project.id, tmp_path / "ws")
    return service, registry, ToolContext(run_id="r1", agent="planner", workspace=tmp_path / "ws")


async def call(registry: ToolRegistry, tool: str, ctx: ToolContext, **arguments: Any) -> dict[str, Any]:
    result = await registry.get(tool).call(arguments, ctx)  # validates the output against its schema
    assert isinstance(result, dict) and next(iter(result)) == "summary" and "\n" not in result["summary"]
    return result


def test_unbound_tools_are_listed_and_say_so_when_called(tmp_path: Path) -> None:
    registry = ToolRegistry()
    register_project_tools(registry)
    assert registry.names() == frozenset(PROJECT_TOOLS)
    assert registry.canonical("kg.neighbors") == "kg.neighbours"
    path = registry.get("kg.path")
    assert {"from", "to"} <= set(path.input_schema["properties"]) and path.result_schema is not None
    assert path.input_schema["required"] == ["from", "to"]


async def test_unbound_call_says_the_tools_are_only_listed(tmp_path: Path) -> None:
    registry = ToolRegistry()
    register_project_tools(registry)
    ctx = ToolContext(run_id="r", agent="a", workspace=tmp_path)
    with pytest.raises(ToolError, match="only listed"):
        await registry.get("artifacts.list").call({}, ctx)


async def test_facts_neighbours_and_paths_in_the_runs_project(setup: Any) -> None:
    service, registry, ctx = setup
    added = await call(registry, "kg.add_fact", ctx, subject="Ana", relation="works on", object="Launch")
    assert added["summary"] == "recorded in the project Launch graph: Ana --works_on--> Launch" and added["new"]
    await call(registry, "kg.add_fact", ctx, subject="Launch", relation="depends_on", object="GPU")
    again = await call(registry, "kg.add_fact", ctx, subject="ana", relation="works_on", object="launch")
    assert not again["new"] and again["summary"].startswith("already known")
    near = await call(registry, "kg.neighbours", ctx, node="Ana", depth=2)
    assert [(n["name"], n["distance"]) for n in near["neighbours"]] == [("Launch", 1), ("GPU", 2)]
    assert near["summary"] == "Ana has 2 node(s) within 2 hop(s) in the project Launch graph: Launch, GPU"
    path = await call(registry, "kg.path", ctx, **{"from": "Ana", "to": "GPU"})
    assert path["hops"] == 2 and path["steps"][1] == {"subject": "Launch", "relation": "depends_on", "object": "GPU"}
    none = await call(registry, "kg.path", ctx, **{"from": "GPU", "to": "Ana", "directed": True})
    assert not none["found"] and none["summary"].startswith("no path")
    mine = await call(registry, "kg.add_fact", ctx, subject="I", relation="prefer", object="mornings", scope="agent")
    assert mine["graph"] == "agent crew/planner"
    assert service.graph.counts("agent", "crew/planner") == (2, 1)
    with pytest.raises(ToolError, match="did you mean 'Ana'"):
        await registry.get("kg.neighbours").call({"node": "Anna"}, ctx)
    with pytest.raises(ToolError, match=r"invalid arguments for kg\.neighbours: depth"):
        await registry.get("kg.neighbours").call({"node": "Ana", "depth": 9}, ctx)


async def test_artifacts_write_read_list_and_a_lock_refuses(setup: Any) -> None:
    service, registry, ctx = setup
    made = await call(registry, "artifacts.write", ctx, name="okr", content="O1", kind="intellectual")
    assert made["created"] and made["artifact"]["owner"] == "crew/planner" and made["version"] == 1
    second = await call(registry, "artifacts.write", ctx, name="okr", content="O1, O2", note="add O2")
    assert not second["created"] and second["version"] == 2 and second["artifact"]["kind"] == "intellectual"
    read = await call(registry, "artifacts.read", ctx, name="okr")
    assert read["content"] == "O1, O2" and read["summary"].startswith("okr v2 (intellectual, unlocked)")
    assert (await call(registry, "artifacts.read", ctx, name="okr", version=1))["content"] == "O1"
    service.lock_artifact("Launch", "okr", by="ana")
    with pytest.raises(ToolError, match=r"cannot write to artifact 'okr': it is locked by ana since 20\d\d-.* UTC"):
        await registry.get("artifacts.write").call({"name": "okr", "content": "O3"}, ctx)
    listed = await call(registry, "artifacts.list", ctx)
    assert listed["summary"] == "project Launch has 1 artifact(s): okr v2 (locked)"
    assert listed["artifacts"][0]["lock"].startswith("locked by ana since")
    with pytest.raises(ToolError, match="no artifact 'plan'; its artifacts: 'okr'"):
        await registry.get("artifacts.read").call({"name": "plan"}, ctx)


async def test_the_case_file_is_read_and_appended(setup: Any) -> None:
    service, registry, ctx = setup
    read = await call(registry, "project.case_file", ctx)
    assert read["content"] == "# Launch\n\nShip it.\n" and read["version"] == 1
    added = await call(registry, "project.case_file", ctx, action="append", text="## Today\n- align")
    assert added["version"] == 2 and added["content"].endswith("## Today\n- align\n")
    assert service.case_file("Launch").author == "crew/planner"
    with pytest.raises(ToolError, match="append needs 'text'"):
        await registry.get("project.case_file").call({"action": "append"}, ctx)


async def test_a_run_without_a_project_names_one_or_is_told_to(setup: Any, tmp_path: Path) -> None:
    _, registry, _ = setup
    loose = ToolContext(run_id="r-none", agent="planner", workspace=tmp_path)
    with pytest.raises(
        ToolError,
        match=r"no project: start it in one \(`edgecrew run TEAM TASK --in NAME`.*or name one with the 'project' arg",
    ):
        await registry.get("artifacts.list").call({}, loose)
    listed = await call(registry, "artifacts.list", loose, project="Launch")
    assert listed["project"] == "Launch"
    with pytest.raises(ToolError, match="no project 'Nope'"):
        await registry.get("artifacts.list").call({"project": "Nope"}, loose)
