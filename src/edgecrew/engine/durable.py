"""The team run as a DBOS workflow whose model, tool and memory calls are recorded, so routing replays from them.

Each finished call's output goes into the store's call journal (the ``calls`` table) in the same
transaction as the call's event: one commit per call, in the file that holds the run's other rows.
A replayed workflow reads a call there before making it. In a cluster (whose workers route model
calls through DBOS queues) and in runs recorded before the journal, calls are DBOS steps instead;
a run keeps the way it started with.

A killed process leaves its workflows PENDING under its executor id (host:pid:start-time). When
edgecrew starts again (and every ``orphan_sweep_s`` in a server) it resumes the PENDING workflows of
executors that are no longer alive on this host, so a run continues from its last finished step and
no finished call runs twice. Event rows are keyed by run and step, so a step that is executed again
rewrites its events instead of duplicating them.

Several processes may see the same dead executor at once (a server's sweep, a new ``edgecrew run``,
``edgecrew resume``, a cluster worker). Adoption is therefore one conditional update, ``adopt``: a
workflow goes back on its queue only while it is still PENDING under the dead executor, so exactly
one process's update matches and the others skip it (DBOS's own recovery uses the same predicate).
A run whose process died before its workflow began is taken over the same way, on the run's row.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig
from dbos._error import DBOSException, DBOSWorkflowCancelledError, DBOSWorkflowConflictIDError

from edgecrew.context import request_id as current_request_id
from edgecrew.domain.events import (
    ModelCalled,
    RouteTaken,
    RoutingEvent,
    RunFinished,
    RunResumed,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolCalled,
    ToolsSelected,
    previewed,
)
from edgecrew.domain.messages import ModelRequest, ModelResponse, ToolCall, ToolDefinition, Usage
from edgecrew.domain.runs import Outcome, RunStatus
from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.domain.specs import AgentSpec, Edge, TeamSpec
from edgecrew.engine.agent import CallResult, Observation, TurnInput, TurnResult
from edgecrew.engine.approvals import await_decision
from edgecrew.engine.executors import executor_alive, executor_id
from edgecrew.engine.failpoints import failpoint
from edgecrew.engine.fixed import run_agent
from edgecrew.engine.graph import GraphResult, Visit, run_graph, step_key_of
from edgecrew.engine.live import LiveText
from edgecrew.engine.routing import RoutedCall, call_with_fallback
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.toolcall import execute_tool
from edgecrew.errors import EdgecrewError, UserError
from edgecrew.models.registry import ModelDef
from edgecrew.projects import ProjectService
from edgecrew.store.repo import RunRecord, RunStore, connect_args, database_problem, sqlite_file_lock
from edgecrew.telemetry import tracing
from edgecrew.tools.base import ToolContext
from edgecrew.tools.permissions import FilePolicy, needs_approval, refusal
from edgecrew.version import __version__

# -- DBOS lifecycle --------------------------------------------------------------------------------

_launched_url: str | None = None
_runtime: Runtime | None = None  # the runtime the steps of this process serve: DBOS's own state, set at launch


def launch(runtime: Runtime, *, queues: Sequence[str] = ()) -> None:
    """Start DBOS for this process (once per system database) and serve ``runtime``'s steps.

    ``queues``: the DBOS queues whose workflows this process runs besides its project's adopted runs
    (``adopted_queue``, which every process of the project runs): a server's are its project's routine
    firings and jobs. Every other process (``edgecrew run``, a CLI command) runs no others, so a queued
    firing never lands in a short-lived process or in a server of another project sharing the data dir.
    The first launch in a process decides.
    """
    global _launched_url, _runtime
    _runtime = runtime
    url = runtime.settings.system_database_url
    if _launched_url == url:
        return
    if _launched_url is not None:
        DBOS.destroy(destroy_registry=False)
    try:
        if url.startswith("sqlite:///"):
            _use_wal(url.removeprefix("sqlite:///"))
    except sqlite3.DatabaseError as exc:  # read-only, damaged, not a database
        raise UserError(database_problem("the durable engine's database", url, exc)) from None
    config: DBOSConfig = {
        "name": "edgecrew",
        "system_database_url": url,
        "executor_id": executor_id(),
        "application_version": __version__,
        # DBOS logs cancellations and interrupted tasks with tracebacks and whole requests; the
        # run's own events say what happened, so only DBOS's real failures are printed.
        "log_level": runtime.settings.dbos_log_level,
        "notification_listener_polling_interval_sec": 0.1,
    }
    if args := connect_args(url, runtime.settings.database_connect_timeout_s):
        # DBOS's engine waits 10 s by default and keeps no keepalives; these arguments replace its own (its
        # application name kept).
        config["db_engine_kwargs"] = {"connect_args": {"application_name": "dbos_transact", **args}}
    DBOS(config=config)
    adopted = adopted_queue(runtime)
    DBOS.listen_queues([adopted, *queues])
    try:
        DBOS.launch()
    except (sa.exc.SQLAlchemyError, sqlite3.DatabaseError) as exc:  # unreachable, refused, damaged
        DBOS.destroy(destroy_registry=False)
        raise UserError(database_problem("the durable engine's database", url, exc)) from None
    _launched_url = url


def adopted_queue(runtime: Runtime) -> str:
    """The DBOS queue where the workflows this project's processes adopt from dead ones wait (see
    ``adopt``): only processes of this project listen to it. DBOS's own internal queue, where a plain
    resume puts them, is dequeued by every process sharing the system database, another project's
    `edgecrew run` included, which lacks this project's models and tools."""
    return f"edgecrew.adopted.{runtime.project_key}"


def current_runtime() -> Runtime:
    """The runtime this process's workflows and steps use (the one DBOS was last launched with)."""
    if _runtime is None:
        raise RuntimeError("the durable engine was not launched in this process; call durable.launch(runtime)")
    return _runtime


def launched(runtime: Runtime) -> bool:
    """Whether DBOS runs in this process on this runtime's system database."""
    return _launched_url == runtime.settings.system_database_url


def _use_wal(path: str) -> None:
    """Put DBOS's SQLite file in WAL mode (persistent in the file) so readers never block the writer."""
    with sqlite_file_lock(path), contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":  # one switch, in turn
            db.execute("PRAGMA journal_mode=WAL")
    if path not in _wal_files:
        _wal_files.add(path)
        if len(_wal_files) == 1:
            atexit.register(_fold_logs)


_wal_files: set[str] = set()


def _fold_logs() -> None:
    """At exit, copy what DBOS's files hold in their write-ahead logs into the files themselves (a
    passive checkpoint: it waits for nobody), so a copy of a file alone is whole. The interpreter's
    teardown did it when it closed DBOS's connections; the ``edgecrew`` command leaves without it."""
    for path in _wal_files:
        with contextlib.suppress(sqlite3.Error):  # gone (a test's temporary folder), locked, damaged
            uri = Path(path).absolute().as_uri() + "?mode=rw"  # never creates a file that is not there
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1)) as db:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def shutdown() -> None:
    global _launched_url
    if _launched_url is not None:
        DBOS.destroy(destroy_registry=False)
        _launched_url = None
        # DBOS binds its console handler to the stderr of the moment; drop it so a later launch in
        # this process (tests, an embedding app) binds the stderr current then.
        logging.getLogger("dbos").handlers.clear()


@dataclass
class Recovery:
    """What start-up recovery did: runs adopted by this process, and orphans of other projects."""

    adopted: list[str] = field(default_factory=list)
    elsewhere: list[RunRecord] = field(default_factory=list)
    interrupted_executions: list[int] = field(default_factory=list)
    # (run id, why): runs of this project that cannot go on here until what they need is back
    blocked: list[tuple[str, str]] = field(default_factory=list)


def missing_parts(runtime: Runtime, run: RunRecord) -> str | None:
    """What ``run``'s team (as it was snapshotted) needs and this runtime lacks, e.g. a model alias
    renamed in edgecrew.yaml since; None when nothing is missing. Resuming without it would fail the
    run for good at that step, where restoring it first lets the run go on."""
    if not run.spec:
        return None
    spec = team_from_snapshot(run.spec, source=f"run {run.id}")
    missing: list[str] = []
    for agent in spec.agents.values():
        needs = [("tool", name) for name in (*agent.tools, *((agent.tool,) if agent.tool else ()))]
        if agent.kind == "model":
            needs.append(("model", agent.model))
        for kind, name in needs:
            try:
                runtime.models.candidates(name) if kind == "model" else runtime.tools.get(name)
            except EdgecrewError:
                missing.append(f"{kind} '{name}' (agent {agent.name})")
    return ", ".join(dict.fromkeys(missing)) or None


async def recover_orphans(runtime: Runtime) -> Recovery:
    """Resume this project's runs whose process died: PENDING workflows of dead executors, and runs
    recorded by a dead process before their workflow began. Runs of other projects are left alone
    (they need that project's models and plugins) and reported instead."""
    recovery = Recovery()
    # Task executions left running by a dead process: interrupted (rerunnable), before runs resume
    # and start new ones.
    recovery.interrupted_executions = [e.id for e in await asyncio.to_thread(runtime.executions.recover)]
    await _adopt_orphans(runtime, recovery, await asyncio.to_thread(_unfinished, runtime))
    return recovery


async def sweep_orphans(runtime: Runtime) -> Recovery:
    """``recover_orphans`` for a process that goes on running (a server, every ``orphan_sweep_s``):
    the same rules for runs, and one query of the store when no run of this project is unfinished.
    Task executions are left to start-up: a person reruns them."""
    recovery = Recovery()
    unfinished = await asyncio.to_thread(_unfinished, runtime)
    here = str(runtime.project.dir)
    if any(run.project in (None, here) for run in unfinished.values()):
        await _adopt_orphans(runtime, recovery, unfinished)
    return recovery


def _unfinished(runtime: Runtime) -> dict[str, RunRecord]:
    wanted = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING_APPROVAL]
    return {r.id: r for r in runtime.store.runs_with_status(wanted)}


async def _adopt_orphans(runtime: Runtime, recovery: Recovery, unfinished: dict[str, RunRecord]) -> None:
    own, here = executor_id(), str(runtime.project.dir)

    def owner(workflow_id: str) -> RunRecord | None:
        # Child workflows (parallel branches) carry their run's id as a prefix.
        return unfinished.get(workflow_id) or next(
            (r for rid, r in unfinished.items() if workflow_id.startswith(rid + "-")), None
        )

    pending = await DBOS.list_workflows_async(status="PENDING", load_input=False, load_output=False)
    started = {wf.workflow_id for wf in pending}
    for wf in pending:
        run = owner(wf.workflow_id)
        if run is None or wf.executor_id == own or executor_alive(wf.executor_id):
            continue
        if run.project not in (None, here):
            if run not in recovery.elsewhere:
                recovery.elsewhere.append(run)
            continue
        if (missing := missing_parts(runtime, run)) is not None:
            if run.id not in dict(recovery.blocked):
                recovery.blocked.append((run.id, missing))
            continue
        if await adopt(wf.workflow_id, wf.executor_id, adopted_queue(runtime)) and wf.workflow_id == run.id:
            recovery.adopted.append(run.id)  # (another process got there first otherwise)
    for run in unfinished.values():
        if run.id in recovery.adopted or run.id in started or executor_alive(run.executor):
            continue
        if run.project not in (None, here) or run.id in dict(recovery.blocked):
            continue
        if await workflow_status(run.id) is not None:
            continue
        # Recorded, but its process died before starting it: the one process that takes the run's
        # row over starts it (DBOS would run it once anyway; this keeps the report and event single).
        if await asyncio.to_thread(runtime.store.take_over, run.id, run.executor, own):
            await start_workflow(run.id)
            recovery.adopted.append(run.id)
    for run_id in recovery.adopted:
        runtime.store.emit(run_id, f"resumed.{own}", RunResumed(executor=own))


async def adopt(workflow_id: str, dead_executor: str | None, queue: str) -> bool:
    """Put a workflow that ``dead_executor`` left PENDING back on its queue (its own, else ``queue``:
    the project's ``adopted_queue``) for a live process to run; True only for the caller whose update
    did it.

    The update matches only while the workflow is PENDING under ``dead_executor``. Once one process
    has put it back, it is ENQUEUED, and once a process dequeues it, that process is its executor:
    every later caller's update matches nothing. (``DBOS.resume_workflow`` re-enqueues any
    unfinished workflow, a running one included, so two adopters with it would run one workflow
    twice at once.) This is the update DBOS's own recovery makes.
    """
    if not dead_executor:
        return False
    from dbos._dbos import _get_dbos_instance

    # Declared in the database (again: a no-op), so each listening process starts its worker for it.
    await DBOS.register_queue_async(queue)

    sys_db = _get_dbos_instance()._sys_db
    done: bool = await asyncio.to_thread(sys_db.reenqueue_for_recovery, workflow_id, [dead_executor], queue)
    return done


async def resume_dead(runtime: Runtime, workflow_name: str, owned: Any = None) -> list[str]:
    """Resume the PENDING workflows named ``workflow_name`` whose process died (routine firings, jobs:
    DBOS recovers only its own executor's, and edgecrew's executor ids change with each process).
    ``owned(workflow) -> bool`` picks the ones of this project. Returns those this process adopted."""
    pending = await DBOS.list_workflows_async(
        status="PENDING", name=workflow_name, load_input=owned is not None, load_output=False
    )
    resumed = []
    for wf in pending:
        if wf.executor_id == executor_id() or executor_alive(wf.executor_id):
            continue
        if owned is not None and not owned(wf):
            continue
        if await adopt(wf.workflow_id, wf.executor_id, adopted_queue(runtime)):
            resumed.append(wf.workflow_id)
    return resumed


# -- cluster seams (edgecrew.cluster fills them; without it a run and its calls stay in this process) --

RUNS_QUEUE = "edgecrew.cluster.runs"  # team runs waiting for a cluster worker (settings.cluster_enabled)
# (runtime, run id, call key, agent, request, time limit) -> what model_call_step returns
ModelRoute = Callable[[Runtime, str, str, AgentSpec, ModelRequest, float], Awaitable[dict[str, Any]]]
_model_route: ModelRoute | None = None


def route_model_calls(route: ModelRoute | None) -> None:
    """Send this process's model calls through ``route`` (a cluster worker: to a worker serving the model)."""
    global _model_route
    _model_route = route


async def start_workflow(run_id: str) -> Any:
    from dbos import SetWorkflowID

    with SetWorkflowID(run_id):
        if _runtime is not None and _runtime.settings.cluster_enabled:  # a cluster worker dequeues it
            return await DBOS.enqueue_workflow_async(RUNS_QUEUE, team_run, run_id)
        return await DBOS.start_workflow_async(team_run, run_id)


async def workflow_status(run_id: str) -> Any:
    """DBOS's view of a run's workflow (None when it never started)."""
    found = await DBOS.list_workflows_async(workflow_ids=[run_id], load_input=False, load_output=False)
    return found[0] if found else None


# -- workflows -------------------------------------------------------------------------------------


@DBOS.workflow(name="edgecrew.team_run")
async def team_run(run_id: str) -> dict[str, Any]:
    rt = current_runtime()
    run = rt.store.get_run(run_id)
    current_request_id.set(run.request_id)  # also after a restart: this run's rows keep its correlation id
    team = team_from_snapshot(run.spec, source=f"run {run_id}")
    if run.status.terminal:
        return {"status": run.status.value}
    steps = await _calls_as_steps(rt, run_id, run_id, resumed=run.status != RunStatus.QUEUED)
    workspace = str(rt.workspace(run_id))
    with rt.store.transaction(flush=False):  # a replay writes them again
        rt.store.set_status(run_id, RunStatus.RUNNING)
        if run.workspace != workspace:  # run here (a cluster worker, another data dir): its files are here
            rt.store.move_workspace(run_id, workspace)
        started = RunStarted(
            team=team.name,
            task=run.task,
            agents=tuple(team.agents),
            executor=executor_id(),
            workspace=workspace,
        )
        rt.store.emit(run_id, "run_started", started)
    runner = DurableTurnRunner(rt, run_id, team, steps=steps)
    if run.status == RunStatus.QUEUED and not steps:
        runner.fresh = Fresh()
    if run.trigger and run.trigger.get("kind") == "from_step":  # run on from a step of another run
        runner.seed = dict(run.trigger.get("seed") or {})
        runner.seeded_from = str(run.trigger.get("run") or "")
    with tracing.workflow_span(run_id, team.name) as span:
        try:
            result = await run_graph(team, run.task, runner)
        except DBOSException as exc:
            if "cancel" in type(exc).__name__.lower():
                runner.write_pending(routed=False)
                raise  # the run was cancelled: its status and event are already written
            result = GraphResult(False, error=f"internal error: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug or a broken plugin must end the run, not leave it hanging
            result = GraphResult(False, error=f"internal error: {type(exc).__name__}: {exc}")
        except BaseException:  # DBOS's own cancellation (a BaseException): the last step's end is still written
            runner.write_pending(routed=False)  # (a process that stops here: its replay writes the routes)
            raise
        status = RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED
        with rt.store.transaction():  # the last step's end, the run's status and its last event: one commit
            moved = rt.store.set_status(run_id, status, output=result.output, error=result.error)
            runner.write_pending(routed=moved)  # a run cancelled meanwhile routes nowhere, not even to its end
            final = status if moved else rt.store.get_run(run_id).status  # a cancel that won the race stays
            finished = RunFinished(status=final, output=result.output, error=result.error, visits=result.visits)
            rt.store.emit(run_id, "run_finished", finished)
        tracing.record_run(span, final.value, ok=final == RunStatus.SUCCEEDED)
    return {"status": final.value, "output": result.output, "error": result.error}


@dataclass
class Fresh:
    """A run whose workflow began here from QUEUED: the call journal holds none of its calls (a call is
    recorded only after the run's start, earlier in the same file), so its calls skip the lookup before
    they run. Only the run's status is needed there (a cancel, from any process): it is read in the
    transactions the run makes anyway, a step's start and each call's record, and kept here."""

    status: RunStatus = RunStatus.RUNNING


@DBOS.workflow(name="edgecrew.agent_turn")
async def agent_turn(run_id: str, visit_key: str, agent_name: str, turn: TurnInput | str) -> dict[str, Any]:
    """One agent turn as a child workflow: used for parallel branches (each with its own step order).
    (``turn`` is a plain context string in workflows recorded before tool and template agents.)"""
    rt = current_runtime()
    run = rt.store.get_run(run_id)
    current_request_id.set(run.request_id)
    team = team_from_snapshot(run.spec)
    given = TurnInput(turn, run.task) if isinstance(turn, str) else turn
    steps = await _calls_as_steps(rt, run_id, DBOS.workflow_id or "", resumed=True)
    return (await _turn(rt, run_id, team.name, team.agents[agent_name], visit_key, given, steps=steps)).to_dict()


_STEP_CALLS = frozenset(
    {"edgecrew.model_call", "edgecrew.tool_call", "edgecrew.memory_recall", "edgecrew.cluster.route"}
)


async def _calls_as_steps(rt: Runtime, run_id: str, workflow_id: str, *, resumed: bool) -> bool:
    """Whether this workflow's calls are DBOS steps rather than entries in the call journal: in a
    cluster worker (its model calls are routed through DBOS), and in a resumed workflow that recorded
    its calls as steps (before the journal, or on a cluster worker). A new run decides at once."""
    if resumed:
        from dbos._dbos import _get_dbos_instance

        # The system database read directly: DBOS.list_workflow_steps inside a workflow is itself a
        # recorded step, which would shift the ids of the workflow's later steps on replay.
        sys_db = _get_dbos_instance()._sys_db
        recorded = await asyncio.to_thread(sys_db.list_workflow_steps, workflow_id, load_output=False)
        if any(step["function_name"] in _STEP_CALLS for step in recorded):
            return True
        if rt.store.call_count(run_id):
            return False
    return _model_route is not None


async def _turn(
    rt: Runtime,
    run_id: str,
    team: str,
    agent: AgentSpec,
    key: str,
    turn: TurnInput,
    approved_tools: set[str] | None = None,
    *,
    steps: bool = False,
    before: Callable[[], None] | None = None,
    defer: Callable[[Callable[[], None]], None] | None = None,
    fresh: Fresh | None = None,
) -> TurnResult:
    """One visit of an agent: its step row and events around the agent's turn. ``before`` writes rows
    that go into the same transaction as the step's start (the previous step's end); ``defer`` takes
    the writes of this step's end to do the same (without it they are written at once). ``fresh``: the
    run's calls skip the journal's lookup (see :class:`Fresh`)."""
    store = rt.store
    visit = int(key[1 : key.index(".")])
    with store.transaction(flush=False):  # a replay writes them again (so do all rows of a turn)
        if before is not None:
            before()
        store.upsert_step(run_id, key, agent=agent.name, visit=visit, status="running")
        store.emit(
            run_id,
            f"{key}.started",
            _step_started(agent, visit),
            step_key=key,
            agent=agent.name,
        )
        if fresh is not None:
            fresh.status = store.run_status(run_id)
    io = DurableIO(rt, run_id, approved_tools, steps=steps, fresh=fresh)
    with tracing.agent_span(run_id, team, agent.name, agent.model, key) as span:
        try:
            result = await run_agent(agent, turn, io, key, {"run": run_id, "team": team, "agent": agent.name})
        except DBOSWorkflowCancelledError:
            _write_cancelled_end(store, run_id, agent.name, key, visit)
            raise
        tracing.record_turn(span, result.outcome.value, result.prompt_tokens, result.completion_tokens)
    finished = StepFinished(
        outcome=result.outcome,
        output=result.output,
        error=result.error,
        model_calls=result.model_calls,
        tool_calls=result.tool_calls,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    ended = time.time()

    def write_end() -> None:
        store.put_messages(run_id, key, enumerate(result.messages))
        summary = finished.to_data()  # the step row holds the same summary as its event
        store.upsert_step(run_id, key, agent=agent.name, visit=visit, status="finished", finished_at=ended, **summary)
        store.emit(run_id, f"{key}.finished", finished, step_key=key, agent=agent.name)

    if defer is not None:
        defer(write_end)
    else:
        with store.transaction(flush=False):
            write_end()
    return result


def _write_cancelled_end(store: RunStore, run_id: str, agent: str, key: str, visit: int) -> None:
    """The end of a turn that its run's cancel stopped at its next call: written, so no step is left open
    for the run's followers (RunService.events) to wait for."""
    stopped = StepFinished(outcome=Outcome.CANCELLED, error="its run was cancelled during this step")
    with store.transaction(flush=False):
        store.upsert_step(
            run_id, key, agent=agent, visit=visit, status="cancelled", finished_at=time.time(), **stopped.to_data()
        )
        store.emit(run_id, f"{key}.finished", stopped, step_key=key, agent=agent)


def _step_started(agent: AgentSpec, visit: int) -> StepStarted:
    if agent.kind == "model":  # stored as before tool and template agents existed
        return StepStarted(visit=visit, model=agent.model, role=agent.role)
    return StepStarted(visit=visit, role=agent.role, agent_kind=agent.kind, tool=agent.tool)


class DurableTurnRunner:
    """Runs visits inline (one) or as child workflows (several, in parallel)."""

    def __init__(self, rt: Runtime, run_id: str, spec: TeamSpec, *, steps: bool = False) -> None:
        self.rt, self.run_id, self.spec = rt, run_id, spec
        self.steps = steps  # calls as DBOS steps (see _calls_as_steps), else in the call journal
        self.team = spec.name
        self.approved_tools: set[str] = set()
        self.seed: dict[str, Any] = {}  # visit key -> the output copied from an earlier run
        self.seeded_from = ""
        # Writes of the run's last step end and the routes it took, not made yet: they go into the
        # transaction of the next step's start (or the run's end). A step ends and the next starts with
        # nothing but routing between them, so a watcher sees no difference; a replay writes them again.
        self._pending: list[Callable[[], None]] = []
        self._routes: list[Callable[[], None]] = []  # likewise; never written once the run is cancelled
        self.fresh: Fresh | None = None  # set by team_run for a run that starts here from QUEUED

    async def run_turns(self, visits: Sequence[tuple[Visit, TurnInput]]) -> list[TurnResult]:
        # A run cancelled during the last step starts no other: no step row is left "running" for good.
        status = self.fresh.status if self.fresh is not None else self.rt.store.run_status(self.run_id)
        if status == RunStatus.CANCELLED:
            self.write_pending(routed=False)  # the last step's end, but no route: the run goes nowhere
            await _stop_cancelled(self.run_id, f"visit {visits[0][0].key}")
        if len(visits) != 1 or (self.seed and visits[0][0].key in self.seed):
            self.write_pending()  # a lone visit writes them with its start, below
        if self.seed and any(visit.key in self.seed for visit, _ in visits):
            copied = {v.key: self._copy(v) for v, _ in visits if v.key in self.seed}
            rest = [(v, t) for v, t in visits if v.key not in copied]
            ran = iter(await self.run_turns(rest) if rest else [])
            return [copied[v.key] if v.key in copied else next(ran) for v, _ in visits]
        if len(visits) == 1:
            visit, turn = visits[0]
            return [
                await _turn(
                    self.rt,
                    self.run_id,
                    self.team,
                    self.spec.agents[visit.agent],
                    visit.key,
                    turn,
                    self.approved_tools,
                    steps=self.steps,
                    before=self._write_pending_here,
                    defer=self._pending.append,
                    fresh=self.fresh,
                )
            ]
        # Children are started in a fixed order, so their ids replay identically.
        handles = [
            await DBOS.start_workflow_async(agent_turn, self.run_id, visit.key, visit.agent, turn)
            for visit, turn in visits
        ]
        return [TurnResult.from_dict(await h.get_result()) for h in handles]

    def _copy(self, visit: Visit) -> TurnResult:
        """A visit whose output an earlier run recorded: written as a finished step, its agent not run."""
        store, key, agent = self.rt.store, visit.key, self.spec.agents[visit.agent]
        result = TurnResult(Outcome.FINAL, self.seed[key])
        finished = StepFinished(outcome=Outcome.FINAL, output=result.output, copied_from=self.seeded_from)
        with store.transaction():
            store.upsert_step(self.run_id, key, agent=agent.name, visit=visit.index, status="running")
            store.emit(self.run_id, f"{key}.started", _step_started(agent, visit.index), step_key=key, agent=agent.name)
            store.upsert_step(
                self.run_id,
                key,
                agent=agent.name,
                visit=visit.index,
                status="finished",
                finished_at=time.time(),
                outcome=Outcome.FINAL.value,
                output=result.output,
            )
            store.emit(self.run_id, f"{key}.finished", finished, step_key=key, agent=agent.name)
        return result

    def preload(self, agents: Sequence[str]) -> None:
        for agent in agents:
            spec = self.spec.agents[agent]
            if spec.kind != "model":  # a tool or template agent calls no model (its `model` is the default)
                continue
            try:
                alias = self.rt.models.candidates(spec.model)[0]
            except EdgecrewError:
                continue
            # Only into free room: a preload never evicts a model to guess at the future.
            self.rt.pool.preload(alias, evict=False)

    def route_taken(self, visit: Visit, edge: Edge | None, targets: Sequence[str]) -> None:
        """Written with the next step's start or the run's end (see ``_pending``): routing is a pure
        function of the recorded calls, so a replay takes the same route again."""
        route = RouteTaken(from_=visit.agent, to=tuple(targets), edge=edge.label() if edge else None)
        run_id, store = self.run_id, self.rt.store
        self._routes.append(
            lambda: store.emit(run_id, f"{visit.key}.route", route, step_key=visit.key, agent=visit.agent)
        )

    def write_pending(self, *, routed: bool = True) -> None:
        """Write the last step's end and, unless ``routed`` is False (a run that stops cancelled), its routes."""
        if self._pending or self._routes:
            with self.rt.store.transaction(flush=False):
                self._write_pending_here(routed)

    def _write_pending_here(self, routed: bool = True) -> None:
        """Make the pending writes in the transaction open now (the step ends before their routes)."""
        writes = list(self._pending) + (list(self._routes) if routed else [])
        self._pending[:], self._routes[:] = [], []
        for write in writes:
            write()


class DurableIO:
    """TurnIO whose calls are recorded: in the call journal, or as DBOS steps (``steps``)."""

    def __init__(
        self,
        rt: Runtime,
        run_id: str,
        approved_tools: set[str] | None = None,
        *,
        steps: bool = False,
        fresh: Fresh | None = None,
    ) -> None:
        self.rt, self.run_id, self.steps, self.fresh = rt, run_id, steps, fresh
        # Tools a person approved in this run (the "once" policy); rebuilt identically on replay.
        self.approved_tools = approved_tools if approved_tools is not None else set()

    async def call_model(self, key: str, agent: AgentSpec, request: ModelRequest, timeout_s: float) -> CallResult:
        if _model_route is not None and self.steps:
            data = await _model_route(self.rt, self.run_id, key, agent, request, timeout_s)
        elif self.steps:
            data = await model_call_step(self.run_id, key, agent.name, agent.model, request, timeout_s)
        else:
            rt, run_id = self.rt, self.run_id
            data = await _journaled(
                rt,
                run_id,
                key,
                "model",
                lambda record: _model_call(rt, run_id, key, agent.name, agent.model, request, timeout_s, record),
                self.fresh,
            )
        response = ModelResponse.from_dict(data["response"]) if data.get("response") else None
        spent = Usage(**data["usage"]) if data.get("usage") else None
        return CallResult(response=response, error=data.get("error"), kind=data.get("kind", ""), usage=spent)

    async def call_tool(self, key: str, agent: AgentSpec, call: ToolCall, timeout_s: float, reason: str) -> Observation:
        """Check permissions, wait for approval when the tool is risky, then run it as a step.

        ``timeout_s`` is the agent's own time left when it asked, and bounds the tool however long
        the person took. The wait is timed here, live, not recorded: a replay after a restart finds
        the decision at once and reports a wait of about nothing, just as its replayed steps take
        about nothing on the turn's clock, so no recorded time is left out twice.
        """
        spec = self.rt.tools.find(call.name)
        refused = refusal(agent.name, agent.tools, spec, call.name)
        waited_s = 0.0
        if (
            refused is None
            and spec is not None
            and needs_approval(spec, agent.approval, self.approved_tools, call.arguments)
        ):
            asked = time.monotonic()
            try:
                decision = await await_decision(
                    self.rt, self.run_id, key, agent.name, spec.name, call.arguments, reason or "(no reason given)"
                )
            except DBOSWorkflowConflictIDError:
                # A cancel wakes the wait (RunService.cancel), and DBOS, which no longer runs the workflow
                # here, refuses the wait's result: the turn stops as any its run's cancel stops.
                if self.rt.store.run_status(self.run_id) != RunStatus.CANCELLED:
                    raise
                raise DBOSWorkflowCancelledError(f"Workflow {self.run_id} was cancelled while it waited") from None
            waited_s = time.monotonic() - asked
            if self.fresh is not None:  # a person's wait: the run may have been cancelled meanwhile
                self.fresh.status = self.rt.store.run_status(self.run_id)
            if not decision.approved:
                note = f": {decision.note}" if decision.note else ""
                denied = f"error: a person denied this call to '{spec.name}'{note}"
                return Observation(denied, is_error=True, waited_s=waited_s, denied=decision.note or "")
            self.approved_tools.add(spec.name)
            call = ToolCall(call.id, call.name, decision.arguments)
        args = (self.run_id, key, agent.name, list(agent.tools), call, timeout_s, agent.file_read, agent.file_write)
        if self.steps:
            data = await tool_call_step(*args)
        else:
            rt = self.rt
            data = await _journaled(
                rt, self.run_id, key, "tool", lambda record: _tool_call(rt, record, *args), self.fresh
            )
        return Observation(content=data["content"], is_error=data["is_error"], waited_s=waited_s)

    def tool_definitions(self, agent: AgentSpec) -> list[ToolDefinition]:
        # A tool missing here (a plugin gone since the run started) is refused when called.
        return [spec.definition() for name in agent.tools if (spec := self.rt.tools.find(name)) is not None]

    def canonical_tool(self, name: str) -> str:
        return self.rt.tools.canonical(name)

    def checkpoint(self, name: str) -> None:
        failpoint(name)

    def tools_selected(self, key: str, agent: AgentSpec, selected: ToolsSelected) -> None:
        # Retrieval is a pure function of the recorded messages: a replay writes the same row again.
        self.rt.store.emit(self.run_id, f"{key}.tools", selected, step_key=step_key_of(key), agent=agent.name)

    async def recall_memory(self, key: str, agent: AgentSpec, query: str) -> str | None:
        args = (self.run_id, key, agent.name, list(agent.memory.scopes), agent.memory.recall, query)
        if self.steps:
            block: str | None = await memory_recall_step(*args)
            return block
        rt = self.rt
        recalled: str | None = await _journaled(
            rt, self.run_id, key, "memory", lambda record: _memory_recall(rt, record, *args), self.fresh
        )
        return recalled


# -- calls -----------------------------------------------------------------------------------------
#
# A call's body makes the call and hands its output, with a function writing the call's event rows,
# to ``record``: in the call journal both go into one transaction; as a DBOS step the event rows are
# written and DBOS records the output when the step returns.

Record = Callable[[Any, Callable[[], None]], None]


def _events_only(output: Any, write_events: Callable[[], None]) -> None:
    """``record`` inside a DBOS step: the events here, the output by DBOS when the step returns."""
    write_events()


async def _journaled(
    rt: Runtime,
    run_id: str,
    key: str,
    kind: str,
    body: Callable[[Record], Awaitable[Any]],
    fresh: Fresh | None = None,
) -> Any:
    """The output of call ``key`` of the run: read from the call journal when it finished before (a
    resumed run), else made by ``body`` and recorded with its events in one transaction. A ``fresh``
    run has nothing in the journal: its last read status stands for the lookup."""
    if fresh is not None:
        status = fresh.status
    else:
        status, recorded = rt.store.recorded_call(run_id, key)
        if recorded is not None:
            return recorded[0]
    if status == RunStatus.CANCELLED and DBOS.workflow_id == run_id:
        # A cancelled run stops at its next call, as DBOS stops one at its next step. (A parallel
        # branch's child workflow finishes its turn: DBOS does not cancel children either.)
        await _stop_cancelled(run_id, f"call {key}")

    def record(output: Any, write_events: Callable[[], None]) -> None:
        with rt.store.transaction():
            write_events()
            failpoint("call_recorded")  # crash tests: killed here, neither the output nor its event is stored
            rt.store.record_call(run_id, key, kind, output)
            if fresh is not None:
                fresh.status = rt.store.run_status(run_id)

    return await body(record)


async def _stop_cancelled(run_id: str, before: str) -> NoReturn:
    """End a cancelled run's workflow here. The store says so first (RunService.cancel), then DBOS: a
    canceller that died between the two would leave this workflow waiting for an outcome DBOS never
    records, so it is cancelled here too."""
    from dbos._dbos import _get_dbos_instance

    await asyncio.to_thread(_get_dbos_instance()._sys_db.cancel_workflows, [run_id])
    raise DBOSWorkflowCancelledError(f"Workflow {run_id} is cancelled: it stops before {before}")


async def _memory_recall(
    rt: Runtime, record: Record, run_id: str, key: str, agent: str, scopes: list[str], k: int, query: str
) -> str | None:
    """Automatic recall for one visit, recorded so a resumed run gives the agent the same prompt."""
    from edgecrew.memory import SCOPES, MemoryService, ScopeRef, prompt_recall

    memory = MemoryService.of(rt)
    ids = await asyncio.to_thread(memory.scope_ids, run_id, agent)
    refs = [ScopeRef(scope, i) for scope in SCOPES if scope in scopes and (i := ids.get(scope))]
    recalled = await asyncio.to_thread(prompt_recall, memory, query, refs, k)
    record(
        recalled.block,
        lambda: rt.store.emit(run_id, key, recalled.event, step_key=key.rsplit(".", 1)[0], agent=agent),
    )
    return recalled.block


@DBOS.step(name="edgecrew.memory_recall")
async def memory_recall_step(run_id: str, key: str, agent: str, scopes: list[str], k: int, query: str) -> str | None:
    return await _memory_recall(current_runtime(), _events_only, run_id, key, agent, scopes, k, query)


@DBOS.step(name="edgecrew.model_call")
async def model_call_step(
    run_id: str, key: str, agent: str, ref: str, request: ModelRequest, timeout_s: float
) -> dict[str, Any]:
    """One model call as a DBOS step (a cluster's calls, and runs recorded before the call journal)."""
    return await _model_call(current_runtime(), run_id, key, agent, ref, request, timeout_s, _events_only)


async def _model_call(
    rt: Runtime,
    run_id: str,
    key: str,
    agent: str,
    ref: str,
    request: ModelRequest,
    timeout_s: float,
    record: Record,
) -> dict[str, Any]:
    """One model call: route ``ref`` to a model (falling back along its chain), record the result."""
    step_key = step_key_of(key)
    counter = iter(range(1000))

    def on_event(event: RoutingEvent) -> None:
        rt.store.emit(run_id, f"{key}.{event.kind.value}.{next(counter)}", event, step_key=step_key, agent=agent)

    live = LiveText.of(rt)  # the reply streams there as it is written: the run page shows it
    # A chat shows words, not a planner's JSON (a tool call streams no text: its answer does)
    on_text = live.begin(run_id, key, step_key, agent, ref, plain=request.output_schema is None)
    try:
        chat = tracing.chat_span(
            run_id, agent, ref, step_key, max_tokens=request.max_tokens, temperature=request.requested_temperature
        )
        with chat as span:
            try:
                routed = await call_with_fallback(rt.models, rt.pool, ref, request, timeout_s, on_event, on_text)
            except EdgecrewError as exc:  # an unknown alias or tag in a snapshotted spec
                routed = RoutedCall(error=str(exc), kind="error")
            except Exception as exc:  # a backend's own bug fails this call, recorded, instead of the process
                routed = RoutedCall(error=f"model '{ref}' failed: {type(exc).__name__}: {exc}", kind="error")
            event = _model_event(rt, ref, routed)
            model = _definition(rt, routed.alias)
            tracing.record_chat(span, event, model.backend if model else "", model.model if model else None)
        data: dict[str, Any] = (
            {"response": routed.response.to_dict(), "alias": routed.alias}
            if routed.response is not None
            else {"error": routed.error, "kind": routed.kind, "alias": routed.alias}
        )
        if routed.spent is not None:  # an unusable reply still cost its tokens
            data["usage"] = routed.spent.to_dict()["usage"]
        record(data, lambda: rt.store.emit(run_id, f"{key}.model", event, step_key=step_key, agent=agent))
    finally:
        live.end(run_id, key)  # after the recorded event, so a watcher never sees the text vanish first
    rt.publish_pool_state()
    return data


def _definition(rt: Runtime, alias: str | None) -> ModelDef | None:
    try:
        return rt.models.definition(alias) if alias else None
    except EdgecrewError:
        return None


def _model_event(rt: Runtime, ref: str, routed: RoutedCall) -> ModelCalled:
    """The ``model_called`` event of one call: what was asked, what answered, usage and timing."""
    alias = routed.alias or ref
    answered = routed.response or routed.spent  # a reply, usable or not, has usage and timing
    if answered is None:
        event = ModelCalled(alias=alias, requested=ref, error=routed.error)
    else:
        usage = answered.usage
        event = ModelCalled(
            alias=alias,
            requested=ref,
            backend=rt.models.definition(routed.alias).backend if routed.alias else "",
            model=answered.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            latency_s=round(answered.latency_s, 4),
            ttft_s=answered.time_to_first_token_s,
            tokens_per_s=round(answered.tokens_per_second, 2),
            tool_calls=tuple(c.name for c in answered.message.tool_calls),
            **previewed(answered.message.content, "content"),  # a long reply: a preview, marked cut
        )
        if routed.response is None:  # answered, but not usably: the error stands beside what it cost
            event = event.model_copy(update={"error": routed.error})
    if not routed.attempts:
        return event  # no fallbacks: the stored event has no "fallbacks" key
    return event.model_copy(update={"fallbacks": tuple(routed.attempts)})


@DBOS.step(name="edgecrew.tool_call")
async def tool_call_step(
    run_id: str,
    key: str,
    agent: str,
    allowed: list[str],
    call: ToolCall,
    timeout_s: float,
    file_read: tuple[str, ...] = ("**",),
    file_write: tuple[str, ...] = ("**",),
) -> dict[str, Any]:
    rt = current_runtime()
    return await _tool_call(rt, _events_only, run_id, key, agent, allowed, call, timeout_s, file_read, file_write)


async def _tool_call(
    rt: Runtime,
    record: Record,
    run_id: str,
    key: str,
    agent: str,
    allowed: list[str],
    call: ToolCall,
    timeout_s: float,
    file_read: tuple[str, ...],
    file_write: tuple[str, ...],
) -> dict[str, Any]:
    """One tool call under the agent's permissions and file policy; its result and a ``tool_called`` event."""
    started = time.perf_counter()
    canonical = rt.tools.canonical(call.name)
    step_key = step_key_of(key)
    ctx = ToolContext(
        run_id=run_id,
        agent=agent,
        workspace=rt.workspace(run_id),
        files=FilePolicy(file_read, file_write),
        pool=rt.pool,
        mounts=ProjectService.of(rt).mounts(run_id),  # a project's run sees its files at project/
    )
    with tracing.tool_span(run_id, agent, canonical, call.id, step_key) as span:
        content, is_error = await execute_tool(rt.tools, call, allowed, ctx, timeout_s)
        tracing.record_tool(span, is_error)
    event = ToolCalled.of_result(  # a long result: a preview that stays valid JSON (the whole one: `data`)
        content,
        tool=canonical,
        arguments=call.arguments,
        is_error=is_error,
        duration_s=round(time.perf_counter() - started, 4),
    )
    data = {"content": content, "is_error": is_error}
    record(data, lambda: rt.store.emit(run_id, f"{key}.tool", event, step_key=step_key, agent=agent))
    return data
