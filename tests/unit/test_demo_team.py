"""The demo team, machine-check, on the engine's fakes with the real built-in tools: the answer's figures
are this machine's, and its critic rejects a judgement that contradicts the scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

import edgecrew
from edgecrew.domain.templating import render_value
from edgecrew.engine.fakes import FakeTurnIO, FakeTurnRunner
from edgecrew.specs.loader import load_team
from edgecrew.tools.builtins import builtin_registry

TEAM = Path(edgecrew.__file__).parent / "teams" / "machine-check.yaml"
TASK = "How much memory and disk is free here, and does a 2 GB job fit now?"


def advice(fits: bool, action: str) -> dict[str, Any]:
    return {"json": {"fits": fits, "action": action}}


def right(scheduler: dict[str, Any]) -> dict[str, Any]:
    return advice(scheduler["fits"], "start it now" if scheduler["fits"] else "wait until memory is free")


def wrong(scheduler: dict[str, Any]) -> dict[str, Any]:
    return advice(not scheduler["fits"], "wait until memory is free" if scheduler["fits"] else "start it now")


async def run_with(*answers: Any) -> tuple[Any, FakeTurnRunner]:
    """Run the team; the advisor's replies are built from what the scheduler said in this run."""
    replies = iter(answers)

    def reply(request: Any, call: int) -> Any:
        scheduler = runner.turns[1].result.output  # fits' output: the scheduler's verdict for this run
        return next(replies)(scheduler)

    io = FakeTurnIO(reply, builtin_registry())
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run(TASK)
    return result, runner


async def test_the_answer_carries_this_machines_figures_and_the_schedulers_verdict() -> None:
    result, runner = await run_with(right)
    assert result.ok, result.error
    text = result.output["text"]
    scheduler = runner.turns[1].result.output
    total = render_value("{{ outputs.n | human_bytes }}", {"task": "", "outputs": {"n": psutil.virtual_memory().total}})
    assert f"free of {total}." in text
    assert ("fits now" if scheduler["fits"] else "does not fit now") in text
    assert f"{scheduler['free_memory_mb']} MiB free for jobs" in text
    assert "A job needing 1907 MiB" in text  # 2 GB, read from the task
    assert runner.path == ["facts", "fits", "advisor", "critic", "answer"]
    # the advisor read only the task and the scheduler's result, after three solved examples
    sent = runner.io.requests[0].messages
    assert len(sent) == 8 and sent[-1].content.startswith(f"Task: {TASK}\n\nScheduler: {{")


async def test_the_critic_sends_back_a_judgement_that_contradicts_the_scheduler() -> None:
    result, runner = await run_with(wrong, right)
    assert result.ok, result.error
    assert runner.path == ["facts", "fits", "advisor", "critic", "advisor", "critic", "answer"]
    critic = [t.result.output for t in runner.turns if t.visit.agent == "critic"]
    assert critic[0]["verdict"] == "revise" and "Wrong: the scheduler says" in critic[0]["notes"]
    assert critic[1]["verdict"] == "approve"
    assert "Critic: Wrong" in runner.io.requests[1].messages[-1].content  # the advisor read why
    assert "Recommended:" in result.output["text"]


async def test_a_judgement_that_stays_wrong_is_set_aside_not_shown() -> None:
    result, runner = await run_with(wrong, wrong, wrong)  # the revise loop is bounded: twice
    assert result.ok
    assert runner.path.count("advisor") == 3
    text = result.output["text"]
    assert "Recommended:" not in text and "set aside" in text
