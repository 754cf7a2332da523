"""The supervisor's model and memory actions do what they say: ``fallback_model`` and ``change_model``
run the failed team again as a new run with the failing agent's model swapped (the recorded snapshot,
a trigger naming the incident), ``change_memory_budget`` on a run raises the model pool's budget for
the rerun (and puts it back when the rerun fails), and an action that cannot apply escalates at once
with the reason. A change is planned once, when decided: the approval shows it and the apply step
applies it. Every rerun (a retry too) runs the recorded snapshot in the failed run's project, keyed so
a replayed apply finds it. The choices are tested on fed-in snapshots; the actions in process (DBOS on
a temp SQLite home, a scripted model deciding)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edgecrew.engine import durable
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService, TeamName
from edgecrew.errors import EdgecrewError
from edgecrew.models.scripted import ScriptedModel
from edgecrew.ops import Ops
from edgecrew.ops.incidents import Decision
from edgecrew.ops.remedies import (
    BudgetChange,
    Unfit,
    budget_as_planned,
    budget_change,
    model_change,
    model_change_as_planned,
)
from edgecrew.projects import ProjectService
from edgecrew.store.incidents import IncidentRecord
from tests.conftest import write
from tests.unit.test_supervisor_approval import _served, _until

MiB = 2**20

SNAPSHOT: dict[str, Any] = {
    "name": "duo",
    "agents": {
        "plan": {"model": "fast", "system": "plan"},
        "write": {"model": {"tag": "coding"}, "system": "write"},
        "save": {"tool": "files.write", "arguments": {}},
    },
    "graph": {"start": "plan", "edges": []},
}
CHAINS = {"fast": ["fast", "slow"], "tag:coding": ["coder", "big-coder", "fast"], "slow": ["slow"]}
ALIASES = {"fast", "slow", "coder", "big-coder"}


def _change(action: str, wanted: str | None = None, failing: str | None = "write", failed: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return model_change(
        SNAPSHOT,
        action,
        wanted,
        failing_agent=failing,
        failed_models=failed,
        aliases=ALIASES,
        candidates=lambda ref: CHAINS[ref],
    )


# -- the choices, on fed-in snapshots ----------------------------------------------------------------


def test_fallback_model_takes_the_failing_agents_chain_past_the_models_that_failed() -> None:
    change = _change("fallback_model", failed=("coder", "big-coder"))
    assert change.swapped == {"write": ("tag:coding", "fast")}
    assert change.snapshot["agents"]["write"]["model"] == "fast"
    assert change.snapshot["agents"]["plan"] == SNAPSHOT["agents"]["plan"]
    assert SNAPSHOT["agents"]["write"]["model"] == {"tag": "coding"}  # the recorded snapshot is left as it was
    # No call recorded an error (the model answered, badly): the chain's first is the one to leave.
    assert _change("fallback_model").swapped == {"write": ("tag:coding", "big-coder")}


def test_fallback_model_takes_the_named_alias_unless_it_is_the_one_that_failed() -> None:
    assert _change("fallback_model", "slow").swapped == {"write": ("tag:coding", "slow")}
    assert _change("fallback_model", "coder", failed=("coder",)).swapped == {"write": ("tag:coding", "big-coder")}


def test_with_no_failing_step_every_model_agent_is_swapped_and_tool_agents_never() -> None:
    change = _change("change_model", "big-coder", failing=None)
    assert change.swapped == {"plan": ("fast", "big-coder"), "write": ("tag:coding", "big-coder")}
    assert "model" not in change.snapshot["agents"]["save"]
    assert "agent plan: fast -> big-coder" in change.describe()


@pytest.mark.parametrize(
    ("action", "wanted", "failed", "says"),
    [
        ("change_model", None, (), "names no model"),
        ("change_model", "nosuch", (), "no model alias 'nosuch'"),
        ("fallback_model", "nosuch", (), "no model alias 'nosuch'"),
        ("fallback_model", None, ("coder", "big-coder", "fast"), "no fallback that has not failed"),
    ],
)
def test_a_model_change_that_cannot_apply_says_why(
    action: str, wanted: str | None, failed: tuple[str, ...], says: str
) -> None:
    with pytest.raises(Unfit, match=says):
        _change(action, wanted, failed=failed)
    with pytest.raises(Unfit, match="already use model 'fast'"):
        _change("change_model", "fast", failing="plan")


def test_a_memory_budget_change_applies_only_to_a_pool_this_process_holds() -> None:
    assert budget_change(200 * MiB, 400 * MiB, machine=8192 * MiB, remote=False).after == 400 * MiB
    for wanted, remote, says in (
        (400 * MiB, True, "cluster workers"),
        (None, False, "names no memory"),
        (9000 * MiB, False, "more than this machine's memory"),
        (200 * MiB, False, "already"),
        (100 * MiB, False, "less than the model pool's budget"),  # it would shrink it for every other run
    ):
        with pytest.raises(Unfit, match=says):
            budget_change(200 * MiB, wanted, machine=8192 * MiB, remote=remote)


def test_a_failing_tool_agent_calls_no_model_so_no_model_change_fits() -> None:
    with pytest.raises(Unfit, match="the failing step save of team duo is a tool agent: it calls no model"):
        _change("fallback_model", "slow", failing="save")


def test_a_planned_change_is_applied_as_planned_while_it_still_holds() -> None:
    plan = _change("fallback_model", failed=("coder",)).plan()
    assert plan == {"change": "agent write: tag:coding -> big-coder", "swap": {"write": ["tag:coding", "big-coder"]}}
    again = model_change_as_planned(SNAPSHOT, plan["swap"], aliases=ALIASES)
    assert (
        again.swapped == {"write": ("tag:coding", "big-coder")}
        and again.snapshot["agents"]["write"]["model"] == "big-coder"
    )
    with pytest.raises(Unfit, match="'big-coder' is gone from the registry"):
        model_change_as_planned(SNAPSHOT, plan["swap"], aliases=ALIASES - {"big-coder"})
    with pytest.raises(Unfit, match="agent write uses model 'tag:coding' now, not 'fast' as planned"):
        model_change_as_planned(SNAPSHOT, {"write": ["fast", "slow"]}, aliases=ALIASES)
    planned = BudgetChange(200 * MiB, 400 * MiB)
    assert budget_as_planned(planned, 200 * MiB, machine=8192 * MiB, remote=False) == planned
    assert budget_as_planned(planned, 400 * MiB, machine=8192 * MiB, remote=False) == planned  # a replay
    with pytest.raises(Unfit, match="budget is 300 MiB now, not 200 MiB as planned"):
        budget_as_planned(planned, 300 * MiB, machine=8192 * MiB, remote=False)


# -- the actions, in process ---------------------------------------------------------------------------

TEAM = """\
name: solo
agents:
  first: {model: good, system: one}
  writer: {model: broken, system: two}
graph: {start: first, edges: [{from: first, to: writer}, {from: writer, to: end}]}
"""


def _project(decision: str, *, broken: str = "replies: [{error: auth}]") -> str:
    return f"""\
models:
  local:
    backend: scripted
    cycle: true
    replies:
      - json: {decision}
  good:
    backend: scripted
    cycle: true
    replies: ["fine"]
  broken:
    backend: scripted
    cycle: true
    {broken}
policies: {{}}
"""


async def _failed_run(rt: Runtime, project: str | None = None) -> str:
    summary = await RunService(rt).run(TeamName("solo"), "write it", project=project)
    assert summary.run.status.value == "failed", summary.run
    return summary.run.id


async def _ended(rt: Runtime, incident_id: str) -> IncidentRecord:
    sup = Ops.of(rt).supervisor
    try:
        ended: IncidentRecord = await _until(
            lambda: sup.get(incident_id).ended and sup.get(incident_id), "the incident to end", 30
        )
    except AssertionError:
        raise AssertionError(f"{sup.get(incident_id)}\n{sup.events(incident_id)}") from None
    return ended


async def _incident(rt: Runtime, failed: str) -> IncidentRecord:
    [incident] = [i for i in await Ops.of(rt).supervisor.scan() if i.subject == failed]
    assert incident.kind == "run_failed"
    return incident


async def _approve(rt: Runtime, incident: IncidentRecord) -> None:
    sup = Ops.of(rt).supervisor

    def asked() -> Any:
        run = sup.get(incident.id).approval_run
        found = ApprovalService(rt).list("pending", run) if run else []
        return found[0] if found else None

    approval = await _until(asked, "the approval to be asked")
    await asyncio.sleep(0.3)
    assert sup.get(incident.id).attempts == 0  # nothing applied before a person approves
    ApprovalService(rt).approve(approval.id)


@asynccontextmanager
async def _supervised(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, decision: str, **models: str
) -> AsyncIterator[Runtime]:
    """DBOS and the jobs runner up on the project (team ``solo``, the supervisor's model answering
    ``decision``), stopped at the end."""
    write(project_dir / "teams" / "solo.yaml", TEAM)
    rt = await _served(project_dir, monkeypatch, _project(decision, **models))
    try:
        yield rt
    finally:
        await Ops.of(rt).jobs.stop()
        durable.shutdown()


def _short_of_memory(project_dir: Path, monkeypatch: pytest.MonkeyPatch, decision: str) -> Any:
    """:func:`_supervised` with a pool budget of 200 MiB, which model ``broken`` (300 MiB) does not fit."""
    monkeypatch.setenv("EDGECREW_MODEL_MEMORY", "200MiB")
    return _supervised(project_dir, monkeypatch, decision, broken='memory: 300MiB\n    replies: ["big"]')


async def _healed_by_a_rerun(rt: Runtime, incident: IncidentRecord, *, approve: bool = False) -> Any:
    """Wait for the incident to heal (approving its action first) and return the run that healed it."""
    if approve:
        await _approve(rt, incident)
    ended = await _ended(rt, incident.id)
    assert ended.state == "healed" and ended.attempts == 1, ended
    assert ended.follow_up is not None and ended.follow_up.startswith("run:")
    rerun = RunService(rt).get(ended.follow_up.removeprefix("run:"))
    assert rerun.status.value == "succeeded" and rerun.task == "write it"
    return rerun


async def test_fallback_model_reruns_the_run_with_the_named_model_and_heals_it(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = '{action: fallback_model, reason: "broken rejects us", params: {model: good}}'
    async with _supervised(project_dir, monkeypatch, decision) as rt:
        failed = await _failed_run(rt)
        incident = await _incident(rt, failed)
        rerun = await _healed_by_a_rerun(rt, incident)
        assert Ops.of(rt).supervisor.get(incident.id).action == "fallback_model"
        assert rerun.spec["agents"]["writer"]["model"] == "good" and rerun.spec["agents"]["first"]["model"] == "good"
        assert rerun.trigger == {
            "kind": "supervisor",
            "incident": incident.id,
            "action": "fallback_model",
            "change": "agent writer: broken -> good",
        }
        assert RunService(rt).get(failed).spec["agents"]["writer"]["model"] == "broken"  # left as it was
        kinds = [e.kind for e in Ops.of(rt).supervisor.events(incident.id)]
        assert kinds == ["detected", "decided", "changed", "applied", "healed"], kinds
        # It says what healed it: a rerun with the change, not a retry (which changes nothing).
        healed = Ops.of(rt).supervisor.get(incident.id)
        assert healed.reason == f"its rerun with agent writer: broken -> good, run {rerun.id}, succeeded"


CHANGE_TO_GOOD = '{action: change_model, reason: "use the good one", params: {model: good}}'


async def _asked_to_approve(rt: Runtime) -> tuple[IncidentRecord, str]:
    """A failed run's incident whose risky action waits for approval, and its approval run."""
    incident = await _incident(rt, await _failed_run(rt))
    sup = Ops.of(rt).supervisor
    return incident, await _until(lambda: sup.get(incident.id).approval_run, "the approval run")


async def test_change_model_goes_through_the_approval_gate_then_reruns_with_that_model(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _supervised(project_dir, monkeypatch, CHANGE_TO_GOOD) as rt:
        incident, run = await _asked_to_approve(rt)
        sup = Ops.of(rt).supervisor
        decided = sup.get(incident.id).action_params
        # Planned once, when decided (the failing agent from the diagnosis), and stored with the decision.
        assert decided == {
            "model": "good",
            "plan": {"change": "agent writer: broken -> good", "swap": {"writer": ["broken", "good"]}},
        }
        approval = await _until(lambda: ApprovalService(rt).list("pending", run), "the approval")
        assert approval[0].arguments["request"].endswith("\nChange: agent writer: broken -> good")

        def planned_again(*_args: Any) -> Any:
            raise AssertionError("the change is planned again at apply time")

        monkeypatch.setattr(sup.reruns, "_change", planned_again)
        rerun = await _healed_by_a_rerun(rt, incident, approve=True)
        assert rerun.spec["agents"]["writer"]["model"] == "good"
        assert rerun.trigger["action"] == "change_model" and rerun.trigger["incident"] == incident.id


async def test_an_approved_change_that_no_longer_holds_escalates_instead_of_applying_another(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _supervised(project_dir, monkeypatch, CHANGE_TO_GOOD) as rt:
        incident, _ = await _asked_to_approve(rt)
        aliases = rt.models.aliases()
        monkeypatch.setattr(rt.models, "aliases", lambda: [a for a in aliases if a != "good"])  # gone since
        await _approve(rt, incident)
        ended = await _ended(rt, incident.id)
        assert ended.state == "escalated" and ended.attempts == 0, ended
        assert "model alias 'good' is gone from the registry since the change was planned" in str(ended.reason)


async def test_change_memory_budget_on_a_run_raises_the_pool_budget_before_the_rerun(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = '{action: change_memory_budget, reason: "broken needs more room", params: {memory_mb: 400}}'
    async with _short_of_memory(project_dir, monkeypatch, decision) as rt:
        failed = await _failed_run(rt)
        assert "pool budget is 200 MiB" in str(RunService(rt).get(failed).error)
        rerun = await _healed_by_a_rerun(rt, await _incident(rt, failed), approve=True)
        assert rt.pool.budget_bytes == 400 * MiB
        assert rerun.spec == RunService(rt).get(failed).spec  # the same team: only the budget changed
        assert rerun.trigger["change"] == "model pool budget 200 MiB -> 400 MiB"


async def test_a_budget_rerun_that_fails_puts_the_budget_back(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = '{action: change_memory_budget, reason: "a little more", params: {memory_mb: 250}}'
    async with _short_of_memory(project_dir, monkeypatch, decision) as rt:
        incident = await _incident(rt, await _failed_run(rt))
        await _approve(rt, incident)
        ended = await _ended(rt, incident.id)
        assert ended.state == "escalated" and ended.attempts == 1, ended
        assert str(ended.reason).endswith("(model pool budget 250 MiB -> 200 MiB)"), ended.reason
        assert rt.pool.budget_bytes == 200 * MiB
        assert "restored" in [e.kind for e in Ops.of(rt).supervisor.events(incident.id)]


async def test_a_budget_change_whose_rerun_cannot_be_recorded_leaves_the_budget_as_it_was(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = '{action: escalate, reason: "not asked", params: {}}'
    async with _short_of_memory(project_dir, monkeypatch, decision) as rt:
        sup = Ops.of(rt).supervisor
        incident = await _incident(rt, await _failed_run(rt))
        await _ended(rt, incident.id)

        def unrecordable(*_args: Any, **_kwargs: Any) -> Any:
            raise EdgecrewError("the team is invalid")

        monkeypatch.setattr(RunService, "record", unrecordable)
        with pytest.raises(EdgecrewError, match="the team is invalid"):
            sup.reruns.changed(incident, 1, "change_memory_budget", {"memory_bytes": 400 * MiB})
        assert rt.pool.budget_bytes == 200 * MiB


async def test_a_retry_reruns_the_recorded_team_in_the_failed_runs_project_once_however_often_applied(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _supervised(project_dir, monkeypatch, '{action: escalate, reason: "not asked", params: {}}') as rt:
        late = ScriptedModel(lambda _req, index: {"error": "timeout"} if index == 0 else "late")
        rt.models.register("broken", late)
        project = ProjectService.of(rt).create("Launch")
        failed = await _failed_run(rt, project="Launch")
        # The team's YAML changes after the failure: a retry runs the team as it ran.
        write(project_dir / "teams" / "solo.yaml", TEAM.replace("system: two", "system: edited"))
        incident = await _incident(rt, failed)
        rerun = await _healed_by_a_rerun(rt, incident)
        assert rerun.spec == RunService(rt).get(failed).spec and rerun.spec["agents"]["writer"]["system"] == "two"
        assert ProjectService.of(rt).project_id_of_run(rerun.id) == project.id
        # A replay of the apply step (attempts already raised) finds the rerun it made.
        sup = Ops.of(rt).supervisor
        done = sup.get(incident.id)
        decision = Decision(str(done.action), str(done.reason), dict(done.action_params or {}), "rule")
        assert await sup.apply(incident.id, decision) == f"run:{rerun.id}"
        again = sup.get(incident.id)
        assert again.attempts == 1 and again.follow_up == f"run:{rerun.id}"
        reruns = [r for r in rt.store.list_runs(limit=50) if (r.trigger or {}).get("incident") == incident.id]
        assert [r.id for r in reruns] == [rerun.id]


async def test_a_run_that_failed_on_a_timeout_is_retried_by_the_rule_and_heals(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rerun is recorded in the apply step and started by the incident's workflow: a DBOS step
    # cannot start a workflow (it used to fail the incident's workflow and leave the incident open).
    async with _supervised(project_dir, monkeypatch, '{action: escalate, reason: "not asked", params: {}}') as rt:
        # A scripted list answers a step key the same in every run: this one times out only once.
        late = ScriptedModel(lambda _req, index: {"error": "timeout"} if index == 0 else "late")
        rt.models.register("broken", late)
        incident = await _incident(rt, await _failed_run(rt))
        rerun = await _healed_by_a_rerun(rt, incident)
        assert Ops.of(rt).supervisor.get(incident.id).decided_by == "rule" and rerun.output == {"text": "late"}
        assert rerun.trigger == {"kind": "supervisor", "incident": incident.id}


async def test_a_model_change_that_cannot_apply_escalates_at_once_with_the_reason(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = '{action: change_model, reason: "try another", params: {model: nosuch}}'
    async with _supervised(project_dir, monkeypatch, decision) as rt:
        incident = await _incident(rt, await _failed_run(rt))
        ended = await _ended(rt, incident.id)
        assert ended.state == "escalated" and ended.approval_run is None and ApprovalService(rt).list() == []
        assert ended.reason is not None and ended.reason.startswith("the model chose change_model, but no model alias")
        assert ended.regression_path is not None and ended.attempts == 0


async def test_a_model_change_for_a_command_job_escalates_it_has_no_model(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = '{action: fallback_model, reason: "another model", params: {model: good}}'
    async with _supervised(project_dir, monkeypatch, decision) as rt:
        jobs = Ops.of(rt).jobs
        job = await jobs.submit(argv=["sh", "-c", "echo odd >&2; exit 3"], name="odd")
        await _until(lambda: jobs.get(job.id).finished, "the job to fail")
        [incident] = await Ops.of(rt).supervisor.scan()
        ended = await _ended(rt, incident.id)
        assert ended.state == "escalated", ended
        assert ended.reason == (
            f"the model chose fallback_model, but job {job.id} is a command, not a team run: it has no model"
        )


async def test_a_rerun_of_a_chat_run_answers_the_sessions_message(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecrew.engine.sessions import ChatSessions

    async with _supervised(project_dir, monkeypatch, '{action: escalate, reason: "not asked", params: {}}') as rt:
        late = ScriptedModel(lambda _req, index: {"error": "timeout"} if index == 0 else "late")
        rt.models.register("broken", late)
        chats = ChatSessions(RunService(rt), remember=False)
        session = chats.create("solo")
        said = await chats.say(session.id, "write it")
        assert said.status == "failed" and said.answer is None
        failed = said.run.id
        rerun = await _healed_by_a_rerun(rt, await _incident(rt, failed))
        # The session shows the rerun's answer to the message, not the failure it replaced.
        question, answer = chats.turns(session.id)
        assert (question.content, question.run_id) == ("write it", rerun.id)
        assert (answer.role, answer.content, answer.run_id) == ("assistant", "late", rerun.id)
        assert chats.failed_answers([question, answer]) == set()
        assert RunService(rt).get(failed).status.value == "failed"  # the failed run is kept as it was
        # The conversation goes on from the answer.
        rt.models.register("broken", ScriptedModel(["next"]))
        after = await chats.say(session.id, "and again")
        assert after.status == "answered" and "assistant: late" in after.run.task
