"""The memory tools as agents call them, and automatic recall into a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgecrew.errors import ToolError
from edgecrew.memory import (
    MEMORY_TOOLS,
    HashingEmbedder,
    MemoryService,
    ScopeRef,
    prompt_recall,
    recall_block,
    register_memory_tools,
)
from edgecrew.memory.recall import HEADER
from edgecrew.store import RunStore, open_store
from edgecrew.tools.base import ToolContext, ToolRegistry


@pytest.fixture
def runs(tmp_path: Path) -> RunStore:
    store = open_store(f"sqlite:///{tmp_path / 'edgecrew.db'}")
    # Two runs of the okr project (different agents, on different days), one of another project.
    store.create_run("mon", "crew", "morning", {}, str(tmp_path), trigger={"kind": "routine", "project": "okr"})
    store.create_run("tue", "crew", "morning", {}, str(tmp_path), trigger={"kind": "routine", "project": "okr"})
    store.create_run("other", "crew", "morning", {}, str(tmp_path), trigger={"kind": "routine", "project": "blog"})
    store.create_run("plain", "solo", "hi", {}, str(tmp_path))
    return store


@pytest.fixture
def registry(runs: RunStore) -> ToolRegistry:
    registry = ToolRegistry()
    register_memory_tools(registry, MemoryService.open(runs, embedder=HashingEmbedder()))
    return registry


async def _call(registry: ToolRegistry, tool: str, args: dict[str, Any], run: str, agent: str) -> Any:
    return await registry.get(tool).call(args, ToolContext(run, agent, Path(".")))


async def test_a_fact_remembered_in_one_run_is_recalled_by_another_agent_of_the_project_only(
    registry: ToolRegistry,
) -> None:
    saved = await _call(registry, "memory.remember", {"text": "Today's priority is the Q3 demo"}, "mon", "strategist")
    assert saved["summary"].startswith(f"remembered memory {saved['id']} in project okr")
    assert (saved["scope"], saved["scope_id"]) == ("project", "okr")

    found = await _call(registry, "memory.recall", {"query": "what is today's priority"}, "tue", "planner")
    assert next(iter(found)) == "summary" and "best: Today's priority is the Q3 demo" in found["summary"]
    assert [m["text"] for m in found["memories"]] == ["Today's priority is the Q3 demo"]
    assert found["backend"] == "sqlite-vec" and found["note"] is None
    assert found["memories"][0]["agent"] == "strategist"

    elsewhere = await _call(registry, "memory.recall", {"query": "what is today's priority"}, "other", "planner")
    assert elsewhere["memories"] == [] and elsewhere["summary"].startswith("no memories in")


async def test_scopes_default_from_the_run_and_can_be_named(registry: ToolRegistry) -> None:
    mine = await _call(registry, "memory.remember", {"text": "I like tables", "scope": "agent"}, "mon", "critic")
    assert (mine["scope"], mine["scope_id"]) == ("agent", "critic")
    team = await _call(registry, "memory.remember", {"text": "crew note"}, "plain", "a")
    assert (team["scope"], team["scope_id"]) == ("team", "solo")  # no project: the team
    named = await _call(registry, "memory.remember", {"text": "for okr", "project": "okr"}, "plain", "a")
    assert (named["scope"], named["scope_id"]) == ("project", "okr")

    only_mine = await _call(registry, "memory.recall", {"query": "tables", "scopes": ["agent"]}, "tue", "critic")
    assert [m["text"] for m in only_mine["memories"]] == ["I like tables"]
    not_mine = await _call(registry, "memory.recall", {"query": "tables", "scopes": ["agent"]}, "tue", "planner")
    assert not_mine["memories"] == []
    with pytest.raises(ToolError, match="no project to remember in: pass project"):
        await _call(registry, "memory.remember", {"text": "x", "scope": "project"}, "plain", "a")


async def test_forget_is_risky_and_only_reaches_visible_memories(registry: ToolRegistry) -> None:
    assert registry.get("memory.forget").risk == "risky"
    assert registry.get("memory.remember").risk == registry.get("memory.recall").risk == "safe"
    keep = await _call(registry, "memory.remember", {"text": "blog fact"}, "other", "a")
    drop = await _call(registry, "memory.remember", {"text": "old okr", "tags": ["old"]}, "mon", "a")
    await _call(registry, "memory.remember", {"text": "new okr"}, "mon", "a")

    with pytest.raises(ToolError, match=f"no memory {keep['id']} in"):
        await _call(registry, "memory.forget", {"id": keep["id"]}, "mon", "a")
    gone = await _call(registry, "memory.forget", {"scope": "project", "tags": ["old"]}, "tue", "b")
    assert gone == {"summary": "forgot 1 memory of project okr", "forgotten": [drop["id"]]}
    with pytest.raises(ToolError, match="name the memory's id"):
        await _call(registry, "memory.forget", {}, "tue", "b")
    left = await _call(registry, "memory.recall", {"query": "okr"}, "tue", "b")
    assert [m["text"] for m in left["memories"]] == ["new okr"]


async def test_schemas_and_unbound_tools() -> None:
    registry = ToolRegistry()
    register_memory_tools(registry)
    assert registry.names() == frozenset(MEMORY_TOOLS)
    for name in MEMORY_TOOLS:
        spec = registry.get(name)
        assert spec.wants_context and "ctx" not in spec.input_schema["properties"]
        assert spec.result_schema is not None and next(iter(spec.result_schema["properties"])) == "summary"
    assert registry.get("memory.recall").input_schema["required"] == ["query"]
    with pytest.raises(ToolError, match="memory is not open in this process"):
        await _call(registry, "memory.recall", {"query": "x"}, "r", "a")


def test_recall_block_renders_the_closest_memories_and_its_event(runs: RunStore) -> None:
    svc = MemoryService.open(runs, embedder=HashingEmbedder())
    svc.remember("The weekly OKR review is on Friday", "project", "okr")
    svc.remember("Coffee machine is on floor 2", "project", "okr")
    svc.remember("The OKR review of blog is on Monday", "project", "blog")
    scopes = [ScopeRef("project", "okr"), ScopeRef("agent", "planner")]

    block = recall_block(svc, "when is the OKR review", scopes, 1)
    assert block is not None
    lines = block.splitlines()
    assert lines[0] == HEADER and len(lines) == 2
    assert lines[1].startswith("- [project okr, ") and lines[1].endswith("] The weekly OKR review is on Friday")

    recalled = prompt_recall(svc, "when is the OKR review", scopes, 3)
    assert recalled.event.scopes == ("project okr", "agent planner") and len(recalled.event.ids) == 2
    assert recalled.event.backend == "sqlite-vec" and recalled.event.scores[0] >= recalled.event.scores[1]
    assert recalled.event.model_dump(mode="json")["query"] == "when is the OKR review"

    assert recall_block(svc, "when is the OKR review", [ScopeRef("project", "empty")], 3) is None
    failed = prompt_recall(svc, "when is the OKR review", [ScopeRef("team", "")], 3)  # a bad scope id
    assert failed.block is None and failed.event.error is not None and "needs the team's name" in failed.event.error
    assert recall_block(svc, "when is the OKR review", scopes, 0) is None
    long = "x" * 3000
    svc.remember(long, "agent", "planner")
    only = recall_block(svc, long, [ScopeRef("agent", "planner")], 1)
    assert only is not None and len(only.splitlines()[1]) < 400 and only.endswith("…")
