"""RunStore: the one place that reads and writes runs, steps, messages and events.

Synchronous SQLAlchemy Core on purpose: every statement is a short SQLite/Postgres write of a few
rows, DBOS itself drives its system database synchronously, and an async driver would add a thread
hop per statement on the hot path of every step. Writes that a replayed step may repeat (events,
step rows, messages) are upserts keyed by run and step, so replay rewrites instead of duplicating.
Listeners (``subscribe``) see every event as it is written, told whether it is new or a rewrite.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from edgecrew.context import request_id as current_request_id
from edgecrew.domain.events import Event, EventRecord
from edgecrew.domain.messages import Message
from edgecrew.domain.runs import RunStatus, can_transition
from edgecrew.errors import NotFoundError, UserError
from edgecrew.settings import get_settings
from edgecrew.store import tables as t
from edgecrew.store.migrations import HEAD
from edgecrew.store.taskbest import best_version

# The connection of the transaction open in this context (see RunStore.transaction).
_current_conn: ContextVar[Connection | None] = ContextVar("edgecrew_store_conn", default=None)
log = logging.getLogger("edgecrew.store")


@dataclass(frozen=True)
class RunRecord:
    id: str
    team: str
    task: str
    status: RunStatus
    spec: dict[str, Any]
    output: Any
    error: str | None
    workspace: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    project: str | None = None
    executor: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    trigger: dict[str, Any] | None = None  # {"kind": "routine", "routine": ..., "firing": ...} or a job's


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    key: str
    agent: str
    visit: int
    status: str
    outcome: str | None
    output: Any
    error: str | None
    model_calls: int
    tool_calls: int
    prompt_tokens: int
    completion_tokens: int
    started_at: float
    finished_at: float | None


EventListener = Callable[[EventRecord, bool], None]
"""Called with each event written and whether it is new (False: a replayed step rewrote it)."""


def _engine_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def connect_args(url: str, timeout_s: int) -> dict[str, Any]:
    """What the driver is given to connect to ``url``: on Postgres, a connect timeout of ``timeout_s`` and TCP
    keepalives and a user timeout that find a dead connection within about twice ``timeout_s`` (each unless
    the URL sets it). Without the connect timeout, a connection to a database cut off by the network (the TCP
    handshake completes, or its packets vanish) waited for the OS to give up, minutes, so a worker's heartbeat
    or the supervisor's scan hung, said nothing, and the worker's lease ran out meanwhile; without the others,
    a connection already open when the network was cut waited as long for an answer (the OS's keepalive
    starts after two hours idle, its retransmissions give up after ~15 minutes). With the default of 5 s: a
    statement whose bytes go unacknowledged fails after 10 s (``tcp_user_timeout``, Linux), one waiting on a
    silent peer after 5 s idle and two unanswered probes 2 s apart (``keepalives_*``), inside a worker's lease."""
    if not url.startswith("postgres"):
        return {}
    given = sa.engine.make_url(_engine_url(url)).query
    wanted: dict[str, Any] = {
        "connect_timeout": timeout_s,
        "keepalives": 1,
        "keepalives_idle": timeout_s,
        "keepalives_interval": max(1, timeout_s // 2),
        "keepalives_count": 2,
        "tcp_user_timeout": 2 * timeout_s * 1000,  # milliseconds
    }
    return {key: value for key, value in wanted.items() if key not in given}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")  # the file is in WAL mode already (``use_wal``)
    # FULL by default, not NORMAL: a recorded call (and its event) survives a power cut once recorded.
    cur.execute("PRAGMA synchronous=" + ("NORMAL" if get_settings().store_synchronous == "normal" else "FULL"))
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _unflushed_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """RunStore.transaction(flush=False): commits to the log without waiting for the disk."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class RunStore:
    """Runs, steps, messages and events."""

    def __init__(self, engine: Engine, unflushed: Engine | None = None) -> None:
        self.engine = engine
        # The same SQLite file with synchronous=NORMAL: transaction(flush=False) commits through it.
        self._unflushed = unflushed or engine
        self._dialect = engine.dialect.name
        self._statements: dict[tuple[Any, ...], Any] = {}
        self._listeners: list[EventListener] = []

    def close(self) -> None:
        """Close the store's connections (both pools on SQLite)."""
        self.engine.dispose()
        if self._unflushed is not self.engine:
            self._unflushed.dispose()

    # -- schema -----------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest migration (cheap when already there).

        Processes starting together on a new data dir take turns: a file lock for SQLite, an
        advisory lock for Postgres; whoever comes second finds the schema already current.
        """
        if self._version() == HEAD:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._migration_lock(), self.engine.connect() as conn:
            if self._dialect == "sqlite":
                # A migration that rebuilds a table (SQLite's way to alter one) drops the old table;
                # with foreign keys on, that would cascade-delete the rows of every child table.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()  # end the autobegun transaction: the pragma only acts outside one
            try:
                with conn.begin():
                    if self._dialect == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7420118)"))
                    if self._version(conn) == HEAD:
                        return
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
            finally:
                if self._dialect == "sqlite":
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()

    def _version(self, conn: Connection | None = None) -> str | None:
        if conn is not None:
            try:
                with conn.begin_nested():  # a savepoint: a missing table must not abort the migration
                    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.DBAPIError:
                return None
        with self.engine.connect() as own:
            try:
                return own.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.DBAPIError:
                return None

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        database = self.engine.url.database
        if self._dialect != "sqlite" or not database:
            yield
            return
        with sqlite_file_lock(database):
            yield

    # -- runs -------------------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        team: str,
        task: str,
        spec: Mapping[str, Any],
        workspace: str,
        *,
        project: str | None = None,
        executor: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        trigger: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Record a new run (queued); returns it as written."""
        now = time.time()
        row = {
            "id": run_id,
            "team": team,
            "task": task,
            "status": RunStatus.QUEUED.value,
            "spec": dict(spec),
            "output": None,
            "error": None,
            "workspace": workspace,
            "project": project,
            "executor": executor,
            "request_id": request_id,
            "idempotency_key": idempotency_key,
            "trigger": dict(trigger) if trigger is not None else None,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
        }
        written = {k: v for k, v in row.items() if k not in ("output", "error", "finished_at")}  # NULL until set
        with self.transaction() as conn:
            conn.execute(t.runs.insert(), written)  # one statement shape: compiled once
        return _run(row)

    def get_run(self, run_id: str) -> RunRecord:
        if self._dialect == "sqlite":  # by its whole id (each step of a run reads it): the driver's own cursor
            current = _current_conn.get()
            with contextlib.nullcontext(current) if current is not None else self.engine.connect() as conn:
                found = _driver(conn).execute(_RUN_BY_ID_SQLITE, (run_id,)).fetchone()
            if found is not None:
                return _run(_row_of(t.runs, found))
        row = self.row_by_id(t.runs, run_id, "run", "edgecrew runs list")
        return _run(row)

    def run_status(self, run_id: str) -> RunStatus:
        """A run's status, read in the caller's transaction when there is one (a run's engine reads it
        in the transactions it makes anyway, to see a cancel from any process)."""
        current = _current_conn.get()
        with contextlib.nullcontext(current) if current is not None else self.engine.connect() as conn:
            if self._dialect == "sqlite":
                found = _driver(conn).execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
                status = found[0] if found else None
            else:
                status = conn.execute(sa.select(t.runs.c.status).where(t.runs.c.id == run_id)).scalar()
        if status is None:
            raise NotFoundError(f"no run '{run_id}'")
        return RunStatus(status)

    def row_by_id(self, table: sa.Table, given: str, what: str, see: str) -> sa.RowMapping:
        """The row whose id is ``given`` or, like git's commits, starts with it when only one does."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == given)).mappings().first()
            if row is None and given:
                pattern = _escape_like(given) + "%"
                query = sa.select(table).where(table.c.id.like(pattern, escape="\\")).limit(2)
                rows = conn.execute(query).mappings().all()
                if len(rows) > 1:
                    raise UserError(f"{what} id prefix '{given}' is ambiguous; give more characters")
                row = rows[0] if rows else None
        if row is None:
            raise NotFoundError(f"no {what} '{given}'; see `{see}`")
        return row

    def list_runs(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        status: str | None = None,
        team: str | None = None,
        text: str | None = None,
        agent: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered as :func:`_filtered` says."""
        query = sa.select(t.runs).order_by(t.runs.c.created_at.desc(), t.runs.c.id).limit(limit).offset(offset)
        where = _filtered(query, status, team, text, agent=agent, model=model, since=since, until=until)
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(where).mappings()]

    def count_runs(
        self,
        *,
        status: str | None = None,
        team: str | None = None,
        text: str | None = None,
        agent: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        query = sa.select(sa.func.count()).select_from(t.runs)
        where = _filtered(query, status, team, text, agent=agent, model=model, since=since, until=until)
        with self.engine.connect() as conn:
            return int(conn.execute(where).scalar() or 0)

    def run_filter_choices(self, limit: int = 100) -> tuple[list[str], list[str]]:
        """The agents and model aliases seen in recent runs (the runs list's filter options), sorted.

        Cheap by design: agents of the newest 500 runs' steps, aliases of the newest 2000 model calls."""
        recent = sa.select(t.runs.c.id).order_by(t.runs.c.created_at.desc()).limit(500).scalar_subquery()
        agents = sa.select(t.steps.c.agent).where(t.steps.c.run_id.in_(recent)).distinct().limit(limit)
        calls = (
            sa.select(t.events.c.data["alias"].as_string().label("alias"))
            .where(t.events.c.type == "model_called")
            .order_by(t.events.c.created_at.desc(), t.events.c.id.desc())  # along ix_events_type_created_at
            .limit(2000)
            .subquery()
        )
        aliases = sa.select(calls.c.alias).where(calls.c.alias.is_not(None)).distinct().limit(limit)
        with self.engine.connect() as conn:
            return sorted(conn.execute(agents).scalars()), sorted(a for a in conn.execute(aliases).scalars() if a)

    def usage_by_run(self, run_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(prompt, completion) tokens of each run, summed over its steps, for a page of runs."""
        if not run_ids:
            return {}
        query = (
            sa.select(t.steps.c.run_id, sa.func.sum(t.steps.c.prompt_tokens), sa.func.sum(t.steps.c.completion_tokens))
            .where(t.steps.c.run_id.in_(list(run_ids)))
            .group_by(t.steps.c.run_id)
        )
        with self.engine.connect() as conn:
            return {row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in conn.execute(query)}

    def run_by_idempotency_key(self, key: str) -> RunRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.runs).where(t.runs.c.idempotency_key == key)).mappings().first()
        return _run(row) if row is not None else None

    def runs_by_key_prefix(self, prefix: str, limit: int = 20) -> list[RunRecord]:
        """Runs whose idempotency key starts with ``prefix`` (a routine's firings), newest first."""
        query = (
            sa.select(t.runs)
            .where(t.runs.c.idempotency_key.startswith(prefix, autoescape=True))
            .order_by(t.runs.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query).mappings()]

    def latest_run_by_key_prefix(self, prefix: str) -> RunRecord | None:
        found = self.runs_by_key_prefix(prefix, 1)
        return found[0] if found else None

    def runs_with_status(self, statuses: Iterable[RunStatus]) -> list[RunRecord]:
        query = sa.select(t.runs).where(t.runs.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query).mappings()]

    def take_over(self, run_id: str, dead: str | None, executor: str) -> bool:
        """Record ``executor`` as the process of a run whose recorded process ``dead`` died; True only
        for the one caller whose update still found ``dead`` there (several may try at once)."""
        was = t.runs.c.executor.is_(None) if dead is None else t.runs.c.executor == dead
        with self.transaction() as conn:
            taken = conn.execute(t.runs.update().where(t.runs.c.id == run_id, was).values(executor=executor))
            return taken.rowcount == 1

    def move_workspace(self, run_id: str, workspace: str) -> None:
        """Record where a run's files are now: the process that runs it on (a cluster worker) writes there."""
        with self.transaction() as conn:
            conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(workspace=workspace))

    def set_status(self, run_id: str, status: RunStatus, *, output: Any = None, error: str | None = None) -> bool:
        """Move a run to ``status`` if the state machine allows it; False when it does not.

        A compare-and-set: the write holds only while the run is still in the status read, so a change
        racing another process's (a cancel and the run's own end) never overwrites an end already made."""
        now = time.time()
        with self.transaction() as conn:
            while True:
                current = self.run_status(run_id)
                if not can_transition(current, status):
                    return False
                values: dict[str, Any] = {"status": status.value, "updated_at": now}
                if output is not None:
                    values["output"] = output
                if error is not None:
                    values["error"] = error
                if status.terminal:
                    values["finished_at"] = now
                if self._dialect == "sqlite":
                    assignments = ", ".join(f"{_quote(k)} = ?" for k in values)
                    params = [json.dumps(v) if k == "output" else v for k, v in values.items()]
                    changed = _driver(conn).execute(
                        f"UPDATE runs SET {assignments} WHERE id = ? AND status = ?", (*params, run_id, current.value)
                    )
                else:
                    changed = conn.execute(
                        t.runs.update().where(t.runs.c.id == run_id, t.runs.c.status == current.value).values(**values)
                    )
                if changed.rowcount == 1:
                    break  # else another process moved the run meanwhile: judge the move again from there
            if status.terminal:  # a decision can no longer reach the run: its waiting approvals expire with it
                conn.execute(
                    t.approvals.update()
                    .where(t.approvals.c.run_id == run_id, t.approvals.c.status == "pending")
                    .values(status="expired", decision_note=f"the run ended {status.value}", decided_at=now)
                )
            if status in (RunStatus.FAILED, RunStatus.CANCELLED):
                self._end_tasks_left_open(conn, run_id, status, now)
            return True

    def _end_tasks_left_open(self, conn: Connection, run_id: str, status: RunStatus, now: float) -> None:
        """The tasks a failed or cancelled run created (its agents' ``tasks.create``: ``created_by`` is
        ``agent@run``) and left open or in progress end with it, failed or cancelled, each with a line on
        its timeline saying why: nothing will work on them any more (a person reopens one by its status)."""
        tasks = t.tasks.c
        left = (
            conn.execute(
                sa.select(tasks.id).where(
                    tasks.created_by.like(f"%@{_escape_like(run_id)}", escape="\\"),
                    tasks.status.in_(("open", "in_progress")),
                )
            )
            .scalars()
            .all()
        )
        if not left:
            return
        ended = "failed" if status == RunStatus.FAILED else "cancelled"
        conn.execute(t.tasks.update().where(tasks.id.in_(left)).values(status=ended, updated_at=now, finished_at=now))
        if ended == "failed":  # named as every finish names it (tasks.finish, a person's failed): one rule
            for task_id in left:
                best = best_version(conn, task_id)[0]
                if best is not None:
                    conn.execute(
                        t.tasks.update()
                        .where(tasks.id == task_id, tasks.best_version.is_(None))
                        .values(best_version=best)
                    )
        said = f"the run {run_id} that created this task ended {status.value} before finishing it; marked {ended}"
        conn.execute(
            t.task_messages.insert(),
            [{"task_id": i, "sender": "edgecrew", "role": "system", "content": said, "created_at": now} for i in left],
        )

    # -- steps and messages ----------------------------------------------------------------------
    def upsert_step(self, run_id: str, key: str, **values: Any) -> None:
        row = {"run_id": run_id, "key": key, **values}
        row.setdefault("started_at", time.time())
        self._upsert(t.steps, [row], ("run_id", "key"), exclude_on_update=("started_at",))

    def close_open_steps(self, run_id: str, status: str) -> None:
        """Mark steps still 'running' (their run was cancelled or died) with ``status``."""
        with self.transaction() as conn:
            conn.execute(
                t.steps.update()
                .where(t.steps.c.run_id == run_id, t.steps.c.status == "running")
                .values(status=status, finished_at=time.time())
            )

    def steps(self, run_id: str) -> list[StepRecord]:
        query = sa.select(t.steps).where(t.steps.c.run_id == run_id).order_by(t.steps.c.started_at)
        with self.engine.connect() as conn:
            return [StepRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def put_messages(self, run_id: str, step_key: str, messages: Iterable[tuple[int, Message]]) -> None:
        now = time.time()
        rows = [
            {
                "run_id": run_id,
                "step_key": step_key,
                "seq": seq,
                "role": m.role,
                "content": m.content,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls] or None,
                "tool_call_id": m.tool_call_id,
                "name": m.name,
                "created_at": now,
            }
            for seq, m in messages
        ]
        if rows:
            self._upsert(t.messages, rows, ("run_id", "step_key", "seq"))

    def messages(self, run_id: str, step_key: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.messages).where(t.messages.c.run_id == run_id)
        if step_key is not None:
            query = query.where(t.messages.c.step_key == step_key)
        query = query.order_by(t.messages.c.created_at, t.messages.c.seq)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- the call journal -------------------------------------------------------------------------
    def recorded_call(self, run_id: str, key: str) -> tuple[RunStatus, tuple[Any] | None]:
        """The run's status and, when the call ``key`` has finished, its output (in a 1-tuple: an output
        may be None). One read before each call of a run."""
        current = _current_conn.get()  # inside a caller's transaction: see its own writes
        with contextlib.nullcontext(current) if current is not None else self.engine.connect() as conn:
            if self._dialect == "sqlite":  # the driver's own cursor, as for the writes (_DriverUpsert)
                found = _driver(conn).execute(_RECORDED_CALL_SQLITE, (key, run_id)).fetchone()
                row = (
                    None if found is None else (found[0], found[1], None if found[2] is None else json.loads(found[2]))
                )
            else:
                got = conn.execute(self._recorded_call_query(), {"run_id": run_id, "key": key}).one_or_none()
                row = None if got is None else tuple(got)
        if row is None:
            raise NotFoundError(f"no run '{run_id}'")
        status, recorded_key, output = row
        return RunStatus(status), ((output,) if recorded_key is not None else None)

    def _recorded_call_query(self) -> Any:
        query = self._statements.get(("calls", "recorded"))
        if query is None:
            calls, runs = t.calls.c, t.runs.c
            on = sa.and_(calls.run_id == runs.id, calls.key == sa.bindparam("key"))
            query = (
                sa.select(runs.status, calls.key, calls.output)
                .select_from(t.runs.outerjoin(t.calls, on))
                .where(runs.id == sa.bindparam("run_id"))
            )
            self._statements[("calls", "recorded")] = query
        return query

    def call_count(self, run_id: str) -> int:
        """How many calls of the run the journal holds."""
        query = sa.select(sa.func.count()).select_from(t.calls).where(t.calls.c.run_id == run_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def record_call(self, run_id: str, key: str, kind: str, output: Any) -> None:
        """Record a finished call's output; the first record of a key stands (a replay never rewrites it)."""
        row = {"run_id": run_id, "key": key, "kind": kind, "output": output, "recorded_at": time.time()}
        self._upsert(t.calls, [row], ("run_id", "key"), exclude_on_update=("kind", "output", "recorded_at"))

    # -- events -----------------------------------------------------------------------------------
    def emit(
        self,
        run_id: str,
        key: str,
        event: Event,
        *,
        step_key: str | None = None,
        agent: str | None = None,
    ) -> None:
        """Write one event, idempotently: the same (run, key) overwrites instead of duplicating."""
        row = {
            "run_id": run_id,
            "key": key,
            "type": event.kind.value,
            "step_key": step_key,
            "agent": agent,
            "data": event.to_data(),
            "created_at": time.time(),
            "request_id": current_request_id.get(),
        }
        if not self._listeners:
            self._upsert(t.events, [row], ("run_id", "key"), exclude_on_update=("created_at",))
            return
        with self.transaction() as conn:
            if self._dialect == "sqlite":
                returning = self._statements.get(("driver", "events", "returning"))
                if returning is None:
                    returning = _DriverUpsert.build(
                        t.events, tuple(row), ("run_id", "key"), ("created_at",), " RETURNING id, created_at"
                    )
                    self._statements[("driver", "events", "returning")] = returning
                cursor = _driver(conn).execute(returning.sql, returning.params(row))
                stored_id, stored_created = cursor.fetchone()
            else:
                got = conn.execute(self._event_upsert_returning(), row).one()
                stored_id, stored_created = got.id, got.created_at
        # The upsert keeps the first created_at: an older one means this (run, key) was written before.
        record = EventRecord(**{**row, "id": stored_id, "created_at": stored_created})
        new = stored_created == row["created_at"]
        for listener in list(self._listeners):
            try:
                listener(record, new)
            except Exception:  # an observer's bug must never fail the run that emitted the event
                log.exception("event listener %r failed on %s", listener, event.kind.value)

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` for every event written through this store; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _event_upsert_returning(self) -> Any:
        stmt = self._statements.get(("events", "returning"))
        if stmt is None:
            from sqlalchemy.dialects import postgresql, sqlite

            insert: Any = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
            base = insert(t.events)
            update = {c: base.excluded[c] for c in ("type", "step_key", "agent", "data", "request_id")}
            stmt = base.on_conflict_do_update(index_elements=["run_id", "key"], set_=update).returning(
                t.events.c.id, t.events.c.created_at
            )
            self._statements[("events", "returning")] = stmt
        return stmt

    def events(self, run_id: str | None = None, *, after_id: int = 0, limit: int = 1000) -> list[EventRecord]:
        query = sa.select(t.events).where(t.events.c.id > after_id).order_by(t.events.c.id).limit(limit)
        if run_id is not None:
            query = query.where(t.events.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [EventRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def last_event_id(self, run_id: str) -> int:
        """The id of the run's newest event (0 when it has none)."""
        query = sa.select(sa.func.max(t.events.c.id)).where(t.events.c.run_id == run_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def events_of_type(self, type_: str, *, limit: int = 1000) -> list[EventRecord]:
        """The newest ``limit`` events of one type across runs, oldest first (newest by time, then id: read
        backwards along ``ix_events_type_created_at``, where id order sorted every event of the type)."""
        c = t.events.c
        query = sa.select(t.events).where(c.type == type_).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [EventRecord(**dict(r)) for r in reversed(conn.execute(query).mappings().all())]

    # -- helpers ----------------------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, flush: bool = True) -> Iterator[Connection]:
        """Group the writes made inside into one transaction (one commit, one disk flush).

        ``flush=False``: on SQLite the commit is not forced to disk (``synchronous=NORMAL``). It survives
        the process being killed, and the next flushed commit to the file (a call's record, a run's end)
        takes it to disk, earlier in the same log; a power cut before that loses it. Only for rows that
        a replay writes again (a step's start and finish, a route taken), never for a recorded call.
        A transaction inside another is part of it (the outer one decides)."""
        current = _current_conn.get()
        if current is not None:
            yield current
            return
        with (self.engine if flush else self._unflushed).begin() as conn:
            token = _current_conn.set(conn)
            try:
                yield conn
            finally:
                _current_conn.reset(token)

    def _upsert(
        self,
        table: sa.Table,
        rows: list[dict[str, Any]],
        keys: tuple[str, ...],
        exclude_on_update: tuple[str, ...] = (),
    ) -> None:
        if self._dialect == "sqlite":
            self._driver_upsert(table, rows, keys, exclude_on_update)
            return
        columns = tuple(rows[0])
        cache_key = (table.name, columns, keys, exclude_on_update)
        stmt = self._statements.get(cache_key)
        if stmt is None:
            # Built once per shape and executed with bound parameters: building an upsert costs
            # far more than running it on SQLite.
            from sqlalchemy.dialects import postgresql, sqlite

            insert: Any = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
            base = insert(table)
            update = {k: base.excluded[k] for k in columns if k not in keys and k not in exclude_on_update}
            stmt = (
                base.on_conflict_do_update(index_elements=list(keys), set_=update)
                if update
                else base.on_conflict_do_nothing(index_elements=list(keys))
            )
            self._statements[cache_key] = stmt
        with self.transaction() as conn:
            conn.execute(stmt, rows)

    def _driver_upsert(
        self, table: sa.Table, rows: list[dict[str, Any]], keys: tuple[str, ...], exclude: tuple[str, ...]
    ) -> None:
        """``_upsert`` on SQLite, as SQL text on the driver's own connection (see ``_DriverUpsert``)."""
        cache_key = ("driver", table.name, tuple(rows[0]), keys, exclude)
        upsert = self._statements.get(cache_key)
        if upsert is None:
            upsert = self._statements[cache_key] = _DriverUpsert.build(table, tuple(rows[0]), keys, exclude)
        with self.transaction() as conn:
            _driver(conn).executemany(upsert.sql, [upsert.params(row) for row in rows])


def _escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern (with ``escape="\\"``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_RUN_BY_ID_SQLITE = f"SELECT {', '.join(_quote(c.name) for c in t.runs.columns)} FROM runs WHERE id = ?"


def _row_of(table: sa.Table, values: Sequence[Any]) -> dict[str, Any]:
    """A row read through the driver, as SQLAlchemy would give it: JSON columns decoded."""
    return {
        c.name: (None if v is None else json.loads(v)) if isinstance(c.type, sa.JSON) else v
        for c, v in zip(table.columns, values, strict=True)
    }


_RECORDED_CALL_SQLITE = (
    'SELECT r.status, c."key", c.output FROM runs AS r LEFT OUTER JOIN calls AS c ON c.run_id = r.id AND c."key" = ? '
    "WHERE r.id = ?"
)


def _driver(conn: Connection) -> Any:
    """The DBAPI connection under a SQLAlchemy connection (the SQLite driver's own)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver


@dataclass(frozen=True)
class _DriverUpsert:
    """An upsert of one row shape as SQL text, run on the SQLite driver's own connection inside the
    store's transaction: the rows each step of a run writes skip SQLAlchemy's execution layer, which
    costs ~90 µs a statement on a small CPU where the driver takes ~15. Values go in as SQLAlchemy
    would put them: JSON columns as ``json.dumps`` text (None as 'null'), scalar column defaults for
    the columns a row leaves out (on insert only)."""

    sql: str
    columns: tuple[str, ...]
    json_positions: tuple[int, ...]  # of the columns stored as JSON text
    defaults: tuple[Any, ...]

    @classmethod
    def build(
        cls,
        table: sa.Table,
        columns: tuple[str, ...],
        keys: tuple[str, ...],
        exclude: tuple[str, ...],
        returning: str = "",
    ) -> _DriverUpsert:
        defaulted = [
            c for c in table.columns if c.name not in columns and c.default is not None and c.default.is_scalar
        ]
        names = [*columns, *(c.name for c in defaulted)]
        update = [c for c in columns if c not in keys and c not in exclude]
        quoted = ", ".join(_quote(c) for c in names)
        conflict = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in update)
        sql = (
            f"INSERT INTO {_quote(table.name)} ({quoted}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT ({', '.join(_quote(k) for k in keys)}) "
            + (f"DO UPDATE SET {conflict}" if update else "DO NOTHING")
            + returning
        )
        json_columns = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
        json_positions = tuple(i for i, c in enumerate(columns) if c in json_columns)
        return cls(sql, columns, json_positions, tuple(c.default.arg for c in defaulted))  # type: ignore[union-attr]

    def params(self, row: dict[str, Any]) -> list[Any]:
        # Several rows a step, each on the engine's hot path: a list filled in place, no generator.
        values = [row[c] for c in self.columns]
        for i in self.json_positions:
            values[i] = json.dumps(values[i])
        values.extend(self.defaults)
        return values


def _filtered(
    query: Any,
    status: str | None,
    team: str | None,
    text: str | None,
    *,
    agent: str | None = None,
    model: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> Any:
    """``query`` over runs narrowed to: ``status``; ``team``; ``text`` in the task, the output or any
    event's data (tool results, model replies, errors; any case); a step of ``agent``; a call routed to
    the model alias ``model``; created at or after ``since`` and before ``until`` (epoch seconds).

    JSON is searched as its text (CAST ... AS TEXT) and read with the JSON type's own operators, so the
    same statement runs on SQLite and Postgres."""
    runs, events = t.runs.c, t.events.c
    if status:
        query = query.where(runs.status == status)
    if team:
        query = query.where(runs.team == team)
    if since is not None:
        query = query.where(runs.created_at >= since)
    if until is not None:
        query = query.where(runs.created_at < until)
    if agent:
        query = query.where(sa.exists().where(t.steps.c.run_id == runs.id, t.steps.c.agent == agent))
    if model:
        routed = events.data["alias"].as_string() == model
        query = query.where(sa.exists().where(events.run_id == runs.id, events.type == "model_called", routed))
    if text:
        needle = text.lower()
        in_events = sa.func.lower(sa.cast(events.data, sa.Text)).contains(needle, autoescape=True)
        query = query.where(
            sa.or_(
                sa.func.lower(runs.task).contains(needle, autoescape=True),
                sa.func.lower(sa.cast(runs.output, sa.Text)).contains(needle, autoescape=True),
                sa.exists().where(events.run_id == runs.id, in_events),
            )
        )
    return query


def _run(row: Any) -> RunRecord:
    data = dict(row)
    data["status"] = RunStatus(data["status"])
    return RunRecord(**data)


def sqlite_module() -> Any | None:
    """The SQLite library a store file is opened with: ``sqlean`` (the same SQLite, extension loading
    allowed, so memory's sqlite-vec index lives in the store file) when it is installed, else None
    (the standard library's ``sqlite3``).

    One library per process, always: two copies of SQLite in one process do not see each other's
    POSIX locks on the same file (closing one's descriptor drops the other's locks), and concurrent
    writes through both corrupted the database ("database disk image is malformed").
    """
    try:
        import sqlean
    except ImportError:
        return None
    return sqlean.dbapi2


@functools.cache
def _vec_extension() -> str | None:
    """Where sqlite-vec's loadable extension is, found without importing the package (its ``__init__``
    imports numpy, ~100 ms that a run without memory would pay on its first connection)."""
    import importlib.util

    spec = importlib.util.find_spec("sqlite_vec")
    if spec is None or spec.origin is None:
        return None
    return str(Path(spec.origin).parent / "vec0")


def _load_vec(dbapi_conn: Any, _record: Any) -> None:
    """Load sqlite-vec on each connection of a store opened with sqlean (memory's vector index)."""
    extension = _vec_extension()
    if extension is None:
        return
    try:
        dbapi_conn.enable_load_extension(True)
        dbapi_conn.load_extension(extension)
        dbapi_conn.enable_load_extension(False)
    except Exception as exc:  # an extension that cannot load: memory searches exactly instead
        log.warning("sqlite-vec could not be loaded into the store's SQLite: %s", exc)


def database_problem(what: str, url: str, exc: BaseException) -> str:
    """Why ``what`` (the store, the durable engine's database) at ``url`` cannot be used, for a person:
    the URL without its password, the driver's own reason, and where to look."""
    try:
        where = sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        where = url.split("@")[-1]
    reason = getattr(exc, "orig", None) or exc
    first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
    return (
        f"cannot use {what} at {where}: {first}; check EDGECREW_HOME and EDGECREW_DATABASE_URL "
        "(`edgecrew doctor` checks both)"
    )


@contextmanager
def sqlite_file_lock(database: str) -> Iterator[None]:
    """Take turns on a SQLite file's set-up (its switch to WAL, its migrations) with every other
    process and thread doing the same: an exclusive lock on ``<file>.migrate.lock``."""
    import fcntl

    with open(f"{database}.migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def use_wal(engine: Engine) -> None:
    """Put the SQLite file of ``engine`` in WAL mode (persistent in the file: readers never block the
    writer), once, before the store reads or writes it.

    Taking turns matters: two connections switching a new file at once, or one switching it while
    another migrates it, can wait on each other until one gives up with "database is locked" (a
    command and a thread of the same process starting together on a new data dir did)."""
    database = engine.url.database
    if not database or database == ":memory:":
        return
    with sqlite_file_lock(database), engine.connect() as conn:
        if str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower() != "wal":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


def open_store(url: str) -> RunStore:
    """Open (and migrate) the store at ``url``; a SQLite file's folder is created when missing."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    module = sqlite_module() if url.startswith("sqlite") else None
    engine = sa.create_engine(
        _engine_url(url),
        pool_pre_ping=not url.startswith("sqlite"),
        connect_args=connect_args(url, get_settings().database_connect_timeout_s),
        **({"module": module} if module else {}),
    )
    unflushed = None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        if module is not None:
            sa.event.listen(engine, "connect", _load_vec)
        unflushed = sa.create_engine(_engine_url(url), **({"module": module} if module else {}))
        sa.event.listen(unflushed, "connect", _sqlite_pragmas)
        sa.event.listen(unflushed, "connect", _unflushed_pragmas)
    store = RunStore(engine, unflushed)
    if engine.dialect.name == "sqlite":
        use_wal(engine)
    store.migrate()
    _open_stores.add(store)
    return store


_open_stores: weakref.WeakSet[RunStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """At exit, close the stores still open: SQLite folds its write-ahead log back into the database
    file when the file's last connection closes, so a copy of the file alone is whole. The interpreter's
    teardown did it by collecting them; the ``edgecrew`` command leaves without that teardown."""
    for store in list(_open_stores):
        with contextlib.suppress(Exception):
            store.close()
