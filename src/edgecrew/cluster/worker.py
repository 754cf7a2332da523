"""`edgecrew worker`: one process of the cluster, running queued team runs and model calls.

A worker launches DBOS on the shared Postgres under its own executor id, listening to the team-run
queue and to one queue per model alias it serves; DBOS's queues hand out the work (within each
queue's per-worker concurrency), so edgecrew has no scheduler of its own. Every heartbeat the worker
renews its lease in the workers table and supervises the others: a worker whose lease ran out is
declared dead (by exactly one live worker, see :mod:`edgecrew.cluster.table`), which then asks DBOS
to recover that executor's workflows; recovery puts them back on their queues, so a live worker takes
each one and replays it from its recorded steps. A worker that finds itself declared dead (it was
frozen past its lease) exits at once: its workflows already run elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
from typing import Any

from dbos import DBOS

from edgecrew.cluster.calls import CallRouter, model_queue
from edgecrew.cluster.lease import WorkerInfo, disagreements
from edgecrew.cluster.table import WorkerTable
from edgecrew.domain.events import RunResumed
from edgecrew.engine import durable
from edgecrew.engine.executors import executor_id
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import NotFoundError, UserError
from edgecrew.specs.yamlsrc import read_yaml
from edgecrew.store.reach import OUT_OF_REACH, Reach, said
from edgecrew.version import __version__

log = logging.getLogger("edgecrew.cluster")
FORGET_AFTER_S = 7 * 86400  # a worker that ended this long ago leaves `cluster status`
PRUNE_EVERY = 300  # heartbeats between two looks for such workers (and at each death declared)

__all__ = ["ClusterWorker", "config_digest", "served_aliases"]


def served_aliases(rt: Runtime) -> tuple[str, ...]:
    """The aliases this worker advertises: ``worker_models`` (checked against the registry), else all."""
    # Once each: "fast,fast" advertised the alias twice, so status counted this worker twice among its live ones.
    wanted = list(dict.fromkeys(a.strip() for a in rt.settings.worker_models.split(",") if a.strip()))
    known = rt.models.aliases()
    unknown = [a for a in wanted if a not in known]
    if unknown:
        raise UserError(
            f"--models (EDGECREW_WORKER_MODELS) names unknown model(s) {', '.join(unknown)}: the project at "
            f"{rt.settings.project_dir} declares none of that name; known: {', '.join(sorted(known))}"
        )
    return tuple(wanted) if wanted else tuple(sorted(known))


class ClusterWorker:
    """One worker: start it, let it run until stopped."""

    def __init__(self, rt: Runtime, *, exit_when_declared_dead: bool = True) -> None:
        if not rt.settings.cluster_enabled:
            # What is set and what is missing: "set EDGECREW_CLUSTER=1" to someone who had set it misled.
            why = rt.settings.cluster_off_because
            raise UserError(f"edgecrew worker needs the cluster on a shared Postgres: {why}")
        beat, lease = rt.settings.cluster_heartbeat_s, rt.settings.cluster_lease_s
        if lease < 2 * beat:  # live workers would declare each other dead between two heartbeats
            raise UserError(
                f"EDGECREW_CLUSTER_LEASE_S={lease:g} is too short for EDGECREW_CLUSTER_HEARTBEAT_S={beat:g}: a worker "
                "heartbeats that often, so live workers would declare each other dead; make the lease at least "
                f"twice the heartbeat ({2 * beat:g}s or more; the defaults are 10 and 2)"
            )
        self.rt = rt
        self.id = executor_id()
        self.table = WorkerTable(rt.store.engine)
        self.aliases = served_aliases(rt)
        self.exit_when_declared_dead = exit_when_declared_dead
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0
        self._last_beat: float | None = None  # when this worker last renewed its lease
        self._patient_until = 0.0  # no one is declared dead before then (see tick)
        # Whether the heartbeat reaches the database: its loss and its return are said once each.
        self.reach = Reach(
            log,
            f"worker {self.id}",
            beat,
            "it cannot renew its lease nor take work until it is back",
        )

    def info(self, now: float) -> WorkerInfo:
        tags = sorted({tag for a in self.aliases for tag in self._tags(a)})
        return WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            aliases=self.aliases,
            tags=tuple(tags),
            heartbeat_at=now,
            started_at=now,
            memory_bytes=self.rt.settings.model_memory_bytes,
            concurrency=self.rt.settings.worker_runs,
            version=__version__,
            config=config_digest(self.rt),
        )

    def _tags(self, alias: str) -> tuple[str, ...]:
        try:
            return self.rt.models.definition(alias).tags
        except NotFoundError:
            return ()

    async def start(self) -> None:
        settings = self.rt.settings
        durable.route_model_calls(CallRouter(self.rt, self.aliases))
        queues = [durable.RUNS_QUEUE, *(model_queue(a) for a in self.aliases)]
        durable.launch(self.rt, queues=queues)
        poll = settings.cluster_queue_poll_s
        await DBOS.register_queue_async(
            durable.RUNS_QUEUE, worker_concurrency=settings.worker_runs, polling_interval_sec=poll
        )
        for alias in self.aliases:
            await DBOS.register_queue_async(
                model_queue(alias), worker_concurrency=settings.worker_calls, polling_interval_sec=poll
            )
        now = time.time()
        await asyncio.to_thread(self.table.register, self.info(now))
        log.info("worker %s serving %s", self.id, ", ".join(self.aliases))
        for problem in disagreements(await asyncio.to_thread(self.table.all), now, settings.cluster_lease_s):
            log.warning("%s", problem)
        self._task = asyncio.create_task(self._beat(), name="edgecrew-cluster-heartbeat")

    async def _beat(self) -> None:
        while True:
            now = time.time()
            try:
                await self.tick(now)
            except OUT_OF_REACH as exc:  # said once, not once a heartbeat
                self.reach.lost(now, exc)
            except Exception:  # a hiccup must not stop the heartbeat for good
                log.exception("cluster heartbeat failed")
            else:
                self.reach.found(now)
            await asyncio.sleep(self.rt.settings.cluster_heartbeat_s)

    async def tick(self, now: float) -> list[str]:
        """Renew this worker's lease, declare the workers whose lease ran out dead and recover their
        workflows here (DBOS re-enqueues them for any live worker); returns the workers declared."""
        running = await asyncio.to_thread(self.table.pending, self.id)
        state = await asyncio.to_thread(self.table.heartbeat, self.id, now, running)
        if state is None:  # its row was removed (an operator forgot it): advertise again
            await asyncio.to_thread(self.table.register, self.info(now))
        elif state == "dead" and self.exit_when_declared_dead:
            log.error("worker %s was declared dead by another worker (its lease ran out); exiting", self.id)
            os._exit(75)  # its workflows run elsewhere now: going on would run their calls twice
        lease = self.rt.settings.cluster_lease_s
        if self._last_beat is not None and now - self._last_beat > lease:
            # This worker could not renew its own lease for longer than a lease (the database was out of
            # reach, say): the others most likely could not either, and the first worker back declared
            # every other one dead, which then exited. They get a lease to heartbeat again first.
            self._patient_until = now + lease
            log.warning(
                "worker %s could not renew its lease for %.0fs (was the database out of reach?); it declares "
                "no worker dead for the next %.0fs, so the others can renew theirs",
                self.id,
                now - self._last_beat,
                lease,
            )
        self._last_beat = now
        declared = (
            [] if now < self._patient_until else await asyncio.to_thread(self.table.declare_dead, now, lease, self.id)
        )
        if declared or self._ticks % PRUNE_EVERY == 0:
            await asyncio.to_thread(self.table.prune, now - FORGET_AFTER_S)
        self._ticks += 1
        states = {w.id: w.state for w in await asyncio.to_thread(self.table.all)} if declared else {}
        for dead in declared:
            handles = await asyncio.to_thread(_recover, dead)
            await asyncio.to_thread(self.table.recovered, dead, len(handles))
            for handle in handles:
                self._resumed(handle.workflow_id, dead)
            why = (
                "stopped cleanly"
                if states.get(dead) == "stopped"
                else f"is dead (no heartbeat for {self.rt.settings.cluster_lease_s:.0f}s)"
            )
            log.warning("worker %s %s: %d workflow(s) recovered", dead, why, len(handles))
        return declared

    def _resumed(self, workflow_id: str, dead: str) -> None:
        try:
            self.rt.store.get_run(workflow_id)
        except NotFoundError:
            return  # a child workflow (a branch, a remote call): its run's own workflow says it
        self.rt.store.emit(workflow_id, f"resumed.{dead}", RunResumed(lost_worker=dead))

    async def stop(self) -> None:
        """Stop taking work, then record the stop (``stopped``): status shows it at once, also when this was
        the last worker. Its unfinished workflows stay PENDING and a live worker recovers them (at once, or
        once one starts)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            durable.route_model_calls(None)
            durable.shutdown()  # first: no workflow still runs here once a live worker may recover it
        finally:
            try:
                # In the loop's thread: DBOS's shutdown also shut the executor asyncio.to_thread runs on.
                left = self.table.stopped(self.id, time.time())
            except OUT_OF_REACH as exc:
                log.warning(
                    "worker %s could not record its stop (%s): live workers declare it dead once its lease runs "
                    "out and recover its workflows",
                    self.id,
                    said(exc),
                )
            else:
                if left:
                    log.warning(
                        "worker %s stopped leaving %d unfinished workflow(s): a live worker recovers them (at "
                        "once, or when one starts)",
                        self.id,
                        left,
                    )


def config_digest(rt: Runtime) -> str:
    """A short digest of the project's edgecrew.yaml as parsed (comments and layout aside): workers whose
    digests differ declare different models, tools or plugins under the same names. "" without one."""
    config = rt.project.config_file
    if config is None:
        return ""
    plain = json.dumps(read_yaml(config), sort_keys=True, default=str)
    return hashlib.sha256(plain.encode()).hexdigest()[:12]


def _recover(dead: str) -> list[Any]:
    # DBOS's own recovery for another executor (what its admin endpoint /dbos-workflow-recovery calls):
    # each PENDING workflow of that executor goes back on its queue, ENQUEUED, for a live worker.
    handles: list[Any] = DBOS._recover_pending_workflows([dead])
    return handles
