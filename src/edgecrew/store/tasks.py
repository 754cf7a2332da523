"""The task workspace in the store: tasks, and the code versions, results, messages and feedback
that agents post about them (a generator → coder → runner → evaluator loop).

Rows live in the run store's database; file contents (code versions, raw logs) live on disk under
``<home>/tasks/<task_id>/`` (see ``taskfiles``), the rows holding their names and SHA-256. A code
version's number comes from a counter on its task, bumped in the same transaction that records
the version, so numbers are 1, 2, 3… with no reuse after a delete, and an upload that fails on
the way leaves neither a row, a file nor a used number behind.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from edgecrew.errors import NotFoundError, UserError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore
from edgecrew.store.taskfiles import LogFile, TaskFiles, language_of, media_type_of, sanitize_filename

TASK_STATUSES = ("open", "in_progress", "done", "failed", "cancelled")
VERDICTS = ("accepted", "needs_changes", "rejected")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskRecord:
    id: str
    title: str
    description: str
    team: str | None
    status: str
    created_at: float
    updated_at: float


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
class WorkspaceStats:
    tasks_by_status: dict[str, int]
    code_versions: int
    results: int
    messages: int
    feedback: int
    avg_accuracy: float | None
    avg_runtime_s: float | None
    runs_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def tasks(self) -> int:
        return sum(self.tasks_by_status.values())


class TaskStore:
    """Tasks and their workspace, over the run store's engine and a folder on disk."""

    def __init__(self, store: RunStore, root: Path) -> None:
        self.store = store
        self.files = TaskFiles(root)

    # -- tasks ------------------------------------------------------------------------------------
    def create(self, title: str, description: str, team: str | None = None) -> TaskRecord:
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
        """Change a task's title, description, team or status."""
        unknown = set(values) - {"title", "description", "team", "status"}
        if unknown:
            raise UserError(f"tasks have no field(s) {', '.join(sorted(unknown))} to update")
        if "status" in values and values["status"] not in TASK_STATUSES:
            raise UserError(f"status {values['status']!r} is not one of {', '.join(TASK_STATUSES)}")
        with self.store.transaction() as conn:
            changed = conn.execute(
                t.tasks.update().where(t.tasks.c.id == task_id).values(**values, updated_at=time.time())
            ).rowcount
        if not changed:
            self.get(task_id)  # raises the 404
        return self.get(task_id)

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
        """Remove a version's row, then its file (its number is not handed out again)."""
        record = self.code_version(task_id, version)
        with self.store.transaction() as conn:
            conn.execute(t.task_code.delete().where(t.task_code.c.task_id == task_id, t.task_code.c.version == version))
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

    def messages(self, task_id: str, *, after: int = 0, limit: int = 500) -> list[MessageRecord]:
        """The timeline, oldest first; ``after`` an id to poll for newer ones."""
        self.get(task_id)
        c = t.task_messages.c
        query = sa.select(t.task_messages).where(c.task_id == task_id, c.id > after).order_by(c.id).limit(limit)
        with self.store.engine.connect() as conn:
            return [MessageRecord(**dict(r)) for r in conn.execute(query).mappings()]

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
            return WorkspaceStats(
                tasks_by_status=tasks,
                code_versions=count(t.task_code),
                results=count(t.task_results),
                messages=count(t.task_messages),
                feedback=count(t.task_feedback),
                avg_accuracy=None if avg_accuracy is None else float(avg_accuracy),
                avg_runtime_s=None if avg_runtime is None else float(avg_runtime),
                runs_by_status=by_status(t.runs),
            )

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
