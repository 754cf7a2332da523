"""Jobs under policies: a command (plain child process or sandboxed) or a team run, with declared needs,
a priority, an optional deadline and tags, started when every policy covering it allows it.

The one design decision: admission is one DBOS workflow per job on this project's job queue. A step
asks the policies and the machine (recording why the job waits), a durable sleep waits (to a closed
window's opening, or ``jobs_check_s`` while a threshold says no), the same step claims the job when
all say yes, and a launch step records which process starts it *before* the process exists. So a
restart loses no job (the workflow resumes where it was, its sleeps and checks replayed) and starts
none twice: a job whose launch a dead process recorded is never launched again; it ends
``interrupted`` (after waiting for its command to end when the command outlived edgecrew). The
checks and sleeps run in rounds (child workflows of 200 checks), so a job that waited a day replays
one recorded result per round, not each check. A team job records its run under the idempotency key
``job:<id>`` and starts the run's workflow as its child, so a replay finds the same run.

Policies keep versions in the store: edgecrew.yaml's content is recorded when it changes, an applied
change (:meth:`JobService.apply_policy`) is a newer version that stays in force until the YAML changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import sqlalchemy as sa
from dbos import DBOS
from pydantic import ValidationError

from edgecrew.domain.runs import RunStatus
from edgecrew.domain.sizes import human_size, parse_size
from edgecrew.engine import durable
from edgecrew.engine.executors import executor_alive, executor_id
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import TASK_PATTERN, RunService, TeamName
from edgecrew.errors import ConflictError, EdgecrewError, NotFoundError, UserError, validation_problem
from edgecrew.specs.jobs import JobFacts, MachineFacts, PolicyDoc, Refusal, covering, evaluate, policy_digest
from edgecrew.specs.routines import ROUTINE_NAME
from edgecrew.store.jobs import JOB_STATES, JobEvent, JobRecord, JobStore, PolicyVersion

if TYPE_CHECKING:
    from edgecrew.ops import Ops

__all__ = [
    "WORKFLOW",
    "EffectivePolicy",
    "JobNeeds",
    "JobService",
    "awaiting_approval",
    "job_workflow",
    "machine_facts",
]

log = logging.getLogger("edgecrew.jobs")
# Admission workflows. Version 2 waits with DBOS.recv (woken at once by a policy change or a job's
# end, see ``wake_waiting``) where version 1 slept; version 1 stays for admissions recorded with it
# (a replay must find the steps it recorded), new jobs get version 2.
WORKFLOW = "edgecrew.job.2"
WAIT_WORKFLOW = "edgecrew.job_wait.2"
WORKFLOW_V1, WAIT_WORKFLOW_V1 = "edgecrew.job", "edgecrew.job_wait"
WAKE_TOPIC = "edgecrew.job.wake"
# Resumed in this order after a dead process: a waiting round is a child, its parent awaits it.
_ADMISSION_WORKFLOWS = (WAIT_WORKFLOW_V1, WORKFLOW_V1, WAIT_WORKFLOW, WORKFLOW)
CHECKS_PER_ROUND = 200
TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LAST_DEADLINE = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last moment a datetime shows
# A sandboxed command's memory need is its address-space limit: less than an interpreter maps to start
# ended the job "stopped (signal SIGSEGV)", an incident (tasks' memory_mb has the same floor).
SANDBOX_LEAST_MEMORY = 32 * 2**20
MAX_DURATION_S = 365 * 86400.0  # POST /jobs's bound; a sandboxed job's CPU limit is twice it (a C long)
MAX_SLEEP_S = 60.0  # a waiting job is re-checked at least this often (besides being woken)
WATCH_S = 0.2  # how often a running command is sampled and its cancel flag read
KILL_GRACE_S = 5.0
WAITING = ("queued", "waiting")
RUNNING = ("running", "cancelling")


@dataclass(frozen=True)
class JobNeeds:
    """What a job declares it needs (0 / None: not declared, not checked)."""

    cpu_cores: float = 0.0
    memory_bytes: int = 0
    gpu_memory_bytes: int = 0
    duration_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu_cores": self.cpu_cores,
            "memory_bytes": self.memory_bytes,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "duration_s": self.duration_s,
        }

    @classmethod
    def of(cls, values: dict[str, Any]) -> JobNeeds:
        return cls(
            float(values.get("cpu_cores") or 0),
            int(values.get("memory_bytes") or 0),
            int(values.get("gpu_memory_bytes") or 0),
            values.get("duration_s"),
        )


@dataclass(frozen=True)
class EffectivePolicy:
    """A policy in force: its newest version."""

    name: str
    doc: PolicyDoc
    version: PolicyVersion


def machine_facts() -> MachineFacts:
    """This machine now: 1-minute load, CPUs, memory, the hottest temperature sensor (None: no sensor)."""
    memory = psutil.virtual_memory()
    hottest = None
    with contextlib.suppress(Exception):  # no sensors API on this platform
        readings = [s.current for group in psutil.sensors_temperatures().values() for s in group if s.current]
        hottest = max(readings) if readings else None
    return MachineFacts(
        os.getloadavg()[0], psutil.cpu_count() or 1, memory.available, memory.percent, hottest, memory.total
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class JobService:
    """Submit, list, cancel and read jobs; read and apply policies; run admission (in a server)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.store = JobStore(rt.store)
        self.facts: Callable[[], MachineFacts] = machine_facts  # tests feed their own
        self.room: Callable[[JobNeeds], str | None] = self._pool_room
        self._lock = threading.Lock()  # one admission decision at a time in this process
        self._client: Any = None
        self._synced = False
        self._running: dict[str, int] = {}  # job id -> pid of a command this process watches

    # -- names ------------------------------------------------------------------------------------------

    @property
    def _ops(self) -> Ops:
        from edgecrew.ops import Ops

        return Ops.of(self.rt)

    @property
    def queue(self) -> str:
        return self._ops.queue("jobs")

    def workflow_id(self, job_id: str) -> str:
        return f"job.{self._ops.project_key}.{job_id}"

    def job_dir(self, job_id: str) -> Path:
        return self.rt.settings.home / "jobs" / job_id

    # -- server life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the job queue, record changed policies, resume admissions a dead process left and
        enqueue jobs whose submitter died before enqueueing them (the durable engine must be launched)."""
        if not durable.launched(self.rt):
            return
        await DBOS.register_queue_async(self.queue, polling_interval_sec=self.rt.settings.jobs_queue_poll_s)
        changed = await asyncio.to_thread(self.sync_policies, wake=False)  # woken below, once resumed
        prefix = self.workflow_id("")
        resumed = []
        for name in _ADMISSION_WORKFLOWS:
            resumed += await durable.resume_dead(self.rt, name, lambda wf: wf.workflow_id.startswith(prefix))
        if resumed:
            log.info("resumed %d job admission workflow(s) left by a dead process", len(resumed))
        for job in await asyncio.to_thread(self.store.list_jobs, states=["queued"], limit=10_000):
            if job.workflow_id and await durable.workflow_status(job.workflow_id) is None:
                await asyncio.to_thread(self._enqueue, job)
        if changed:  # edgecrew.yaml's policies changed while no server ran: the resumed waits check now
            await asyncio.to_thread(self.wake_waiting)

    async def stop(self) -> None:
        """Stop the commands this process runs: they end ``interrupted`` (never started again)."""
        for job_id, pid in list(self._running.items()):
            why = "the edgecrew process running it stopped; it was stopped too and is not started again"
            self.store.transition(job_id, RUNNING, "interrupted", {"pid": pid}, state="interrupted", reason=why,
                                  finished_at=time.time())  # fmt: skip
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        while any(_alive(p, None) for p in self._running.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for pid in self._running.values():
            _signal_group(pid, signal.SIGKILL)
        self._running.clear()
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.destroy()
            self._client = None

    # -- submit, cancel, read ---------------------------------------------------------------------------

    async def submit(
        self,
        *,
        argv: Sequence[str] | None = None,
        team: str | None = None,
        task: str | None = None,
        name: str | None = None,
        sandbox: bool = False,
        needs: JobNeeds | None = None,
        priority: int = 50,
        deadline: float | None = None,
        tags: Sequence[str] = (),
        submitted_by: str | None = None,
    ) -> JobRecord:
        """Record a job and enqueue its admission; it starts when its policies and the machine allow."""
        values = self._validated(argv, team, task, name, sandbox, needs or JobNeeds(), priority, deadline, tags)
        job_id = "j" + uuid.uuid4().hex[:15]
        job = await asyncio.to_thread(
            self.store.create, job_id, workflow_id=self.workflow_id(job_id), submitted_by=submitted_by, **values
        )
        await asyncio.to_thread(self._enqueue, job)
        return job

    def _validated(
        self,
        argv: Sequence[str] | None,
        team: str | None,
        task: str | None,
        name: str | None,
        sandbox: bool,
        needs: JobNeeds,
        priority: int,
        deadline: float | None,
        tags: Sequence[str],
    ) -> dict[str, Any]:
        if (argv is None) == (team is None):
            raise UserError(
                "a job is a command or a team run: give argv (`edgecrew jobs submit -- CMD ARGS`) "
                'or a team and a task (`--team T --task "..."`), not both and not neither'
            )
        if argv is not None:
            argv = [str(a) for a in argv]
            if not argv or not argv[0].strip():
                raise UserError(
                    "command: it is empty; give it after --, e.g. `edgecrew jobs submit -- python train.py`"
                )
            if any("\x00" in a for a in argv):
                raise UserError("command: an argument holds a NUL byte")
            if task is not None:
                raise UserError("task: only a team job has a task (a command job's argv says what it does)")
            if not sandbox and not self.rt.settings.jobs_plain_commands:
                raise UserError(
                    "sandbox: plain commands are off here (EDGECREW_JOBS_PLAIN_COMMANDS=false); "
                    "submit it with the sandbox (--sandbox, or sandbox: true)"
                )
        else:
            self.rt.project.named_source(str(team))  # NotFoundError names the known teams
            if task is None or re.search(TASK_PATTERN, task) is None:
                raise UserError('task: a team job needs a task saying what the team should do, e.g. --task "..."')
            if sandbox:
                raise UserError("sandbox: only command jobs run in the sandbox (a team run runs in the engine)")
        if not 0 <= priority <= 100:
            raise UserError(f"priority: {priority} is out of range; use 0 (lowest) to 100 (highest), default 50")
        if deadline is not None and not deadline < LAST_DEADLINE:  # NaN too; datetimes stop at year 9999
            raise UserError(f"deadline: {deadline!r} is not a time before the year 9999 (epoch seconds)")
        if deadline is not None and deadline <= time.time():
            raise UserError(f"deadline: {_iso(deadline)} has already passed; give a time in the future")
        for tag in tags:
            if not TAG.match(tag):
                raise UserError(f"tag '{tag[:80]}': use lower-case letters, digits, '.', '_' or '-' (at most 64)")
        if min(needs.cpu_cores, needs.memory_bytes, needs.gpu_memory_bytes) < 0:
            raise UserError("needs: cpu cores, memory and GPU memory must not be negative")
        memory, cpus = psutil.virtual_memory().total, psutil.cpu_count() or 1
        if needs.memory_bytes > memory:  # a job that can never fit would wait for ever
            raise UserError(
                f"needs: {human_size(needs.memory_bytes)} of memory is more than this machine has"
                f" ({human_size(memory)}); the job could never start here"
            )
        if needs.cpu_cores > cpus:
            raise UserError(
                f"needs: {needs.cpu_cores:g} CPU cores is more than this machine has ({cpus});"
                " the job could never start here"
            )
        if needs.gpu_memory_bytes and not self.rt.pool.gpu_budget_bytes:
            raise UserError(
                f"needs: {human_size(needs.gpu_memory_bytes)} of GPU memory, but this machine has no GPU memory"
                " budget (no GPU found through NVML); the job could never start here"
            )
        if sandbox and 0 < needs.memory_bytes < SANDBOX_LEAST_MEMORY:  # the job's memory is its sandbox's limit
            raise UserError(
                f"needs: {human_size(needs.memory_bytes)} of memory is the sandboxed command's whole address"
                f" space, too little to start a process; give at least {human_size(SANDBOX_LEAST_MEMORY)}"
            )
        if needs.duration_s is not None and needs.duration_s <= 0:
            raise UserError("needs: the expected duration must be positive")
        if needs.duration_s is not None and not needs.duration_s <= MAX_DURATION_S:  # NaN too
            raise UserError(f"needs: an expected duration of {needs.duration_s:g} s is more than a year")
        if name is None:  # from the team or the command, made printable (a command may hold anything)
            default = str(team) if argv is None else Path(argv[0]).name
            name = re.sub(r"[\x00-\x1f\x7f]", "", default).strip()[:200] or "job"
        name = name.strip()
        if not name or len(name) > 200 or re.search(r"[\x00-\x1f\x7f]", name):
            raise UserError("name: give 1 to 200 printable characters")
        if deadline is not None:
            self._deadline_reachable(deadline, JobFacts(name, tuple(tags), priority))
        return {
            "name": name,
            "kind": "command" if argv is not None else "team",
            "argv": list(argv) if argv is not None else None,
            "sandbox": int(sandbox),
            "team": team,
            "task": task,
            "needs": needs.to_json(),
            "priority": priority,
            "deadline": deadline,
            "tags": sorted(set(tags)),
        }

    def _deadline_reachable(self, deadline: float, job: JobFacts) -> None:
        """Refuse a deadline that passes before a covering policy's time window next opens: the job could
        never start, and would only fail at its deadline."""
        policies = {name: p.doc for name, p in self.effective_policies().items()}
        now = datetime.now(UTC)
        for name in covering(policies, job):
            opens = policies[name].next_opening(now)
            if opens is not None and opens.timestamp() > deadline:
                doc = policies[name]
                raise UserError(
                    f"deadline: {_iso(deadline)} is before policy '{name}' lets the job start (its next time "
                    f"window opens {opens.astimezone(doc.zone).strftime('%a %Y-%m-%d %H:%M %Z')}): the job could "
                    "never start; give a later deadline, or none, or change the policy first"
                )

    def _enqueue(self, job: JobRecord) -> None:
        options: dict[str, Any] = {
            "queue_name": self.queue,
            "workflow_name": WORKFLOW,
            "workflow_id": job.workflow_id,
            "priority": 101 - job.priority,  # DBOS dequeues lower numbers first
        }
        self._dbos().enqueue(options, job.id)

    def _dbos(self) -> Any:
        """A DBOS client: submitting never makes this process run jobs (only a server's queue does)."""
        if self._client is None:
            from dbos import DBOSClient

            client = DBOSClient(system_database_url=self.rt.settings.system_database_url, application_name="edgecrew")
            if not durable.launched(self.rt):
                # A client never creates DBOS's tables; a job submitted before any server ran needs them.
                client._sys_db.run_migrations()
            self._client = client
        return self._client

    def cancel(self, job_id: str, by: str | None = None) -> JobRecord:
        """Cancel a job: a waiting one never starts; a running one is stopped (SIGTERM, then SIGKILL)."""
        job = self.store.find(job_id)
        job_id = job.id
        who = by or "user"
        if job.finished:
            raise ConflictError(f"job {job.id} already {job.state}; nothing to cancel")
        now = time.time()
        why = f"cancelled by {who} before it started"
        if self.store.transition(
            job_id, WAITING, "cancelled", {"by": who}, state="cancelled", reason=why, finished_at=now, waiting_on=None
        ):
            return self.store.get(job_id)
        self.store.transition(job_id, ("running",), "cancelling", {"by": who}, state="cancelling",
                              reason=f"cancel requested by {who}")  # fmt: skip
        job = self.store.get(job_id)
        if job.run_id:
            with contextlib.suppress(ConflictError, NotFoundError):
                RunService(self.rt).cancel(job.run_id)
        if job.state == "cancelling" and job.executor and not executor_alive(job.executor):
            pid, started = _command_of(job)
            if pid is not None and _alive(pid, started):
                _signal_group(pid, signal.SIGKILL)  # nobody watches it any more
            self.store.transition(job_id, RUNNING, "cancelled", {"by": who}, state="cancelled",
                                  reason=f"cancelled by {who}", finished_at=now)  # fmt: skip
        return self.store.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        """A job by its id or an id prefix (the CLI, API and pages name jobs through this)."""
        return self.store.find(job_id)

    def list_jobs(self, *, state: str | None = None, limit: int = 50, offset: int = 0) -> list[JobRecord]:
        """Jobs, newest first, optionally in one state."""
        return self.store.list_jobs(states=_states(state), limit=limit, offset=offset)

    def count(self, *, state: str | None = None) -> int:
        return self.store.count(states=_states(state))

    def events(self, job_id: str) -> list[JobEvent]:
        return self.store.events(self.store.find(job_id).id)

    def run_statuses(self, jobs: Sequence[JobRecord]) -> dict[str, RunStatus]:
        """The status of each unfinished team job's run, by job id. A job keeps no state of its own for
        what its run does: a run waiting for a person's approval leaves its job ``running``, and the
        entry points show the wait from here (:func:`awaiting_approval`)."""
        statuses = {}
        for job in jobs:
            if job.run_id and not job.finished:
                with contextlib.suppress(NotFoundError):
                    statuses[job.id] = self.rt.store.run_status(job.run_id)
        return statuses

    def history(self, *, name: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Finished jobs, newest first, with their measured usage (``name``: a glob on the job's name)."""
        import fnmatch

        done = [j for j in self.store.list_jobs(limit=max(limit * 4, 200)) if j.finished]
        if name:
            done = [j for j in done if fnmatch.fnmatchcase(j.name, name)]
        return done[:limit]

    # -- policies ---------------------------------------------------------------------------------------

    def sync_policies(self, *, wake: bool = True) -> list[PolicyVersion]:
        """Record each policy of edgecrew.yaml whose content differs from its last YAML version, and the
        removal of one gone from the file; returns the versions recorded. A changed or removed policy
        wakes the waiting jobs (``wake``)."""
        declared = self.rt.project.policies
        last_yaml = {v.policy: v for v in self.store.policy_versions() if v.source == "yaml"}
        added: list[PolicyVersion] = []
        for name, doc in sorted(declared.items()):
            digest = policy_digest(doc)
            earlier = last_yaml.get(name)
            if earlier is None or earlier.digest != digest:
                why = "declared in edgecrew.yaml" if earlier is None else "changed in edgecrew.yaml"
                added += self._add_version(name, doc.model_dump(mode="json"), digest, "yaml", why)
        for name, earlier in sorted(last_yaml.items()):
            if name not in declared and earlier.doc is not None:
                added += self._add_version(name, None, None, "yaml", "removed from edgecrew.yaml")
        self._synced = True
        if wake and any(v.version > 1 for v in added):  # a changed or removed policy may let jobs in now
            self.wake_waiting()
        return added

    def _add_version(
        self, name: str, doc: dict[str, Any] | None, digest: str | None, source: str, reason: str
    ) -> list[PolicyVersion]:
        try:
            return [self.store.add_policy_version(name, doc, digest, source, reason)]
        except sa.exc.IntegrityError:  # another process recorded this version a moment ago
            return []

    def apply_policy(self, name: str, doc: dict[str, Any], reason: str, source: str) -> PolicyVersion:
        """Record ``doc`` as the newest version of policy ``name`` (in force until edgecrew.yaml's own
        content for it changes); ``source`` says who applied it (e.g. "optimizer", "ui:alice")."""
        if not re.match(ROUTINE_NAME, name):
            raise UserError(f"policy name '{name[:80]}': use lower-case letters, digits, '.', '_' or '-'")
        if not reason.strip():
            raise UserError(f"policy '{name}': say why it changes (reason is empty)")
        if not source.strip() or source == "yaml" or len(source) > 200:
            raise UserError(f"policy '{name}': source names who applies it (not 'yaml', at most 200 characters)")
        try:
            parsed = PolicyDoc.model_validate(doc)
        except ValidationError as exc:
            problems = "; ".join(validation_problem(e, "policy") for e in exc.errors())
            raise UserError(f"policy '{name}' is not valid: {problems}") from None
        if not self._synced:
            self.sync_policies()
        while True:
            try:
                version = self.store.add_policy_version(name, parsed.model_dump(mode="json"),
                                                        policy_digest(parsed), source, reason.strip())  # fmt: skip
                break
            except sa.exc.IntegrityError:
                continue  # a concurrent version took the number: take the next
        self.wake_waiting()  # the change may open a window: waiting jobs check again now
        return version

    def wake_waiting(self) -> int:
        """Make every job of this project that waits check its policies again now, instead of at its
        next timed check (up to ``MAX_SLEEP_S``): after a policy change and when a job ends (a place
        under ``max_concurrent``). From any process: a message to each waiting round's workflow.
        Returns how many were woken; never fails its caller (the timed check still comes)."""
        try:
            client = self._dbos()
            waiting = client.list_workflows(
                status="PENDING", name=WAIT_WORKFLOW, workflow_id_prefix=self.workflow_id(""),
                load_input=False, load_output=False,
            )  # fmt: skip
            for wf in waiting:
                client.send(wf.workflow_id, "wake", topic=WAKE_TOPIC)
            return len(waiting)
        except Exception:  # e.g. the durable engine's tables not made yet: nobody waits
            log.warning("could not wake the waiting jobs; they check again within %gs", MAX_SLEEP_S, exc_info=True)
            return 0

    def policy_versions(self, name: str) -> list[PolicyVersion]:
        if not self._synced:
            self.sync_policies()
        found = self.store.policy_versions(name)
        if not found:
            known = ", ".join(sorted({v.policy for v in self.store.policy_versions()})) or "none"
            raise NotFoundError(f"no policy '{name[:80]}' (known: {known}); policies are declared in edgecrew.yaml")
        return found

    def effective_policies(self) -> dict[str, EffectivePolicy]:
        """The policies in force: each one's newest version (a removed one is not in force)."""
        if not self._synced:
            self.sync_policies()
        latest: dict[str, PolicyVersion] = {}
        for version in self.store.policy_versions():
            latest[version.policy] = version
        found = {}
        for name, version in latest.items():
            if version.doc is None:
                continue
            try:
                found[name] = EffectivePolicy(name, PolicyDoc.model_validate(version.doc), version)
            except ValidationError as exc:  # recorded by an older edgecrew whose rules differed
                log.error("policy '%s' version %d is not valid any more and is ignored: %s", name, version.version, exc)
        return found

    # -- admission --------------------------------------------------------------------------------------

    def refusals(self, job: JobRecord, now: float | None = None) -> list[Refusal]:
        """Why ``job`` may not start now (empty: it may): its policies, its priority among the jobs
        waiting for the same concurrency-limited policy, and the machine's free room."""
        now = time.time() if now is None else now
        policies = {name: p.doc for name, p in self.effective_policies().items()}
        facts = _facts_of(job)
        running_jobs = self.store.list_jobs(states=list(RUNNING), limit=100_000)
        running = {name: 0 for name in policies}
        for other in running_jobs:
            for name in covering(policies, _facts_of(other)):
                running[name] += 1
        found = evaluate(policies, facts, self.facts(), datetime.fromtimestamp(now, UTC), running)
        found += self._priority_refusals(job, policies, running, {r.policy for r in found})
        reason = self.room(JobNeeds.of(job.needs))
        if reason is not None:
            found.append(Refusal("machine", f"the machine has no room: {reason}", kind="room"))
        return found

    def _priority_refusals(
        self, job: JobRecord, policies: dict[str, PolicyDoc], running: dict[str, int], refusing: set[str]
    ) -> list[Refusal]:
        """A limited policy's free slots go to the waiting jobs it covers by priority (then age); a
        waiting job held back by something else than slots does not hold a slot."""
        limited = [n for n in covering(policies, _facts_of(job)) if policies[n].max_concurrent and n not in refusing]
        if not limited:
            return []
        rank = (-job.priority, job.created_at, job.id)
        waiting = [
            w
            for w in self.store.list_jobs(states=list(WAITING), limit=100_000)
            if (-w.priority, w.created_at, w.id) < rank
            and all(r.get("kind") in ("concurrency", "priority") for r in (w.waiting_on or []))
        ]
        out = []
        for name in limited:
            free = int(policies[name].max_concurrent or 0) - running[name]
            ahead = [w for w in waiting if policies[name].covers_job(_facts_of(w))]
            if len(ahead) >= free:
                out.append(
                    Refusal(name, f"{len(ahead)} job(s) ahead of it wait for its {free} free slot(s)", kind="priority")
                )
        return out

    def _pool_room(self, needs: JobNeeds) -> str | None:
        if not (needs.cpu_cores or needs.memory_bytes or needs.gpu_memory_bytes):
            return None
        verdict = self.rt.pool.can_run(needs.memory_bytes, needs.cpu_cores, needs.gpu_memory_bytes)
        return None if verdict.fits else verdict.reason

    def check(self, job_id: str) -> dict[str, Any]:
        """One admission decision: claim the job (``start``), record why it waits (``wait``, with how
        long to sleep), or ``end`` (it was cancelled, or it waited past its deadline)."""
        with self._lock:
            job = self.store.get(job_id)
            if job.state not in WAITING:
                return {"action": "start" if job.state == "running" else "end", "kind": job.kind}
            now = time.time()
            if job.deadline is not None and now >= job.deadline:
                said = "; ".join(f"{w['policy']}: {w['reason']}" for w in job.waiting_on or []) or "not checked yet"
                why = f"it waited past its deadline {_iso(job.deadline)} without being allowed to start ({said})"
                self.store.transition(job_id, WAITING, "failed", {"deadline": job.deadline}, state="failed",
                                      reason=why, finished_at=now, waiting_on=None)  # fmt: skip
                return {"action": "end", "kind": job.kind}
            refusals = self.refusals(job, now)
            if not refusals:
                claimed = self.store.transition(job_id, WAITING, "allowed", None, state="running", allowed_at=now,
                                                waiting_on=None, reason=None)  # fmt: skip
                return {"action": "start" if claimed else "end", "kind": job.kind}
            waiting_on = [r.to_dict() for r in refusals]
            before = {(w["policy"], w.get("kind")) for w in job.waiting_on or []}
            changed = job.state == "queued" or before != {(r.policy, r.kind) for r in refusals}
            summary = "; ".join(f"{r.policy}: {r.reason}" for r in refusals)
            self.store.transition(job_id, WAITING, "waiting" if changed else None, waiting_on if changed else None,
                                  state="waiting", waiting_on=waiting_on, reason=summary)  # fmt: skip
            return {"action": "wait", "sleep_s": self._sleep_for(refusals, job, now), "kind": job.kind}

    def _sleep_for(self, refusals: list[Refusal], job: JobRecord, now: float) -> float:
        if all(r.retry_at is not None for r in refusals):
            sleep = max(r.retry_at.timestamp() for r in refusals if r.retry_at is not None) - now
        else:
            sleep = self.rt.settings.jobs_check_s
        if job.deadline is not None:
            sleep = min(sleep, job.deadline - now + 0.01)
        return float(max(0.05, min(sleep, MAX_SLEEP_S)))

    # -- running ----------------------------------------------------------------------------------------

    async def launch(self, job_id: str) -> str:
        """Start a claimed command job once: its executor is recorded before its process starts."""
        me = executor_id()
        if not self.store.transition(job_id, ("running",), "started", {"executor": me}, unlaunched=True,
                                     executor=me, started_at=time.time()):  # fmt: skip
            return await self._not_launched_here(job_id)
        job = self.store.get(job_id)
        if job.sandbox:
            await self._run_sandboxed(job)
        else:
            await self._run_process(job)
        return self.store.get(job_id).state

    async def _not_launched_here(self, job_id: str) -> str:
        job = self.store.get(job_id)
        if job.state == "cancelling" and job.executor is None:
            why = job.reason or "cancelled before its process started"
            self.store.transition(job_id, ("cancelling",), "cancelled", None, state="cancelled", reason=why,
                                  finished_at=time.time())  # fmt: skip
        elif job.state in RUNNING and job.executor != executor_id() and executor_alive(job.executor):
            while not self.store.get(job_id).finished:  # a live process runs it (a concurrent resume)
                await asyncio.sleep(1.0)
        elif job.state in RUNNING:
            await self._interrupted(job)
        return self.store.get(job_id).state

    async def _interrupted(self, job: JobRecord) -> None:
        """A job whose launch a dead process recorded: never started again. A command that outlived
        that process is waited for (and stopped when cancelled), then the job ends interrupted."""
        pid, started = _command_of(job)
        outlived = pid is not None and _alive(pid, started)
        if outlived and pid is not None:
            self.store.note(job.id, "adopted", {"pid": pid, "executor": executor_id()})
            while _alive(pid, started):
                if self.store.get(job.id).state == "cancelling":
                    _signal_group(pid, signal.SIGKILL)
                await asyncio.sleep(0.5)
        why = (
            "its edgecrew process died while it ran; the command went on to its end (exit code unknown)"
            if outlived
            else "its edgecrew process died while it ran and its command is gone (exit code unknown); "
            "it is not started again: submit it again to rerun"
        )
        if self.store.get(job.id).state == "cancelling":
            self.store.transition(job.id, RUNNING, "cancelled", None, state="cancelled", reason=job.reason,
                                  finished_at=time.time())  # fmt: skip
        else:
            self.store.transition(job.id, RUNNING, "interrupted", None, state="interrupted", reason=why,
                                  finished_at=time.time())  # fmt: skip

    async def _run_process(self, job: JobRecord) -> None:
        folder = self.job_dir(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        argv = list(job.argv or [])
        started = time.monotonic()
        try:
            with (folder / "stdout.log").open("ab") as out, (folder / "stderr.log").open("ab") as err:
                proc = subprocess.Popen(
                    argv,
                    cwd=self.rt.project.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env={**os.environ, "EDGECREW_JOB_ID": job.id},
                    start_new_session=True,  # its own process group: a cancel stops the whole tree
                )
        except OSError as exc:
            self._finish(job.id, "failed", f"could not start {argv[0]!r}: {exc.strerror or exc}", None, {})
            return
        created = None
        with contextlib.suppress(psutil.Error):
            created = psutil.Process(proc.pid).create_time()
        self.store.transition(job.id, RUNNING, None, pid=proc.pid, pid_started=created)
        self._running[job.id] = proc.pid
        label = f"job:{job.id}"
        sampler = self._sampler()
        if sampler is not None:
            with contextlib.suppress(Exception):
                sampler.track(label, proc.pid)
        try:
            status, usage = await self._watch(job.id, proc)
        finally:
            self._running.pop(job.id, None)
            if sampler is not None and hasattr(sampler, "untrack"):
                with contextlib.suppress(Exception):
                    sampler.untrack(label)
        usage["wall_s"] = round(time.monotonic() - started, 3)
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        state, reason = _outcome(code)
        if state == "failed":
            reason = _with_last_error(reason, _tail(folder / "stderr.log"))
        self._finish(job.id, state, reason, code, usage)

    def _sampler(self) -> Any:
        sampler = getattr(self._ops, "sampler", None)
        return sampler if hasattr(sampler, "track") else None

    async def _watch(self, job_id: str, proc: subprocess.Popen[bytes]) -> tuple[int, dict[str, Any]]:
        """Wait for the command, sampling its process tree (peak RSS, CPU seconds) and its cancel flag."""
        peak, cpu_seen, stop_sent, tick = 0, {}, 0.0, 0
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = 0
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(proc.pid)
                for member in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss += member.memory_info().rss
                        times = member.cpu_times()
                        cpu_seen[member.pid] = times.user + times.system
            peak = max(peak, rss)
            tick += 1
            if tick % 3 == 0:
                if stop_sent == 0.0 and self.store.get(job_id).state == "cancelling":
                    _signal_group(proc.pid, signal.SIGTERM)
                    stop_sent = time.monotonic()
                elif stop_sent and time.monotonic() - stop_sent > KILL_GRACE_S:
                    _signal_group(proc.pid, signal.SIGKILL)
            await asyncio.sleep(WATCH_S)
        # rusage covers the waited-for tree's CPU; its maxrss would count the fork of this process, so
        # the peak is the sampled sum of the tree's resident sets.
        cpu = max(rusage.ru_utime + rusage.ru_stime, sum(cpu_seen.values()))
        return status, {"peak_rss_bytes": peak, "cpu_s": round(cpu, 3)}

    async def _run_sandboxed(self, job: JobRecord) -> None:
        from edgecrew.tools.sandbox import SandboxLimits, run_sandboxed

        needs, settings = JobNeeds.of(job.needs), self.rt.settings
        wall = 2 * needs.duration_s if needs.duration_s else settings.jobs_sandbox_wall_s
        limits = SandboxLimits(
            cpu_s=int(wall * max(1.0, needs.cpu_cores)) + 1,
            wall_s=wall,
            memory_bytes=needs.memory_bytes or parse_size(settings.sandbox_memory) or 512 * 2**20,
            processes=settings.sandbox_processes,
            disk_bytes=parse_size(settings.sandbox_disk) or 256 * 2**20,
        )
        folder = self.job_dir(job.id)
        task = asyncio.ensure_future(
            run_sandboxed("shell", shlex.join(job.argv or []), workdir=folder / "work", limits=limits)
        )
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done() and self.store.get(job.id).state == "cancelling":
                task.cancel()
        try:
            result = task.result()
        except asyncio.CancelledError:
            self._finish(job.id, "cancelled", self.store.get(job.id).reason or "cancelled", None, {})
            return
        except EdgecrewError as exc:
            self._finish(job.id, "failed", f"the sandbox refused it: {exc}", None, {})
            return
        (folder / "stdout.log").write_text(result.stdout, encoding="utf-8")
        (folder / "stderr.log").write_text(result.stderr, encoding="utf-8")
        state, reason = _outcome(result.exit_code)
        if result.killed_reason:
            reason = f"the sandbox stopped it ({result.killed_reason})"
        elif state == "failed":
            reason = _with_last_error(reason, result.stderr)
            if result.exit_code == 127:  # not found: the project's files are not in the sandbox
                reason += "; an agent's command runs sandboxed in the job's own empty folder, not the project's"
        self._finish(job.id, state, reason, result.exit_code, {"wall_s": result.duration_s, "tier": result.tier})

    def _finish(self, job_id: str, state: str, reason: str, code: int | None, usage: dict[str, Any]) -> None:
        if self.store.get(job_id).state == "cancelling":
            state, reason = "cancelled", self.store.get(job_id).reason or "cancelled"
        usage = {**usage, "exit_code": code}
        self.store.transition(job_id, RUNNING, "finished", {"state": state, **usage}, state=state, reason=reason,
                              exit_code=code, usage=usage, finished_at=time.time())  # fmt: skip
        self.wake_waiting()  # its place under max_concurrent, its memory and CPUs are free again

    # -- team jobs --------------------------------------------------------------------------------------

    def record_run(self, job_id: str) -> str | None:
        """Record a claimed team job's run (once, under the key ``job:<id>``); None when it does not run."""
        job = self.store.get(job_id)
        if job.state != "running":
            if job.state == "cancelling":
                self.store.transition(job_id, ("cancelling",), "cancelled", None, state="cancelled",
                                      reason=job.reason, finished_at=time.time())  # fmt: skip
            return None
        self.store.transition(job_id, ("running",), "started", {"executor": executor_id()}, unlaunched=True,
                              executor=executor_id(), started_at=time.time())  # fmt: skip
        try:
            started = RunService(self.rt).record(
                TeamName(str(job.team)),
                str(job.task),
                idempotency_key=f"job:{job_id}",
                trigger={"kind": "job", "job": job_id},
            )
        except EdgecrewError as exc:
            self._finish(job_id, "failed", f"its run could not start: {exc}", None, {})
            return None
        self.store.transition(job_id, RUNNING, None, run_id=started.run.id)
        return started.run.id

    async def follow_run(self, job_id: str, run_id: str) -> str:
        """Follow a team job's run to its end through the runs use case (which also ends a run whose
        workflow died without finishing it); the job ends as its run did, with the run's usage."""
        service = RunService(self.rt)
        summary = await service.summary((await service.follow(run_id)).id)
        run = summary.run
        state = {RunStatus.SUCCEEDED: "succeeded", RunStatus.CANCELLED: "cancelled"}.get(run.status, "failed")
        reason = f"run {run_id} {run.status.value}" + (f": {run.error}" if run.error else "")
        usage = {
            "wall_s": round((run.finished_at or time.time()) - run.created_at, 3),
            "model_calls": summary.usage.model_calls,
            "prompt_tokens": summary.usage.prompt_tokens,
            "completion_tokens": summary.usage.completion_tokens,
        }
        self._finish(job_id, state, reason, None, usage)
        return state


def awaiting_approval(job: JobRecord, run_status: RunStatus | None) -> str | None:
    """Why a running team job does not move on by itself, when its run waits for a person's approval
    (``run_status`` from :meth:`JobService.run_statuses`); None otherwise."""
    if job.state != "running" or run_status != RunStatus.WAITING_APPROVAL:
        return None
    return f"its run {job.run_id} waits for a person's approval (`edgecrew approvals list --run {job.run_id}`)"


def _states(state: str | None) -> list[str] | None:
    if state is None or state == "":
        return None
    if state not in JOB_STATES:
        raise UserError(f"state: '{state[:40]}' is not a job state; use one of {', '.join(JOB_STATES)}")
    return [state]


def _facts_of(job: JobRecord) -> JobFacts:
    return JobFacts(job.name, tuple(job.tags), job.priority)


def _outcome(code: int) -> tuple[str, str]:
    if code == 0:
        return "succeeded", "exited with code 0"
    if code < 0:
        with contextlib.suppress(ValueError):
            return "failed", f"killed by {signal.Signals(-code).name}"
    return "failed", f"exited with code {code}"


def _tail(path: Path, size: int = 4096) -> str:
    """The end of a log file ("" when there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _with_last_error(reason: str, stderr: str) -> str:
    """``exited with code 127: sh: 1: ./backup.sh: not found``: the failure with its last line of stderr."""
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return f"{reason}: {last[:300]}" if last else reason


def _command_of(job: JobRecord) -> tuple[int | None, float | None]:
    """The pid (and start time) of a job's command: as recorded, or, when its process died between
    starting the command and recording its pid, found by the ``EDGECREW_JOB_ID`` it was given (the
    leader of its own process group)."""
    if job.pid is not None or not job.argv:
        return job.pid, job.pid_started
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get("EDGECREW_JOB_ID") == job.id and os.getpgid(proc.pid) == proc.pid:
                return proc.pid, proc.create_time()
    return None, None


def _alive(pid: int, started: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        same = started is None or abs(proc.create_time() - started) < 1.0
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# -- the admission workflow ----------------------------------------------------------------------------


def _service() -> JobService:
    from edgecrew.ops import Ops

    return Ops.of(durable.current_runtime()).jobs


@DBOS.step(name="edgecrew.job_check")
async def _check_step(job_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(_service().check, job_id)


@DBOS.step(name="edgecrew.job_launch")
async def _launch_step(job_id: str) -> str:
    return await _service().launch(job_id)


@DBOS.step(name="edgecrew.job_record_run")
async def _record_run_step(job_id: str) -> str | None:
    return await asyncio.to_thread(_service().record_run, job_id)


@DBOS.step(name="edgecrew.job_follow_run")
async def _follow_run_step(job_id: str, run_id: str) -> str:
    return await _service().follow_run(job_id, run_id)


@DBOS.workflow(name=WAIT_WORKFLOW)
async def job_wait(job_id: str) -> dict[str, Any]:
    """One round of waiting: up to ``CHECKS_PER_ROUND`` checks with durable waits between them, each
    ended early by a wake message (``JobService.wake_waiting``). A long wait is many rounds (child
    workflows), so a replay reads one recorded result per finished round instead of every check and
    wait of a day spent waiting."""
    return await _round(job_id, lambda seconds: DBOS.recv_async(WAKE_TOPIC, timeout_seconds=seconds))


@DBOS.workflow(name=WAIT_WORKFLOW_V1)
async def job_wait_v1(job_id: str) -> dict[str, Any]:
    """A round of version 1 (durable sleeps, not woken): for admissions recorded before version 2."""
    return await _round(job_id, DBOS.sleep_async)


async def _round(job_id: str, pause: Callable[[float], Awaitable[Any]]) -> dict[str, Any]:
    """Checks with a durable ``pause`` between them while the job waits, at most ``CHECKS_PER_ROUND``."""
    for _ in range(CHECKS_PER_ROUND):
        verdict = await _check_step(job_id)
        if verdict["action"] != "wait":
            return verdict
        await pause(float(verdict["sleep_s"]))
    return {"action": "again"}


@DBOS.workflow(name=WORKFLOW)
async def job_workflow(job_id: str) -> str:
    """Admit one job: wait (rounds of checks and durable waits) while its policies say no, then start it once."""
    return await _admit(job_id, job_wait)


@DBOS.workflow(name=WORKFLOW_V1)
async def job_workflow_v1(job_id: str) -> str:
    """Version 1 of ``job_workflow`` (rounds of ``job_wait_v1``), for admissions recorded with it."""
    return await _admit(job_id, job_wait_v1)


async def _admit(job_id: str, wait: Callable[[str], Awaitable[dict[str, Any]]]) -> str:
    while (verdict := await wait(job_id))["action"] == "again":
        pass
    if verdict["action"] != "start":
        return "ended"
    if verdict["kind"] == "team":
        run_id = await _record_run_step(job_id)
        if run_id is None:
            return "ended"
        await durable.start_workflow(run_id)
        return await _follow_run_step(job_id, run_id)
    return await _launch_step(job_id)
