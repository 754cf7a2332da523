"""The supervisor's risky actions through the approval gate, in process (DBOS on a temp SQLite home, a
scripted model deciding): nothing is applied before a person approves, the approval waits in the
inbox like any risky tool call, approving applies the action exactly once and heals the incident,
and denying leaves it escalated with its regression case."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService
from edgecrew.ops import Ops
from edgecrew.ops import supervisor as module
from edgecrew.ops.incidents import Finding
from edgecrew.store.approvals import ApprovalRecord
from edgecrew.store.incidents import IncidentRecord
from tests.conftest import write

MiB = 2**20

# The model answers a novel failure with more memory than the supervisor may grant alone (the cap is
# 64 MiB here): the action becomes change_memory_budget, which a person must approve.
PROJECT = """\
models:
  local:
    backend: scripted
    replies:
      - json: {action: retry_with_more_memory, reason: "it needs room", params: {memory_mb: 128}}
policies: {}
"""
CANCEL = """\
models:
  local:
    backend: scripted
    replies:
      - json: {action: cancel, reason: "it hangs: stop it", params: {}}
policies: {}
"""


async def _served(project_dir: Path, monkeypatch: pytest.MonkeyPatch, config: str) -> Runtime:
    monkeypatch.setenv("EDGECREW_SUPERVISOR_MEMORY_CAP", "64MiB")
    monkeypatch.setenv("EDGECREW_SUPERVISOR_INTERVAL_S", "0")  # no loop: the test scans
    monkeypatch.setenv("EDGECREW_JOBS_CHECK_S", "0.2")
    monkeypatch.setenv("EDGECREW_JOBS_QUEUE_POLL_S", "0.2")
    monkeypatch.setattr(module, "FOLLOW_POLL_S", 0.05)
    write(project_dir / "edgecrew.yaml", config)
    from edgecrew.settings import reset_settings

    reset_settings()
    rt = bootstrap()
    ops = Ops.of(rt)
    durable.launch(rt, queues=ops.queues())
    await ops.jobs.start()
    return rt


@pytest.fixture
async def rt(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    rt = await _served(project_dir, monkeypatch, PROJECT)
    try:
        yield rt
    finally:
        await Ops.of(rt).jobs.stop()
        durable.shutdown()


async def _until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(check)
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _failed_job(rt: Runtime) -> str:
    """A job that fails once (an error no rule knows) and succeeds when run again."""
    jobs = Ops.of(rt).jobs
    marker = rt.project.dir / "ran-once"
    script = f"[ -e {marker} ] && exit 0; touch {marker}; echo 'flux capacitor misaligned' >&2; exit 3"
    job = await jobs.submit(argv=["sh", "-c", script], name="odd")
    await _until(lambda: jobs.get(job.id).finished, "the job to fail")
    assert jobs.get(job.id).state == "failed"
    return job.id


async def _incident_waiting_for_approval(rt: Runtime) -> tuple[IncidentRecord, ApprovalRecord]:
    sup = Ops.of(rt).supervisor
    [incident] = await sup.scan()
    assert incident.kind == "job_failed"

    def asked() -> ApprovalRecord | None:
        run = sup.get(incident.id).approval_run
        found = ApprovalService(rt).list("pending", run) if run else []
        return found[0] if found else None

    approval = await _until(asked, "the approval to be asked")
    return sup.get(incident.id), approval


def _retries(rt: Runtime, incident_id: str) -> list[Any]:
    return [
        j
        for j in Ops.of(rt).jobs.list_jobs(limit=100)
        if (j.submitted_by or "").startswith(f"supervisor:{incident_id}")
    ]


async def test_an_approved_risky_action_is_applied_once_and_heals_the_incident(rt: Runtime) -> None:
    job_id = await _failed_job(rt)
    sup = Ops.of(rt).supervisor
    incident, approval = await _incident_waiting_for_approval(rt)
    assert incident.action == "change_memory_budget" and incident.decided_by == "model"
    assert incident.action_params == {"memory_bytes": 128 * MiB}
    assert approval.tool == "supervisor.apply" and f"incident {incident.id}" in approval.arguments["request"]
    # Nothing is applied while the approval waits.
    await asyncio.sleep(0.5)
    waiting = sup.get(incident.id)
    assert waiting.state == "open" and waiting.attempts == 0 and waiting.follow_up is None
    assert _retries(rt, incident.id) == []
    assert waiting.approval_id == approval.id and waiting.approval_run == approval.run_id
    # The inbox lists it like any risky tool call (what GET /approvals returns).
    assert [a.id for a in ApprovalService(rt).list()] == [approval.id]

    ApprovalService(rt).approve(approval.id, note="go")
    healed = await _until(lambda: sup.get(incident.id).ended and sup.get(incident.id), "the incident to end")
    assert healed.state == "healed", healed
    [retry] = _retries(rt, incident.id)  # applied exactly once
    assert retry.needs["memory_bytes"] == 128 * MiB and retry.state == "succeeded"
    assert healed.follow_up == f"job:{retry.id}" and healed.attempts == 1
    assert RunService(rt).get(approval.run_id).status.value == "succeeded"
    kinds = [e.kind for e in sup.events(incident.id)]
    assert kinds.count("applied") == 1 and kinds[-1] == "healed", kinds
    assert kinds.index("approval_requested") < kinds.index("applied")
    assert Ops.of(rt).jobs.get(job_id).state == "failed"  # the failed job itself is left as it was


async def test_a_denied_risky_action_is_not_applied_and_the_incident_escalates(rt: Runtime, project_dir: Path) -> None:
    await _failed_job(rt)
    sup = Ops.of(rt).supervisor
    incident, approval = await _incident_waiting_for_approval(rt)
    ApprovalService(rt).deny(approval.id, note="not on this box")
    ended = await _until(lambda: sup.get(incident.id).ended and sup.get(incident.id), "the incident to end")
    assert ended.state == "escalated", ended
    assert ended.reason == f"a person denied change_memory_budget (approval {approval.id}): not on this box"
    assert _retries(rt, incident.id) == [] and ended.attempts == 0
    assert ended.regression_path is not None and Path(ended.regression_path).parent == project_dir / "regressions"
    assert "applied" not in [e.kind for e in sup.events(incident.id)]


async def test_an_edited_risky_action_is_not_applied_as_if_it_had_not_been_edited(rt: Runtime) -> None:
    # The inbox lets a person edit a call's arguments; supervisor.apply applied the planned action
    # whatever the request said, so "4096 MiB" approved ran the job again with the planned 128 MiB.
    await _failed_job(rt)
    sup = Ops.of(rt).supervisor
    incident, approval = await _incident_waiting_for_approval(rt)
    asked = approval.arguments["request"]
    assert asked.endswith("\nChange: run it again with 128 MiB of memory")
    ApprovalService(rt).edit(approval.id, {"request": asked.replace("128 MiB", "4096 MiB")})
    ApprovalService(rt).approve(approval.id)
    ended = await _until(lambda: sup.get(incident.id).ended and sup.get(incident.id), "the incident to end")
    assert ended.state == "escalated", ended
    assert "its request was edited" in str(ended.reason) and "Change: run it again with 128 MiB" in str(ended.reason)
    assert _retries(rt, incident.id) == [] and "applied" not in [e.kind for e in sup.events(incident.id)]


async def test_an_approved_cancel_stops_a_stuck_job_a_watcher_reported(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = await _served(project_dir, monkeypatch, CANCEL)
    jobs = Ops.of(rt).jobs
    try:
        stuck = await jobs.submit(argv=["sleep", "60"], name="stuck")
        await _until(lambda: jobs.get(stuck.id).state == "running", "the job to run")

        def watcher(_sup: Any, since: float, now: float) -> list[Finding]:
            job = jobs.get(stuck.id)
            if job.state != "running":
                return []
            diagnosis = {"job": {"id": job.id, "kind": "command", "command": job.argv, "needs": {}}}
            return [Finding("job_stuck", "job", job.id, f"job {job.id} hangs", "no output for 1h", diagnosis)]

        module.register_watcher("test-stuck", watcher)
        sup = Ops.of(rt).supervisor
        incident, approval = await _incident_waiting_for_approval_of(rt, "job_stuck")
        assert incident.action == "cancel"
        await asyncio.sleep(0.3)
        assert jobs.get(stuck.id).state == "running"  # not before approval
        ApprovalService(rt).approve(approval.id)
        ended = await _until(lambda: sup.get(incident.id).ended and sup.get(incident.id), "the incident to end")
        assert ended.state == "healed", ended
        await _until(lambda: jobs.get(stuck.id).finished, "the job to stop")
        assert jobs.get(stuck.id).state == "cancelled"
        assert f"supervisor:{incident.id}" in str(jobs.get(stuck.id).reason)
        assert [e.kind for e in sup.events(incident.id)].count("applied") == 1
    finally:
        module._WATCHERS.pop("test-stuck", None)
        await jobs.stop()
        durable.shutdown()


async def _incident_waiting_for_approval_of(rt: Runtime, kind: str) -> tuple[IncidentRecord, ApprovalRecord]:
    sup = Ops.of(rt).supervisor
    made = [i for i in await sup.scan() if i.kind == kind]
    assert len(made) == 1, made
    incident = made[0]

    def asked() -> ApprovalRecord | None:
        run = sup.get(incident.id).approval_run
        found = ApprovalService(rt).list("pending", run) if run else []
        return found[0] if found else None

    approval = await _until(asked, "the approval to be asked")
    return sup.get(incident.id), approval


async def test_cancelling_a_job_that_already_failed_escalates_without_asking_a_person(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = await _served(project_dir, monkeypatch, CANCEL)
    try:
        await _failed_job(rt)
        sup = Ops.of(rt).supervisor
        [incident] = await sup.scan()
        ended = await _until(lambda: sup.get(incident.id).ended and sup.get(incident.id), "the incident to end")
        assert ended.state == "escalated" and ended.approval_run is None and ApprovalService(rt).list() == []
        assert ended.reason == f"the model chose cancel, but job {incident.subject} already failed: nothing to cancel"
    finally:
        await Ops.of(rt).jobs.stop()
        durable.shutdown()
