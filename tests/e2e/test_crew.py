"""The crew team in a project: the morning routine fires on its schedule (a test clock: the firing that
passed while no server was up), reads the project's OKRs and yesterday's notes, and writes today's
priorities back into the project's files and memory; each block takes its own path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService, TeamName
from edgecrew.errors import UserError
from edgecrew.memory import MemoryService, ScopeRef
from edgecrew.models.scripted import ScriptedModel
from edgecrew.ops import Ops
from edgecrew.ops.routines import previous_firing
from edgecrew.projects import ProjectService
from tests.conftest import write

OKRS = {"objectives": [{"objective": "Ship the sensor dashboard", "key_results": ["alerts reach the phone"]}]}
PRIORITIES = {"priorities": ["send alerts to the phone", "test with live data"], "drift": "none"}


@pytest.fixture
async def rt(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")  # the e5 model has its own real test
    write(
        project_dir / "edgecrew.yaml",
        """
        routines:
          crew-morning:
            team: crew
            task: Morning alignment
            cron: "30 7 * * *"
            project: launch
        """,
    )
    from edgecrew.settings import reset_settings

    reset_settings()
    runtime = bootstrap()
    runtime.models.register("local", ScriptedModel([{"json": PRIORITIES}]))
    projects = ProjectService.of(runtime)
    launch = projects.create("launch", "the sensor dashboard")
    (projects.files("launch") / "okr.json").write_text(json.dumps(OKRS))
    MemoryService.of(runtime).remember(
        "Yesterday: the dashboard reads live data; alerts not started.", "project", launch.id
    )
    ops = Ops.of(runtime)
    durable.launch(runtime, queues=ops.queues())
    await ops.routines.start()
    yield runtime
    durable.shutdown()


async def test_the_morning_routine_fires_on_schedule_and_leaves_priorities_in_the_project(rt: Runtime) -> None:
    from dbos._dbos import _get_dbos_instance

    routines = Ops.of(rt).routines
    doc = rt.project.routines["crew-morning"]
    now = datetime.now(UTC)
    due = previous_firing(doc, now)
    # The test clock: the schedule last fired the day before, so the firing at 07:30 is due now.
    _get_dbos_instance()._sys_db.update_last_fired_at(
        routines.schedule_name("crew-morning"), (due - timedelta(days=1)).isoformat()
    )
    await asyncio.to_thread(routines.sync, now)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [r for r in routines.runs("crew-morning") if r.status.terminal]:
        await asyncio.sleep(0.2)
    [run] = routines.runs("crew-morning")
    assert run.status.value == "succeeded", run.error
    assert run.trigger == {"kind": "routine", "routine": "crew-morning", "firing": due.astimezone(UTC).isoformat()}
    steps = {s.agent: s for s in RunService(rt).steps(run.id)}
    assert [a for a in ("okrs", "notes", "block", "strategist", "note", "write", "remember") if a in steps] == [
        "okrs",
        "notes",
        "block",
        "strategist",
        "note",
        "write",
        "remember",
    ]
    # what the strategist read: the project's OKRs and yesterday's note from memory
    assert steps["okrs"].output == OKRS
    assert "alerts not started" in steps["notes"].output["memories"][0]["text"]
    # what it left in the project: a file, and a memory the next run recalls
    written = (ProjectService.of(rt).files("launch") / "morning.md").read_text()
    assert "Priorities: send alerts to the phone; test with live data. Drift: none" in written
    launch = ProjectService.of(rt).get("launch")
    recalled = MemoryService.of(rt).recall("today's priorities", [ScopeRef("project", launch.id)], 5)
    assert any(h.text.startswith("Morning: Priorities: send alerts to the phone") for h in recalled.hits)


@pytest.mark.parametrize(
    ("task", "agent", "reply", "says"),
    [
        ("Midday triage", "planner", {"next": ["fix the alert"], "blockers": "none"}, "Next: fix the alert"),
        ("Afternoon review", "critic", {"verdict": "revise", "notes": "alerts untested"}, "Review (revise)"),
        ("Evening knowledge sync", "synthesizer", {"summary": "alerts work"}, "Summary: alerts work"),
        # the seed's own names of its blocks: "review" in them is not the afternoon's
        ("Midday Review / Triage", "planner", {"next": ["fix the alert"], "blockers": "none"}, "Next: fix the alert"),
        ("Daily Alignment Review", "strategist", PRIORITIES, "Priorities: send alerts to the phone"),
        ("Postmortem and Risk Review", "critic", {"verdict": "approve", "notes": "done"}, "Review (approve)"),
    ],
)
async def test_each_block_takes_its_own_path(
    rt: Runtime, task: str, agent: str, reply: dict[str, object], says: str
) -> None:
    rt.models.register("local", ScriptedModel([{"json": reply}]))
    done = await RunService(rt).run(TeamName("crew"), task, project="launch")
    assert done.ok, done.run.error
    agents = {s.agent for s in RunService(rt).steps(done.run.id)}
    assert agent in agents and not ({"strategist", "planner", "critic", "synthesizer"} - {agent}) & agents
    assert says in done.run.output["text"]


@pytest.mark.real_model
async def test_a_morning_alignment_on_smollm2_writes_priorities_into_the_project() -> None:
    pytest.importorskip("llama_cpp", reason="the embedded model needs the [local] extra (make test installs it)")
    runtime = bootstrap()
    projects = ProjectService.of(runtime)
    launch = projects.create("launch")
    (projects.files("launch") / "okr.json").write_text(json.dumps(OKRS))
    yesterday = "Yesterday: the dashboard reads live data; alerts not started."
    MemoryService.of(runtime).remember(yesterday, "project", launch.id)
    try:
        done = await RunService(runtime).run(TeamName("crew"), "Morning alignment", project="launch")
    finally:
        durable.shutdown()
    assert done.ok, done.run.error
    steps = {s.agent: s for s in RunService(runtime).steps(done.run.id)}
    assert steps["strategist"].completion_tokens > 0 and 1 <= len(steps["strategist"].output["priorities"]) <= 3
    written = (projects.files("launch") / "morning.md").read_text()
    assert written.startswith("# Priorities (morning)") and steps["strategist"].output["priorities"][0] in written


@pytest.mark.parametrize(
    ("okr", "says"),
    [
        (
            '{"objectives": [\n  {"objective": "Ship", "key_results": ["alerts",]}\n',
            "project/okr.json is not valid JSON (line 2, column",
        ),
        (None, "No OKRs: project/okr.json is missing or empty"),
    ],
)
async def test_an_okr_file_the_strategist_cannot_read_is_told_not_remembered(
    rt: Runtime, okr: str | None, says: str
) -> None:
    okr_file = ProjectService.of(rt).files("launch") / "okr.json"
    if okr is None:
        okr_file.unlink()
    else:
        okr_file.write_text(okr)
    done = await RunService(rt).run(TeamName("crew"), "Morning alignment", project="launch")
    assert done.ok, done.run.error
    assert says in done.run.output["text"]
    written = (ProjectService.of(rt).files("launch") / "morning.md").read_text()
    assert says in written and "Priorities: send alerts to the phone" in written
    if okr is not None:
        assert okr_file.read_text() == okr  # the person's file is left as it is
    launch = ProjectService.of(rt).get("launch")
    recalled = MemoryService.of(rt).recall("today's priorities", [ScopeRef("project", launch.id)], 5)
    assert recalled.hits and not [h for h in recalled.hits if "okr.json" in h.text]


async def test_readable_okrs_give_no_warning(rt: Runtime) -> None:
    done = await RunService(rt).run(TeamName("crew"), "Morning alignment", project="launch")
    assert done.ok, done.run.error
    assert done.run.output["text"].endswith("of project launch and remembered for the next runs)")


async def test_the_crew_without_a_project_is_refused_saying_how_to_give_one(rt: Runtime) -> None:
    """The crew says ``needs_project: true``: started in no project, the run use case refuses it before
    anything is recorded (every entry point: CLI, POST /runs, /v1, jobs), naming how to give one."""
    before = rt.store.list_runs(limit=100)
    with pytest.raises(UserError, match=r"team 'crew' works in a project \(needs_project: true\) and none was given"):
        await RunService(rt).run(TeamName("crew"), "Morning alignment")
    assert rt.store.list_runs(limit=100) == before  # no run recorded, nothing written or remembered


async def test_the_judges_read_the_newest_notes_with_their_dates(rt: Runtime) -> None:
    launch = ProjectService.of(rt).get("launch")
    memory = MemoryService.of(rt)
    for day in range(1, 9):  # older notes, each closer in meaning to the morning's query than today's
        memory.remember(f"Morning alignment progress notes and priorities of day {day}", "project", launch.id)
    memory.remember("Evening: Summary: alerts reach the phone", "project", launch.id)
    seen: list[str] = []

    def strategist(req: Any, index: int) -> dict[str, Any]:
        seen.append(req.messages[-1].content)
        return {"json": PRIORITIES}

    rt.models.register("local", ScriptedModel(strategist))
    done = await RunService(rt).run(TeamName("crew"), "Morning alignment", project="launch")
    assert done.ok, done.run.error
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    notes = seen[0].split("Notes from earlier runs, newest first:\n", 1)[1].splitlines()
    assert notes[0] == f"- {today}: Evening: Summary: alerts reach the phone"
    assert len(notes) == 5 and "day 8" in notes[1] and "day 5" in notes[4]
