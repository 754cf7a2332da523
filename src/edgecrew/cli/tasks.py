"""`edgecrew tasks list|show|create|add-version|run|executions|logs|cancel`: the task workspace from a terminal.

The one design decision: `tasks run` executes the version in this process (``rt.executions``, the
same service the server runs them with, the row naming this process), so it needs no server; it
follows the execution the way the API's live stream does (its row and its two log files), printing
each check as it ends and the outcome at the end, and exits 0 only when it succeeded.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from edgecrew.cli.common import ProjectOpt, console, err, guard, print_file, read_text, runtime, shown
from edgecrew.errors import NotFoundError, SpecError, UserError

if TYPE_CHECKING:
    from edgecrew.engine.runtime import Runtime
    from edgecrew.store.tasks import CodeRecord, ExecutionRecord, FeedbackRecord, ResultRecord, TaskRecord

tasks_app = typer.Typer(help="Tasks, their code versions and executions in the sandbox.", no_args_is_help=True)
STATUS_COLOURS = {
    "succeeded": "green",
    "done": "green",
    "failed": "red",
    "killed": "yellow",
    "interrupted": "yellow",
    "cancelled": "yellow",
    "accepted": "green",
    "needs_changes": "yellow",
    "rejected": "red",
}
NOTES_SHOWN = 2000  # characters of a verdict's notes in `tasks show` (--json has them all)


def _rt(project: Path | None = None) -> Runtime:
    rt: Runtime = guard(lambda: runtime(project))
    return rt


def _task(rt: Runtime, task_id: str) -> TaskRecord:
    try:
        return rt.tasks.get(task_id)
    except NotFoundError:
        raise UserError(f"no task '{task_id[:80]}'; `edgecrew tasks list` shows them") from None


def _check_version(rt: Runtime, task_id: str, version: int) -> None:
    _task(rt, task_id)
    versions = [v.version for v in rt.tasks.code_versions(task_id)]
    if version not in versions:
        none = f"none yet (add one: edgecrew tasks add-version {task_id} FILE)"
        have = ", ".join(str(v) for v in versions) if versions else none
        raise UserError(f"task {task_id} has no code version {version}; its versions: {have}")


def _status(value: str) -> str:
    return f"[{STATUS_COLOURS.get(value, 'cyan')}]{value}[/]"


def _when(ts: float | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _checks_of(record: ExecutionRecord) -> str:
    return f"{record.checks_passed}/{record.checks_total}" if record.checks_total is not None else ""


# -- tasks ----------------------------------------------------------------------------------------


LIST_MAX = 1000


@tasks_app.command("list")
def tasks_list(
    status: Annotated[str | None, typer.Option(help="Only tasks with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=LIST_MAX, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List tasks, newest first."""
    from edgecrew.store.tasks import TASK_STATUSES

    if status is not None and status not in TASK_STATUSES:  # else a typo listed nothing: "no tasks yet"
        err.print(f"[red]error:[/] --status {escape(repr(status))} is not one of {', '.join(TASK_STATUSES)}")
        raise typer.Exit(1)
    rt = _rt()
    tasks = guard(lambda: rt.tasks.list_tasks(status=status, limit=limit))
    if as_json:
        print(json.dumps([t.__dict__ for t in tasks], ensure_ascii=False))
        return
    if not tasks and status:
        console.print(f"no {status} tasks")
        return
    if not tasks:
        console.print('no tasks yet — try: edgecrew tasks create --title "add two numbers" --spec "..."')
        return
    table = Table(Column("task", no_wrap=True), "title", "status", "team", "best", "updated")
    for t in tasks:
        best = f"v{t.best_version}" if t.best_version else ""
        table.add_row(t.id, escape(t.title[:60]), _status(t.status), t.team or "", best, _when(t.updated_at))
    console.print(table)
    if len(tasks) == limit:  # else the newest looked like all of them
        total = guard(lambda: rt.tasks.count_tasks(status=status))
        if total > limit:
            which = f"{status} tasks" if status else "tasks"
            more = f"--limit {total} lists them all" if total <= LIST_MAX else f"--limit {LIST_MAX} lists more"
            err.print(f"the newest {limit} of {total} {which}; {more}")


@tasks_app.command("show")
def tasks_show(task: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a task: its spec, checks, limits, code versions, executions, results, verdicts (with
    the evaluator's notes) and its timeline (why a run's task ended, say)."""
    rt = _rt()
    record = guard(lambda: _task(rt, task))
    versions, executions = rt.tasks.code_versions(record.id), rt.executions.list(record.id)
    results, verdicts = rt.tasks.results(record.id), rt.tasks.feedback(record.id)
    messages = rt.tasks.messages(record.id, latest=True)  # the timeline's end: why a run ended the task
    if as_json:
        data = {
            **record.__dict__,
            "versions": [v.__dict__ for v in versions],
            "executions": [e.__dict__ for e in executions],
            "results": [r.__dict__ for r in results],
            "feedback": [f.__dict__ for f in verdicts],
            "messages": [m.__dict__ for m in messages],
        }
        print(json.dumps(data, ensure_ascii=False))
        return
    best = f" · best v{record.best_version}" if record.best_version else ""
    console.print(f"task [bold]{record.id}[/] · {_status(record.status)}{best} · {escape(record.title)}")
    if record.team or record.created_by:
        console.print(f"team: {record.team or '—'} · created by {escape(record.created_by or '—')}")
    if record.description:
        console.print(escape(record.description))
    checks = record.checks or {}
    io, test = checks.get("io") or [], checks.get("test")
    what = [f"{len(io)} input/output case(s)"] if io else []
    what += [f"a Python test ({len(str(test).splitlines())} lines)"] if test else []
    console.print("checks: " + (" and ".join(what) if what else "none (a version passes when it exits 0)"))
    _print_checks(record.id, io, str(test) if test else None)
    if record.limits:
        console.print("limits: " + ", ".join(f"{k}={v}" for k, v in record.limits.items()))
    if versions:
        table = Table("version", "file", "bytes", "author", "created", title="code versions")
        for v in versions:
            table.add_row(f"v{v.version}", escape(v.filename), str(v.size), escape(v.author or ""), _when(v.created_at))
        console.print(table)
    else:
        console.print("no code versions yet")
    if executions:
        console.print(_executions_table(executions[-10:], title="executions (latest 10)"))
    if results:
        console.print(_results_table(results[-10:]))
    if verdicts:
        console.print(_verdicts_table(verdicts[-10:]))
    if messages:
        table = Table("sender", "role", "when", Column("message", ratio=1), title="timeline (latest 10)")
        for m in messages[-10:]:
            table.add_row(escape(m.sender), m.role, _when(m.created_at), escape(m.content))
        console.print(table)


def _results_table(results: list[ResultRecord]) -> Table:
    table = Table("result", "version", "accuracy", "loss", "runtime", "metrics", "author", title="results (latest 10)")
    for r in results:
        numbers = [f"{n:g}" if n is not None else "" for n in (r.accuracy, r.loss, r.runtime_s)]
        version = f"v{r.version}" if r.version is not None else ""
        table.add_row(str(r.id), version, *numbers, _numbers(r.metrics), escape(r.author or ""))
    return table


def _verdicts_table(verdicts: list[FeedbackRecord]) -> Table:
    table = Table("version", "verdict", "score", "author", Column("notes", ratio=1), title="verdicts (latest 10)")
    for f in verdicts:
        notes = f.notes[:NOTES_SHOWN] + ("… (--json has all)" if len(f.notes) > NOTES_SHOWN else "")
        version = f"v{f.version}" if f.version is not None else ""
        score = f"{f.score:g}" if f.score is not None else ""
        table.add_row(version, _status(f.verdict), score, escape(f.author), escape(notes))
    return table


def _numbers(metrics: dict[str, float] | None) -> str:
    return " ".join(f"{k}={v:g}" for k, v in (metrics or {}).items())


CHECKS_SHOWN = 20  # io cases, and lines of a test


def _print_checks(task_id: str, io: list[dict[str, Any]], test: str | None) -> None:
    """The checks themselves (whoever wrote them, a generator's model say, they are worth reading)."""
    from edgecrew.tasks.checks import clip

    more = f"edgecrew tasks show {task_id} --json has them all"
    for n, case in enumerate(io[:CHECKS_SHOWN], 1):
        said = f"input {clip(str(case.get('input', '')))} → expected {clip(str(case.get('expected', '')))}"
        console.print(f"  {n}. {escape(said)}", highlight=False)
    if len(io) > CHECKS_SHOWN:
        console.print(f"  … {len(io) - CHECKS_SHOWN} more case(s): {more}", highlight=False)
    lines = test.splitlines() if test else []
    for line in lines[:CHECKS_SHOWN]:
        console.print(f"  │ {escape(line)}", highlight=False)
    if len(lines) > CHECKS_SHOWN:
        console.print(f"  … {len(lines) - CHECKS_SHOWN} more line(s): {more}", highlight=False)


@tasks_app.command("create")
def tasks_create(
    title: Annotated[str, typer.Option(help="A short title.")],
    spec: Annotated[str, typer.Option(help="What the code must do (the task's description).")] = "",
    checks: Annotated[
        Path | None,
        typer.Option(help="YAML file: {io: [{input, expected}], test: '<python>'} (or {checks: ..., limits: ...})."),
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(
            help="A Python test file: asserts, unittest, or pytest-style test_ functions (no fixtures); with "
            "--checks it joins the file's io cases (a file with a test of its own is refused: a task has one test)."
        ),
    ] = None,
    limit: Annotated[
        list[str] | None, typer.Option(help="A sandbox limit, e.g. --limit wall_s=5 (cpu_s, memory_mb, processes).")
    ] = None,
    team: Annotated[str | None, typer.Option(help="The team that works on it.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a task with its acceptance checks and sandbox limits."""
    from edgecrew.tasks.checks import parse_checks, parse_limits

    rt = _rt()

    def create() -> TaskRecord:
        check_data, limit_data = _read_checks(checks) if checks else (None, None)
        if test is not None:
            check_data = _with_test(check_data, checks, test)
        if limit:
            limit_data = {**(limit_data or {}), **_parse_limit_options(limit)}
        if team is not None and team not in rt.project.teams:
            raise NotFoundError(f"no team '{team}'; `edgecrew teams list` shows them")
        where = f"{checks}: " if checks else ""
        try:
            valid_checks = parse_checks(check_data, written=checks is not None or test is not None).to_json()
        except UserError as exc:
            raise UserError(f"{where}{exc}") from None
        try:
            valid_limits = parse_limits(limit_data, written=limit_data is not None).to_json()
        except UserError as exc:
            raise UserError(f"{where if checks and not limit else ''}{exc}") from None
        return rt.tasks.create(
            title, spec, team, checks=valid_checks, limits=valid_limits, created_by=f"cli:{getpass.getuser()}"
        )

    record = guard(create)
    if as_json:
        print(json.dumps(record.__dict__, ensure_ascii=False))
        return
    console.print(f"task [bold]{record.id}[/] created: {escape(record.title)}")


@tasks_app.command("add-version")
def tasks_add_version(
    task: Annotated[str, typer.Argument(help="Task id (see `edgecrew tasks list`).")],
    file: Annotated[Path, typer.Argument(help="The code file; a .py file is what `edgecrew tasks run` can run.")],
    filename: Annotated[
        str | None, typer.Option(help="Store it under this name (default: the file's own name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Add a code version from a file: the task's next version number, as POST /tasks/{id}/code adds it.

    An open task moves to in_progress, as when an agent adds one."""
    from edgecrew.tasks.versions import add_version

    rt = _rt()

    def add() -> CodeRecord:
        _task(rt, task)
        try:
            if file.stat().st_size > rt.settings.max_body_bytes:
                limit = rt.settings.max_body_bytes // (1024 * 1024)
                raise UserError(f"{file}: larger than the {limit} MiB an upload may be (EDGECREW_MAX_BODY_BYTES)")
            data = file.read_bytes()
        except OSError as exc:
            raise UserError(f"{file}: cannot read it ({exc.strerror})") from None
        return add_version(rt.tasks, task, filename or file.name, data, f"cli:{getpass.getuser()}")

    record = guard(add)
    if as_json:
        print(json.dumps(record.__dict__, ensure_ascii=False))
        return
    console.print(
        f"task {record.task_id}: version [bold]{record.version}[/] added ({escape(record.filename)}, "
        f"{record.size} bytes) — run it: edgecrew tasks run {record.task_id} {record.version}",
        soft_wrap=True,  # the command stays on one line, to copy
    )


def _read_checks(path: Path) -> tuple[Any, Any]:
    """The checks (and limits) a YAML file holds: the checks themselves, or {checks, limits}."""
    from edgecrew.specs.yamlsrc import parse_yaml, to_plain

    try:
        data = to_plain(parse_yaml(read_text(path), str(path)))
    except SpecError as exc:  # not a team spec: "1 problem in spec" read as the task's --spec
        raise UserError("; ".join(str(issue) for issue in exc.issues)) from None
    if isinstance(data, dict) and data and set(data) <= {"checks", "limits"}:
        return data.get("checks"), data.get("limits")
    return data, None


def _with_test(check_data: Any, checks: Path | None, test: Path) -> Any:
    """The file's checks with the --test file's test added to its io cases; a file that holds a test
    of its own is refused (a task has one test, and which one the user meant is theirs to say)."""
    text = read_text(test)
    if check_data is None:
        return {"test": text}
    if not isinstance(check_data, dict):
        return check_data  # refused for its own shape, naming the file
    if check_data.get("test") not in (None, ""):
        raise UserError(
            f"{checks} holds a test and --test {test} gives another; a task has one test: leave `test` out "
            "of the file (--test adds its test to the file's io cases) or leave out --test"
        )
    return {**check_data, "test": text}


def _parse_limit_options(options: list[str]) -> dict[str, float]:
    limits: dict[str, float] = {}
    for option in options:
        key, sep, value = option.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or number != number:
            raise UserError(f"--limit {option!r}: write NAME=NUMBER, e.g. --limit wall_s=5")
        limits[key.strip()] = int(number) if number.is_integer() else number
    return limits


# -- executions -----------------------------------------------------------------------------------


@tasks_app.command("run")
def tasks_run(
    task: Annotated[str, typer.Argument(help="Task id (see `edgecrew tasks list`).")],
    version: Annotated[int, typer.Argument(min=1, help="Code version number.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print the program's output as it runs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the execution, as JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Run a code version in the sandbox against the task's checks (here, in this process).

    Prints each check as it ends and the outcome; exits 0 when it passed, 1 when it failed."""
    rt = _rt(project)
    guard(lambda: _check_version(rt, task, version))
    holder: dict[str, int] = {}

    async def body() -> ExecutionRecord:
        await asyncio.to_thread(rt.executions.recover)  # rows of dead processes end as interrupted first
        record = await rt.executions.start(task, version, agent=f"cli:{getpass.getuser()}")
        holder["id"] = record.id
        if not as_json:
            console.print(
                f"execution [bold]{record.id}[/] of task {task} v{version}  (edgecrew tasks logs {record.id})"
            )
        await _print_progress(rt, record.id, follow=follow, quiet=as_json)
        return await rt.executions.wait(record.id)

    try:
        final = guard(lambda: asyncio.run(body()))
    except KeyboardInterrupt:
        which = f"execution {holder['id']}" if "id" in holder else "the execution"
        err.print(f"[yellow]interrupted:[/] {which} was stopped (interrupted); run the version again to retry")
        raise typer.Exit(130) from None
    if as_json:
        print(json.dumps(final.__dict__, ensure_ascii=False))
    else:
        _print_outcome(final)
    raise typer.Exit(0 if final.status == "succeeded" else 1)


async def _print_progress(rt: Runtime, execution_id: int, *, follow: bool, quiet: bool) -> None:
    """Each check as it ends (edgecrew's own log lines); with ``follow`` the program's output too."""
    from edgecrew.api.routers.executions import follow as follow_execution

    lines = _Interleaved()
    async for update in follow_execution(rt.executions, execution_id):
        if quiet:
            continue
        if update.kind == "log" and update.stream is not None:
            lines.add(update.stream, update.text)
        for stream, line in lines.ready(final=update.kind == "end"):
            if stream == "edgecrew":
                console.print(f"[dim]{escape(line.removeprefix(MARK))}[/]")
            elif follow:
                console.print(escape(line) if stream == "stdout" else f"[red]{escape(line)}[/]", soft_wrap=True)


MARK = "[edgecrew] "  # the service writes each of its lines to both logs at once


class _Interleaved:
    """The two logs' lines in the order they were written: edgecrew's own lines (a check starts, a
    process exits) are in both files at the same points, so each stream's lines up to its next such
    line (the process running now) are printed as they come, and that line once both streams reach it."""

    def __init__(self) -> None:
        self.partial = {"stdout": "", "stderr": ""}
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def add(self, stream: str, text: str) -> None:
        parts = (self.partial[stream] + text).split("\n")
        self.partial[stream] = parts.pop()
        self.lines[stream].extend(parts)

    def ready(self, *, final: bool = False) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while True:
            for stream, lines in self.lines.items():
                at = next((i for i, line in enumerate(lines) if line.startswith(MARK)), len(lines))
                out += [(stream, line) for line in lines[:at]]
                del lines[:at]
            if not all(self.lines.values()):  # a stream has not reached its next edgecrew line yet
                break
            out.append(("edgecrew", self.lines["stdout"].pop(0)))
            self.lines["stderr"].pop(0)
        if final:
            for stream in ("stdout", "stderr"):
                rest = self.lines[stream] + ([self.partial[stream]] if self.partial[stream] else [])
                out += [("edgecrew" if line.startswith(MARK) else stream, line) for line in rest]
                self.lines[stream], self.partial[stream] = [], ""
        return out


def _print_outcome(record: ExecutionRecord) -> None:
    parts = [_status(record.status)]
    if record.checks_total:
        parts.append(f"checks {_checks_of(record)}")
    if record.exit_code is not None:
        parts.append(f"exit {record.exit_code}")
    if record.started_at and record.finished_at:
        parts.append(f"{record.finished_at - record.started_at:.2f} s")
    if record.metrics:
        parts.append(_numbers(record.metrics))
    console.print(" · ".join(parts))
    if record.reason:
        console.print(f"[{STATUS_COLOURS.get(record.status, 'red')}]{escape(record.reason)}[/]")


@tasks_app.command("executions")
def tasks_executions(
    task: str,
    version: Annotated[int | None, typer.Option(min=1, help="Only this version's.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List a task's executions, oldest first."""
    rt = _rt()
    guard(lambda: _task(rt, task))
    records = rt.executions.list(task, version=version)
    if as_json:
        print(json.dumps([r.__dict__ for r in records], ensure_ascii=False))
        return
    if not records:
        console.print(f"no executions yet — try: edgecrew tasks run {task} VERSION")
        return
    console.print(_executions_table(records))


def _executions_table(records: list[ExecutionRecord], title: str | None = None) -> Table:
    table = Table("execution", "version", "status", "checks", "started", "reason", title=title)
    for r in records:
        # Whole: the error the program died of comes last (after "2 problems; first: io check 1 ..."),
        # and the service already bounds a reason's length.
        reason = escape(r.reason or "")
        table.add_row(str(r.id), f"v{r.version}", _status(r.status), _checks_of(r), _when(r.started_at), reason)
    return table


BestOrLatest = Annotated[int | None, typer.Argument(min=1, help="Code version (default: the best, else the latest).")]


@tasks_app.command("code")
def tasks_code(
    task: Annotated[str, typer.Argument(help="Task id (see `edgecrew tasks list`).")], version: BestOrLatest = None
) -> None:
    """Print a code version's file, as GET /tasks/{id}/code/{v}/file downloads it (e.g. what build-loop wrote)."""
    rt = _rt()
    record = guard(lambda: _task(rt, task))
    versions = [v.version for v in rt.tasks.code_versions(record.id)]
    chosen = version or record.best_version or (versions[-1] if versions else 1)
    guard(lambda: _check_version(rt, record.id, chosen))
    data = guard(lambda: rt.tasks.code_bytes(rt.tasks.code_version(record.id, chosen)))
    if version is None:
        err.print(f"task {record.id} v{chosen}" + (" (best)" if chosen == record.best_version else " (latest)"))
    print_file(data)


@tasks_app.command("logs")
def tasks_logs(
    execution: Annotated[int, typer.Argument(min=1, help="Execution id (see `edgecrew tasks executions TASK`).")],
    stderr: Annotated[bool, typer.Option("--stderr", help="The stderr log instead of stdout.")] = False,
) -> None:
    """Print an execution's stdout (or stderr) log."""
    rt = _rt()
    out, err_log = guard(lambda: rt.executions.log_paths(execution))
    path = err_log if stderr else out
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        status = rt.executions.get(execution).status
        err.print(f"execution {execution} has no {'stderr' if stderr else 'stdout'} log yet ({status})")
        return
    print(shown(text), end="")  # not typer.echo: it strips some escape codes from a pipe, not all


@tasks_app.command("cancel")
def tasks_cancel(execution: Annotated[int, typer.Argument(min=1, help="Execution id.")]) -> None:
    """Cancel an execution this process may stop (one whose process is gone).

    One that a live server runs is cancelled there: POST /executions/{id}/cancel, or its page."""
    rt = _rt()
    record = guard(lambda: asyncio.run(rt.executions.cancel(execution)))
    console.print(f"execution [bold]{record.id}[/] {_status(record.status)}: {escape(record.reason or '')}")
