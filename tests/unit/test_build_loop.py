"""The built-in team build-loop on the engine's fakes, with the real task tools, store and sandbox: the
loop goes round twice (the first version fails its checks, the second passes) and the task ends done."""

from __future__ import annotations

from pathlib import Path

import edgecrew
from edgecrew.engine.executors import executor_alive, executor_id
from edgecrew.engine.fakes import FakeTurnIO, FakeTurnRunner
from edgecrew.specs.loader import load_team
from edgecrew.store.repo import open_store
from edgecrew.store.tasks import TaskStore
from edgecrew.tasks import ExecutionService, register_task_tools
from edgecrew.tools.builtins import builtin_registry
from edgecrew.tools.sandbox import SandboxLimits

TEAM = Path(edgecrew.__file__).parent / "teams" / "build-loop.yaml"
GENERATED = {
    "title": "Add two numbers",
    "spec": "Read two integers from stdin and print their sum.",
    "io": [{"input": "2 3", "expected": "5"}, {"input": "10 -4", "expected": "6"}],
}
WRONG = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a - b)\n"
RIGHT = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"


def fenced(code: str) -> dict[str, str]:
    """A coder's reply as models write code: a fenced block, with words around it."""
    return {"text": f"Here is the program:\n```python\n{code}```\nIt reads stdin."}


def workspace(tmp_path: Path) -> tuple[TaskStore, FakeTurnIO, dict[str, list[object]]]:
    tasks = TaskStore(open_store(f"sqlite:///{tmp_path / 'store.db'}"), tmp_path / "tasks")
    executions = ExecutionService(
        tasks, executor=executor_id(), executor_alive=executor_alive, limits=SandboxLimits(wall_s=10, cpu_s=5)
    )
    registry = builtin_registry()
    register_task_tools(registry, tasks, executions)
    replies: dict[str, list[object]] = {
        "generator": [{"json": GENERATED}],
        "coder": [fenced(WRONG), fenced(RIGHT)],
        "evaluator": [{"json": {"notes": "it subtracts; add the numbers instead"}}],
    }
    return tasks, FakeTurnIO(replies, registry), replies  # type: ignore[arg-type]


async def test_the_loop_goes_round_twice_and_ends_with_the_task_done(tmp_path: Path) -> None:
    tasks, io, _ = workspace(tmp_path)
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run("a program that adds two numbers")
    assert result.ok, result.error
    assert runner.path == [
        "intake", "generator", "create", "coder", "save", "runner", "evaluator", "feedback",
        "coder", "save", "runner", "feedback", "finish", "report",
    ]  # fmt: skip
    task = tasks.get(result.output["task_id"])
    assert (task.status, task.best_version, task.title) == ("done", 2, "Add two numbers")
    assert [v.version for v in tasks.code_versions(task.id)] == [1, 2]
    # the program out of the coder's fenced reply, without the words around it
    assert tasks.code_bytes(tasks.code_version(task.id, 1)).decode() == WRONG
    assert result.output["summary"] == (
        "Done: version 2 passes all 2 checks, the generator's (a model wrote them: read them with edgecrew tasks"
        f" show {task.id}, or write your own after 'Checks:'); 2 versions written. Its code: edgecrew tasks code"
        f" {task.id} 2."
    )
    assert [r.version for r in tasks.results(task.id)] == [1, 2]
    assert [(f.version, f.verdict) for f in tasks.feedback(task.id)] == [(1, "needs_changes"), (2, "accepted")]
    first = tasks.feedback(task.id)[0].notes
    assert "expected '5'" in first and "add the numbers instead" in first
    assert [e.status for e in tasks.executions(task.id)] == ["failed", "succeeded"]
    # the coder's second turn read what failed and its own last version
    second = [r for r in io.model_calls if r.agent == "coder"][1].request.messages[-1].content
    assert "print(a - b)" in second and "add the numbers instead" in second
    # the writes name the agent and the run that made them
    assert tasks.code_versions(task.id)[0].author == "save@fake"


async def test_a_coder_that_never_gets_it_right_ends_the_task_failed_after_the_bound(tmp_path: Path) -> None:
    tasks, io, replies = workspace(tmp_path)
    replies["coder"] = [fenced(WRONG), fenced(WRONG.replace("a - b", "b - a")), fenced(WRONG.replace("-", "*"))]
    replies["evaluator"] = [{"json": {"notes": "still wrong"}}] * 3
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run("a program that adds two numbers")
    # Every agent finished, and the run fails as its task did (a script reads it from the exit code).
    assert not result.ok and result.error == "the team's answer says its work failed (failed_when: status == 'failed')"
    assert runner.path.count("runner") == 3  # the first try and two more (max_loops: 2)
    task = tasks.get(result.output["task_id"])
    assert task.status == "failed" and task.best_version in (1, 2, 3)
    assert [f.verdict for f in tasks.feedback(task.id)] == ["needs_changes"] * 3
    # the answer says what was tried, which version is best and where to read it, and what to do next
    summary = result.output["summary"]
    assert summary.startswith(
        "Failed: 3 versions written, none passes every check; the last run: 2 problems; first: io check 1 failed"
    )
    assert f"edgecrew tasks code {task.id} {task.best_version}" in summary and "tag `coding`" in summary
    assert result.output["versions"] == 3


async def test_a_coder_that_writes_a_version_again_ends_the_loop_there(tmp_path: Path) -> None:
    tasks, io, replies = workspace(tmp_path)
    replies["coder"] = [fenced(WRONG), {"text": f"```py\n{WRONG}\n```"}, fenced(RIGHT)]  # the same file again
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run("a program that adds two numbers")
    assert not result.ok and result.output["status"] == "failed"
    # version 2 is stored (what the coder wrote), not run: it would fail as version 1 did; no third try
    assert runner.path[-5:] == ["feedback", "coder", "save", "finish", "report"]
    task = tasks.get(result.output["task_id"])
    assert [v.version for v in tasks.code_versions(task.id)] == [1, 2]
    assert [e.version for e in tasks.executions(task.id)] == [1] and task.best_version == 1
    assert "version 2 is version 1 again, so the loop stopped; the last run: " in result.output["summary"]


async def test_the_checks_a_request_writes_are_the_tasks_exactly_and_no_model_writes_the_task(
    tmp_path: Path,
) -> None:
    tasks, io, _ = workspace(tmp_path)
    runner = FakeTurnRunner(load_team(TEAM), io)
    request = 'a program that adds two numbers. Checks: "1 1" -> "2"; 7 8 -> 15'
    result = await runner.run(request)
    assert result.ok, result.error
    task = tasks.get(result.output["task_id"])
    # the generator's own checks ("2 3" -> "5", ...) are not used: the request's are, exactly
    assert task.checks == {"io": [{"input": "1 1", "expected": "2"}, {"input": "7 8", "expected": "15"}]}
    assert runner.path[:2] == ["intake", "create"]  # no model wrote the task: the request did
    assert task.title == task.description == "a program that adds two numbers."
    assert not [r for r in io.model_calls if r.agent == "generator"]
    coder = next(r for r in io.model_calls if r.agent == "coder").request.messages[-1].content
    assert 'Checks (stdin -> expected stdout): "1 1" -> "2"; "7 8" -> "15"' in coder
    assert result.output["summary"].startswith("Done: version 2 passes all 2 checks, the request's; 2 versions")


async def test_a_check_the_request_writes_wrong_fails_the_run_naming_it(tmp_path: Path) -> None:
    tasks, io, _ = workspace(tmp_path)
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run("a program that adds two numbers. Checks: 1 1 -> 2; 7 8 = 15")
    assert not result.ok and "check 2 ('7 8 = 15') has no '->'" in (result.error or "")
    assert (
        "agent 'intake'" in (result.error or "") and tasks.count_tasks() == 0
    )  # nothing was filed with made-up checks


async def test_a_check_with_a_key_tasks_create_does_not_take_is_sent_back_to_the_generator(tmp_path: Path) -> None:
    tasks, io, replies = workspace(tmp_path)
    noted = {**GENERATED, "io": [{**GENERATED["io"][0], "note": "the easy case"}]}  # type: ignore[dict-item]
    replies["generator"] = [{"json": noted}, {"json": GENERATED}]
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run("a program that adds two numbers")
    # It reached tasks.create, which refused the unknown field, and the run failed there.
    assert result.ok, result.error
    retry = [r for r in io.model_calls if r.agent == "generator"][1].request.messages[-1].content
    assert "does not match the required schema" in retry and "note" in retry
    assert tasks.get(result.output["task_id"]).status == "done"


async def test_the_same_check_twice_is_sent_back_to_the_generator(tmp_path: Path) -> None:
    tasks, io, replies = workspace(tmp_path)
    twice = {**GENERATED, "io": [{"input": "10 10", "expected": "10"}] * 2}
    replies["generator"] = [{"json": twice}, {"json": GENERATED}]
    result = await FakeTurnRunner(load_team(TEAM), io).run("a program that prints the largest of two numbers")
    assert result.ok, result.error
    retry = [r for r in io.model_calls if r.agent == "generator"][1].request.messages[-1].content
    assert "non-unique elements" in retry
    assert tasks.get(result.output["task_id"]).checks == {"io": GENERATED["io"]}


async def test_a_generator_that_writes_no_usable_task_ends_in_an_answer_saying_how_to_give_checks(
    tmp_path: Path,
) -> None:
    tasks, io, replies = workspace(tmp_path)
    twice = {**GENERATED, "io": [{"input": "10 10", "expected": "10"}] * 2}
    replies["generator"] = [{"json": twice}, {"json": twice}]
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run("a program that prints the largest of two numbers")
    assert not result.ok and runner.path == ["intake", "generator", "report"]
    assert (result.output["status"], result.output["task_id"], result.output["versions"]) == ("failed", None, 0)
    summary = result.output["summary"]
    assert summary.startswith("Failed before any code: the generator (a model) wrote no usable task (")
    assert "non-unique elements" in summary and "Checks: 2 3 -> 5; 10 -4 -> 6" in summary
    assert tasks.count_tasks() == 0


async def test_the_scoreboard_counts_the_teams_tasks(tmp_path: Path) -> None:
    tasks, io, _ = workspace(tmp_path)
    store = tasks.store
    store.create_run("fake", "build-loop", "add", {"name": "build-loop"}, str(tmp_path / "ws"))  # the fakes run id
    team = load_team(TEAM)
    runner = FakeTurnRunner(team, io)
    result = await runner.run("a program that adds two numbers")
    assert result.ok, result.error
    [score] = tasks.stats().teams
    assert (score.team, score.tasks, score.done, score.failed, score.versions_per_done) == ("build-loop", 1, 1, 0, 2.0)
    assert score.seconds_per_task is not None and score.seconds_per_task >= 0


async def test_an_evaluator_that_gives_no_usable_notes_leaves_the_loop_going(tmp_path: Path) -> None:
    # Its notes are advice (the verdict is the checks'): notes past the schema's 200 characters, twice,
    # failed the run mid-loop with no answer, and the task with it.
    tasks, io, replies = workspace(tmp_path)
    replies["evaluator"] = [{"json": {"notes": "x" * 300}}] * 2
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run("a program that adds two numbers")
    assert result.ok, result.error
    assert runner.path[5:] == [
        "runner", "evaluator", "feedback", "coder", "save", "runner", "feedback", "finish", "report",
    ]  # fmt: skip
    task = tasks.get(result.output["task_id"])
    assert (task.status, task.best_version) == ("done", 2)
    first = tasks.feedback(task.id)[0]
    assert first.verdict == "needs_changes" and first.notes.startswith("2 problems; first: io check 1 failed")
    assert "x" * 300 not in first.notes
    # the coder read what failed, without notes
    second = [r for r in io.model_calls if r.agent == "coder"][1].request.messages[-1].content
    assert "print(a - b)" in second and "It failed: 2 problems; first: io check 1 failed" in second


async def test_one_check_is_said_in_the_singular(tmp_path: Path) -> None:
    # "passes all 1 checks", and the verdict's "all 1 checks pass"
    tasks, io, _ = workspace(tmp_path)
    result = await FakeTurnRunner(load_team(TEAM), io).run("a program that adds two numbers. Checks: 1 1 -> 2")
    assert result.ok, result.error
    assert result.output["summary"].startswith("Done: version 2 passes its one check, the request's; ")
    assert tasks.feedback(result.output["task_id"])[-1].notes == "its one check passes"


async def test_one_version_is_said_in_the_singular(tmp_path: Path) -> None:
    # not "1 version(s) written": the coder gets it right the first time
    _, io, replies = workspace(tmp_path)
    replies["coder"] = [fenced(RIGHT)]
    result = await FakeTurnRunner(load_team(TEAM), io).run("a program that adds two numbers. Checks: 1 1 -> 2")
    assert result.ok, result.error
    assert "; 1 version written. Its code: " in result.output["summary"], result.output["summary"]
