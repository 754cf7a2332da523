"""Memory through the real engine: runs on DBOS, agents calling the memory tools, one SQLite store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgecrew.memory import HashingEmbedder, MemoryService, register_memory_tools
from edgecrew.models.scripted import ScriptedModel
from edgecrew.settings import get_settings
from edgecrew.store import open_store
from edgecrew.tools.base import ToolRegistry
from tests.unit.engine_helpers import run_team, teardown

MONDAY = """
name: monday
agents:
  strategist: {model: fake, system: Set the priorities., tools: [memory.remember]}
graph: {start: strategist, edges: [{from: strategist, to: end}]}
"""

TUESDAY = """
name: tuesday
agents:
  planner: {model: fake, system: Plan the day., tools: [memory.recall]}
graph: {start: planner, edges: [{from: planner, to: end}]}
"""


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    teardown()


async def test_a_fact_remembered_in_one_run_is_recalled_in_a_later_run_by_another_agent_of_the_project() -> None:
    service = MemoryService.open(open_store(get_settings().store_url), embedder=HashingEmbedder())
    registry = ToolRegistry()
    register_memory_tools(registry, service)
    fact = "Priority for Tuesday: finish the offline memory benchmark"

    remember = {"tool": "memory.remember", "args": {"text": fact, "project": "okr"}}
    monday, _ = await run_team(MONDAY, ScriptedModel([remember, "noted"]), tools=registry)
    assert monday.status == "succeeded"
    teardown()  # the next run starts in a fresh runtime, as a later process would

    recall = {"tool": "memory.recall", "args": {"query": "what is the priority for Tuesday", "project": "okr"}}
    model = ScriptedModel([recall, "planned"])
    tuesday, rt = await run_team(TUESDAY, model, tools=registry)
    assert tuesday.status == "succeeded"
    observation = model.calls[1].request.messages[-1].content
    assert fact in observation and '"scope_id": "okr"' in observation
    assert [e.type for e in rt.store.events(tuesday.id)].count("tool_called") == 1
    teardown()

    elsewhere = {"tool": "memory.recall", "args": {"query": "what is the priority for Tuesday", "project": "blog"}}
    model = ScriptedModel([elsewhere, "planned"])
    await run_team(TUESDAY, model, tools=registry)
    observation = model.calls[1].request.messages[-1].content
    assert fact not in observation and '"memories": []' in observation and "project blog match" in observation
