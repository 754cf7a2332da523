"""The optimizer on the durable engine: its proposal waits for approval and is applied only then, as
the policy's newest version; a denial leaves the policy as it was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.domain.runs import RunStatus
from edgecrew.engine import durable
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService, TeamName
from edgecrew.models.scripted import ScriptedModel
from edgecrew.ops import Ops
from tests.conftest import write

PROJECT = """
policies:
  nightly:
    max_load_per_core: 0.8
"""


@pytest.fixture
async def rt(project_dir: Path) -> AsyncIterator[Runtime]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    runtime = bootstrap()
    runtime.models.register("local-gemma", ScriptedModel([{"json": {"pick": 1, "why": "jobs waited on load"}}]))
    jobs = Ops.of(runtime).jobs
    now = time.time()
    for i in range(4):  # four finished jobs that the load limit held back for ten minutes
        job_id = f"jold{i}"
        jobs.store.create(job_id, name=f"train-{i}", kind="command", argv=["true"], needs={}, priority=50, tags=[])
        refusal = {"kind": "load", "policy": "nightly", "reason": "load per core is 1.20", "retry_at": None}
        jobs.store.note(job_id, "waiting", [refusal])
        jobs.store.transition(
            job_id, ("queued",), state="succeeded", started_at=now + 600, finished_at=now + 660, exit_code=0
        )
    yield runtime
    durable.shutdown()


async def _waiting_approval(rt: Runtime, run_id: str) -> str:
    approvals = ApprovalService(rt)
    for _ in range(300):
        pending = approvals.list("pending", run_id)
        if pending:
            return pending[0].id
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never asked for approval: {RunService(rt).get(run_id)}")


async def test_the_optimizers_proposal_is_applied_only_after_approval(rt: Runtime) -> None:
    jobs = Ops.of(rt).jobs
    assert [v.version for v in jobs.policy_versions("nightly")] == [1]
    svc = RunService(rt)
    started = await svc.start(TeamName("optimizer"), "propose a better policy")
    approval_id = await _waiting_approval(rt, started.run.id)
    pending = ApprovalService(rt).list("pending", started.run.id)[0]
    assert pending.tool == "policies.apply"
    assert pending.arguments["field"] == "max_load_per_core" and pending.arguments["value"] == 1.0
    assert "held jobs back 4 times" in pending.arguments["reason"]
    assert "nightly (v1): 4 finished jobs" in pending.arguments["evidence"]  # the evidence beside the diff
    assert [v.version for v in jobs.policy_versions("nightly")] == [1]  # nothing applied while it waits
    await asyncio.to_thread(ApprovalService(rt).approve, approval_id)
    done = await svc.finish(started)
    assert done.ok, done.run.error
    versions = jobs.policy_versions("nightly")
    assert [v.version for v in versions] == [1, 2] and versions[-1].doc["max_load_per_core"] == 1.0
    assert versions[-1].source == f"optimizer (run {started.run.id})"
    assert jobs.effective_policies()["nightly"].doc.max_load_per_core == 1.0
    assert "Applied: policy nightly is now version 2" in done.run.output["text"]


async def test_a_denied_proposal_leaves_the_policy_alone(rt: Runtime) -> None:
    svc = RunService(rt)
    started = await svc.start(TeamName("optimizer"), "propose a better policy")
    approval_id = await _waiting_approval(rt, started.run.id)
    await asyncio.to_thread(ApprovalService(rt).deny, approval_id, "not tonight")
    done = await svc.finish(started)
    # A person's decision is the answer, not a failure (the run failed: "agent 'apply' ended with tool_errors")
    assert done.run.status == RunStatus.SUCCEEDED, done.run.error
    assert done.run.output["text"] == (
        "Not applied: a person denied nightly: max_load_per_core 0.8 -> 1.0 (not tonight)."
    ), done.run.output
    assert [v.version for v in Ops.of(rt).jobs.policy_versions("nightly")] == [1]
