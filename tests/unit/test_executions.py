"""Executions of task code versions in the real sandbox, on a real SQLite store, and the task tools."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import psutil
import pytest

from edgecrew.errors import ConflictError, ToolError, UserError
from edgecrew.store.repo import open_store
from edgecrew.store.tasks import TaskStore
from edgecrew.tasks import ExecutionService, parse_checks, parse_limits, register_task_tools
from edgecrew.tasks.checks import read_metrics
from edgecrew.tasks.executions import FLUSH_S, _Logs
from edgecrew.tools.base import ToolContext, ToolRegistry
from edgecrew.tools.sandbox import SandboxLimits, SandboxResult, sandbox_tier

ME = f"{socket.gethostname()}:1:1"  # this process, as the service is told
DEAD = f"{socket.gethostname()}:999999:1"  # a process that is gone
LIMITS = SandboxLimits(cpu_s=3, wall_s=4.0, memory_bytes=256 * 1024 * 1024, processes=16)
ADD = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"
ADD_CHECKS = {"io": [{"input": "1 2", "expected": "3"}, {"input": "10 -4\n", "expected": "6\n"}]}


def alive(executor: str | None) -> bool:
    return executor == ME


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def tasks(tmp_path: Path, store_file: Path) -> TaskStore:
    return TaskStore(open_store(f"sqlite:///{store_file}"), tmp_path / "tasks")


@pytest.fixture
def service(tasks: TaskStore) -> ExecutionService:
    return ExecutionService(tasks, executor=ME, executor_alive=alive, limits=LIMITS)


def version(tasks: TaskStore, code: str, *, checks: Any = None, limits: Any = None, name: str = "solution.py") -> str:
    task = tasks.create("t", "spec", checks=parse_checks(checks).to_json(), limits=parse_limits(limits).to_json())
    tasks.add_code(task.id, name, textwrap.dedent(code).encode())
    return task.id


async def test_a_version_that_passes_its_io_checks_succeeds_with_a_result(
    tasks: TaskStore, service: ExecutionService
) -> None:
    task_id = version(tasks, ADD, checks=ADD_CHECKS)
    record = await service.run(task_id, 1, run_id="r1", agent="runner")
    assert (record.status, record.reason, record.exit_code) == ("succeeded", None, 0)
    assert (record.checks_passed, record.checks_total) == (2, 2)
    assert record.started_at and record.finished_at and record.finished_at >= record.started_at
    result = tasks.latest_result(task_id)
    assert record.result_id == result.id and result.version == 1 and result.author == "runner@r1"
    assert result.metrics["checks_passed"] == 2 and result.runtime_s is not None
    out, err = service.log_paths(record.id)
    assert "3\n" in out.read_text() and "6\n" in out.read_text() and "io check 2" in err.read_text()
    assert [e.id for e in service.list(task_id)] == [record.id]
    assert not (tasks.files.root / task_id / "work" / str(record.id)).exists()  # the work dir is removed


async def test_a_failed_check_names_the_input_and_what_came_out(tasks: TaskStore, service: ExecutionService) -> None:
    checks = {"io": [{"input": "1 2", "expected": "3"}, {"input": "2 2", "expected": "5"}]}
    task_id = version(tasks, ADD, checks=checks)
    record = await service.run(task_id, 1)
    assert record.status == "failed" and (record.checks_passed, record.checks_total) == (1, 2)
    assert record.reason == "io check 2 failed (input '2 2'): expected '5', got '4'"


async def test_a_test_check_runs_after_the_program_and_reports_the_failed_assert(
    tasks: TaskStore, service: ExecutionService
) -> None:
    code = "def add(a, b):\n    return a - b\n"
    test = "import unittest\nfrom solution import add\nclass T(unittest.TestCase):\n"
    test += "    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n"
    task_id = version(tasks, code, checks={"test": test}, name="adder.py")
    record = await service.run(task_id, 1)
    assert record.status == "failed" and (record.checks_passed, record.checks_total) == (0, 1)
    assert record.reason is not None and "test_add" in record.reason and "AssertionError: 0 != 4" in record.reason
    tasks.add_code(task_id, "adder.py", b"def add(a, b):\n    return a + b\n")
    assert (await service.run(task_id, 2)).status == "succeeded"
    plain = 'import adder\nassert adder.add(1, 1) == 2, "1 + 1"\nprint(\'{"accuracy": 1}\')\n'  # plain asserts
    tasks.update(task_id, checks=parse_checks({"test": plain}).to_json())
    record = await service.run(task_id, 2)
    assert (record.status, record.checks_passed, record.metrics and record.metrics["accuracy"]) == ("succeeded", 1, 1)
    assert (await service.run(task_id, 1)).reason == "test check failed: exited with code 1: AssertionError: 1 + 1"


async def test_pytest_style_test_functions_are_called_and_each_failure_is_named(
    tasks: TaskStore, service: ExecutionService
) -> None:
    test = "from solution import add\n\ndef test_add():\n    assert add(2, 2) == 5\n"
    task_id = version(tasks, "def add(a, b):\n    return a + b\n", checks={"test": test})
    record = await service.run(task_id, 1)
    assert record.status == "failed" and (record.checks_passed, record.checks_total) == (0, 1)
    assert record.reason == (
        "test check failed: exited with code 1: 1 of 1 tests failed; first: test_add: AssertionError "
        "(assert add(2, 2) == 5)"
    )
    passing = """\
        from solution import add
        import unittest

        def helper():  # not a test: never called
            raise RuntimeError("called")

        def test_add():
            assert add(2, 2) == 4

        class TestMore:
            def test_zero(self):
                assert add(0, 0) == 0

        class Unit(unittest.TestCase):
            def test_one(self):
                self.assertEqual(add(1, 0), 1)
    """
    tasks.update(task_id, checks=parse_checks({"test": textwrap.dedent(passing)}).to_json())
    record = await service.run(task_id, 1)
    assert (record.status, record.checks_passed, record.checks_total) == ("succeeded", 1, 1)
    _, err = service.log_paths(record.id)
    log = err.read_text()
    assert "test_add ... ok" in log and "TestMore.test_zero ... ok" in log and "Ran 3 tests" in log
    fixtures = "def test_ok():\n    pass\n\ndef test_tmp(tmp_path):\n    pass\n\nasync def test_later():\n    pass\n"
    tasks.update(task_id, checks=parse_checks({"test": fixtures}).to_json())
    record = await service.run(task_id, 1)
    assert record.status == "failed" and record.reason is not None
    assert record.reason.endswith(
        "2 of 3 tests failed; first: test_tmp: TypeError: test_tmp takes tmp_path: there are no pytest fixtures here"
    )


async def test_metrics_come_from_the_last_json_line(tasks: TaskStore, service: ExecutionService) -> None:
    code = """\
        import json
        print("training…")
        print(json.dumps({"accuracy": 0.93, "loss": 0.21, "runtime": 1.5, "epochs": 3, "model": "tiny"}))
    """
    task_id = version(tasks, code)
    record = await service.run(task_id, 1)
    assert record.status == "succeeded" and (record.checks_passed, record.checks_total) == (0, 0)
    assert record.metrics == {"accuracy": 0.93, "loss": 0.21, "runtime": 1.5, "epochs": 3.0}
    result = tasks.latest_result(task_id)
    assert (result.accuracy, result.loss, result.runtime_s) == (0.93, 0.21, 1.5)
    assert result.metrics == {"epochs": 3.0, "checks_passed": 0.0, "checks_total": 0.0}
    checks = {"io": [{"input": "2 3", "expected": "5"}]}  # a last line of metrics is not part of the answer
    task_id = version(tasks, ADD + "print('{\"accuracy\": 1}')\n", checks=checks)
    record = await service.run(task_id, 1)
    assert (record.status, record.checks_passed) == ("succeeded", 1)
    assert record.metrics == {"accuracy": 1.0, "runtime_s": ANY}
    assert read_metrics("x\n[1, 2]\n") == {} and read_metrics('{"a": NaN, "b": true, "c": 2}') == {"c": 2.0}


async def test_a_number_too_large_for_a_float_in_the_metrics_is_ignored(
    tasks: TaskStore, service: ExecutionService
) -> None:
    # Python prints 10**400 as digits, valid JSON; float() of it overflows (the execution failed with
    # "edgecrew could not run version 1: int too large to convert to float").
    assert read_metrics(f'{{"a": {10**400}, "b": 1e999, "c": 2}}') == {"c": 2.0}
    task_id = version(tasks, "import json\nprint(json.dumps({'big': 10**400, 'accuracy': 0.5}))\n")
    record = await service.run(task_id, 1)
    assert (record.status, record.reason, record.metrics) == ("succeeded", None, {"accuracy": 0.5, "runtime_s": ANY})


async def test_an_accuracy_that_is_no_fraction_is_kept_as_another_metric(
    tasks: TaskStore, service: ExecutionService
) -> None:
    # The API refuses an accuracy of 97 (a percentage); from a program it went into the accuracy
    # column and /stats averaged it with fractions (avg_accuracy 48.985 for 97 and 0.97).
    task_id = version(tasks, 'print(\'{"accuracy": 97, "runtime_s": -1, "loss": -2}\')\n')
    record = await service.run(task_id, 1)
    assert record.status == "succeeded" and record.metrics == {"accuracy": 97.0, "runtime_s": -1.0, "loss": -2.0}
    result = tasks.latest_result(task_id)
    assert (result.accuracy, result.runtime_s, result.loss) == (None, None, -2.0)
    assert result.metrics == {"accuracy": 97.0, "runtime_s": -1.0, "checks_passed": 0.0, "checks_total": 0.0}
    assert tasks.stats().avg_accuracy is None


@pytest.mark.parametrize(
    ("attack", "evidence"),
    [
        ("print(open(SECRET).read())", "secret"),
        ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\nprint('connected')", "connected"),
        ("import os\nwhile True:\n    os.fork()", None),
    ],
    ids=["read-outside", "socket", "fork-bomb"],
)
async def test_a_version_that_attacks_the_host_is_contained_and_failed(
    tasks: TaskStore, service: ExecutionService, store_file: Path, tmp_path: Path, attack: str, evidence: str | None
) -> None:
    if sandbox_tier().weak:
        pytest.skip(f"the sandbox here is weak ({sandbox_tier().detail})")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    code = f"SECRET = {str(secret)!r}\nSTORE = {str(store_file)!r}\n{attack}\n"
    expected = "connected" if evidence == "connected" else "secret"
    task_id = version(tasks, code, checks={"io": [{"input": "", "expected": expected}]}, limits={"wall_s": 4})
    started = time.monotonic()
    record = await service.run(task_id, 1)
    assert time.monotonic() - started < 15
    assert record.status == "failed" and record.checks_passed == 0
    assert record.reason is not None and record.reason.startswith("io check 1 failed")
    out, _ = service.log_paths(record.id)
    assert evidence is None or evidence not in out.read_text()
    assert "exited with code" in record.reason or "killed by the sandbox" in record.reason


async def test_the_store_file_is_out_of_reach(tasks: TaskStore, service: ExecutionService, store_file: Path) -> None:
    if sandbox_tier().weak:
        pytest.skip(f"the sandbox here is weak ({sandbox_tier().detail})")
    task_id = version(tasks, f"print(len(open({str(store_file)!r}, 'rb').read()))\n")
    record = await service.run(task_id, 1)
    assert record.status == "failed" and record.reason is not None
    assert "the program: exited with code 1" in record.reason and "Error" in record.reason


async def test_the_sandbox_limits_of_the_task_apply_and_are_named(tasks: TaskStore, service: ExecutionService) -> None:
    task_id = version(tasks, "import time\ntime.sleep(30)\n", limits={"wall_s": 1})
    record = await service.run(task_id, 1)
    assert record.status == "failed"
    assert record.reason == "the program: killed by the sandbox: wall (ran past its 1s wall-clock limit)"


def open_under(folder: Path) -> list[str]:
    """The files under ``folder`` that this process holds open."""
    return [f.path for f in psutil.Process().open_files() if Path(f.path).is_relative_to(folder)]


def ended(stdout: str, stderr: str = "") -> SandboxResult:
    return SandboxResult(stdout, stderr, 0, 0.5, False, None, False, [], "process")


async def test_the_live_log_gathers_output_and_writes_it_within_a_tenth_of_a_second(tmp_path: Path) -> None:
    logs = _Logs(tmp_path / "logs", "out.log", "err.log")
    out, err = tmp_path / "logs" / "out.log", tmp_path / "logs" / "err.log"
    await logs.header("io check 1")
    for i in range(2000):  # a program printing short flushed lines: told line by line, on the loop
        logs.live("stdout", f"{i}\n".encode())
    assert out.read_text() == "[edgecrew] io check 1\n"  # gathered, not one write per line
    await asyncio.sleep(FLUSH_S * 3)
    lines = "".join(f"{i}\n" for i in range(2000))
    assert out.read_text() == "[edgecrew] io check 1\n" + lines  # while the process still runs
    assert sorted(open_under(tmp_path)) == sorted([str(out), str(err)])  # kept open for the process's life
    await logs.output(ended(lines))
    assert out.read_text() == "[edgecrew] io check 1\n" + lines + "[edgecrew] exit 0 in 0.500s (sandbox: process)\n"
    assert err.read_text() == "[edgecrew] io check 1\n[edgecrew] exit 0 in 0.500s (sandbox: process)\n"
    assert open_under(tmp_path) == []


async def test_output_writes_once_what_the_live_log_missed_when_the_listener_stopped(tmp_path: Path) -> None:
    """The sandbox stops telling a listener that raised; ``output()`` writes the rest from the result,
    sliced at the characters already written (a character split across reads counts once)."""
    logs = _Logs(tmp_path, "out.log", "err.log")
    full = "first\nsecond é\nthird"
    note = "\n[edgecrew: output truncated, 10 more bytes not shown]\n"
    await logs.header("the program")
    data = full.encode()
    logs.live("stdout", data[:14])  # up to the first byte of "é", which the decoder holds back
    await asyncio.sleep(FLUSH_S * 3)
    assert (tmp_path / "out.log").read_text() == "[edgecrew] the program\nfirst\nsecond "
    logs.live("stderr", b"warn")  # gathered, not yet written when the listener stops
    await logs.output(ended(full + note, "warn"))
    out = (tmp_path / "out.log").read_text()
    assert out == f"[edgecrew] the program\n{full}{note}[edgecrew] exit 0 in 0.500s (sandbox: process)\n"
    err = (tmp_path / "err.log").read_text()
    assert err == "[edgecrew] the program\nwarn\n[edgecrew] exit 0 in 0.500s (sandbox: process)\n"  # ends a line

    await logs.header("test check")  # the next process appends after it, counting from 0 again
    logs.live("stdout", b"ok\n")
    logs.close()  # cancelled before its output: what was gathered is written, the files are closed
    assert (tmp_path / "out.log").read_text() == out + "[edgecrew] test check\nok\n"
    assert open_under(tmp_path) == []


async def test_cancel_kills_a_running_execution(tasks: TaskStore, service: ExecutionService) -> None:
    task_id = version(tasks, "import time\nprint('started', flush=True)\ntime.sleep(30)\n", limits={"wall_s": 30})
    record = await service.start(task_id, 1)
    # Inside the sandbox once its first line is in the live log (the row says running earlier: the
    # launcher and the program still have to start, seconds on a loaded machine).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = service.get(record.id)
        if current.stdout_log:
            live = tasks.files.logs_dir(task_id) / str(current.stdout_log)
            if live.exists() and "started\n" in live.read_text():
                break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"the program never printed its first line: {service.get(record.id)}")
    started = time.monotonic()
    cancelled = await service.cancel(record.id)
    assert time.monotonic() - started < 10
    assert cancelled.status == "killed" and cancelled.reason == "cancelled: the sandbox was killed"
    assert cancelled.finished_at is not None and cancelled.result_id is None
    with pytest.raises(ConflictError, match="already ended"):
        await service.cancel(record.id)
    log = tasks.files.logs_dir(task_id) / str(cancelled.stdout_log)
    assert log.read_text() == "[edgecrew] the program\nstarted\n" and open_under(tasks.files.root) == []


async def test_cancel_ends_a_queued_execution_before_it_starts(tasks: TaskStore) -> None:
    service = ExecutionService(tasks, executor=ME, executor_alive=alive, limits=LIMITS, max_parallel=1)
    task_id = version(tasks, "import time\ntime.sleep(30)\n", limits={"wall_s": 30})
    running = await service.start(task_id, 1)
    queued = await service.start(task_id, 1)
    await asyncio.sleep(0.3)
    assert service.get(queued.id).status == "queued"
    cancelled = await service.cancel(queued.id)
    assert (cancelled.status, cancelled.reason) == ("killed", "cancelled before it started")
    assert (await service.cancel(running.id)).status == "killed"
    fresh = await service.start(task_id, 1)  # cancelled at once, maybe before its first step: never left queued
    assert (await service.cancel(fresh.id)).status == "killed"


async def test_recover_marks_the_rows_of_a_dead_process_interrupted(
    tasks: TaskStore, service: ExecutionService
) -> None:
    task_id = version(tasks, "print(1)\n")
    orphan = tasks.create_execution(task_id, 1, run_id="r1", agent="runner", executor=DEAD)
    tasks.update_execution(orphan.id, status="running", started_at=time.time())
    elsewhere = tasks.create_execution(task_id, 1, executor=ME.replace(":1:1", ":2:2"))  # another process, gone
    live = tasks.create_execution(task_id, 1, executor="other-host:5:5")
    service.executor_alive = lambda ex: ex in (ME, "other-host:5:5")
    recovered = service.recover()
    assert [r.id for r in recovered] == [orphan.id, elsewhere.id]
    again = service.get(orphan.id)
    assert again.status == "interrupted" and again.reason is not None and DEAD in again.reason
    assert "run version 1 again" in again.reason
    assert service.get(live.id).status == "queued"
    rerun = await service.run(task_id, 1)  # an interrupted version runs again as a new execution
    assert rerun.status == "succeeded" and rerun.id > live.id


def test_reading_an_execution_whose_process_is_gone_ends_it_as_interrupted(
    tasks: TaskStore, service: ExecutionService
) -> None:
    task_id = version(tasks, "print(1)\n")
    orphan = tasks.create_execution(task_id, 1, executor=DEAD)  # `edgecrew tasks run` killed mid-run
    tasks.update_execution(orphan.id, status="running", started_at=time.time())
    live = tasks.create_execution(task_id, 1, executor="other-host:5:5")
    service.executor_alive = lambda ex: ex in (ME, "other-host:5:5")
    # It read as running (CLI, GET /executions/{id}, the task's list) until the next server start.
    listed = {r.id: r.status for r in service.list(task_id)}
    assert listed == {orphan.id: "interrupted", live.id: "queued"}
    again = service.get(orphan.id)
    assert again.status == "interrupted" and again.reason is not None and "run version 1 again" in again.reason
    other = tasks.create_execution(task_id, 1, executor=DEAD)
    assert service.get(other.id).status == "interrupted"


async def test_a_version_that_is_not_python_fails_with_a_clear_reason(
    tasks: TaskStore, service: ExecutionService
) -> None:
    task_id = version(tasks, "console.log(1)\n", name="main.js", checks=ADD_CHECKS)
    record = await service.run(task_id, 1)
    assert record.status == "failed" and record.result_id is None and record.checks_total == 2
    assert record.reason == "only Python versions (a .py file) can run; version 1 is 'main.js' (javascript)"


def test_checks_and_limits_are_validated_all_at_once() -> None:
    with pytest.raises(UserError) as err:
        parse_checks({"io": [{"input": 1}, "x"], "tests": ""})
    assert str(err.value) == (
        "checks: unknown field 'tests' (use io, test); checks.io[1]: 'expected' is missing; "
        "checks.io[1].input: expected text, got int; checks.io[2]: expected an object {input, expected}"
    )
    with pytest.raises(UserError, match=r"limits.wall_s: 0 is out of range.*unknown field .cpu."):
        parse_limits({"wall_s": 0, "cpu": 1})
    assert parse_limits({"memory_mb": 64}).apply(LIMITS).memory_bytes == 64 * 1024 * 1024
    # Less than the interpreter maps to start ended an execution with the loader's "failed to map segment".
    with pytest.raises(UserError, match=r"limits.memory_mb: 16 is too small for a Python program to start"):
        parse_limits({"memory_mb": 16})
    assert parse_checks({"io": []}).to_json() is None  # as stored: read as it is


@pytest.mark.parametrize("empty", [{}, {"io": []}, {"test": "  "}, {"io": [], "test": None}])
def test_checks_someone_gives_that_hold_no_check_are_refused(empty: dict[str, object]) -> None:
    with pytest.raises(UserError, match=r"^checks is empty: give at least one io case \{input, expected\} or a test"):
        parse_checks(empty, written=True)
    assert parse_checks(None, written=True).total == 0  # none given: none
    assert parse_checks({"io": [], "test": "assert 1 + 1 == 2"}, written=True).total == 1


@pytest.mark.parametrize("empty", [{}, {"wall_s": None}, {"cpu_s": None, "memory_mb": None}])
def test_limits_someone_gives_that_hold_no_limit_are_refused_as_empty_checks_are(empty: dict[str, object]) -> None:
    """They silently meant the defaults (and on PATCH removed a task's limits), where `checks: {}` is refused."""
    with pytest.raises(UserError, match=r"^limits is empty: give at least one of cpu_s, wall_s, memory_mb, processes"):
        parse_limits(empty, written=True)
    assert parse_limits(None, written=True).to_json() is None  # none given: the defaults
    assert parse_limits(empty).to_json() is None  # as stored: read as it is


@pytest.mark.parametrize(
    "test", ["import solution\nprint('ok')\n", "from solution import add\n\ndef helper():\n    return add(1, 2)\n"]
)
def test_a_test_check_that_can_never_fail_is_refused(test: str) -> None:
    """Such a test passed every version, so a task 'done' on it proved nothing (a model writes one easily)."""
    with pytest.raises(UserError, match=r"checks\.test: it checks nothing"):
        parse_checks({"test": test})


@pytest.mark.parametrize(
    "test",
    [
        "from solution import add\nassert add(1, 2) == 3\n",
        "def test_add():\n    pass\n",
        "import unittest\nclass T(unittest.TestCase):\n    pass\n",
        "import sys\nsys.exit(0 if True else 1)\n",
        "if 1 != 1:\n    raise SystemExit('wrong')\n",
        "def broken(:\n",  # does not parse: it fails when run, with the parser's message
    ],
)
def test_a_test_check_that_can_fail_is_kept(test: str) -> None:
    assert parse_checks({"test": test}).test == test


async def test_add_version_names_the_earlier_version_it_repeats(tasks: TaskStore, service: ExecutionService) -> None:
    registry = ToolRegistry()
    register_task_tools(registry, tasks, service)

    async def add(task_id: str, filename: str, code: str) -> Any:
        ctx = ToolContext(run_id="run1", agent="coder", workspace=Path("."))
        return await registry.get("tasks.add_version").call(
            {"task_id": task_id, "filename": filename, "code": code}, ctx
        )

    task_id = tasks.create("add", "Print a+b.", None).id
    assert (await add(task_id, "add.py", ADD))["same_as"] is None
    assert (await add(task_id, "add.py", ADD.replace("+", "-")))["same_as"] is None  # another program
    assert (await add(task_id, "other.py", ADD))["same_as"] is None  # the same bytes under another name
    again = await add(task_id, "add.py", ADD)
    assert (again["version"], again["same_as"]) == (4, 1)  # version 1's file and bytes again
    assert [v.version for v in tasks.code_versions(task_id)] == [1, 2, 3, 4]  # stored all the same


async def test_the_task_tools_drive_the_loop_to_the_best_version(
    tasks: TaskStore, service: ExecutionService, tmp_path: Path
) -> None:
    registry = ToolRegistry()
    register_task_tools(registry, tasks, service)
    assert {s.risk for s in registry.specs()} == {"safe"} and len(registry.specs()) == 7
    schema = registry.get("tasks.create").input_schema
    assert "$defs" not in schema and schema["required"] == ["title", "spec"]  # refs inlined for grammars
    assert schema["properties"]["io"]["anyOf"][0]["items"]["required"] == ["input", "expected"]

    async def call(name: str, agent: str, **arguments: Any) -> Any:
        ctx = ToolContext(run_id="run1", agent=agent, workspace=tmp_path)
        return await registry.get(name).call(arguments, ctx)

    limits = {"wall_s": 5, "memory_mb": 256}
    created = await call(
        "tasks.create", "generator", title="add", spec="Print a+b.", io=ADD_CHECKS["io"], limits=limits
    )
    task_id = created["task_id"]
    assert created["checks"] == 2 and tasks.get(task_id).created_by == "generator@run1"
    assert created["limits"] == tasks.get(task_id).limits == limits
    first = await call("tasks.add_version", "coder", task_id=task_id, filename="add.py", code=ADD.replace("+", "-"))
    assert first["version"] == 1 and tasks.get(task_id).status == "in_progress" and first["same_as"] is None
    ran = await call("tasks.run_version", "runner", task_id=task_id, version=1)
    assert ran["status"] == "failed" and (ran["checks_passed"], ran["checks_total"]) == (0, 2)
    assert ran["reason"].startswith("2 problems; first: io check 1 failed (input '1 2'): expected '3', got '-1'")
    await call("tasks.post_feedback", "evaluator", task_id=task_id, version=1, verdict="needs_changes", notes="add")
    second = await call("tasks.add_version", "coder", task_id=task_id, filename="add.py", code=ADD)
    assert second["same_as"] is None  # another program
    ran = await call("tasks.run_version", "runner", task_id=task_id, version=second["version"])
    assert ran["status"] == "succeeded" and ran["checks_passed"] == 2 and ran["stderr_tail"].startswith("[edgecrew]")
    latest = await call("tasks.latest", "evaluator", task_id=task_id)
    assert latest["latest_version"]["version"] == 2 and latest["latest_version"]["code"] == ADD
    assert latest["execution"]["status"] == "succeeded" and latest["result"]["metrics"]["checks_passed"] == 2
    assert latest["task"]["io_checks_total"] == 2 and latest["feedback"] == []
    await call("tasks.post_feedback", "evaluator", task_id=task_id, version=2, verdict="accepted")
    await call("tasks.post_message", "evaluator", task_id=task_id, content="looks good")
    done = await call("tasks.finish", "evaluator", task_id=task_id, status="done")
    assert done == {"task_id": task_id, "status": "done", "best_version": 2, "why": "accepted by evaluator@run1"}
    task = tasks.get(task_id)
    assert (task.status, task.best_version) == ("done", 2)
    assert [c.author for c in tasks.code_versions(task_id)] == ["coder@run1", "coder@run1"]
    assert [(f.version, f.verdict, f.author) for f in tasks.feedback(task_id)] == [
        (1, "needs_changes", "evaluator@run1"),
        (2, "accepted", "evaluator@run1"),
    ]
    assert [e.run_id for e in tasks.executions(task_id)] == ["run1", "run1"]
    assert [m.content for m in tasks.messages(task_id)] == [
        "looks good",
        "finished as done; best version 2 (accepted by evaluator@run1)",
    ]

    with pytest.raises(ToolError, match="unknown task 'nope'"):
        await call("tasks.latest", "coder", task_id="nope")
    with pytest.raises(ToolError, match=r"unknown version 9 of task \w+; its versions: 1, 2"):
        await call("tasks.run_version", "runner", task_id=task_id, version=9)
    with pytest.raises(ToolError, match="verdict"):
        await call("tasks.post_feedback", "evaluator", task_id=task_id, version=1, verdict="great")
    with pytest.raises(ToolError, match="wall_s"):
        await call("tasks.create", "generator", title="t", spec="s", limits={"wall_s": 0})
    with pytest.raises(ToolError, match="disk_mb"):
        await call("tasks.create", "generator", title="t", spec="s", limits={"disk_mb": 5})
    with pytest.raises(ToolError, match="limits is empty"):
        await call("tasks.create", "generator", title="t", spec="s", limits={})
    for bad in ({"cpu_s": True}, {"memory_mb": "64"}, {"wall_s": float("inf")}, {"wall_s": float("nan")}):
        with pytest.raises(ToolError, match=next(iter(bad))):  # the API's guards: one model for both
            await call("tasks.create", "generator", title="t", spec="s", limits=bad)
    assert schema["properties"]["limits"]["anyOf"][0]["properties"]["cpu_s"]["anyOf"][0]["exclusiveMinimum"] == 0


async def test_finish_without_an_accepted_version_names_the_one_with_most_checks_passed(
    tasks: TaskStore, service: ExecutionService, tmp_path: Path
) -> None:
    registry = ToolRegistry()
    register_task_tools(registry, tasks, service)
    ctx = ToolContext(run_id="run1", agent="evaluator", workspace=tmp_path)
    checks = {"io": [{"input": "1 2", "expected": "3"}, {"input": "2 2", "expected": "5"}]}
    task_id = version(tasks, ADD, checks=checks)  # passes 1 of 2
    tasks.add_code(task_id, "solution.py", b"print(0)\n")  # passes none
    for v in (1, 2):
        await service.run(task_id, v)
    done = await registry.get("tasks.finish").call({"task_id": task_id, "status": "failed"}, ctx)
    assert (done["best_version"], done["why"]) == (1, "passed 1 of 2 checks in execution 1")


async def test_finish_says_one_check_in_the_singular(
    tasks: TaskStore, service: ExecutionService, tmp_path: Path
) -> None:
    registry = ToolRegistry()
    register_task_tools(registry, tasks, service)
    ctx = ToolContext(run_id="run1", agent="evaluator", workspace=tmp_path)
    task_id = version(tasks, ADD, checks={"io": [{"input": "1 2", "expected": "3"}]})
    await service.run(task_id, 1)
    done = await registry.get("tasks.finish").call({"task_id": task_id, "status": "failed"}, ctx)
    assert (done["best_version"], done["why"]) == (1, "passed 1 of 1 check in execution 1")  # not "1 checks"


async def test_finish_never_names_a_deleted_version_best(
    tasks: TaskStore, service: ExecutionService, tmp_path: Path
) -> None:
    # An accepted version that was deleted since was named best: the task ended done with a best
    # version that GET .../code/{v} and `edgecrew tasks code` answer 404 for.
    registry = ToolRegistry()
    register_task_tools(registry, tasks, service)
    ctx = ToolContext(run_id="run1", agent="evaluator", workspace=tmp_path)
    task_id = version(tasks, ADD, checks=ADD_CHECKS)
    tasks.add_code(task_id, "solution.py", b"print(3)\n")
    tasks.add_feedback(task_id, author="evaluator", verdict="accepted", version=2)
    await service.run(task_id, 1)
    tasks.delete_code(task_id, 2)
    assert tasks.best_version(task_id) == (1, "passed 2 of 2 checks in execution 1")
    done = await registry.get("tasks.finish").call({"task_id": task_id, "status": "done"}, ctx)
    assert done["best_version"] == 1 and tasks.get(task_id).best_version == 1


async def test_finish_leaves_a_task_a_person_cancelled_cancelled(
    tasks: TaskStore, service: ExecutionService, tmp_path: Path
) -> None:
    """Before: a person cancelled the task while a build-loop run worked on it, and the run's finish
    marked it done (or failed), as if nobody had stopped it."""
    registry = ToolRegistry()
    register_task_tools(registry, tasks, service)
    ctx = ToolContext(run_id="run1", agent="evaluator", workspace=tmp_path)
    task_id = version(tasks, ADD, checks=ADD_CHECKS)
    tasks.update(task_id, status="cancelled")
    with pytest.raises(ToolError, match=f"task {task_id} was cancelled while you worked on it; it stays cancelled"):
        await registry.get("tasks.finish").call({"task_id": task_id, "status": "done"}, ctx)
    assert tasks.get(task_id).status == "cancelled"


async def test_a_version_accepted_then_rejected_is_not_best(tasks: TaskStore, service: ExecutionService) -> None:
    # A version's latest verdict is its standing: accepted then rejected, it was still named
    # "accepted by ..." best, and one rejected outright could still win on its passed checks.
    task_id = version(tasks, ADD, checks=ADD_CHECKS)
    tasks.add_code(task_id, "solution.py", b"print(3)\n")
    await service.run(task_id, 1)  # passes both checks
    await service.run(task_id, 2)  # passes none
    tasks.add_feedback(task_id, author="critic", verdict="accepted", version=1)
    tasks.add_feedback(task_id, author="critic", verdict="accepted", version=2)
    tasks.add_feedback(task_id, author="person", verdict="rejected", version=2)
    assert tasks.best_version(task_id) == (1, "accepted by critic")
    tasks.add_feedback(task_id, author="person", verdict="rejected", version=1)
    assert tasks.best_version(task_id) == (2, "every version was rejected; the latest")
    tasks.add_feedback(task_id, author="person", verdict="accepted", version=1)
    assert tasks.best_version(task_id) == (1, "accepted by person")


async def test_an_agents_execution_stops_when_its_run_is_cancelled(tasks: TaskStore, service: ExecutionService) -> None:
    """The run was cancelled while its agent waited for a long program: the program ran on to its end
    and stored a result on the task the cancel had ended."""
    from edgecrew.domain.runs import RunStatus

    tasks.store.create_run("r1", "build-loop", "t", {}, "")
    assert tasks.store.set_status("r1", RunStatus.RUNNING)
    task_id = version(tasks, "import time\nprint('started', flush=True)\ntime.sleep(30)\n", limits={"wall_s": 30})
    waiting = asyncio.create_task(service.run(task_id, 1, run_id="r1", agent="runner"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(e.status == "running" for e in service.list(task_id)):
        await asyncio.sleep(0.05)
    assert tasks.store.set_status("r1", RunStatus.CANCELLED, error="cancelled by user")
    ended = await asyncio.wait_for(waiting, timeout=25)  # the program alone sleeps 30 s
    assert ended.status == "killed" and ended.reason == "cancelled: the sandbox was killed"
    assert ended.result_id is None and tasks.results(task_id) == []


@pytest.mark.parametrize("ending", ["sys.exit(0)", "sys.exit()", "raise SystemExit(0)"])
async def test_a_version_that_exits_while_a_test_imports_it_fails_the_test(
    tasks: TaskStore, service: ExecutionService, ending: str
) -> None:
    # Its exit at import ended the test's process with 0 before a single assert ran: every test passed.
    test = "from solution import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    task_id = version(tasks, f"import sys\n{ending}\n", checks={"test": test}, name="adder.py")
    record = await service.run(task_id, 1)
    assert (record.status, record.checks_passed) == ("failed", 0)
    assert record.reason is not None and "solution.py ended the process while it was imported" in record.reason
    assert "if __name__ == '__main__':" in record.reason
    # a test's own exit still decides, and the version's name imports alike
    tasks.add_code(task_id, "adder.py", b"def add(a, b):\n    return a + b\n")
    own = "import sys\nimport adder\nsys.exit(0 if adder.add(2, 3) == 5 else 1)\n"
    tasks.update(task_id, checks=parse_checks({"test": own}).to_json())
    assert (await service.run(task_id, 2)).status == "succeeded"
    tasks.add_code(task_id, "adder.py", b"import sys\nsys.exit(0)\n")
    record = await service.run(task_id, 3)
    assert record.status == "failed" and record.reason is not None and "adder.py ended the process" in record.reason
    # a module built into the interpreter stays the built-in one, as before, whatever the work dir holds
    tasks.add_code(task_id, "errno.py", b"def add(a, b):\n    return a + b\n")
    uses = "import errno\nimport solution\nassert errno.ENOENT == 2 and solution.add(1, 1) == 2\n"
    tasks.update(task_id, checks=parse_checks({"test": uses}).to_json())
    assert (await service.run(task_id, 4)).status == "succeeded"


@pytest.mark.parametrize(
    "code",
    ["import os\nos._exit(0)\n", "def add(a, b):\n    import os\n    os._exit(0)\n"],
    ids=["at-import", "in-a-test"],
)
async def test_a_version_that_ends_the_test_process_with_0_before_the_test_ends_fails_it(
    tasks: TaskStore, service: ExecutionService, code: str
) -> None:
    # os._exit(0) skips everything: the process ended with 0 before an assert ran, and the test passed.
    test = "from solution import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    task_id = version(tasks, code, checks={"test": test})
    record = await service.run(task_id, 1)
    assert (record.status, record.checks_passed) == ("failed", 0)
    assert record.reason is not None and "ended before the test ran to its end" in record.reason
    # a test that exits by itself, or has only plain asserts, still passes
    tasks.add_code(task_id, "solution.py", b"def add(a, b):\n    return a + b\n")
    for passing in ("import unittest\nfrom solution import add\nclass T(unittest.TestCase):\n"
                    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\nunittest.main()\n",
                    "import os\nos.chdir('/tmp')\nfrom solution import add\nassert add(2, 3) == 5\n"):  # fmt: skip
        tasks.update(task_id, checks=parse_checks({"test": passing}).to_json())
        assert (await service.run(task_id, 2)).status == "succeeded"


@pytest.mark.parametrize("ending", ["sys.exit(0)", "sys.exit()", "raise SystemExit(0)", "sys.exit(3)"])
async def test_a_version_whose_exit_ends_the_tests_top_level_fails_the_test(
    tasks: TaskStore, service: ExecutionService, ending: str
) -> None:
    # The test calls the version's main() at its own top level and main() exits: the exit ended the
    # test's process before its assert ran, and read as the test's own exit it passed.
    code = f"import sys\n\ndef add(a, b):\n    return a - b\n\ndef main():\n    {ending}\n"
    test = "import solution\nsolution.main()\nassert solution.add(2, 3) == 5\n"
    task_id = version(tasks, code, checks={"test": test}, name="adder.py")
    record = await service.run(task_id, 1)
    assert (record.status, record.checks_passed) == ("failed", 0)
    assert record.reason is not None and "solution.py ended the test's process" in record.reason
    assert "solution.py:7" in record.reason and "before the test ran to its end" in record.reason
    # the test's own exit still decides, from its top level or from a function of its own
    tasks.add_code(task_id, "adder.py", code.replace("a - b", "a + b").encode())
    owns = [
        "import sys\nimport adder\nsys.exit(0 if adder.add(2, 3) == 5 else 1)\n",
        "import sys\nimport adder\ndef stop(code):\n    sys.exit(code)\nstop(0 if adder.add(2, 3) == 5 else 1)\n",
        "import adder\ntry:\n    adder.main()\nexcept SystemExit:\n    pass\nassert adder.add(2, 3) == 5\n",
    ]
    for own in owns:
        tasks.update(task_id, checks=parse_checks({"test": own}).to_json())
        record = await service.run(task_id, 2)
        assert (record.status, record.reason) == ("succeeded", None), own


async def test_each_io_case_and_the_test_start_from_a_clean_work_dir(
    tasks: TaskStore, service: ExecutionService
) -> None:
    # They shared one work dir: a file one case wrote was there for the next, which then answered otherwise.
    code = (
        "import os\nfrom pathlib import Path\n"
        "seen = sorted(p.name for p in Path('.').iterdir() if not p.name.startswith('.edgecrew-test-done'))\n"
        "Path('state').write_text('x')\nPath('solution.py').write_text('broken(')\nprint(' '.join(seen))\n"
    )
    test = "import os\nassert not os.path.exists('state'), 'state left by the program'\nimport solution\n"
    files = "edgecrew_check_test.py prog.py solution.py"
    checks = {"io": [{"input": "", "expected": files}, {"input": "", "expected": files}], "test": test}
    task_id = version(tasks, code, checks=checks, name="prog.py")
    record = await service.run(task_id, 1)
    assert (record.status, record.reason, record.checks_passed) == ("succeeded", None, 3)
    assert not (tasks.files.root / task_id / "work" / str(record.id)).exists()  # every work dir is removed


async def test_latest_gives_agents_the_counts_of_a_result_as_whole_numbers(
    tasks: TaskStore, service: ExecutionService, tmp_path: Path
) -> None:
    # The store keeps every metric a float: tasks.latest said "checks_passed": 2.0 where the API says 2.
    registry = ToolRegistry()
    register_task_tools(registry, tasks, service)
    task_id = version(tasks, ADD, checks=ADD_CHECKS)
    tasks.add_result(task_id, version=1, metrics={"checks_passed": 2.0, "checks_total": 3.0, "epochs": 3.0, "f1": 0.5})
    ctx = ToolContext(run_id="run1", agent="evaluator", workspace=tmp_path)
    metrics = (await registry.get("tasks.latest").call({"task_id": task_id}, ctx))["result"]["metrics"]
    assert metrics == {"checks_passed": 2, "checks_total": 3, "epochs": 3.0, "f1": 0.5}
    assert {k: type(v) for k, v in metrics.items()} == {
        "checks_passed": int,
        "checks_total": int,
        "epochs": float,  # not a count: a measure stays one
        "f1": float,
    }
