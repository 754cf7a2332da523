"""`edgecrew tasks ...` through typer's test runner: a task created with checks from a YAML file, its
versions run in the sandbox in the CLI's own process (success, failure with the reason, progress
and the outcome), listed, their logs printed; clear errors for unknown tasks, versions and files."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgecrew.cli import app
from edgecrew.cli.common import runtime
from tests.conftest import write

runner = CliRunner()

CHECKS = """
io:
  - {input: "1 2", expected: "3"}
  - input: |
      10 -4
    expected: "6"
"""
ADD = "import sys, json\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\nprint(json.dumps({'accuracy': 1}))\n"
WRONG = "import sys\nprint('thinking', file=sys.stderr)\nprint(42)\n"


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def create_task(tmp_path: Path, *extra: str) -> str:
    checks = write(tmp_path / "checks.yaml", CHECKS)
    made = invoke("tasks", "create", "--title", "add", "--spec", "add two numbers", "--checks", str(checks), *extra)
    assert made.exit_code == 0, made.output
    return made.output.split()[1]


def add_version(task_id: str, code: str) -> int:
    version: int = runtime().tasks.add_code(task_id, "add.py", code.encode()).version
    return version


def test_a_task_with_checks_runs_its_versions_here(tmp_path: Path) -> None:
    task_id = create_task(tmp_path, "--limit", "wall_s=10", "--limit", "memory_mb=256")
    shown = json.loads(invoke("tasks", "show", task_id, "--json").output)
    assert shown["checks"]["io"] == [{"input": "1 2", "expected": "3"}, {"input": "10 -4\n", "expected": "6"}]
    assert shown["limits"] == {"wall_s": 10, "memory_mb": 256} and shown["created_by"].startswith("cli:")
    add_version(task_id, ADD)
    add_version(task_id, WRONG)

    passed = invoke("tasks", "run", task_id, "1")
    assert passed.exit_code == 0, passed.output
    assert "io check 1 (input '1 2')" in passed.output and "io check 2" in passed.output  # progress
    assert "succeeded · checks 2/2 · exit 0" in passed.output and "accuracy=1" in passed.output

    failed = invoke("tasks", "run", task_id, "2", "--follow")
    assert failed.exit_code == 1, failed.output
    assert "42" in failed.output and "thinking" in failed.output  # --follow prints the program's output
    assert "failed · checks 0/2" in failed.output
    assert "2 problems; first: io check 1 failed (input '1 2'): expected '3', got '42'" in failed.output

    as_json = invoke("tasks", "run", task_id, "1", "--json")
    record = json.loads(as_json.output)
    assert as_json.exit_code == 0 and (record["status"], record["checks_passed"], record["version"]) == (
        "succeeded",
        2,
        1,
    )
    listed = invoke("tasks", "executions", task_id, "--json")
    assert [(e["version"], e["status"]) for e in json.loads(listed.output)] == [
        (1, "succeeded"),
        (2, "failed"),
        (1, "succeeded"),
    ]
    assert "failed" in invoke("tasks", "executions", task_id).output
    logs = invoke("tasks", "logs", str(record["id"]))
    assert logs.exit_code == 0 and logs.output.startswith("[edgecrew] io check 1") and "\n3\n" in logs.output
    failed_id = json.loads(listed.output)[1]["id"]
    assert "thinking" in invoke("tasks", "logs", str(failed_id), "--stderr").output

    table = invoke("tasks", "list")
    assert task_id in table.output and "add" in table.output
    summary = invoke("tasks", "show", task_id)
    assert "2 input/output case(s)" in summary.output and "wall_s=10" in summary.output and "v2" in summary.output

    notes = "print the sum of the two numbers, not 42"
    runtime().tasks.add_feedback(task_id, author="evaluator@r1", verdict="needs_changes", notes=notes, version=2)
    summary = invoke("tasks", "show", task_id)
    assert summary.exit_code == 0, summary.output
    text = " ".join(summary.output.split())
    assert "results (latest 10)" in text and "checks_passed=2" in text and "verdicts (latest 10)" in text
    assert "needs_changes" in text and "evaluator@r1" in text and "print the sum" in text
    shown = json.loads(invoke("tasks", "show", task_id, "--json").output)
    assert [(r["version"], r["accuracy"]) for r in shown["results"]] == [(1, 1), (2, None), (1, 1)]
    assert [(f["version"], f["verdict"], f["notes"]) for f in shown["feedback"]] == [(2, "needs_changes", notes)]


def test_a_test_file_and_no_checks(tmp_path: Path) -> None:
    test = write(tmp_path / "test_add.py", "from solution import add\nassert add(2, 2) == 4, 'add(2, 2)'\n")
    made = invoke("tasks", "create", "--title", "adder", "--test", str(test), "--json")
    task_id = json.loads(made.output)["id"]
    add_version(task_id, "def add(a, b):\n    return a - b\n")
    failed = invoke("tasks", "run", task_id, "1")
    assert failed.exit_code == 1 and "test check failed: exited with code 1: AssertionError: add(2, 2)" in failed.output

    plain = json.loads(invoke("tasks", "create", "--title", "plain", "--json").output)["id"]
    add_version(plain, "print('{\"loss\": 0.5}')\n")
    ran = invoke("tasks", "run", plain, "1")
    assert ran.exit_code == 0 and "succeeded" in ran.output and "loss=0.5" in ran.output


def test_the_executions_table_shows_the_whole_reason(tmp_path: Path) -> None:
    task_id = create_task(tmp_path)
    add_version(task_id, "import sys\nsys.exit('ValueError: the input has no second number here')\n")
    assert invoke("tasks", "run", task_id, "1").exit_code == 1
    # The program's own words come last in a reason: a table cut at 80 characters lost them.
    end = "exitedwithcode1:ValueError:theinputhasnosecondnumberhere"
    for args in (["tasks", "executions", task_id], ["tasks", "show", task_id]):
        shown = invoke(*args)
        squashed = "".join(c for c in shown.output if not c.isspace() and c not in "│┃")
        assert shown.exit_code == 0 and end in squashed, shown.output


def test_show_prints_the_tasks_timeline(tmp_path: Path) -> None:
    task_id = create_task(tmp_path)
    why = "the run r1 that created this task ended failed before finishing it; marked failed"
    runtime().tasks.add_message(task_id, "edgecrew", "system", why)
    # The one line that says why a run's task failed was only in GET /tasks/{id}/messages.
    shown = invoke("tasks", "show", task_id)
    squashed = "".join(c for c in shown.output if not c.isspace() and c not in "│┃")
    assert shown.exit_code == 0 and "timeline" in shown.output, shown.output
    assert "".join(why.split()) in squashed, shown.output
    data = json.loads(invoke("tasks", "show", task_id, "--json").output)
    assert [(m["sender"], m["role"], m["content"]) for m in data["messages"]] == [("edgecrew", "system", why)]


def test_show_prints_the_end_of_a_long_timeline(tmp_path: Path) -> None:
    # "timeline (latest 10)" was the 10 before the 501st message: the store's first 500, so the line
    # saying why a run ended the task never showed on a busy task.
    task_id = create_task(tmp_path)
    tasks = runtime().tasks
    for i in range(505):
        tasks.add_message(task_id, "coder", "agent", f"note {i}")
    tasks.add_message(task_id, "edgecrew", "system", "marked failed")
    squashed = "".join(c for c in invoke("tasks", "show", task_id).output if not c.isspace() and c not in "│┃")
    assert "markedfailed" in squashed and "note504" in squashed and "note495" not in squashed, squashed
    assert [m.content for m in tasks.messages(task_id, limit=2, latest=True)] == ["note 504", "marked failed"]
    assert [m.content for m in tasks.messages(task_id, limit=2)] == ["note 0", "note 1"]


def test_code_prints_a_versions_file_the_best_by_default(tmp_path: Path) -> None:
    task_id = create_task(tmp_path)
    assert "no code version 1; its versions: none yet" in " ".join(invoke("tasks", "code", task_id).output.split())
    add_version(task_id, ADD)
    add_version(task_id, WRONG)
    # What a build-loop run wrote could only be read through the API or in the data dir.
    assert invoke("tasks", "code", task_id, "1").output == ADD
    latest = invoke("tasks", "code", task_id)
    assert latest.exit_code == 0 and latest.stdout == WRONG and f"task {task_id} v2 (latest)" in latest.stderr
    runtime().tasks.update(task_id, best_version=1)
    assert invoke("tasks", "code", task_id).stdout == ADD
    missing = invoke("tasks", "code", task_id, "7")
    assert missing.exit_code == 1 and "its versions: 1, 2" in missing.output
    # To a pipe, the file byte for byte, as the API downloads it: bytes that are not UTF-8 were each
    # turned into U+FFFD, so `tasks code T 3 > copy` was not the stored file.
    latin1 = "# -*- coding: latin-1 -*-\nprint('café')\n".encode("latin-1") + bytes(range(256))
    version = runtime().tasks.add_code(task_id, "legacy.py", latin1).version
    assert invoke("tasks", "code", task_id, str(version)).stdout_bytes == latin1


def test_list_refuses_an_unknown_status_and_says_when_none_has_it(tmp_path: Path) -> None:
    create_task(tmp_path)
    # A typo listed nothing and said "no tasks yet" although there were tasks.
    typo = invoke("tasks", "list", "--status", "completed")
    assert typo.exit_code == 1 and "--status 'completed' is not one of open, in_progress, done" in typo.output
    none = invoke("tasks", "list", "--status", "done")
    assert none.exit_code == 0 and "no done tasks" in none.output and "no tasks yet" not in none.output
    assert "add" in invoke("tasks", "list", "--status", "open").output


def test_show_prints_the_checks_themselves(tmp_path: Path) -> None:
    # build-loop's answer and the README say "read them with edgecrew tasks show T" of a generator's
    # checks, but it printed only "checks: 2 input/output case(s)".
    task_id = create_task(tmp_path)
    test = "from solution import add\n" + "".join(f"assert add({n}, 1) == {n + 1}\n" for n in range(30))
    runtime().tasks.update(task_id, checks={**runtime().tasks.get(task_id).checks, "test": test})
    shown = invoke("tasks", "show", task_id)
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "checks: 2 input/output case(s) and a Python test (31 lines)" in text
    assert "1. input '1 2' → expected '3'" in text and "2. input '10 -4\\n' → expected '6'" in text
    assert "from solution import add" in text and "assert add(18, 1) == 19" in text
    assert "assert add(19, 1) == 20" not in text and "… 11 more line(s): edgecrew tasks show" in text


def test_list_says_when_it_shows_only_the_newest_tasks() -> None:
    # It showed the newest 50 of 59 as if they were all: the build-loop tasks made first were not there.
    tasks = runtime().tasks
    for n in range(4):
        tasks.create(f"task {n}", "", "build-loop" if n % 2 else None)
    cut = invoke("tasks", "list", "--limit", "3")
    assert cut.exit_code == 0 and "task 3" in cut.stdout and "task 0" not in cut.stdout
    assert "the newest 3 of 4 tasks; --limit 4 lists them all" in " ".join(cut.stderr.split())
    whole = invoke("tasks", "list", "--limit", "4")
    assert "task 0" in whole.stdout and "newest" not in whole.output
    done = invoke("tasks", "list", "--status", "open", "--limit", "1")
    assert "the newest 1 of 4 open tasks; --limit 4 lists them all" in " ".join(done.stderr.split())
    assert json.loads(invoke("tasks", "list", "--limit", "3", "--json").stdout)[0]["title"] == "task 3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tasks", "run", "tnope", "1"], "no task 'tnope'; `edgecrew tasks list` shows them"),
        (["tasks", "show", "tnope"], "no task 'tnope'"),
        (["tasks", "executions", "tnope"], "no task 'tnope'"),
        (["tasks", "logs", "999"], "no execution 999"),
        (["tasks", "cancel", "999"], "no execution 999"),
        (["tasks", "create", "--title", "t", "--checks", "missing.yaml"], "missing.yaml: cannot read it"),
        (["tasks", "create", "--title", "t", "--limit", "wall_s"], "write NAME=NUMBER"),
        (["tasks", "create", "--title", "t", "--limit", "disk=5"], "limits: unknown field 'disk'"),
        (["tasks", "create", "--title", "t", "--team", "nope"], "no team 'nope'"),
    ],
)
def test_unknown_things_are_clear_errors(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()), result.output


def test_an_unknown_version_and_bad_checks_say_what_exists(tmp_path: Path) -> None:
    task_id = create_task(tmp_path)
    none_yet = invoke("tasks", "run", task_id, "1")
    assert none_yet.exit_code == 1 and f"task {task_id} has no code version 1; its versions: none yet" in " ".join(
        none_yet.output.split()
    )
    add_version(task_id, ADD)
    assert "its versions: 1" in invoke("tasks", "run", task_id, "3").output
    bad = write(tmp_path / "bad.yaml", "io:\n  - {input: '1'}\n  - {expected: 2}\n")
    refused = invoke("tasks", "create", "--title", "t", "--checks", str(bad))
    text = " ".join(refused.output.split())
    assert refused.exit_code == 1 and f"{bad}: checks.io[1]: 'expected' is missing" in text
    assert "checks.io[2].expected: expected text, got int" in text
    broken = write(tmp_path / "broken.yaml", "io: [\n")
    # A YAML error, with file:line, exits as the file's other problems do; it said "1 problem in spec",
    # which reads as the task's --spec.
    unread = invoke("tasks", "create", "--title", "t", "--checks", str(broken))
    said = " ".join(unread.output.split())
    assert unread.exit_code == 1 and f"error: {broken}:2: YAML syntax error" in said and "spec" not in said


def test_cancel_ends_an_execution_whose_process_is_gone(tmp_path: Path) -> None:
    task_id = create_task(tmp_path)
    add_version(task_id, ADD)
    tasks = runtime().tasks
    stale = tasks.create_execution(task_id, 1, executor=f"{socket.gethostname()}:999999:1")
    tasks.update_execution(stale.id, status="running")
    cancelled = invoke("tasks", "cancel", str(stale.id))
    assert cancelled.exit_code == 0 and "killed" in cancelled.output, cancelled.output
    again = invoke("tasks", "cancel", str(stale.id))
    assert again.exit_code == 1 and "already ended (killed)" in again.output


def test_cancel_of_an_execution_another_live_process_runs_says_how_to_stop_it(tmp_path: Path) -> None:
    # It said "cancel it there", not where nor how.
    task_id = create_task(tmp_path)
    add_version(task_id, ADD)
    tasks = runtime().tasks
    elsewhere = tasks.create_execution(task_id, 1, executor="another-host:4242:1")  # alive: another machine's
    tasks.update_execution(elsewhere.id, status="running")
    refused = invoke("tasks", "cancel", str(elsewhere.id))
    said = " ".join(refused.output.split())
    assert refused.exit_code == 1 and "runs in another process (another-host:4242:1, pid 4242)" in said
    assert f"POST /executions/{elsewhere.id}/cancel" in said and f"/ui/executions/{elsewhere.id}" in said
    assert "Ctrl-C the `edgecrew tasks run` running it" in said
    assert tasks.execution(elsewhere.id).status == "running"  # left to the process that runs it


def test_follow_prints_the_running_process_output_as_it_comes_and_each_edgecrew_line_once() -> None:
    from edgecrew.cli.tasks import _Interleaved

    lines = _Interleaved()
    for stream in ("stdout", "stderr"):
        lines.add(stream, "[edgecrew] io check 1\n")
    lines.add("stdout", "first\nhal")
    assert lines.ready() == [("edgecrew", "[edgecrew] io check 1"), ("stdout", "first")]  # the program still runs
    lines.add("stdout", "f\n[edgecrew] exit 0\n[edgecrew] io check 2\nnext\n")
    lines.add("stderr", "warn\n")
    # stdout's next check waits until stderr reaches the same edgecrew line
    assert lines.ready() == [("stdout", "half"), ("stderr", "warn")]
    lines.add("stderr", "[edgecrew] exit 0\n[edgecrew] io check 2\n")
    assert lines.ready() == [
        ("edgecrew", "[edgecrew] exit 0"),
        ("edgecrew", "[edgecrew] io check 2"),
        ("stdout", "next"),
    ]


def test_add_version_adds_a_file_as_the_next_version_and_it_runs(tmp_path: Path) -> None:
    task_id = create_task(tmp_path)
    code = write(tmp_path / "adder.py", ADD)
    added = invoke("tasks", "add-version", task_id, str(code))
    assert added.exit_code == 0, added.output
    assert f"task {task_id}: version 1 added (adder.py, {len(ADD)} bytes)" in added.output
    assert f"edgecrew tasks run {task_id} 1" in added.output
    wrong = write(tmp_path / "wrong.txt", WRONG)
    second = json.loads(invoke("tasks", "add-version", task_id, str(wrong), "--filename", "add.py", "--json").output)
    assert (second["version"], second["filename"], second["language"]) == (2, "add.py", "python")
    assert second["author"].startswith("cli:")
    stored = runtime().tasks
    assert stored.get(task_id).status == "in_progress"  # work has begun, as when an agent adds one
    assert stored.code_bytes(stored.code_version(task_id, 2)) == WRONG.encode()
    assert invoke("tasks", "run", task_id, "1").exit_code == 0
    assert invoke("tasks", "run", task_id, "2").exit_code == 1

    empty = write(tmp_path / "empty.py", "")
    for args, message in [
        ([task_id, str(tmp_path / "missing.py")], "missing.py: cannot read it (No such file or directory)"),
        ([task_id, str(empty)], "the uploaded file is empty"),
        (["tnope", str(code)], "no task 'tnope'"),
        ([task_id, str(code), "--filename", "../.."], "has no usable characters"),
    ]:
        refused = invoke("tasks", "add-version", *args)
        assert refused.exit_code == 1 and message in " ".join(refused.output.split()), refused.output
    assert [v.version for v in stored.code_versions(task_id)] == [1, 2]


def test_a_programs_terminal_codes_are_shown_not_obeyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version that prints escape codes (retitle the terminal, clear the screen) cannot drive the
    user's terminal through `tasks run --follow`; `tasks logs` keeps the log byte for byte in a pipe."""
    task_id = create_task(tmp_path)
    hostile = "import sys\nprint('\\x1b]0;pwned\\x07\\x1b[2Jhi\\x9b', file=sys.stderr)\n" + ADD
    version = add_version(task_id, hostile)
    followed = invoke("tasks", "run", task_id, str(version), "--follow")
    assert followed.exit_code == 0, followed.output
    assert "\x1b" not in followed.output and "\x07" not in followed.output and "\x9b" not in followed.output
    assert "␛]0;pwned␇␛[2Jhi\ufffd" in followed.output
    execution = json.loads(invoke("tasks", "executions", task_id, "--json").output)[-1]["id"]
    piped = invoke("tasks", "logs", str(execution), "--stderr")
    assert "\x1b]0;pwned\x07\x1b[2Jhi" in piped.output  # a pipe or a file gets the log as written

    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    from edgecrew.cli.common import shown, terminal_text

    assert shown("a\x1b[2Jb\r\nc\rd\te") == "a␛[2Jb\nc␍d\te" == terminal_text("a\x1b[2Jb\r\nc\rd\te")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--title", "x" * 201], "title: give 1 to 200 characters (this one has 201)"),
        (["--title", "   "], "title: give 1 to 200 characters (this one has 0)"),
        (["--title", "t", "--spec", "s" * 20_001], "description: at most 20000 characters"),
    ],
)
def test_a_tasks_title_and_description_have_the_apis_bounds_here_too(args: list[str], says: str) -> None:
    made = invoke("tasks", "create", *args)
    assert made.exit_code == 1 and says in " ".join(made.output.split()), made.output
    assert runtime().tasks.count_tasks() == 0  # nothing stored


@pytest.mark.parametrize("text", ["{}\n", "io: []\n", "checks: {}\nlimits: {wall_s: 5}\n"])
def test_a_checks_file_that_holds_no_check_is_refused(tmp_path: Path, text: str) -> None:
    empty = write(tmp_path / "empty.yaml", text)
    refused = invoke("tasks", "create", "--title", "t", "--checks", str(empty))
    said = " ".join(refused.output.split())
    assert refused.exit_code == 1 and f"{empty}: checks is empty: give at least one io case" in said, said
    assert runtime().tasks.list_tasks() == []


def test_a_checks_file_whose_limits_hold_no_limit_is_refused(tmp_path: Path) -> None:
    given = write(tmp_path / "given.yaml", "checks: {io: [{input: '1', expected: '1'}]}\nlimits: {}\n")
    refused = invoke("tasks", "create", "--title", "t", "--checks", str(given))
    said = " ".join(refused.output.split())
    assert refused.exit_code == 1 and f"{given}: limits is empty: give at least one of cpu_s" in said, said
    assert runtime().tasks.list_tasks() == []


def test_a_test_file_adds_to_the_checks_files_io_and_never_replaces_its_test(tmp_path: Path) -> None:
    test = write(tmp_path / "test_add.py", "from add import add\nassert add(2, 2) == 4\n")
    # --test adds a test to the file's io cases
    task_id = create_task(tmp_path, "--test", str(test))
    shown = json.loads(invoke("tasks", "show", task_id, "--json").output)["checks"]
    assert len(shown["io"]) == 2 and shown["test"] == test.read_text()
    # a file with a test of its own: its test was silently replaced by --test's
    own = write(tmp_path / "own.yaml", CHECKS + "test: |\n  assert 1 + 1 == 2\n")
    refused = invoke("tasks", "create", "--title", "t", "--checks", str(own), "--test", str(test))
    said = " ".join(refused.output.split())
    assert refused.exit_code == 1, refused.output
    assert f"{own} holds a test and --test {test} gives another" in said and "a task has one test" in said
    # a file of another shape is refused for its own shape (it was a traceback)
    listed = write(tmp_path / "list.yaml", "- {input: '1 2', expected: '3'}\n")
    wrong = invoke("tasks", "create", "--title", "t", "--checks", str(listed), "--test", str(test))
    assert wrong.exit_code == 1 and f"{listed}: " in " ".join(wrong.output.split()), wrong.output
    assert wrong.exception is None or isinstance(wrong.exception, SystemExit)
    assert len(json.loads(invoke("tasks", "list", "--json").output)) == 1  # nothing else was stored
