"""Executions: a task's code version run in the sandbox against the task's checks and limits.

The one design decision: an execution is a row first and a background asyncio task second. The row
(queued → running → succeeded | failed | killed) names the process that runs it (its executor id),
so after a crash ``recover()`` finds the rows whose process is gone and marks them ``interrupted``
(they are rerun as new executions, never resumed), and whoever waits for one (``run``, a tool
call) may stop waiting without stopping it. Each program run (one per io case; one plain run when
the task has no checks; none when it has only a test, which runs the program itself) and the test
check are separate sandboxed processes, each in a fresh work dir of its own that holds only the
version and the test (a file one case writes is not there for the next); their output is appended to
the execution's two log files as they print it, so a reader tailing them sees the progress.
"""

from __future__ import annotations

import asyncio
import builtins
import codecs
import contextlib
import shutil
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TextIO, TypeVar

from edgecrew.domain.runs import RunStatus
from edgecrew.errors import ConflictError, NotFoundError, UserError
from edgecrew.store.tasks import UNFINISHED, ExecutionRecord, TaskStore
from edgecrew.tasks.checks import (
    TaskChecks,
    clip,
    normalize_output,
    output_matches,
    parse_checks,
    parse_limits,
    read_metrics,
    result_columns,
)
from edgecrew.tools.sandbox import SandboxLimits, SandboxResult, fresh_workdir, run_sandboxed
from edgecrew.tools.sandbox_host import TierName

__all__ = ["ExecutionService", "author_of"]

P = ParamSpec("P")
R = TypeVar("R")
TEST_FILE = "edgecrew_check_test.py"
RUN_CHECK_S = 1.0  # how often an agent's execution looks whether its run was cancelled meanwhile
_UTF8 = codecs.getincrementaldecoder("utf-8")
# The live log is written at most this often, or once this much output is gathered: a reader sees a
# line within a tenth of a second, and a program printing many short lines costs a write per tenth.
FLUSH_S, FLUSH_CHARS = 0.1, 64 * 1024
# The program runs as itself: under its own file name, as __main__, with the work dir importable
# (python -I leaves the script's folder off sys.path, and the launcher is the script here).
PROGRAM = """\
import sys
sys.argv = [{name!r}]
sys.path.insert(0, "")
with open({name!r}, "rb") as _source:
    _code = compile(_source.read(), {name!r}, "exec")
exec(_code, {{"__name__": "__main__", "__file__": {name!r}, "__builtins__": __builtins__}})
"""
# The test runs as __main__ (so its own unittest.main() works); the unittest TestCases it only defines
# are run here, and so are its pytest-style tests (test* functions, test* methods of a plain Test*
# class: no fixtures, pytest is not there), each reported as its own test; a failure ends with one line
# that names the first failed test and its error (a bare assert's with its source line).
#
# A module of the work dir (the version as solution.py and under its own name) that ends the process
# while the test imports it (sys.exit at its top level) is an ImportError naming it: the exit ended the
# test's process with 0 before any assert ran, so every test passed. The file ``done`` is made once the
# test ran to its end (or exited by itself); without it an exit 0 (os._exit, which nothing can catch) fails.
# An exit that reaches the test's top level is the test's own only when the innermost work dir frame that
# raised it is the test's: one a version's function raised (the test called solution.main()) fails it.
TEST = """\
import importlib.machinery, importlib.util, inspect, os, sys, types, unittest
sys.argv = [{test!r}]


class _ExitAtImport(importlib.machinery.SourceFileLoader):
    def exec_module(self, module):
        try:
            super().exec_module(module)
        except SystemExit as _exit:
            raise ImportError(
                f"{{os.path.basename(self.path)}} ended the process while it was imported "
                f"(SystemExit({{_exit.code!r}}) at its top level), so the test could not run: put the "
                "program's own run under if __name__ == '__main__':"
            ) from None


class _WorkDirModules:
    @staticmethod
    def find_spec(name, path=None, target=None):
        file = os.path.abspath(name + ".py")
        if path is not None or "." in name or not os.path.isfile(file):
            return None
        return importlib.util.spec_from_file_location(name, file, loader=_ExitAtImport(name, file))


sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder), _WorkDirModules)  # after built-ins
sys.path.insert(0, "")
_module = types.ModuleType("__main__")
_module.__file__, _module.SOLUTION_FILE = {test!r}, {name!r}
sys.modules["__main__"] = _module


_WORK = os.getcwd()
_DONE = os.path.join(_WORK, {done!r})  # the work dir's, wherever the test moves to


def _ran_to_its_end():
    open(_DONE, "w").close()


def _raised_in(trace):  # the work dir file and line whose code raised: its innermost frame of one
    where = None
    while trace is not None:
        file = trace.tb_frame.f_code.co_filename
        if not file.startswith("<") and os.path.dirname(os.path.join(_WORK, file)) == _WORK:
            where = (os.path.basename(file), trace.tb_lineno)
        trace = trace.tb_next
    return where


try:
    with open({test!r}, "rb") as _source:
        exec(compile(_source.read(), {test!r}, "exec"), _module.__dict__)
except SystemExit as _exit:
    _where = _raised_in(_exit.__traceback__)
    if _where is not None and _where[0] != {test!r}:
        sys.stderr.write(
            f"edgecrew: {{_where[0]}} ended the test's process (SystemExit({{_exit.code!r}}) at "
            f"{{_where[0]}}:{{_where[1]}}) before the test ran to its end, so what followed in the test never "
            "ran: a test that checks an exit catches SystemExit\\n"
        )
        sys.exit(1)
    _ran_to_its_end()  # the test's own exit decides (unittest.main(), sys.exit(code))
    raise
__unittest = True  # unittest leaves this launcher's frames out of a failure's traceback


class _Plain(unittest.TestCase):
    def __init__(self, name, make):
        super().__init__("_call")
        self._name, self._make = name, make

    def _call(self):
        test = self._make()
        params = inspect.signature(test).parameters.values()
        needs = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if needs:
            raise TypeError(f"{{self._name}} takes {{', '.join(needs)}}: there are no pytest fixtures here")
        if inspect.iscoroutinefunction(test):
            raise TypeError(f"{{self._name}} is async: write a plain def (asyncio.run inside it)")
        test()

    def id(self):
        return self._name

    __str__ = id


_suite = unittest.defaultTestLoader.loadTestsFromModule(_module)
for _key, _value in list(vars(_module).items()):
    if getattr(_value, "__module__", None) != "__main__":
        continue  # imported, not the test's own
    if _key.startswith("test") and inspect.isfunction(_value):
        _suite.addTest(_Plain(_key, lambda f=_value: f))
    elif _key.startswith("Test") and inspect.isclass(_value) and not issubclass(_value, unittest.TestCase):
        for _method in sorted(m for m in dir(_value) if m.startswith("test") and callable(getattr(_value, m))):
            _suite.addTest(_Plain(f"{{_key}}.{{_method}}", lambda c=_value, m=_method: getattr(c(), m)))
if _suite.countTestCases():
    _result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(_suite)
    _bad = _result.failures + _result.errors
    if _bad:
        _case, _trace = _bad[0]
        _lines = [line.strip() for line in _trace.splitlines() if line.strip().strip("^~")]
        _last = _lines[-1]
        if _last == "AssertionError" and len(_lines) > 1:
            _last += f" ({{_lines[-2]}})"
        _count = f"{{len(_bad)}} of {{_result.testsRun}} tests failed"
        sys.stderr.write(f"edgecrew: {{_count}}; first: {{_case.id()}}: {{_last}}\\n")
    _ran_to_its_end()
    sys.exit(0 if _result.wasSuccessful() else 1)
_ran_to_its_end()
"""


def author_of(agent: str | None, run_id: str | None) -> str | None:
    """The author fields' form of who wrote something: ``agent@run`` (bounded to the column)."""
    if agent and run_id:
        return f"{agent}@{run_id}"[:128]
    return agent or (f"run {run_id}" if run_id else None)


@dataclass
class _Outcome:
    """What the program and the checks did (before it is stored)."""

    total: int
    passed: int = 0
    reasons: list[str] = field(default_factory=list)
    exit_code: int | None = 0
    metrics: dict[str, float] = field(default_factory=dict)
    runtime_s: float = 0.0
    ran: bool = True  # False: edgecrew could not run it at all (no result is stored)

    def fail(self, reason: str, exit_code: int | None = None) -> None:
        self.reasons.append(reason)
        if exit_code not in (None, 0) and self.exit_code in (None, 0):
            self.exit_code = exit_code

    @property
    def reason(self) -> str | None:
        if not self.reasons:
            return None
        if len(self.reasons) == 1:
            return self.reasons[0]
        return f"{len(self.reasons)} problems; first: {self.reasons[0]}"


class ExecutionService:
    """Runs task code versions in the sandbox, one row per execution (see the module docstring)."""

    def __init__(
        self,
        tasks: TaskStore,
        *,
        executor: str,
        executor_alive: Callable[[str | None], bool],
        limits: SandboxLimits | None = None,
        max_parallel: int = 2,
        tier: TierName | None = None,
    ) -> None:
        """``executor``: this process's id (host:pid:start); ``executor_alive``: whether another
        id's process still runs; ``limits``: the defaults a task's limits override (None: the
        EDGECREW_SANDBOX_* settings at each execution); ``max_parallel``: executions at once."""
        self.tasks = tasks
        self.executor = executor
        self.executor_alive = executor_alive
        self.limits = limits
        self.max_parallel = max_parallel
        self.tier = tier
        self._running: dict[int, asyncio.Task[None]] = {}
        self._cancelling: set[int] = set()
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    # -- the API ----------------------------------------------------------------------------------
    async def start(
        self, task_id: str, version: int, *, run_id: str | None = None, agent: str | None = None
    ) -> ExecutionRecord:
        """Queue an execution of ``version`` and start it in the background; returns the queued row."""
        record = await _off(
            self.tasks.create_execution, task_id, version, run_id=run_id, agent=agent, executor=self.executor
        )
        job = asyncio.create_task(self._execute(record), name=f"edgecrew-execution-{record.id}")
        self._running[record.id] = job
        job.add_done_callback(lambda _: self._running.pop(record.id, None))
        return record

    async def run(
        self, task_id: str, version: int, *, run_id: str | None = None, agent: str | None = None
    ) -> ExecutionRecord:
        """Start an execution and wait for its end. One a run's agent started stops (killed) when the
        run is cancelled meanwhile, from any process: nothing would read its result any more."""
        record = await self.start(task_id, version, run_id=run_id, agent=agent)
        job = self._running.get(record.id)
        while run_id is not None and job is not None and not job.done():
            await asyncio.wait({job}, timeout=RUN_CHECK_S)
            if not job.done() and await _off(self._cancelled, run_id):
                with contextlib.suppress(ConflictError):  # it ended meanwhile
                    await self.cancel(record.id)
                break
        return await self.wait(record.id)

    def _cancelled(self, run_id: str) -> bool:
        try:
            return self.tasks.store.run_status(run_id) is RunStatus.CANCELLED
        except NotFoundError:  # no such run (a tool called outside one): nothing to stop it
            return False

    async def wait(self, execution_id: int) -> ExecutionRecord:
        """The execution once it has ended here; a waiter that is cancelled leaves it running."""
        job = self._running.get(execution_id)
        if job is not None:
            await asyncio.wait({job})
        return self.get(execution_id)

    def get(self, execution_id: int) -> ExecutionRecord:
        """An execution; one left queued or running by a process that is gone reads as ``interrupted``."""
        record = self.tasks.execution(execution_id)
        if self._orphaned(record):
            self.recover()
            record = self.tasks.execution(execution_id)
        return record

    def list(self, task_id: str, *, version: int | None = None) -> builtins.list[ExecutionRecord]:
        """A task's executions, oldest first (as ``get`` reads them)."""
        records = self.tasks.executions(task_id, version=version)
        if any(self._orphaned(r) for r in records):
            self.recover()
            records = self.tasks.executions(task_id, version=version)
        return records

    def _orphaned(self, record: ExecutionRecord) -> bool:
        # Else an execution whose process was killed (`edgecrew tasks run` stopped with kill -9, a
        # server that died) read as running until the next server start.
        return (
            not record.finished
            and record.id not in self._running
            and record.executor != self.executor
            and not self.executor_alive(record.executor)
        )

    def log_paths(self, execution_id: int) -> tuple[Path, Path]:
        """The stdout and stderr log files (appended to as the execution goes; absent before it starts)."""
        record = self.get(execution_id)
        folder = self.tasks.files.logs_dir(record.task_id)
        return folder / str(record.stdout_log), folder / str(record.stderr_log)

    async def cancel(self, execution_id: int) -> ExecutionRecord:
        """Stop an execution (the sandbox is killed): status ``killed``."""
        record = self.tasks.execution(execution_id)  # one whose process is gone is killed, not interrupted
        if record.finished:
            raise ConflictError(f"execution {execution_id} has already ended ({record.status}); nothing to cancel")
        job = self._running.get(execution_id)
        if job is None:
            if record.executor != self.executor and self.executor_alive(record.executor):
                pid = str(record.executor).split(":")[1:2]
                raise ConflictError(
                    f"execution {execution_id} runs in another process ({record.executor}"
                    f"{', pid ' + pid[0] if pid else ''}); stop it there: on the server that started it, POST "
                    f"/executions/{execution_id}/cancel or Cancel on /ui/executions/{execution_id}; or Ctrl-C the "
                    "`edgecrew tasks run` running it"
                )
            await _off(
                self.tasks.update_execution,
                execution_id,
                only_from=UNFINISHED,
                status="killed",
                reason=f"cancelled; the process that ran it ({record.executor}) was already gone",
                finished_at=time.time(),
            )
            return self.get(execution_id)
        self._cancelling.add(execution_id)
        try:
            # A job cancelled before its first step never enters its own handler: end a queued row here.
            await _off(
                self.tasks.update_execution,
                execution_id,
                only_from=("queued",),
                status="killed",
                reason="cancelled before it started",
                finished_at=time.time(),
            )
            job.cancel()
            await asyncio.wait({job})
        finally:
            self._cancelling.discard(execution_id)
        return self.get(execution_id)

    def recover(self) -> builtins.list[ExecutionRecord]:
        """At start-up: mark executions left queued or running by a process that is gone as
        ``interrupted`` (run the version again to retry); returns them."""
        interrupted = []
        for record in self.tasks.unfinished_executions():
            if record.id in self._running:
                continue
            if record.executor != self.executor and self.executor_alive(record.executor):
                continue
            reason = (
                f"interrupted: the process that ran it ({record.executor or 'unknown'}) stopped while it was "
                f"{record.status}; run version {record.version} again"
            )
            if self.tasks.update_execution(
                record.id, only_from=UNFINISHED, status="interrupted", reason=reason, finished_at=time.time()
            ):
                shutil.rmtree(self._work_root(record), ignore_errors=True)
                interrupted.append(self.get(record.id))
        return interrupted

    # -- one execution ----------------------------------------------------------------------------
    async def _execute(self, record: ExecutionRecord) -> None:
        try:
            async with self._slot():
                claimed = await _off(
                    self.tasks.update_execution,
                    record.id,
                    only_from=("queued",),
                    status="running",
                    started_at=time.time(),
                )
                if not claimed:
                    return  # cancelled or recovered while it waited for a slot
                outcome = await self._run_version(record)
            await self._store_outcome(record, outcome)
        except asyncio.CancelledError:
            if record.id not in self._cancelling:
                await self._end(record, "interrupted", "interrupted: edgecrew stopped while it ran; run it again")
                raise
            await self._end(record, "killed", "cancelled: the sandbox was killed")
            return  # cancel() asked for it: the job ends normally
        except Exception as exc:  # any failure of ours ends the row, never leaves it running
            await self._end(record, "failed", f"edgecrew could not run version {record.version}: {exc}")

    async def _run_version(self, record: ExecutionRecord) -> _Outcome:
        task = await _off(self.tasks.get, record.task_id)
        code = await _off(self.tasks.code_version, record.task_id, record.version)
        try:
            checks, task_limits = parse_checks(task.checks), parse_limits(task.limits)
        except UserError as exc:
            return _Outcome(0, reasons=[f"the task's checks or limits are invalid: {exc}"], exit_code=None, ran=False)
        if not code.filename.lower().endswith(".py"):
            reason = (
                f"only Python versions (a .py file) can run; version {code.version} is {code.filename!r} "
                f"({code.language or 'unknown language'})"
            )
            return _Outcome(checks.total, reasons=[reason], exit_code=None, ran=False)
        limits = task_limits.apply(self.limits or _settings_limits())
        data = await _off(self.tasks.code_bytes, code)
        logs = _Logs(self.tasks.files.logs_dir(record.task_id), str(record.stdout_log), str(record.stderr_log))
        work_root = self._work_root(record)

        async def workdir() -> Path:  # each sandboxed process starts from the same clean state
            path = await _off(fresh_workdir, work_root)
            await _off(_place_files, path, code.filename, data, checks)
            return path

        try:
            return await self._run_checks(code.filename, checks, limits, workdir, logs)
        finally:
            logs.close()  # a cancel or an error between a header and its output leaves them open
            await _off(shutil.rmtree, work_root, True)

    async def _run_checks(
        self,
        name: str,
        checks: TaskChecks,
        limits: SandboxLimits,
        workdir: Callable[[], Awaitable[Path]],
        logs: _Logs,
    ) -> _Outcome:
        outcome = _Outcome(checks.total)
        program = PROGRAM.format(name=name)
        cases: list[tuple[str, str | None, str | None]] = [
            (f"io check {i}", case.input, case.expected) for i, case in enumerate(checks.io, 1)
        ]
        if not cases and not checks.test:
            cases = [("the program", None, None)]  # no checks: one plain run, for its exit code and metrics
        last: SandboxResult | None = None
        for label, stdin, expected in cases:
            shown = f" (input {clip(stdin)})" if stdin is not None else ""
            await logs.header(f"{label}{shown}")
            folder = await workdir()
            last = await run_sandboxed(
                "python", program, workdir=folder, limits=limits, stdin=stdin, tier=self.tier, on_output=logs.live
            )
            await logs.output(last)
            await _off(shutil.rmtree, folder, True)
            outcome.runtime_s += last.duration_s
            problem = _problem(last, limits)
            if problem is None and expected is not None and not output_matches(last.stdout, expected):
                problem = f"expected {clip(expected)}, got {clip(normalize_output(last.stdout))}"
            if problem is None:
                outcome.passed += 1 if expected is not None else 0
            else:
                where = f"{label} failed{shown}" if expected is not None else label
                outcome.fail(f"{where}: {problem}", last.exit_code)
        if last is not None:
            outcome.metrics = read_metrics(last.stdout)
        if checks.test:
            await logs.header("test check")
            done = f".edgecrew-test-done-{uuid.uuid4().hex}"
            launcher = TEST.format(test=TEST_FILE, name=name, done=done)
            folder = await workdir()
            result = await run_sandboxed(
                "python", launcher, workdir=folder, limits=limits, tier=self.tier, on_output=logs.live
            )
            await logs.output(result)
            if last is None:  # the test alone ran the program
                outcome.metrics, outcome.runtime_s = read_metrics(result.stdout), result.duration_s
            problem = _problem(result, limits, test=True)
            if problem is None and not await _off((folder / done).exists):
                problem = (
                    "the test's process ended before the test ran to its end, with exit code 0 (the version "
                    "called os._exit, say): no assert can have held"
                )
            if problem is None:
                outcome.passed += 1
            else:
                outcome.fail(f"test check failed: {problem}", result.exit_code)
        return outcome

    async def _store_outcome(self, record: ExecutionRecord, outcome: _Outcome) -> None:
        status = "succeeded" if outcome.ran and not outcome.reasons else "failed"
        metrics = dict(outcome.metrics)
        if "runtime" not in metrics and "runtime_s" not in metrics:
            metrics["runtime_s"] = round(outcome.runtime_s, 3)
        columns, others = result_columns(metrics)
        others |= {"checks_passed": float(outcome.passed), "checks_total": float(outcome.total)}
        result_id = None
        if outcome.ran:
            summary = f"execution {record.id}: {status}" + (f"\n{outcome.reason}" if outcome.reason else "")
            result = await _off(
                self.tasks.add_result,
                record.task_id,
                version=record.version,
                metrics=others,
                logs=summary + f"\nlogs: {record.stdout_log}, {record.stderr_log}\n",
                author=author_of(record.agent, record.run_id),
                **columns,
            )
            result_id = result.id
        await _off(
            self.tasks.update_execution,
            record.id,
            only_from=("running",),
            status=status,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            finished_at=time.time(),
            metrics=metrics,
            checks_passed=outcome.passed,
            checks_total=outcome.total,
            result_id=result_id,
        )

    async def _end(self, record: ExecutionRecord, status: str, reason: str) -> None:
        await _off(
            self.tasks.update_execution,
            record.id,
            only_from=UNFINISHED,
            status=status,
            reason=reason,
            finished_at=time.time(),
        )

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is None:
            slot = self._slots[loop] = asyncio.Semaphore(self.max_parallel)
        return slot

    def _work_root(self, record: ExecutionRecord) -> Path:
        return self.tasks.files.root / record.task_id / "work" / str(record.id)


class _Logs:
    """The execution's stdout and stderr log files: edgecrew's line before each sandboxed process, the
    program's output as it prints it (what the sandbox keeps of it, so bounded as the result is), and a
    line on how the process ended.

    The two files stay open from a process's ``header()`` to its ``output()`` (``close()`` on a cancel or
    an error). The output the sandbox tells ``live()`` on the event loop is gathered and written at most
    every ``FLUSH_S`` or ``FLUSH_CHARS``: one small append to an open file, not a mkdir, open and close
    per chunk, which a program printing short flushed lines would make thousands of times a second."""

    def __init__(self, folder: Path, stdout: str, stderr: str) -> None:
        self.paths = {"stdout": folder / stdout, "stderr": folder / stderr}
        self._files: dict[str, TextIO] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._start()

    def _start(self) -> None:
        self._decoders = {stream: _UTF8("replace") for stream in self.paths}  # a read may end inside a character
        self._chars = dict.fromkeys(self.paths, 0)  # characters of this process's output written so far
        self._ends = dict.fromkeys(self.paths, "\n")
        self._pending: dict[str, list[str]] = {stream: [] for stream in self.paths}
        self._pending_chars = 0

    async def header(self, what: str) -> None:
        self.close()
        self._start()
        self._files = await self._opened(dict.fromkeys(self.paths, f"[edgecrew] {what}\n"))

    def live(self, stream: str, data: bytes) -> None:
        """The sandbox's output listener, on the event loop: the text is written soon, by ``_flush``."""
        text = self._decoders[stream].decode(data)
        if not text or not self._files:
            return
        self._pending[stream].append(text)
        self._pending_chars += len(text)
        if self._pending_chars >= FLUSH_CHARS:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._flush)

    def _flush(self) -> None:
        """The gathered output into the open files, one write each, on the loop (the page cache takes
        it; nothing waits on the disk). If that fails the live output stops, and ``output()`` writes
        what it missed, as when the sandbox stops telling a listener that raised."""
        self._cancel_timer()
        self._pending_chars = 0
        try:
            for stream, parts in self._pending.items():
                text = "".join(parts)
                parts.clear()
                if text:
                    self._files[stream].write(text)
                    self._files[stream].flush()
                    self._chars[stream] += len(text)
                    self._ends[stream] = text[-1]
        except OSError:
            self._shut()

    async def output(self, result: SandboxResult) -> None:
        """What the live output did not write (a character cut at the end, the note on output past the
        limit, what was still gathered; all of it if the listener stopped), then how the process ended;
        the files are closed."""
        self._cancel_timer()  # what was gathered is in ``result`` too, past ``_chars``
        killed = f", killed: {result.killed_reason}" if result.killed_reason else ""
        tail = f"[edgecrew] exit {result.exit_code} in {result.duration_s:.3f}s{killed} (sandbox: {result.tier})\n"
        texts = {}
        for stream, final in (("stdout", result.stdout), ("stderr", result.stderr)):
            rest = final[self._chars[stream] :]
            texts[stream] = rest + ("" if (rest[-1:] or self._ends[stream]) == "\n" else "\n") + tail
        files, self._files = self._files, {}
        await _off(_write_and_close, files or await self._opened({}), texts)  # reopened if the live path failed

    def close(self) -> None:
        """Write what was gathered and close the files: after a cancel or an error (a no-op once
        ``output()`` has closed them)."""
        if self._files:
            self._flush()
        self._shut()

    def _shut(self) -> None:
        self._cancel_timer()
        files, self._files = self._files, {}
        _close_all(files)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _opened(self, first: dict[str, str]) -> dict[str, TextIO]:
        """The two files, opened off the loop for appending, ``first`` written; if the caller is
        cancelled meanwhile, they are closed once open rather than left to the garbage collector."""
        opening = asyncio.ensure_future(_off(self._open, first))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise

    def _open(self, first: dict[str, str]) -> dict[str, TextIO]:
        self.paths["stdout"].parent.mkdir(parents=True, exist_ok=True)
        files: dict[str, TextIO] = {}
        try:
            for stream, path in self.paths.items():
                files[stream] = path.open("a", encoding="utf-8")
            for stream, line in first.items():
                files[stream].write(line)
                files[stream].flush()
        except BaseException:
            _close_all(files)
            raise
        return files


def _write_and_close(files: dict[str, TextIO], texts: dict[str, str]) -> None:
    try:
        for stream, text in texts.items():
            files[stream].write(text)
    finally:
        _close_all(files)


def _close_all(files: dict[str, TextIO]) -> None:
    for log in files.values():
        with contextlib.suppress(OSError):
            log.close()


def _close_opened(opening: asyncio.Future[dict[str, TextIO]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _close_all(opening.result())


def _place_files(workdir: Path, name: str, data: bytes, checks: TaskChecks) -> None:
    """The version under its own name and as solution.py (what a test imports), and the test."""
    (workdir / name).write_bytes(data)
    if name != "solution.py":
        (workdir / "solution.py").write_bytes(data)
    if checks.test:
        (workdir / TEST_FILE).write_text(checks.test, encoding="utf-8")


def _problem(result: SandboxResult, limits: SandboxLimits, *, test: bool = False) -> str | None:
    """Why a sandboxed process did not end well (None when it exited 0)."""
    if result.killed_reason is not None:
        return f"killed by the sandbox: {_kill_text(result.killed_reason, limits)}"
    if result.exit_code == 0:
        return None
    if "MemoryError" in result.stderr:
        return f"ran out of memory (the limit is {limits.memory_bytes // (1024 * 1024)} MB per process)"
    last = _last_error_line(result.stderr, prefer="edgecrew: " if test else None)
    return f"exited with code {result.exit_code}" + (f": {last[:300]}{'…' if len(last) > 300 else ''}" if last else "")


def _kill_text(reason: str, limits: SandboxLimits) -> str:
    texts = {
        "wall": f"wall (ran past its {limits.wall_s:g}s wall-clock limit)",
        "cpu": f"cpu (used its {limits.cpu_s}s of CPU time)",
        "output": "output (printed far more than the output limit)",
        "disk": "disk (wrote more than its disk limit)",
        "files": "files (created too many files)",
        "file_size": "file_size (wrote a file past the size limit)",
        "cancelled": "cancelled",
    }
    return texts.get(reason, reason)


def _last_error_line(stderr: str, prefer: str | None) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("[edgecrew:")]
    if prefer:
        for line in reversed(lines):
            if line.startswith(prefer):
                return line.removeprefix(prefer)
    return lines[-1] if lines else ""


def _settings_limits() -> SandboxLimits:
    from edgecrew.tools.builtins.code import sandbox_limits  # the same EDGECREW_SANDBOX_* limits as python.run

    return sandbox_limits()


async def _off(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """A store or disk call, off the event loop (SQLite waits on fsync)."""
    return await asyncio.to_thread(fn, *args, **kwargs)
