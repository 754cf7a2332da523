"""Permissions and the approval gate on the engine, in process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.service import RunService, TeamFile
from edgecrew.errors import UserError
from edgecrew.models.scripted import ScriptedModel
from edgecrew.tools.base import ToolRegistry, spec_from_function
from edgecrew.tools.builtins import register_builtins
from tests.conftest import write
from tests.unit.engine_helpers import run_team


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    durable.shutdown()


def registry_with(calls: list[str]) -> ToolRegistry:
    registry = ToolRegistry()
    register_builtins(registry)

    def deploy(target: str) -> str:
        """Deploy to a target."""
        calls.append(target)
        return f"deployed {target}"

    def wipe(path: str) -> str:
        """Delete everything."""
        calls.append("wipe")
        return "wiped"

    async def migrate(seconds: float) -> str:
        """Migrate the database, slowly."""
        await asyncio.sleep(seconds)
        calls.append("migrated")
        return "migrated"

    registry.register(spec_from_function(deploy, risk="risky"))
    registry.register(spec_from_function(migrate, risk="risky"))
    registry.register(spec_from_function(wipe, risk="forbidden"))
    return registry


TEAM = """
name: ops
{policy}
agents:
  op:
    model: fake
    system: operate
    tools: [deploy, migrate, wipe, files.write]
    files: {{read: ["**"], write: ["drafts/*"]}}
    limits: {{max_steps: 6, max_tool_errors: 5, timeout_s: {timeout_s}}}
graph: {{start: op, edges: [{{from: op, to: end}}]}}
"""


async def start(  # type: ignore[no-untyped-def]
    project: Path, policy: str, replies: list[object], calls: list[str], timeout_s: float = 300
):
    spec = project / "teams" / "ops.yaml"
    write(spec, TEAM.format(policy=policy, timeout_s=timeout_s))
    rt = bootstrap(tools=registry_with(calls))
    model = ScriptedModel(replies)
    rt.models.register("fake", model)
    svc = RunService(rt)
    started = await svc.start(TeamFile(spec), "ship it")
    return rt, svc, started.run.id, started.handle, model


async def wait_for_pending(svc: ApprovalService, count: int = 1) -> list:  # type: ignore[type-arg]
    for _ in range(200):
        pending = svc.list()
        if len(pending) >= count:
            return pending
        await asyncio.sleep(0.05)
    raise AssertionError("no approval became pending")


async def test_risky_call_waits_then_runs_once_after_approval(project_dir: Path) -> None:
    calls: list[str] = []
    replies = [{"tool": "deploy", "args": {"target": "prod"}, "text": "prod needs the fix"}, "done"]
    rt, _, run_id, handle, _ = await start(project_dir, "", replies, calls)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    assert (pending.tool, pending.arguments, pending.agent) == ("deploy", {"target": "prod"}, "op")
    assert pending.reason == "prod needs the fix"
    assert rt.store.get_run(run_id).status == "waiting_approval" and calls == []
    approvals.approve(pending.id, note="go")
    await handle.get_result()
    assert rt.store.get_run(run_id).status == "succeeded"
    assert calls == ["prod"]
    types = [e.type for e in rt.store.events(run_id)]
    assert types.index("approval_requested") < types.index("approval_decided") < types.index("tool_called")
    with pytest.raises(UserError, match="already succeeded"):
        approvals.approve(pending.id)


async def test_a_cancelled_run_s_waiting_approval_expires_and_leaves_the_inbox(project_dir: Path) -> None:
    calls: list[str] = []
    replies = [{"tool": "deploy", "args": {"target": "prod"}, "text": "ship"}, "done"]
    rt, svc, run_id, _, _ = await start(project_dir, "", replies, calls)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    svc.cancel(run_id)
    assert approvals.list() == []  # the inbox holds what a person can still decide
    [expired] = approvals.list(status="expired")
    assert (expired.id, expired.decision_note) == (pending.id, "the run ended cancelled")
    with pytest.raises(UserError, match="already cancelled"):
        approvals.approve(pending.id)
    assert calls == []


async def test_a_run_cancelled_while_waiting_for_a_person_ends_its_step_and_its_workflow(project_dir: Path) -> None:
    """The cancel did not reach a workflow waiting for a decision: its step never ended and the workflow
    waited in the process for good. Told, the step ends cancelled without calling the tool."""
    from dbos import DBOS

    calls: list[str] = []
    replies = [{"tool": "deploy", "args": {"target": "prod"}, "text": "ship"}, "done"]
    rt, svc, run_id, _, model = await start(project_dir, "", replies, calls)
    await wait_for_pending(ApprovalService(rt))
    svc.cancel(run_id)
    for _ in range(200):
        (workflow,) = await DBOS.list_workflows_async(workflow_ids=[run_id], load_input=False, load_output=False)
        ended = [e for e in rt.store.events(run_id) if e.type == "step_finished"]
        if ended and workflow.status != "PENDING":
            break
        await asyncio.sleep(0.05)
    assert [e.data["outcome"] for e in ended] == ["cancelled"] and workflow.status == "CANCELLED"
    assert calls == [] and len(model.calls) == 1  # neither the tool nor the model again
    assert rt.store.get_run(run_id).status == "cancelled"
    assert "approval_decided" not in [e.type for e in rt.store.events(run_id)]  # nobody decided


async def test_the_stream_of_a_run_cancelled_while_waiting_for_a_person_ends_at_once(project_dir: Path) -> None:
    """A step waiting for a person is not followed as a step in flight: the stream ends with run_cancelled
    (and the step's end, when the woken wait wrote it in time), never waiting on the person."""
    import time

    from edgecrew.domain.events import EventRecord

    replies = [{"tool": "deploy", "args": {"target": "prod"}, "text": "ship"}, "done"]
    rt, svc, run_id, _, _ = await start(project_dir, "", replies, [])
    await wait_for_pending(ApprovalService(rt))
    svc.cancel(run_id)
    seen: list[EventRecord] = []
    began = time.monotonic()
    await RunService(rt).follow(run_id, seen.append, timeout_s=20)
    assert time.monotonic() - began < 5
    after = [e.type for e in seen][[e.type for e in seen].index("approval_requested") :]
    # The cancel wakes the wait, so the step's end may follow (written within moments, read if in time).
    assert after in (["approval_requested", "run_cancelled"], ["approval_requested", "run_cancelled", "step_finished"])


async def test_waiting_for_a_person_does_not_count_toward_the_agent_time_limit(project_dir: Path) -> None:
    calls: list[str] = []
    # The reply after the tool takes half the agent's limit: its model call must be given the time
    # the agent has left of its own, not what is left after the person's wait.
    replies = [{"tool": "deploy", "args": {"target": "prod"}}, {"text": "done", "delay": 1.0}]
    rt, _, run_id, handle, model = await start(project_dir, "", replies, calls, timeout_s=2)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    await asyncio.sleep(4)  # the person takes twice the agent's whole time limit
    approvals.approve(pending.id)
    await handle.get_result()
    run = rt.store.get_run(run_id)
    assert run.status == "succeeded", run.error
    assert calls == ["prod"] and len(model.calls) == 2 and run.output == {"text": "done"}


async def test_an_approved_call_still_runs_within_the_agent_time_limit(project_dir: Path) -> None:
    calls: list[str] = []
    replies = [{"tool": "migrate", "args": {"seconds": 5}}, "done"]
    rt, _, run_id, handle, _ = await start(project_dir, "", replies, calls, timeout_s=1)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    await asyncio.sleep(1.5)
    approvals.approve(pending.id)
    await handle.get_result()
    [called] = [e for e in rt.store.events(run_id) if e.type == "tool_called"]
    assert called.data["is_error"] and "ran past the agent's time limit" in called.data["result"]
    assert called.data["duration_s"] < 1.5 and calls == []  # the tool got the agent's time, not the wait's
    step = rt.store.steps(run_id)[0]
    assert step.outcome == "timeout" and step.error == "turn ran past 1s"


async def test_concurrent_double_approval_runs_the_call_exactly_once(project_dir: Path) -> None:
    calls: list[str] = []
    replies = [{"tool": "deploy", "args": {"target": "prod"}}, "done"]
    rt, _, run_id, handle, _ = await start(project_dir, "", replies, calls)
    [pending] = await wait_for_pending(ApprovalService(rt))
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def approve() -> None:
        barrier.wait()
        try:
            outcomes.append(ApprovalService(rt).approve(pending.id).status)
        except UserError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=approve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    await handle.get_result()
    assert outcomes == ["approved"] * 4  # each approver sees the call approved...
    assert calls == ["prod"]  # ...and it ran exactly once
    assert len([e for e in rt.store.events(run_id) if e.type == "tool_called"]) == 1


async def test_denied_call_is_an_observation_for_the_agent(project_dir: Path) -> None:
    calls: list[str] = []
    replies = [{"tool": "deploy", "args": {"target": "prod"}}, "gave up"]
    rt, _, run_id, handle, model = await start(project_dir, "", replies, calls)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    approvals.deny(pending.id, "not on a Friday")
    await handle.get_result()
    assert calls == [] and rt.store.get_run(run_id).status == "succeeded"
    observation = model.calls[1].request.messages[-1].content
    assert "denied" in observation and "not on a Friday" in observation


async def test_edit_changes_arguments_after_validating_them(project_dir: Path) -> None:
    calls: list[str] = []
    replies = [{"tool": "deploy", "args": {"target": "prod"}}, "done"]
    rt, _, _, handle, _ = await start(project_dir, "", replies, calls)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    with pytest.raises(UserError, match="invalid arguments for deploy"):
        approvals.edit(pending.id, {"target": 5, "extra": True})
    approvals.edit(pending.id, {"target": "staging"})
    approvals.approve(pending.id)
    await handle.get_result()
    assert calls == ["staging"]


TWO_DEPLOYS = [{"tool": "deploy", "args": {"target": "a"}}, {"tool": "deploy", "args": {"target": "b"}}, "done"]


async def test_once_policy_asks_once_per_tool(project_dir: Path) -> None:
    calls: list[str] = []
    rt, _, _, handle, _ = await start(project_dir, "approval: once", TWO_DEPLOYS, calls)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    approvals.approve(pending.id)
    await handle.get_result()
    assert calls == ["a", "b"] and len(approvals.list(None)) == 1


async def test_never_policy_does_not_ask_at_all(project_dir: Path) -> None:
    calls: list[str] = []
    rt, _, run_id, handle, _ = await start(project_dir, "approval: never", TWO_DEPLOYS, calls)
    await handle.get_result()
    assert calls == ["a", "b"] and ApprovalService(rt).list(None, run_id) == []


async def test_a_call_with_arguments_the_tool_refuses_fails_without_asking_a_person(project_dir: Path) -> None:
    """Nobody is asked to approve a call that could never run: the agent reads why and tries again."""
    calls: list[str] = []
    replies = [{"tool": "deploy", "args": {"tgt": "prod"}}, {"tool": "deploy", "args": {"target": "prod"}}, "done"]
    rt, _, run_id, handle, model = await start(project_dir, "", replies, calls)
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    assert pending.arguments == {"target": "prod"}  # the first, invalid call was never put to a person
    assert "invalid arguments for deploy" in model.calls[1].request.messages[-1].content
    approvals.approve(pending.id)
    await handle.get_result()
    assert calls == ["prod"] and len(approvals.list(None, run_id)) == 1


async def test_forbidden_tools_and_file_policy_are_refused_as_observations(project_dir: Path) -> None:
    calls: list[str] = []
    replies = [
        {"tool": "wipe", "args": {"path": "/"}},
        {"tool": "files.write", "args": {"path": "secrets/x.md", "content": "no"}},
        {"tool": "files.write", "args": {"path": "drafts/x.md", "content": "ok"}},
        "done",
    ]
    rt, _, run_id, handle, model = await start(project_dir, "", replies, calls)
    await handle.get_result()
    observations = [c.request.messages[-1].content for c in model.calls[1:]]
    assert "tool 'wipe' is forbidden" in observations[0]
    assert "may not write 'secrets/x.md'; allowed to write: drafts/*" in observations[1]
    assert observations[2].startswith("wrote")
    workspace = Path(rt.store.get_run(run_id).workspace or "")
    assert (workspace / "drafts" / "x.md").read_text() == "ok" and not (workspace / "secrets").exists()
    assert calls == []


async def test_too_many_failed_tool_calls_end_the_turn() -> None:
    registry = ToolRegistry()
    register_builtins(registry)
    team = """
    name: clumsy
    agents:
      a: {model: fake, system: x, tools: [files.read], limits: {max_tool_errors: 2}}
    graph: {start: a, edges: [{from: a, to: end}]}
    """
    model = ScriptedModel([{"tool": "files.read", "args": {"path": f"missing{i}.txt"}} for i in range(5)])
    run, rt = await run_team(team, model, tools=registry)
    assert run.status == "failed" and rt.store.steps(run.id)[0].outcome == "tool_errors"
    assert len(model.calls) == 2


async def test_python_run_executes_in_the_sandbox_and_shell_run_needs_approval(project_dir: Path) -> None:
    registry = ToolRegistry()
    register_builtins(registry)
    team = """
    name: coder
    agents:
      dev: {model: fake, system: code, tools: [python.run, shell.run, files.read]}
    graph: {start: dev, edges: [{from: dev, to: end}]}
    """
    model = ScriptedModel(
        [
            {"tool": "python.run", "args": {"code": "open('out.txt','w').write('42'); print(6*7)"}},
            {"tool": "python.run", "args": {"code": "import socket; socket.create_connection(('127.0.0.1', 9), 2)"}},
            {"tool": "shell.run", "args": {"command": "echo hi"}},
            "done",
        ]
    )
    spec = project_dir / "teams" / "coder.yaml"
    write(spec, team)
    rt = bootstrap(tools=registry)
    rt.models.register("fake", model)
    started = await RunService(rt).start(TeamFile(spec), "compute")
    run_id, handle = started.run.id, started.handle
    approvals = ApprovalService(rt)
    [pending] = await wait_for_pending(approvals)
    assert pending.tool == "shell.run"
    approvals.deny(pending.id, "no shell")
    await handle.get_result()
    first = model.calls[1].request.messages[-1].content
    assert '"stdout": "42\\n"' in first and '"exit_code": 0' in first
    assert "out.txt" in first
    assert '"exit_code": 0' not in model.calls[2].request.messages[-1].content  # no network in the sandbox
    assert "denied" in model.calls[3].request.messages[-1].content
    assert rt.store.get_run(run_id).status == "succeeded"
