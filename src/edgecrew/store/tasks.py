"""The task workspace in the store: tasks, and the code versions, results, messages and feedback
that agents post about them (a generator → coder → runner → evaluator loop).

Executions (a version run in the sandbox with the task's checks and limits, by
``edgecrew.tasks.executions``) are rows here too; the checks and limits are kept as the JSON that
``edgecrew.tasks.checks`` validates, so the store stays below the capability that reads them.

Rows live in the run store's database; file contents (code versions, raw logs) live on disk under
``<home>/tasks/<task_id>/`` (see ``taskfiles``), the rows holding their names and SHA-256. A code
version's number comes from a counter on its task, bumped in the same transaction that records
the version, so numbers are 1, 2, 3… with no reuse after a delete, and an upload that fails on
the way leaves neither a row, a file nor a used number behind.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from edgecrew.errors import ConflictError, NotFoundError, UserError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore
from edgecrew.store.taskbest import best_version
from edgecrew.store.taskfiles import LogFile, TaskFiles, language_of, media_type_of, sanitize_filename

TASK_STATUSES = ("open", "in_progress", "done", "failed", "cancelled")
ENDED = ("done", "failed", "cancelled")  # a task's ends; open and in_progress reopen it
VERDICTS = ("accepted", "needs_changes", "rejected")
EXECUTION_STATUSES = ("queued", "running", "succeeded", "failed", "killed", "interrupted")
UNFINISHED = ("queued", "running")
_TASK_FIELDS = frozenset({"title", "description", "team", "status", "checks", "limits", "best_version"})
_EXECUTION_FIELDS = frozenset(
    {
        "status",
        "reason",
        "exit_code",
        "executor",
        "started_at",
        "finished_at",
        "stdout_log",
        "stderr_log",
        "metrics",
        "checks_passed",
        "checks_total",
        "result_id",
    }
)
R = TypeVar("R")

TITLE_MAX, DESCRIPTION_MAX = 200, 20_000  # the API's and the tools' schemas use these too


@dataclass(frozen=True)
class TaskRecord:
    id: str
    title: str
    description: str
    team: str | None
    status: str
    created_at: float
    updated_at: float
    checks: dict[str, Any] | None = None  # {io: [{input, expected}], test: source}; see edgecrew.tasks.checks
    limits: dict[str, Any] | None = None  # {cpu_s, wall_s, memory_mb, processes}
    created_by: str | None = None  # "agent@run" when an agent created it
    best_version: int | None = None  # named when it was finished
    finished_at: float | None = None  # when it ended (done, failed, cancelled); None while open


@dataclass(frozen=True)
class ExecutionRecord:
    """One run of a code version in the sandbox, with the task's checks."""

    id: int
    task_id: str
    version: int
    status: str  # queued | running | succeeded | failed | killed | interrupted
    reason: str | None
    exit_code: int | None
    run_id: str | None
    agent: str | None
    executor: str | None  # the process that runs (or ran) it, host:pid:start
    created_at: float
    started_at: float | None
    finished_at: float | None
    stdout_log: str | None
    stderr_log: str | None
    metrics: dict[str, float] | None
    checks_passed: int | None
    checks_total: int | None
    result_id: int | None

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED


@dataclass(frozen=True)
class CodeRecord:
    task_id: str
    version: int
    filename: str
    size: int
    sha256: str
    language: str | None
    media_type: str
    author: str | None
    created_at: float


@dataclass(frozen=True)
class ResultRecord:
    id: int
    task_id: str
    version: int | None
    accuracy: float | None
    loss: float | None
    runtime_s: float | None
    metrics: dict[str, float]
    log_file: str | None
    author: str | None
    created_at: float


@dataclass(frozen=True)
class MessageRecord:
    id: int
    task_id: str
    sender: str
    role: str
    content: str
    created_at: float


@dataclass(frozen=True)
class FeedbackRecord:
    id: int
    task_id: str
    version: int | None
    author: str
    verdict: str
    score: float | None
    notes: str
    created_at: float


@dataclass(frozen=True)
class TeamScore:
    """How a team does on the tasks it worked: how many it finished, how many versions an accepted
    one took, and how long a finished one took (created to done or failed)."""

    team: str
    tasks: int
    done: int
    failed: int
    versions_per_done: float | None
    seconds_per_task: float | None


@dataclass(frozen=True)
class WorkspaceStats:
    tasks_by_status: dict[str, int]
    code_versions: int
    results: int
    messages: int
    feedback: int
    avg_accuracy: float | None
    avg_runtime_s: float | None
    runs_by_status: dict[str, int] = field(default_factory=dict)
    teams: list[TeamScore] = field(default_factory=list)
    executions_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def tasks(self) -> int:
        return sum(self.tasks_by_status.values())

    @property
    def executions_running(self) -> int:
        return self.executions_by_status.get("running", 0)


class TaskStore:
    """Tasks and their workspace, over the run store's engine and a folder on disk."""

    def __init__(self, store: RunStore, root: Path) -> None:
        self.store = store
        self.files = TaskFiles(root)

    # -- tasks ------------------------------------------------------------------------------------
    def create(
        self,
        title: str,
        description: str,
        team: str | None = None,
        *,
        checks: Mapping[str, Any] | None = None,
        limits: Mapping[str, Any] | None = None,
        created_by: str | None = None,
    ) -> TaskRecord:
        """A new open task; ``checks`` and ``limits`` as ``edgecrew.tasks.checks`` validated them."""
        _check_text(title=title, description=description)
        now = time.time()
        row = {
            "id": "t" + uuid.uuid4().hex[:15],
            "title": title,
            "description": description,
            "team": team,
            "status": "open",
            "code_seq": 0,
            "created_at": now,
            "updated_at": now,
            "checks": None if checks is None else dict(checks),
            "limits": None if limits is None else dict(limits),
            "created_by": created_by,
        }
        with self.store.transaction() as conn:
            conn.execute(t.tasks.insert().values(**row))
        return self.get(str(row["id"]))

    def get(self, task_id: str) -> TaskRecord:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no task '{task_id[:80]}'; GET /tasks lists them")
        return _task(row)

    def list_tasks(
        self, *, status: str | None = None, team: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[TaskRecord]:
        """Tasks, newest first."""
        query = self._where(sa.select(t.tasks), status, team)
        query = query.order_by(t.tasks.c.created_at.desc(), t.tasks.c.id).limit(limit).offset(offset)
        with self.store.engine.connect() as conn:
            return [_task(r) for r in conn.execute(query).mappings()]

    def count_tasks(self, *, status: str | None = None, team: str | None = None) -> int:
        query = self._where(sa.select(sa.func.count()).select_from(t.tasks), status, team)
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def update(self, task_id: str, **values: Any) -> TaskRecord:
        """Change a task's title, description, team, status, checks, limits or best version
        (checks and limits as ``edgecrew.tasks.checks`` validated them; None removes them)."""
        unknown = set(values) - _TASK_FIELDS
        if unknown:
            raise UserError(f"tasks have no field(s) {', '.join(sorted(unknown))} to update")
        _check_text(**{k: v for k, v in values.items() if k in ("title", "description")})
        if "status" in values and values["status"] not in TASK_STATUSES:
            raise UserError(f"status {values['status']!r} is not one of {', '.join(TASK_STATUSES)}")
        if values.get("best_version") is not None:
            self._check_version(task_id, int(values["best_version"]))
        elif "best_version" not in values and values.get("status") in ("open", "in_progress"):
            if self.get(task_id).status in ENDED:
                # Reopened: the best of the last finish is stale (finishing again kept a version
                # rejected since, over the one accepted after it); the next finish names one again.
                values["best_version"] = None
        elif (
            values.get("status") in ("done", "failed")
            and "best_version" not in values
            and self.get(task_id).best_version is None
        ):  # finished without naming its best version (a person's PATCH or CLI): the finish tool's rule names it
            values["best_version"] = self.best_version(task_id)[0]
        now = time.time()
        if "status" in values:  # its end is when it first reached one (a reopened task ends again later)
            ended = values["status"] in ENDED
            values["finished_at"] = (self.get(task_id).finished_at or now) if ended else None
        with self.store.transaction() as conn:
            changed = conn.execute(
                t.tasks.update().where(t.tasks.c.id == task_id).values(**values, updated_at=now)
            ).rowcount
        if not changed:
            self.get(task_id)  # raises the 404
        return self.get(task_id)

    def best_version(self, task_id: str) -> tuple[int | None, str]:
        """The version to keep and why (the rule: ``edgecrew.store.taskbest``)."""
        self.get(task_id)
        with self.store.engine.connect() as conn:
            return best_version(conn, task_id)

    # -- code versions ----------------------------------------------------------------------------
    def add_code(self, task_id: str, filename: str, data: bytes, author: str | None = None) -> CodeRecord:
        """Record a new code version (the next number) and write its file."""
        if not data:
            raise UserError("the uploaded file is empty; send the code itself")
        name = sanitize_filename(filename)
        written: int | None = None
        try:
            with self.store.transaction() as conn:
                bumped = conn.execute(
                    t.tasks.update()
                    .where(t.tasks.c.id == task_id)
                    .values(code_seq=t.tasks.c.code_seq + 1, updated_at=time.time())
                ).rowcount
                if not bumped:
                    self.get(task_id)  # raises the 404
                version = int(conn.execute(sa.select(t.tasks.c.code_seq).where(t.tasks.c.id == task_id)).scalar_one())
                written = version
                self.files.write_code(task_id, version, name, data)
                row: dict[str, Any] = {
                    "task_id": task_id,
                    "version": version,
                    "filename": name,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "language": language_of(name),
                    "media_type": media_type_of(name, data),
                    "author": author,
                    "created_at": time.time(),
                }
                conn.execute(t.task_code.insert().values(**row))
        except BaseException:
            if written is not None:
                self.files.remove_code(task_id, written, name)
            raise
        return CodeRecord(**row)

    def code_versions(self, task_id: str) -> list[CodeRecord]:
        self.get(task_id)
        query = sa.select(t.task_code).where(t.task_code.c.task_id == task_id).order_by(t.task_code.c.version)
        with self.store.engine.connect() as conn:
            return [CodeRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def code_version(self, task_id: str, version: int) -> CodeRecord:
        self.get(task_id)
        with self.store.engine.connect() as conn:
            row = conn.execute(self._version_query(task_id, version)).mappings().first()
        if row is None:
            raise NotFoundError(f"task {task_id} has no code version {version}; GET /tasks/{task_id}/code lists them")
        return CodeRecord(**dict(row))

    def code_bytes(self, record: CodeRecord) -> bytes:
        path = self.files.code_path(record.task_id, record.version, record.filename)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"the file of code version {record.version} of task {record.task_id} is missing from the data dir"
            ) from None

    def delete_code(self, task_id: str, version: int) -> CodeRecord:
        """Remove a version's row, then its file (its number is not handed out again); the task no longer
        names it its best. Refused while an execution of it is queued or running."""
        record = self.code_version(task_id, version)
        ex = t.executions.c
        with self.store.transaction() as conn:
            busy = conn.execute(
                sa.select(ex.id).where(ex.task_id == task_id, ex.version == version, ex.status.in_(UNFINISHED))
            ).first()
            if busy is not None:
                raise ConflictError(
                    f"version {version} of task {task_id} is being executed (execution {busy[0]}); "
                    "cancel it or wait for it to end, then delete the version"
                )
            conn.execute(t.task_code.delete().where(t.task_code.c.task_id == task_id, t.task_code.c.version == version))
            conn.execute(
                t.tasks.update()
                .where(t.tasks.c.id == task_id, t.tasks.c.best_version == version)
                .values(best_version=None, updated_at=time.time())
            )
        self.files.remove_code(task_id, version, record.filename)
        return record

    # -- results, messages, feedback --------------------------------------------------------------
    def add_result(
        self,
        task_id: str,
        *,
        version: int | None = None,
        accuracy: float | None = None,
        loss: float | None = None,
        runtime_s: float | None = None,
        metrics: Mapping[str, float] | None = None,
        logs: str | None = None,
        author: str | None = None,
    ) -> ResultRecord:
        """Record a run's numbers; its raw logs become ``logs/result-<id>.log``."""
        self._check_version(task_id, version)
        log_file: str | None = None
        try:
            with self.store.transaction() as conn:
                result_id = _insert(
                    conn,
                    t.task_results.insert().values(
                        task_id=task_id,
                        version=version,
                        accuracy=accuracy,
                        loss=loss,
                        runtime_s=runtime_s,
                        metrics=dict(metrics or {}),
                        author=author,
                        created_at=time.time(),
                    ),
                )
                if logs:
                    log_file = f"result-{result_id}.log"
                    self.files.write_log(task_id, log_file, logs)
                    conn.execute(
                        t.task_results.update().where(t.task_results.c.id == result_id).values(log_file=log_file)
                    )
        except BaseException:
            if log_file is not None:
                self.files.remove_log(task_id, log_file)
            raise
        return self._one(t.task_results, ResultRecord, result_id)

    def results(self, task_id: str, version: int | None = None) -> list[ResultRecord]:
        """A task's results, oldest first (only those about ``version`` when given)."""
        self.get(task_id)
        query = sa.select(t.task_results).where(t.task_results.c.task_id == task_id).order_by(t.task_results.c.id)
        if version is not None:
            query = query.where(t.task_results.c.version == version)
        with self.store.engine.connect() as conn:
            return [ResultRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def latest_result(self, task_id: str) -> ResultRecord:
        self.get(task_id)
        query = (
            sa.select(t.task_results)
            .where(t.task_results.c.task_id == task_id)
            .order_by(t.task_results.c.id.desc())
            .limit(1)
        )
        with self.store.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFoundError(f"task {task_id} has no results yet")
        return ResultRecord(**dict(row))

    def add_message(self, task_id: str, sender: str, role: str, content: str) -> MessageRecord:
        self.get(task_id)
        with self.store.transaction() as conn:
            message_id = _insert(
                conn,
                t.task_messages.insert().values(
                    task_id=task_id, sender=sender, role=role, content=content, created_at=time.time()
                ),
            )
        return self._one(t.task_messages, MessageRecord, message_id)

    def messages(self, task_id: str, *, after: int = 0, limit: int = 500, latest: bool = False) -> list[MessageRecord]:
        """The timeline, oldest first; ``after`` an id to poll for newer ones. ``limit`` keeps the
        first messages, or with ``latest`` the last ones (what a page or `tasks show` shows)."""
        self.get(task_id)
        c = t.task_messages.c
        query = sa.select(t.task_messages).where(c.task_id == task_id, c.id > after)
        query = query.order_by(c.id.desc() if latest else c.id).limit(limit)
        with self.store.engine.connect() as conn:
            records = [MessageRecord(**dict(r)) for r in conn.execute(query).mappings()]
        return sorted(records, key=lambda m: m.id) if latest else records

    def add_feedback(
        self,
        task_id: str,
        *,
        author: str,
        verdict: str,
        notes: str = "",
        score: float | None = None,
        version: int | None = None,
    ) -> FeedbackRecord:
        if verdict not in VERDICTS:
            raise UserError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        self._check_version(task_id, version)
        with self.store.transaction() as conn:
            feedback_id = _insert(
                conn,
                t.task_feedback.insert().values(
                    task_id=task_id,
                    version=version,
                    author=author,
                    verdict=verdict,
                    score=score,
                    notes=notes,
                    created_at=time.time(),
                ),
            )
        return self._one(t.task_feedback, FeedbackRecord, feedback_id)

    def feedback(self, task_id: str, *, version: int | None = None, after: int = 0) -> list[FeedbackRecord]:
        self.get(task_id)
        c = t.task_feedback.c
        query = sa.select(t.task_feedback).where(c.task_id == task_id, c.id > after).order_by(c.id)
        if version is not None:
            query = query.where(c.version == version)
        with self.store.engine.connect() as conn:
            return [FeedbackRecord(**dict(r)) for r in conn.execute(query).mappings()]

    # -- executions -------------------------------------------------------------------------------
    def create_execution(
        self,
        task_id: str,
        version: int,
        *,
        run_id: str | None = None,
        agent: str | None = None,
        executor: str | None = None,
    ) -> ExecutionRecord:
        """A queued execution of an existing version; its log files are named after its id."""
        self._check_version(task_id, version)
        with self.store.transaction() as conn:
            execution_id = _insert(
                conn,
                t.executions.insert().values(
                    task_id=task_id,
                    version=version,
                    status="queued",
                    run_id=run_id,
                    agent=agent,
                    executor=executor,
                    created_at=time.time(),
                ),
            )
            conn.execute(
                t.executions.update()
                .where(t.executions.c.id == execution_id)
                .values(stdout_log=f"exec-{execution_id}.stdout.log", stderr_log=f"exec-{execution_id}.stderr.log")
            )
        return self.execution(execution_id)

    def update_execution(self, execution_id: int, *, only_from: tuple[str, ...] = (), **values: Any) -> bool:
        """Change an execution's fields; with ``only_from``, only while its status is one of those
        (so a cancel or a recovery that got there first is not overwritten). True when it changed."""
        unknown = set(values) - _EXECUTION_FIELDS
        if unknown:
            raise UserError(f"executions have no field(s) {', '.join(sorted(unknown))} to update")
        if "status" in values and values["status"] not in EXECUTION_STATUSES:
            raise UserError(f"status {values['status']!r} is not one of {', '.join(EXECUTION_STATUSES)}")
        query = t.executions.update().where(t.executions.c.id == execution_id)
        if only_from:
            query = query.where(t.executions.c.status.in_(only_from))
        with self.store.transaction() as conn:
            return bool(conn.execute(query.values(**values)).rowcount)

    def execution(self, execution_id: int) -> ExecutionRecord:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.executions).where(t.executions.c.id == execution_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no execution {execution_id}; list the task's executions to find its ids")
        return ExecutionRecord(**dict(row))

    def executions(self, task_id: str, *, version: int | None = None) -> list[ExecutionRecord]:
        """A task's executions, oldest first (only those of ``version`` when given)."""
        self.get(task_id)
        c = t.executions.c
        query = sa.select(t.executions).where(c.task_id == task_id).order_by(c.id)
        if version is not None:
            query = query.where(c.version == version)
        with self.store.engine.connect() as conn:
            return [ExecutionRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def unfinished_executions(self) -> list[ExecutionRecord]:
        """Every execution still queued or running, of any task (what recovery looks at)."""
        query = sa.select(t.executions).where(t.executions.c.status.in_(UNFINISHED)).order_by(t.executions.c.id)
        with self.store.engine.connect() as conn:
            return [ExecutionRecord(**dict(r)) for r in conn.execute(query).mappings()]

    # -- logs and stats ---------------------------------------------------------------------------
    def log_files(self, task_id: str) -> list[LogFile]:
        return self.files.list_logs(self.get(task_id).id)

    def log_path(self, task_id: str, filename: str) -> Path:
        return self.files.log_path(self.get(task_id).id, filename)

    def stats(self) -> WorkspaceStats:
        def by_status(table: sa.Table) -> dict[str, int]:
            query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
            return {str(status): int(n) for status, n in conn.execute(query)}

        def count(table: sa.Table) -> int:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

        r = t.task_results.c
        with self.store.engine.connect() as conn:
            tasks = dict.fromkeys(TASK_STATUSES, 0) | by_status(t.tasks)
            avg_accuracy, avg_runtime = conn.execute(sa.select(sa.func.avg(r.accuracy), sa.func.avg(r.runtime_s))).one()
            avg_accuracy, avg_runtime = _finite(conn, avg_accuracy, r.accuracy), _finite(conn, avg_runtime, r.runtime_s)
            return WorkspaceStats(
                tasks_by_status=tasks,
                code_versions=count(t.task_code),
                results=count(t.task_results),
                messages=count(t.task_messages),
                feedback=count(t.task_feedback),
                avg_accuracy=None if avg_accuracy is None else float(avg_accuracy),
                avg_runtime_s=None if avg_runtime is None else float(avg_runtime),
                runs_by_status=by_status(t.runs),
                teams=self._scores(conn),
                executions_by_status=dict.fromkeys(EXECUTION_STATUSES, 0) | by_status(t.executions),
            )

    @staticmethod
    def _scores(conn: Connection) -> list[TeamScore]:
        """Per team (tasks without one are left out): counts, versions per done task, time per finished task."""
        k = t.tasks.c
        finished = k.status.in_(("done", "failed")) & k.finished_at.is_not(None)
        rows = conn.execute(
            sa.select(
                k.team,
                sa.func.count(),
                sa.func.sum(sa.case((k.status == "done", 1), else_=0)),
                sa.func.sum(sa.case((k.status == "failed", 1), else_=0)),
                sa.func.avg(sa.case((k.status == "done", k.code_seq))),
                sa.func.avg(sa.case((finished, k.finished_at - k.created_at))),
            )
            .where(k.team.is_not(None))
            .group_by(k.team)
            .order_by(k.team)
        )
        return [
            TeamScore(
                team=str(team),
                tasks=int(n),
                done=int(done or 0),
                failed=int(failed or 0),
                versions_per_done=None if per is None else round(float(per), 2),
                seconds_per_task=None if secs is None else round(float(secs), 1),
            )
            for team, n, done, failed, per, secs in rows
        ]

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _where(query: Any, status: str | None, team: str | None) -> Any:
        if status is not None:
            query = query.where(t.tasks.c.status == status)
        if team is not None:
            query = query.where(t.tasks.c.team == team)
        return query

    @staticmethod
    def _version_query(task_id: str, version: int) -> Any:
        return sa.select(t.task_code).where(t.task_code.c.task_id == task_id, t.task_code.c.version == version)

    def _check_version(self, task_id: str, version: int | None) -> None:
        """A result or feedback about a version needs that version (404 otherwise, like an unknown task)."""
        self.get(task_id)
        if version is None:
            return
        with self.store.engine.connect() as conn:
            if conn.execute(self._version_query(task_id, version)).first() is None:
                raise NotFoundError(
                    f"version: task {task_id} has no code version {version}; GET /tasks/{task_id}/code lists them"
                )

    def _one(self, table: sa.Table, record: type[R], row_id: int) -> R:
        with self.store.engine.connect() as conn:
            return record(**dict(conn.execute(sa.select(table).where(table.c.id == row_id)).mappings().one()))


def _task(row: Any) -> TaskRecord:
    return TaskRecord(**{k: v for k, v in row.items() if k != "code_seq"})


def _insert(conn: Connection, stmt: Any) -> int:
    """Run an insert and return the new row's integer id."""
    key = conn.execute(stmt).inserted_primary_key
    if key is None:  # every workspace table but tasks has an autoincrement id
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])


def _check_text(*, title: str | None = None, description: str | None = None) -> None:
    """A task's title and description within bounds, whichever way in wrote them (CLI, API, an agent)."""
    if title is not None and not 0 < len(title.strip()) <= TITLE_MAX:
        raise UserError(f"title: give 1 to {TITLE_MAX} characters (this one has {len(title.strip())})")
    if description is not None and len(description) > DESCRIPTION_MAX:
        raise UserError(f"description: at most {DESCRIPTION_MAX} characters (this one has {len(description)})")


def _finite(conn: Connection, avg: float | None, column: Any) -> float | None:
    """SQL's average of ``column``, or where its sum overflowed to infinity (values past ~1e308 in all;
    JSON shows it as null) the exact mean (``statistics.mean`` sums the values as fractions)."""
    if avg is None or math.isfinite(avg):
        return avg
    return float(statistics.mean(v for (v,) in conn.execute(sa.select(column).where(column.is_not(None)))))
