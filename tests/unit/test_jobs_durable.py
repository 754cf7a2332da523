"""Jobs on the durable engine in this process (DBOS on a temp SQLite home): a team job runs its team on
the scripted model through the run use case, a running command is cancelled, a sandboxed command
runs, and a job submitted while no server ran is admitted once one starts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.service import RunService
from edgecrew.ops import Ops
from edgecrew.ops.jobs import JobService
from edgecrew.store.jobs import JobRecord
from tests.conftest import write

PROJECT = """\
models:
  fake:
    backend: scripted
    replies: [{text: "the report is done"}]
teams:
  - name: solo
    agents:
      a: {model: fake, system: write the report}
    graph: {start: a, edges: [{from: a, to: end}]}
policies:
  always:
    max_concurrent: 4
"""


@pytest.fixture
async def served(project_dir: Path) -> AsyncIterator[JobService]:
    """A runtime serving its job queue, as `edgecrew serve` does."""
    write(project_dir / "edgecrew.yaml", PROJECT)
    rt = bootstrap()
    ops = Ops.of(rt)
    durable.launch(rt, queues=ops.queues())
    await ops.jobs.start()
    try:
        yield ops.jobs
    finally:
        await ops.jobs.stop()
        durable.shutdown()


async def _ended(jobs: JobService, job_id: str, timeout: float = 60) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(job_id)
        if job.finished:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {jobs.get(job_id)}")


async def test_a_team_job_runs_its_team_once_through_the_run_use_case(served: JobService) -> None:
    job = await served.submit(team="solo", task="write the report", tags=["reports"])
    done = await _ended(served, job.id)
    assert done.state == "succeeded", done.reason
    assert done.run_id is not None and done.usage is not None and done.usage["model_calls"] == 1
    run = RunService(served.rt).get(done.run_id)
    assert run.trigger == {"kind": "job", "job": job.id}
    assert run.idempotency_key == f"job:{job.id}" and run.output == {"text": "the report is done"}
    assert [e.kind for e in served.events(job.id)] == ["submitted", "allowed", "started", "finished"]


async def test_a_running_command_is_cancelled_with_its_process_tree(served: JobService, project_dir: Path) -> None:
    marker = project_dir / "started"
    job = await served.submit(argv=["sh", "-c", f"touch {marker}; sleep 60 & wait"])
    deadline = time.monotonic() + 30
    # The command starts before its pid is stored (one commit later): wait for both.
    while not (marker.exists() and served.get(job.id).pid is not None) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    running = served.get(job.id)
    assert running.state == "running" and running.pid is not None
    tree = [running.pid, *(c.pid for c in psutil.Process(running.pid).children(recursive=True))]
    assert served.cancel(job.id, by="alice").state == "cancelling"
    done = await _ended(served, job.id)
    assert done.state == "cancelled" and done.reason == "cancel requested by alice"
    assert done.usage is not None and done.usage["wall_s"] < 60
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in tree)


async def test_a_command_reports_its_exit_and_usage_and_a_sandboxed_one_runs(served: JobService) -> None:
    plain = await served.submit(
        argv=["python3", "-c", "x = bytearray(64 * 2**20); import time, sys; time.sleep(1); sys.exit('no disk')"]
    )
    boxed = await served.submit(argv=["sh", "-c", "echo inside; exit 0"], sandbox=True)
    missing = await served.submit(argv=["./backup.sh"], sandbox=True)  # the project's file: not in the sandbox
    failed, ok = await _ended(served, plain.id), await _ended(served, boxed.id)
    # The failure says why in its last line of stderr (it said "exited with code 1" alone).
    assert failed.state == "failed" and failed.reason == "exited with code 1: no disk" and failed.exit_code == 1
    gone = await _ended(served, missing.id)
    assert gone.state == "failed" and gone.reason is not None and gone.reason.startswith("exited with code 127: ")
    assert "backup.sh" in gone.reason and "runs sandboxed in the job's own empty folder" in gone.reason, gone.reason
    assert failed.usage is not None and failed.usage["peak_rss_bytes"] >= 64 * 2**20 and failed.usage["wall_s"] >= 1
    assert ok.state == "succeeded", ok.reason
    assert (served.job_dir(ok.id) / "stdout.log").read_text() == "inside\n"


async def test_a_job_submitted_while_no_server_ran_is_admitted_when_one_starts(project_dir: Path) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT)
    offline = Ops.of(bootstrap()).jobs
    job = await offline.submit(argv=["true"])
    offline.close()
    rt = bootstrap()
    ops = Ops.of(rt)
    durable.launch(rt, queues=ops.queues())
    await ops.jobs.start()
    try:
        assert (await _ended(ops.jobs, job.id)).state == "succeeded"
    finally:
        await ops.jobs.stop()
        durable.shutdown()


async def test_a_long_wait_runs_in_rounds_and_starts_when_a_threshold_flips(
    served: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbos import DBOS

    from edgecrew.ops import jobs as jobs_module
    from edgecrew.specs.jobs import MachineFacts

    monkeypatch.setattr(jobs_module, "CHECKS_PER_ROUND", 3)
    served.rt.settings = served.rt.settings.model_copy(update={"jobs_check_s": 0.05})
    busy = MachineFacts(load1=64.0, cpu_count=1, available_memory_bytes=2**34, memory_percent=10.0)
    calm = MachineFacts(load1=0.0, cpu_count=1, available_memory_bytes=2**34, memory_percent=10.0)
    served.apply_policy("always", {"max_load_per_core": 1.0}, "a threshold to flip", "test")
    served.facts = lambda: busy
    job = await served.submit(argv=["true"])
    deadline = time.monotonic() + 30
    while len(await DBOS.list_workflows_async(name=jobs_module.WAIT_WORKFLOW)) < 3:
        assert time.monotonic() < deadline and served.get(job.id).state in ("queued", "waiting")
        await asyncio.sleep(0.05)
    waiting = served.get(job.id)
    assert waiting.state == "waiting" and waiting.reason == "always: load per core is 64.00, above its limit 1"
    served.facts = lambda: calm
    done = await _ended(served, job.id)
    assert done.state == "succeeded" and done.allowed_at is not None
    kinds = [e.kind for e in served.events(job.id)]
    assert kinds == ["submitted", "waiting", "allowed", "started", "finished"]  # one waiting event, not one per check


async def test_a_waiting_job_is_woken_by_a_policy_change_not_its_next_timed_check(served: JobService) -> None:
    """A job held by a policy waits (a durable wait of up to a minute between checks); applying a policy
    that lets it go wakes it at once, through a message to its waiting round."""
    from edgecrew.specs.jobs import MachineFacts

    served.rt.settings = served.rt.settings.model_copy(update={"jobs_check_s": 3600.0})  # the timed check: 60 s
    busy = MachineFacts(load1=64.0, cpu_count=1, available_memory_bytes=2**34, memory_percent=10.0)
    served.facts = lambda: busy
    served.apply_policy("always", {"max_load_per_core": 1.0}, "hold jobs while the box is busy", "test")
    job = await served.submit(argv=["true"])
    deadline = time.monotonic() + 30
    while served.get(job.id).state != "waiting":
        assert time.monotonic() < deadline, served.get(job.id)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # in its durable wait now
    asked = time.monotonic()
    served.apply_policy("always", {"max_load_per_core": 100.0}, "let it through", "test")
    done = await _ended(served, job.id, timeout=40)  # well before the 60 s timed check
    assert done.state == "succeeded", done.reason
    assert time.monotonic() - asked < 40


async def test_an_admission_recorded_by_version_1_still_runs(served: JobService) -> None:
    """Jobs enqueued before the waits could be woken keep the workflow names their steps were recorded
    under; those workflows are still there and admit them."""
    from edgecrew.ops import jobs as jobs_module

    job = await served.submit(argv=["true"])
    done = await _ended(served, job.id)
    assert done.state == "succeeded"
    row = served.store.get(job.id)
    old = served.store.create(
        "jold", workflow_id=served.workflow_id("jold"), submitted_by="test",
        **served._validated(["true"], None, None, None, False, jobs_module.JobNeeds(), 50, None, ()),
    )  # fmt: skip
    assert row.workflow_id != old.workflow_id
    served._dbos().enqueue(
        {"queue_name": served.queue, "workflow_name": jobs_module.WORKFLOW_V1, "workflow_id": old.workflow_id},
        old.id,
    )
    assert (await _ended(served, old.id)).state == "succeeded"


async def test_a_server_starting_with_changed_yaml_policies_wakes_the_waiting_jobs(
    served: JobService, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waits resumed after a restart keep their recorded deadline; when edgecrew.yaml's policies changed
    meanwhile, the starting server wakes them (a restart with the same policies wakes nobody)."""
    woken: list[int] = []
    monkeypatch.setattr(served, "wake_waiting", lambda: woken.append(1) or 0)
    await served.start()  # the same policies as a moment ago
    assert woken == []
    write(project_dir / "edgecrew.yaml", PROJECT.replace("max_concurrent: 4", "max_concurrent: 2"))
    served.rt.project = bootstrap().project  # the server's project, read again as a new process would
    await served.start()
    assert woken == [1]


async def test_a_team_job_whose_run_waits_for_approval_says_so(project_dir: Path) -> None:
    """The job stays running (its run is not over), but list and show say what it waits for: a person's
    approval of its run (it said only "running", and nobody knew to look at the approvals)."""
    from typer.testing import CliRunner

    from edgecrew.cli import app
    from edgecrew.domain.runs import RunStatus
    from edgecrew.engine.approvals import ApprovalService
    from edgecrew.ops.jobs import awaiting_approval
    from tests.api import conftest as fixtures

    write(project_dir / "edgecrew.yaml", fixtures.PROJECT)
    write(project_dir / "tools.py", fixtures.TOOLS)
    write(project_dir / "teams" / "ship.yaml", fixtures.SHIP)
    rt = bootstrap()
    ops = Ops.of(rt)
    durable.launch(rt, queues=ops.queues())
    await ops.jobs.start()
    try:
        job = await ops.jobs.submit(team="ship", task="ship the fix", name="ship-it")
        deadline = time.monotonic() + 60
        while (job := ops.jobs.get(job.id)).run_id is None or rt.store.run_status(
            job.run_id
        ) != RunStatus.WAITING_APPROVAL:
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.1)
        assert job.state == "running"  # no second state machine: the run's status says the rest
        why = awaiting_approval(job, ops.jobs.run_statuses([job]).get(job.id))
        assert why is not None and job.run_id in why and "approval" in why
        runner = CliRunner()
        listed = runner.invoke(app, ["jobs", "list"], env={"COLUMNS": "250"})
        assert listed.exit_code == 0 and "waiting for approval" in listed.output, listed.output
        shown = runner.invoke(app, ["jobs", "show", job.id], env={"COLUMNS": "250"})
        assert "waiting for approval" in shown.output and "edgecrew approvals" in shown.output, shown.output
        as_json = runner.invoke(app, ["jobs", "show", job.id, "--json"])
        assert '"run_status": "waiting_approval"' in as_json.output
        [pending] = ApprovalService(rt).list(run_id=job.run_id)
        await asyncio.to_thread(ApprovalService(rt).approve, pending.id, "ship it")
        done = await _ended(ops.jobs, job.id)
        assert done.state == "succeeded" and awaiting_approval(done, ops.jobs.run_statuses([done]).get(done.id)) is None
    finally:
        await ops.jobs.stop()
        durable.shutdown()
