"""The EdgePilot team on the engine's fakes with the real tools of a bootstrapped runtime: the planner's
choice becomes a typed plan, the facts come from the machine, every recommended figure is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import edgecrew
from edgecrew.bootstrap import bootstrap
from edgecrew.engine.fakes import FakeTurnIO, FakeTurnRunner
from edgecrew.specs.loader import load_team
from edgecrew.tools.base import ToolContext

TEAM = Path(edgecrew.__file__).parent / "teams" / "edgepilot.yaml"
FITS = "Can I run a 4 GB job now? If not, when?"


def kind(value: str) -> dict[str, Any]:
    return {"json": {"kind": value}}


def advice(*actions: str) -> dict[str, Any]:
    return {"json": {"actions": list(actions), "confidence": "high"}}


async def run_with(task: str, *replies: dict[str, Any]) -> tuple[Any, FakeTurnRunner]:
    answers = iter(replies)
    rt = bootstrap()
    io = FakeTurnIO(lambda request, call: next(answers), rt.tools)
    runner = FakeTurnRunner(load_team(TEAM, catalog=rt.catalog()), io)
    return await runner.run(task), runner


def output(runner: FakeTurnRunner, agent: str) -> Any:
    return [t.result.output for t in runner.turns if t.visit.agent == agent][-1]


async def test_a_job_question_is_answered_with_the_schedulers_figures() -> None:
    result, runner = await run_with(FITS, kind("whether a job fits now and when"), advice("submit it now"))
    assert result.ok, result.error
    assert runner.path == ["planner", "plan", "executor", "summarizer", "check", "answer"]
    # 4 GB read from the question (never sampled), asked of the scheduler twice: now, and when
    assert output(runner, "plan")["steps"] == [
        {"action": "can_run", "memory_mb": 3815},
        {"action": "suggest_window", "memory_mb": 3815},
    ]
    facts = output(runner, "executor")["facts"]
    can_run = facts[0]["result"]
    text = result.output["text"]
    verdict = "fits now" if can_run["fits"] else "does not fit now"
    assert f"A job needing 3815 MiB {verdict}" in text
    assert f"({can_run['free_memory_mb']} MiB of memory" in text
    assert facts[1]["tool"] == "scheduler.suggest_window" and facts[1]["statement"] in text
    assert "Recommended:\n- submit it now\nConfidence: high." in text
    # the planner read the question after its solved examples; the summarizer read only the facts
    planner_sent = runner.io.requests[0].messages
    assert planner_sent[-1].content == f"Question: {FITS}"
    assert runner.io.requests[1].messages[-1].content.startswith(f"Question: {FITS}\n\nFacts: A job needing")


@pytest.mark.parametrize(
    ("task", "choice", "steps"),
    [
        (
            "What used the most memory in the last hour?",
            "what used the most memory",
            [{"action": "top_usage", "resource": "memory", "window": "1h"}],
        ),
        (
            "Which process used the most CPU today?",
            "what used the most cpu",
            [{"action": "top_usage", "resource": "cpu", "window": "24h"}],
        ),
        ("How busy is the machine right now?", "how busy the machine is", [{"action": "report", "window": "15m"}]),
        # a range the question writes is covered whole: 2 hours were answered over 1h, 30 minutes over 15m,
        # "6h" (no space) over 1h, 3 days over 24h
        (
            "What used the most memory in the last 2 hours?",
            "what used the most memory",
            [{"action": "top_usage", "resource": "memory", "window": "6h"}],
        ),
        (
            "Which process used the most CPU in the last 30 minutes?",
            "what used the most cpu",
            [{"action": "top_usage", "resource": "cpu", "window": "1h"}],
        ),
        ("How busy was it over the last 6h?", "how busy the machine is", [{"action": "report", "window": "6h"}]),
        ("How busy was the box in the last 3 days?", "how busy the machine is", [{"action": "report", "window": "7d"}]),
        ("How busy was it this week?", "how busy the machine is", [{"action": "report", "window": "7d"}]),
        # the README's morning routine asks about the night: it was answered over the last hour
        (
            "What used the most memory overnight?",
            "what used the most memory",
            [{"action": "top_usage", "resource": "memory", "window": "24h"}],
        ),
        (
            "Start `./backup.sh` (needs 1 GB)",
            "start a job",
            [{"action": "can_run", "memory_mb": 954}, {"action": "run_task", "memory_mb": 954}],
        ),
    ],
)
async def test_each_kind_of_question_gets_its_typed_plan(task: str, choice: str, steps: list[dict[str, Any]]) -> None:
    result, runner = await run_with(task, kind(choice), advice("keep an eye on it"))
    assert result.ok, result.error
    assert output(runner, "plan")["steps"] == steps
    facts = output(runner, "executor")["facts"]
    assert [f["action"] for f in facts] == [s["action"] for s in steps]
    assert all(f["statement"] for f in facts)
    if choice == "start a job":
        proposal = output(runner, "executor")["run_task"]
        assert proposal["command"] == "./backup.sh" and proposal["argv"] == ["./backup.sh"]
        assert "submit" in runner.path, runner.path  # jobs.submit: risky, so behind the approval gate
        text = result.output["text"]  # what happened, not the proposal's "needs approval" before it
        assert "Submitted job j" in text and "approval" not in text, text
        # `edgecrew run` starts no job: the answer says who does (it waited on nothing that would come)
        assert "a server (`edgecrew serve`) starts it when its policies allow" in text, text


async def test_a_recommendation_with_a_figure_the_facts_lack_is_sent_back_then_set_aside() -> None:
    invented = advice("free 123456 MiB first")
    result, runner = await run_with(FITS, kind("whether a job fits now and when"), invented, invented)
    assert result.ok, result.error
    assert runner.path == ["planner", "plan", "executor", "summarizer", "check", "summarizer", "check", "answer"]
    check = output(runner, "check")
    assert check["verdict"] == "revise" and "123456" in check["notes"]
    assert "Check: These figures are not in the facts: 123456" in runner.io.requests[2].messages[-1].content
    text = result.output["text"]
    assert "123456" not in text.split("(The recommendations")[0] and "set aside" in text


async def test_the_plan_executor_takes_sizes_from_the_question_and_never_runs_a_task(tmp_path: Path) -> None:
    rt = bootstrap()
    spec = rt.tools.find("pilot.execute")
    assert spec is not None
    ctx = ToolContext(run_id="r1", agent="executor", workspace=tmp_path)
    out = await spec.call(
        {
            "steps": [{"action": "can_run", "memory_mb": 99}, {"action": "run_task", "command": "rm -rf /"}],
            "question": "is there room for 512 MiB?",
        },
        ctx,
    )
    assert out["facts"][0]["result"]["fits"] in (True, False)
    assert out["facts"][0]["statement"].startswith("A job needing 512 MiB")  # the question's size won
    assert out["run_task"] == {
        "command": "rm -rf /",
        "argv": ["rm", "-rf", "/"],
        "memory_mb": 512,
        "cpu_cores": 1.0,
        "note": "Submitting the job needs a person's approval (jobs.submit).",
    }
    assert "512" in out["figures"]
    with pytest.raises(Exception, match="action"):
        await spec.call({"steps": [{"action": "reboot"}]}, ctx)


async def _execute(question: str, *steps: dict[str, Any]) -> dict[str, Any]:
    rt = bootstrap()
    spec = rt.tools.find("pilot.execute")
    assert spec is not None
    ctx = ToolContext(run_id="r1", agent="executor", workspace=Path(rt.settings.home))
    out: dict[str, Any] = await spec.call({"steps": list(steps), "question": question}, ctx)
    return out


async def test_a_command_that_cannot_be_read_is_said_not_proposed() -> None:
    """An unclosed quote left no argv, so the team submitted nothing, while the answer said "Submitting
    the job needs a person's approval", with no approval anywhere."""
    out = await _execute("Start `python -c 'print(1)` now (1 GB)", {"action": "run_task", "memory_mb": 954})
    proposal = out["run_task"]
    assert proposal["argv"] == [] and "approval" not in proposal["note"], proposal
    assert proposal["note"] == (
        "Nothing was submitted: the command `python -c 'print(1)` cannot be read (No closing quotation); "
        "write it whole in backticks, e.g. `./backup.sh`."
    )
    assert out["summary"] == proposal["note"]


async def test_the_cpu_cores_come_from_the_question_or_are_said_to_be_assumed() -> None:
    """ "Can I run a 4 GB job now?" on a busy box answered "does not fit now: needs 1 CPU cores, 0.5
    free" with no word that the core was assumed, and "on 2 cores" was judged for 1 core all the same;
    the job it proposed was submitted needing no core, so it started at once after "does not fit"."""
    from tests.unit.test_pool import FakeProbe

    rt = bootstrap()
    rt.pool._probe = FakeProbe(total=64 * 2**30, available=32 * 2**30, cpu=0.5)  # half a core free
    spec = rt.tools.find("pilot.execute")
    assert spec is not None
    ctx = ToolContext(run_id="r1", agent="executor", workspace=Path(rt.settings.home), pool=rt.pool)

    async def ask(question: str, *steps: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = await spec.call({"steps": list(steps), "question": question}, ctx)
        return out

    unsaid = await ask("Can I run a 4 GB job now?", {"action": "can_run"})
    assert unsaid["facts"][0]["statement"].startswith(
        "A job needing 3815 MiB does not fit now: needs 1 CPU cores, 0.5 free"
    ) and unsaid["facts"][0]["statement"].endswith("(The question names no CPU cores, so 1 is assumed.)")
    said = await ask("Can I run a 4 GB job on 2 cores now?", {"action": "can_run"})
    assert "needs 2 CPU cores, 0.5 free" in said["summary"] and "assumed" not in said["summary"], said
    small = await ask("Is there room for a 1 GB job using 0.25 CPUs?", {"action": "can_run"})
    assert small["facts"][0]["result"]["fits"] is True, small
    proposed = await ask("Start `./train.sh` (4 GB, 2 cores)", {"action": "run_task"})
    assert proposed["run_task"]["cpu_cores"] == 2.0  # jobs.submit asks for what can_run judged
    assumed = await ask("Start `./train.sh` (4 GB)", {"action": "run_task"})
    assert assumed["run_task"]["cpu_cores"] == 1.0


async def test_a_job_bigger_than_the_machine_is_not_proposed() -> None:
    """ "Start `./train.sh` (64 cores)" on a smaller box asked a person to approve jobs.submit, which then
    refused the job ("could never start here") and failed the run."""
    import psutil

    cores = (psutil.cpu_count() or 1) * 4
    out = await _execute(f"Start `./train.sh` (1 GB, {cores} cores)", {"action": "run_task"})
    proposal = out["run_task"]
    assert proposal["argv"] == [] and "approval" not in proposal["note"], proposal
    assert proposal["note"].startswith("Nothing was submitted: it can never run here: it needs "), proposal
    assert f"{cores} CPU cores, more than this machine has" in proposal["note"]
    huge = await _execute("Start `./train.sh` (100 TB)", {"action": "run_task"})
    assert huge["run_task"]["argv"] == [] and "MiB of memory, more than this machine has" in huge["summary"]


async def test_the_executor_says_which_size_it_assumed_and_writes_big_sizes_whole() -> None:
    # "4G" is not a size with a unit in prose: the answer must not pass 2048 MiB off as the asked size.
    out = await _execute("Can I run a 4G job now?", {"action": "can_run", "memory_mb": 2048})
    assert out["facts"][0]["statement"].startswith("A job needing 2048 MiB")
    assert "names no size with a unit, e.g. 4 GB, so 2048 MiB is assumed" in out["summary"]
    huge = await _execute("Can I run a 4 TB job now?", {"action": "can_run", "memory_mb": 1})
    statement = huge["facts"][0]["statement"]
    assert statement.startswith("A job needing 3814697 MiB does not fit now") and "e+" not in statement
    assert "MiB is assumed" not in huge["summary"]  # (a busy test machine may add the assumed CPU core)


async def test_a_negative_size_is_refused_and_nothing_is_asked_or_proposed() -> None:
    out = await _execute(
        "Start `./backup.sh`, it needs -4 GB",
        {"action": "can_run", "memory_mb": 3815},
        {"action": "suggest_window", "memory_mb": 3815},
        {"action": "run_task", "memory_mb": 3815},
    )
    assert out["summary"] == (
        "A job cannot need a negative amount of memory (-4 GB); ask again with the size it needs, e.g. 4 GB."
    )
    assert [f["tool"] for f in out["facts"]] == [None, None, None] and out["run_task"] is None
    comma = await _execute("Can I run a job of -1,5 GB?", {"action": "can_run", "memory_mb": 1})
    assert comma["summary"].startswith("A job cannot need a negative amount of memory (-1,5 GB)"), comma
    decimal = await _execute("Can I run a 1,5 GB job?", {"action": "can_run", "memory_mb": 1})
    assert decimal["facts"][0]["statement"].startswith("A job needing 1431 MiB")  # 1.5 GB (it read 5 GB)
    ranged = await _execute("Is there room for a 4-8 GB job?", {"action": "can_run", "memory_mb": 1})
    assert ranged["facts"][0]["statement"].startswith("A job needing 7629 MiB")  # a range (its top), not a minus


async def test_a_policy_that_holds_jobs_back_makes_can_run_say_not_now() -> None:
    from edgecrew.ops import Ops

    rt = bootstrap()
    Ops.of(rt).jobs.apply_policy("tight", {"min_free_memory": "1000TiB"}, "test", "test")
    spec = rt.tools.find("pilot.execute")
    assert spec is not None
    ctx = ToolContext(run_id="r1", agent="executor", workspace=Path(rt.settings.home))
    out = await spec.call({"steps": [{"action": "can_run", "memory_mb": 1}], "question": "room for 1 MiB?"}, ctx)
    [fact] = out["facts"]
    assert fact["result"]["fits"] is False and fact["result"]["held_by_policies"][0].startswith("tight: free memory")
    # (the machine's own room comes first when it has none: a busy box has no CPU core free)
    assert fact["statement"].startswith("A job needing 1 MiB does not fit now: ")
    assert "policy tight: free memory is " in fact["statement"]


async def test_in_a_chat_the_plan_and_the_facts_read_the_newest_message() -> None:
    """`edgecrew chat edgepilot`: "And a 12 GB one?" after "Can I run a 4 GB job now?" was answered for
    3815 MiB, the first size in the transcript (the earlier question's), and a span or a command of an
    earlier message won over the newest one's the same way."""
    from edgecrew.engine.chat import ChatMessage, compose_task

    earlier = [
        ChatMessage("user", "Can I run a 4 GB job now? And what ran `./old.sh` in the last 2 hours?"),
        ChatMessage("assistant", "A job needing 3815 MiB fits now (9000 MiB of memory free for jobs)."),
    ]
    task = compose_task([*earlier, ChatMessage("user", "And a 12 GB one?")])
    result, runner = await run_with(task, kind("whether a job fits now and when"), advice("wait"))
    assert result.ok, result.error
    assert output(runner, "plan")["steps"][0] == {"action": "can_run", "memory_mb": 11444}
    assert "A job needing 11444 MiB" in result.output["text"]
    busy = compose_task([*earlier, ChatMessage("user", "How busy was it in the last 30 minutes?")])
    result, runner = await run_with(busy, kind("how busy the machine is"), advice("wait"))
    assert output(runner, "plan")["steps"] == [{"action": "report", "window": "1h"}]
    start = compose_task([*earlier, ChatMessage("user", "Start `./backup.sh` (needs 1 GB)")])
    result, runner = await run_with(start, kind("start a job"), advice("wait"))
    assert output(runner, "executor")["run_task"]["argv"] == ["./backup.sh"]


def test_a_window_of_one_start_time_is_said_as_one_time() -> None:
    """A window whose latest start is its first read "2026-12-07 18:30 to 2026-12-07 18:30"."""
    from edgecrew.ops.pilot import _statement

    result = {
        "summary": "Next window: a job may start at 2026-12-07T18:30+00:00 only.",
        "windows": [
            {"start": "2026-12-07T18:30+00:00", "end": "2026-12-07T18:30+00:00", "expected_free_memory_mb": 900},
            {"start": "2026-12-08T18:00+00:00", "end": "2026-12-08T18:30+00:00", "expected_free_memory_mb": 800},
        ],
    }
    said = _statement("suggest_window", {"memory_mb": 512}, result)
    one, two = (_clock(t) for t in ("2026-12-07T18:30+00:00", "2026-12-08T18:00+00:00"))
    assert f"Windows: at {one} (about 900 MiB available); {two} to " in said, said
    assert f"{one} to {one}" not in said


def _clock(value: str) -> str:
    from edgecrew.ops.pilot import _clock as clock

    return clock(value)


async def test_a_denied_job_is_an_answer_not_a_failed_run() -> None:
    """A person denying the proposed job failed the whole run ("agent 'submit' ended with tool_errors"),
    with no answer: the facts it had gathered were lost. A person's decision is not a failure."""
    from edgecrew.engine.fakes import Deny

    async def person(agent: Any, call: Any) -> Deny:
        return Deny("not on Fridays")

    answers = iter([kind("start a job"), advice("wait for Monday")])
    rt = bootstrap()
    io = FakeTurnIO(lambda request, call: next(answers), rt.tools, approve=person)
    runner = FakeTurnRunner(load_team(TEAM, catalog=rt.catalog()), io)
    result = await runner.run("Start `./backup.sh` (needs 1 GB)")
    assert result.ok, result.error
    text = result.output["text"]
    assert text.startswith("A job needing 954 MiB"), text  # the facts are still the answer
    assert "Not submitted: a person denied it (not on Fridays)." in text, text
    assert "Submitted job" not in text and "needs a person's approval" not in text, text
