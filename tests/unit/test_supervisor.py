"""The supervisor without DBOS: detection and the rule table on fed-in records and a fed-in clock, the
model's answer checked against the schema, the store's one-incident-per-subject, regression cases that
parse and name their reproduction, and the API, CLI and page reading incidents."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgecrew.app import create_app
from edgecrew.bootstrap import bootstrap
from edgecrew.domain.events import EventRecord
from edgecrew.domain.messages import ToolCall
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.toolcall import execute_tool
from edgecrew.ops import Ops
from edgecrew.ops.incidents import (
    Decision,
    Finding,
    RuleLimits,
    classify_job,
    execution_findings,
    fingerprint,
    job_findings,
    load_regression,
    model_findings,
    param_problem,
    parse_choice,
    regression_case,
    rule_for,
    run_findings,
    tool_findings,
    worker_findings,
    write_regression,
)
from edgecrew.ops.supervisor import Supervisor, register_watcher
from edgecrew.settings import reset_settings
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function
from tests.conftest import write

MiB = 2**20
NOW = 1_750_000_000.0


def _job(**values: Any) -> SimpleNamespace:
    base = {
        "id": "j1",
        "name": "hog",
        "kind": "command",
        "argv": ["python3", "-c", "x"],
        "team": None,
        "task": None,
        "sandbox": True,
        "needs": {"memory_bytes": 200 * MiB},
        "tags": [],
        "priority": 50,
        "state": "failed",
        "reason": "exited with code 1",
        "exit_code": 1,
        "run_id": None,
        "submitted_by": None,
        "usage": {"peak_rss_bytes": 190 * MiB, "cpu_s": 0.3, "wall_s": 0.5},
    }
    return SimpleNamespace(**{**base, **values})


# -- detection on fed-in records ---------------------------------------------------------------------


def test_a_job_that_ran_out_of_memory_is_an_oom_incident_with_its_figures() -> None:
    stderr = 'Traceback (most recent call last):\n  File "<string>", line 1\nMemoryError\n'
    [found] = job_findings([_job()], {"j1": ("", stderr)}, default_limit=512 * MiB)
    assert found.kind == "oom" and found.subject == "j1" and found.subject_type == "job"
    assert found.diagnosis["resources"]["memory_limit_bytes"] == 200 * MiB
    assert found.diagnosis["resources"]["peak_rss_bytes"] == 190 * MiB
    assert found.diagnosis["stderr_tail"][-1] == "MemoryError"
    assert found.error == "exited with code 1: MemoryError"
    # A job's reason already ends with its last line of stderr (JobService): not said twice.
    [again] = job_findings([_job(reason="exited with code 1: MemoryError")], {"j1": ("", stderr)}, 512 * MiB)
    assert again.error == "exited with code 1: MemoryError"


def test_a_job_killed_at_its_memory_limit_is_oom_and_a_plain_failure_is_not() -> None:
    assert classify_job("killed by SIGKILL", "", 199 * MiB, 200 * MiB) == "oom"
    assert classify_job("killed by SIGKILL", "", 20 * MiB, 200 * MiB) == "job_failed"
    assert classify_job("exited with code 3", "flux capacitor misaligned", None, None) == "job_failed"


def test_jobs_the_supervisor_submitted_and_jobs_that_did_not_fail_are_not_incidents() -> None:
    jobs = [_job(id="j2", submitted_by="supervisor:iabc#1"), _job(id="j3", state="succeeded")]
    assert job_findings(jobs, {}, 512 * MiB) == []


def test_a_sandboxed_job_without_a_declared_limit_has_the_sandbox_default() -> None:
    [found] = job_findings([_job(needs={})], {"j1": ("", "MemoryError")}, default_limit=256 * MiB)
    assert found.diagnosis["resources"]["memory_limit_bytes"] == 256 * MiB


def _event(
    kind: str, data: dict[str, Any], agent: str = "writer", *, run_id: str = "r1", at: float = NOW
) -> EventRecord:
    """A stored event row as the store gives it (the readers take its typed payload)."""
    return EventRecord(
        id=1, run_id=run_id, key=f"v001.{agent}.{kind}", type=kind, step_key=f"v001.{agent}", agent=agent,
        data=data, created_at=at,
    )  # fmt: skip


def test_a_failed_run_names_its_failing_step_and_model_errors_and_a_jobs_run_is_skipped() -> None:
    runs = [
        {"id": "r1", "team": "crew", "task": "t", "error": "agent writer failed", "trigger": None},
        {"id": "r2", "team": "crew", "task": "t", "error": "x", "trigger": {"kind": "job", "job": "j1"}},
    ]
    events = {
        "r1": [
            _event("model_called", {"alias": "local", "error": "model 'local' did not answer within 30s"}, "writer"),
            _event("step_finished", {"outcome": "error", "error": "no answer"}, "writer"),
        ]
    }
    [found] = run_findings(runs, events)
    assert found.kind == "run_failed" and found.subject == "r1"
    assert found.diagnosis["failing_step"] == "v001.writer" and found.diagnosis["models"] == ["local"]
    assert rule_for(found.kind, found.diagnosis, 0, RuleLimits()) == Decision(
        "retry", "its model failed with a transient error (a timeout or an unreachable server)"
    )


def test_only_the_supervisor_s_own_team_is_skipped_not_every_team_named_supervisor_something() -> None:
    """A failed run of a user's team "supervisor-digest" was no incident: every team whose name began with
    "supervisor" was taken for the supervisor's own."""
    runs = [
        {"id": "r1", "team": "supervisor-digest", "task": "t", "error": "agent writer failed"},
        {"id": "r2", "team": "supervisor-action", "task": "t", "error": "'supervisor.apply' failed"},
    ]
    assert [f.subject for f in run_findings(runs, {})] == ["r1"]


def test_a_run_failed_after_a_person_denied_an_approval_is_not_an_incident() -> None:
    runs = [
        {"id": "r1", "team": "crew", "task": "t", "error": "'k8s.deploy' failed: a person denied this call"},
        {"id": "r2", "team": "crew", "task": "t", "error": "agent writer failed", "denied_approval": None},
    ]
    runs[0]["denied_approval"] = "a0123456789abcde"
    assert [f.subject for f in run_findings(runs, {})] == ["r2"]


def test_a_run_whose_answer_says_its_work_failed_is_not_an_incident() -> None:
    """build-loop's run fails with its task (failed_when): the task failed its checks, a result for whoever
    asked, as a failed execution is, not something for the supervisor to heal."""
    answered = "the team's answer says its work failed (failed_when: status == 'failed')"
    runs = [
        {"id": "r1", "team": "build-loop", "task": "t", "error": answered},
        {"id": "r2", "team": "crew", "task": "t", "error": "agent writer failed"},
    ]
    assert [f.subject for f in run_findings(runs, {})] == ["r2"]


def _execution(ident: int, status: str, checks_total: int | None, reason: str) -> dict[str, Any]:
    return {
        "id": ident,
        "task_id": "t1",
        "version": 2,
        "status": status,
        "checks_total": checks_total,
        "reason": reason,
    }


def test_only_an_execution_edgecrew_could_not_run_is_an_incident() -> None:
    executions = [
        _execution(1, "failed", 2, "io check 2 failed (input '2 2'): expected '5', got '4'"),
        _execution(2, "failed", 1, "io check 1 failed: killed by the sandbox: wall (ran past its 4s limit)"),
        _execution(3, "failed", 0, "the task's checks or limits are invalid: io: expected a list"),
        _execution(4, "killed", None, "cancelled: the sandbox was killed"),
        _execution(5, "interrupted", None, "interrupted: edgecrew stopped while it ran; run it again"),
        _execution(6, "failed", None, "edgecrew could not run version 2: [Errno 28] No space left on device"),
    ]
    [found] = execution_findings(executions)
    assert found.kind == "execution" and found.subject == "6" and "No space left" in found.error
    case = regression_case(SimpleNamespace(id="ie", **vars(found)), "x")
    assert case.command() == ["edgecrew", "tasks", "run", "t1", "2"]


def test_model_failures_are_one_incident_per_model_per_window() -> None:
    failed = {"alias": "big", "error": "could not load model big: out of memory"}
    calls = [_event("model_called", failed, run_id=f"r{i}", at=NOW + i) for i in range(3)]
    calls += [_event("model_called", {"alias": "small"}, run_id="r9")]
    [found] = model_findings(calls, bucket_s=600)
    assert found.kind == "model" and found.subject.startswith("big@") and found.diagnosis["failed_calls"] == 3


def test_a_tool_failing_past_the_threshold_over_the_window_is_an_incident() -> None:
    def call(tool: str, ok: bool, ago: float) -> EventRecord:
        return _event("tool_called", {"tool": tool, "is_error": not ok, "result": "HTTP 500"}, at=NOW - ago)

    calls = [call("http.get", False, 10) for _ in range(4)] + [call("http.get", True, 10)]
    calls += [call("files.read", False, 10), call("files.read", True, 10)]  # too few calls
    calls += [call("old.tool", False, 5000) for _ in range(9)]  # outside the window
    [found] = tool_findings(calls, NOW, window_s=600, threshold=0.5, min_calls=5)
    assert found.kind == "tool_errors" and found.diagnosis["error_rate"] == 0.8
    assert tool_findings(calls, NOW, window_s=600, threshold=0.9, min_calls=5) == []


async def test_calls_the_tool_refused_before_running_are_the_models_mistakes_not_the_tools_failures() -> None:
    # The engine's own words for a call that never ran (bad arguments, no such tool, not allowed).
    registry = ToolRegistry()
    registry.register(spec_from_function(_add, name="calc.add"))
    ctx = ToolContext(run_id="r1", agent="maths", workspace=Path("."))
    refused = [
        (await execute_tool(registry, ToolCall("c", name, args), allowed, ctx, 5))[0]
        for name, args, allowed in (
            ("calc.add", {"a": "x"}, ["calc.add"]),  # a small model's bad argument
            ("calc.nope", {}, ["calc.add"]),
            ("calc.add", {"a": 1, "b": 2}, []),
        )
    ]

    def call(result: str, ok: bool = False) -> EventRecord:
        return _event("tool_called", {"tool": "calc.add", "is_error": not ok, "result": result}, at=NOW - 10)

    misused = [call(text) for text in refused * 2] + [call("3", ok=True)]
    assert tool_findings(misused, NOW, window_s=600, threshold=0.5, min_calls=5) == []
    broken = misused + [call("error: tool 'calc.add' failed: OSError: disk full") for _ in range(5)]
    [found] = tool_findings(broken, NOW, window_s=600, threshold=0.5, min_calls=5)
    assert (found.diagnosis["calls"], found.diagnosis["failed"]) == (6, 5)
    assert found.title == "tool calc.add failed 83% of 6 calls"


def _add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_a_worker_silent_past_its_lease_is_lost() -> None:
    workers = [
        {"id": "h1:1:1", "host": "h1", "state": "alive", "heartbeat_at": NOW - 30},
        {"id": "h2:1:1", "host": "h2", "state": "alive", "heartbeat_at": NOW - 1},
        {"id": "h3:1:1", "host": "h3", "state": "stopped", "heartbeat_at": NOW - 999},
    ]
    [found] = worker_findings(workers, NOW, lease_s=10)
    assert found.kind == "worker_lost" and found.subject.startswith("h1:1:1@")


def test_the_fingerprint_ignores_ids_numbers_and_paths() -> None:
    a = fingerprint("job_failed", "job", "exited with code 3: error at /tmp/x1/run.py line 12 id 0a1b2c3d4e")
    b = fingerprint("job_failed", "job", "exited with code 7: error at /srv/y/run.py line 99 id ffeeddccbb")
    assert a == b
    assert a != fingerprint("job_failed", "job", "exited with code 3: disk full")


# -- the rule table ----------------------------------------------------------------------------------


def test_oom_doubles_the_memory_up_to_the_cap_and_then_escalates() -> None:
    limits = RuleLimits(memory_factor=2.0, memory_cap_bytes=1024 * MiB, max_attempts=3)
    first = rule_for("oom", {"resources": {"memory_limit_bytes": 200 * MiB}}, 0, limits)
    assert (
        first is not None and first.action == "retry_with_more_memory" and first.params == {"memory_bytes": 400 * MiB}
    )
    capped = rule_for("oom", {"resources": {"memory_limit_bytes": 700 * MiB}}, 1, limits)
    assert capped is not None and capped.params == {"memory_bytes": 1024 * MiB}
    at_cap = rule_for("oom", {"resources": {"memory_limit_bytes": 1024 * MiB}}, 2, limits)
    assert at_cap is not None and at_cap.action == "escalate" and "cap" in at_cap.reason
    spent = rule_for("oom", {"resources": {"memory_limit_bytes": 200 * MiB}}, 3, limits)
    assert spent is not None and spent.action == "escalate"


def test_no_rule_knows_a_strange_exit() -> None:
    assert rule_for("job_failed", {"job": {}}, 0, RuleLimits()) is None


def test_the_models_parameters_must_be_the_ones_its_action_takes() -> None:
    assert param_problem("retry", {}) is None
    assert param_problem("retry_with_more_memory", {"memory_mb": 512}) is None
    assert param_problem("fallback_model", {}) is None and param_problem("change_model", {"model": "good"}) is None
    assert param_problem("escalate", {"anything": 1}) is None  # acts on nothing
    assert param_problem("retry", {"memory_mb": None, "model": None}) is None  # null: not given
    junk = {"memory_mb": 10000, "model": "k8s.deploy", "worker": "k8s.deploy"}
    assert param_problem("retry", junk) == "retry takes no parameters (it was given memory_mb, model, worker)"
    assert param_problem("change_model", {"model": "x", "worker": "w"}) == (
        "change_model takes only params.model (it was given worker)"
    )
    for bad in (-5, 0, "lots", True, 1.5):
        assert "params.memory_mb must be a positive whole number" in str(
            param_problem("change_memory_budget", {"memory_mb": bad})
        )
    assert param_problem("restart_worker", {"worker": " "}) == "params.worker must name a worker (it was given ' ')"


def test_the_models_answer_must_fit_the_schema() -> None:
    choice = parse_choice('{"action": "retry", "reason": "flaky", "params": {}}')
    assert choice.action == "retry"
    for bad, says in (
        ("not json", "not JSON"),
        ('{"action": "reboot", "reason": "x", "params": {}}', "action"),
        ('{"action": "retry", "params": {}}', "reason"),
    ):
        with pytest.raises(ValueError, match=says):
            parse_choice(bad)


def test_an_answer_in_a_code_fence_or_with_null_params_is_read_as_the_json_it_holds() -> None:
    # A LiteLLM model (Ollama, a cloud one) often wraps JSON in a fence even when asked for a schema,
    # as agents' answers are read (their fence is stripped): the action is not lost to "not JSON".
    for fenced in (
        '```json\n{"action": "retry", "reason": "flaky", "params": {}}\n```',
        '```\n{"action": "retry", "reason": "flaky"}\n```\n',
        '  {"action": "retry", "reason": "flaky", "params": null}  ',
    ):
        choice = parse_choice(fenced)
        assert (choice.action, choice.reason, choice.params) == ("retry", "flaky", {}), fenced
    with pytest.raises(ValueError, match="not JSON"):  # a fence around prose is still no answer
        parse_choice("```\nI would retry it\n```")


# -- the service, on a real store --------------------------------------------------------------------


def _answering(project_dir: Path, *replies: str) -> Runtime:
    """A runtime whose `local` model (the supervisor's) gives these replies (YAML flow items) in turn."""
    items = "".join(f"      - {reply}\n" for reply in replies)
    write(project_dir / "edgecrew.yaml", f"models:\n  local:\n    backend: scripted\n    replies:\n{items}")
    return bootstrap()


@pytest.fixture
def rt(project_dir: Path, edgecrew_home: Path) -> Runtime:
    return _answering(
        project_dir, '{json: {action: cancel, reason: "stop it", params: {}}}', '{text: "I think you should retry"}'
    )


def _finding(subject: str = "j1", kind: str = "job_failed") -> Finding:
    return Finding(
        kind,
        "job",
        subject,
        f"failed: job {subject}",
        "exited with code 3: flux",
        {"job": {"id": subject, "kind": "command", "command": ["sh", "-c", "exit 3"], "sandbox": False, "needs": {}}},
    )


def test_a_failure_is_one_incident_however_often_it_is_seen(rt: Runtime) -> None:
    sup = Ops.of(rt).supervisor
    first = sup.record(_finding())
    assert first is not None and first.state == "open" and first.id.startswith("i")
    assert sup.record(_finding()) is None
    assert [i.id for i in sup.list_incidents()] == [first.id] and sup.count(state="open") == 1
    assert [e.kind for e in sup.events(first.id[:6])] == ["detected"]


def test_pluggable_watchers_feed_detection_and_a_broken_one_does_not_blind_the_others(rt: Runtime) -> None:
    sup = Ops.of(rt).supervisor
    register_watcher("test-fed", lambda _sup, since, now: [_finding("j-fed")] if now == NOW else [])
    register_watcher("test-broken", lambda _sup, since, now: 1 / 0)  # type: ignore[arg-type,return-value]
    try:
        found = sup.detect(NOW - 3600, NOW)
        assert [f.subject for f in found] == ["j-fed"]
        sup.record(found[0])
        assert sup.detect(NOW - 3600, NOW) == []  # already an incident
    finally:
        from edgecrew.ops import supervisor as module

        module._WATCHERS.pop("test-fed", None)
        module._WATCHERS.pop("test-broken", None)


async def test_the_model_decides_a_novel_failure_and_a_bad_answer_escalates(rt: Runtime) -> None:
    sup = Ops.of(rt).supervisor
    first = sup.record(_finding("j1"))
    second = sup.record(_finding("j2"))
    assert first is not None and second is not None
    decision = await sup.decide(first.id)
    assert (decision.action, decision.decided_by, decision.risky) == ("cancel", "model", True)
    assert sup.get(first.id).action == "cancel"
    bad = await sup.decide(second.id)
    assert bad.action == "escalate" and "did not fit the schema" in bad.reason


def _run_finding(subject: str) -> Finding:
    diagnosis = {"run": {"id": subject, "team": "crew", "task": "t"}, "failing_step": None, "model_errors": []}
    return Finding("run_failed", "run", subject, f"run {subject} of crew failed", "agent writer failed", diagnosis)


async def test_parameters_the_models_action_does_not_take_are_refused_and_recorded(
    project_dir: Path, edgecrew_home: Path
) -> None:
    runtime = _answering(
        project_dir,
        '{json: {action: retry, reason: "try again", params: {memory_mb: 10000, model: k8s.deploy, '
        "worker: k8s.deploy}}}",
        '{json: {action: retry, reason: "try again", params: {}}}',
    )
    sup = Ops.of(runtime).supervisor
    junk, plain = sup.record(_run_finding("r1")), sup.record(_run_finding("r2"))
    assert junk is not None and plain is not None
    refused = await sup.decide(junk.id)
    assert (refused.action, refused.decided_by) == ("escalate", "model")
    assert (
        refused.reason == "the model chose retry, but retry takes no parameters (it was given memory_mb, model, worker)"
    )
    recorded = sup.get(junk.id)
    assert recorded.action == "escalate" and recorded.reason == refused.reason
    assert recorded.action_params == {"refused": {"memory_mb": 10000, "model": "k8s.deploy", "worker": "k8s.deploy"}}
    assert (await sup.decide(plain.id)).action == "retry"  # the same action with what it takes is kept


def test_the_runs_watcher_leaves_out_a_run_a_person_denied_an_approval_in(rt: Runtime) -> None:
    from edgecrew.domain.runs import RunStatus
    from edgecrew.store.approvals import ApprovalStore

    for run_id in ("r-denied", "r-broken"):
        rt.store.create_run(run_id, "crew", "deploy it", {}, str(rt.project.dir))
        rt.store.set_status(run_id, RunStatus.RUNNING)
    approvals = ApprovalStore(rt.store)
    asked = approvals.request("r-denied", "v001.deploy.m0.t0", "wf", "deploy", "k8s.deploy", {}, "tool agent deploy")
    approvals.decide(asked.id, "denied", "not on Fridays")
    for run_id in ("r-denied", "r-broken"):
        rt.store.set_status(run_id, RunStatus.FAILED, error="'k8s.deploy' failed")
    now = time.time()
    assert [(f.subject_type, f.subject) for f in Ops.of(rt).supervisor.detect(now - 3600, now + 1)] == [
        ("run", "r-broken")
    ]


def test_a_new_failed_run_is_seen_past_the_failures_already_known_and_those_never_incidents(rt: Runtime) -> None:
    # Each scan read the oldest 200 failed runs of the last hour: once 200 were incidents already (a
    # client retrying against a model that is down) or never would be (a job's runs), no new failure
    # was seen until they aged out of the lookback.
    from edgecrew.domain.runs import RunStatus

    sup = Ops.of(rt).supervisor
    for i in range(205):
        run_id = f"r-old{i}"
        rt.store.create_run(run_id, "crew", "x", {}, str(rt.project.dir), trigger=(
            {"kind": "job", "job": f"j{i}"} if i % 2 else None
        ))  # fmt: skip
        rt.store.set_status(run_id, RunStatus.FAILED, error="model down")
        if not i % 2:
            sup.record(Finding("run_failed", "run", run_id, f"run {run_id} failed", "model down", {}))
    rt.store.create_run("r-new", "crew", "x", {}, str(rt.project.dir))
    rt.store.set_status("r-new", RunStatus.FAILED, error="model down")
    now = time.time()
    assert [(f.subject_type, f.subject) for f in sup.detect(now - 3600, now + 1)] == [("run", "r-new")]


def test_the_model_and_tool_watchers_read_the_newest_calls_of_their_window(rt: Runtime) -> None:
    # Each watcher reads at most 5000 calls of its window: it read the oldest, so on a busy box the
    # newest failures (after 5000 calls that went well) went unseen until the window moved past them.
    from edgecrew.domain.events import ModelCalled, ToolCalled

    rt.store.create_run("r-busy", "crew", "x", {}, str(rt.project.dir))
    with rt.store.transaction():
        for i in range(5000):
            rt.store.emit("r-busy", f"m{i}", ModelCalled(alias="good", requested="good"))
            rt.store.emit("r-busy", f"t{i}", ToolCalled(tool="files.read", result="ok"))
        for i in range(5):
            rt.store.emit("r-busy", f"bad-m{i}", ModelCalled(alias="broken", requested="broken", error="down"))
            rt.store.emit("r-busy", f"bad-t{i}", ToolCalled(tool="http.get", is_error=True, result="error: down"))
    now = time.time()
    found = {(f.kind, f.subject.partition("@")[0]): f for f in Ops.of(rt).supervisor.detect(now - 600, now + 1)}
    assert set(found) == {("model", "broken"), ("tool_errors", "http.get")}
    assert found[("model", "broken")].diagnosis["failed_calls"] == 5
    assert found[("tool_errors", "http.get")].diagnosis["calls"] == 5
    # What a watcher reads is the newest of the window, in the order it happened.
    newest = Ops.of(rt).supervisor.store.run_events(["tool_called"], now - 600, limit=3)
    assert [e.key for e in newest] == ["bad-t2", "bad-t3", "bad-t4"]


async def test_the_executions_watcher_sees_only_what_edgecrew_could_not_run(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecrew.tasks import executions as module
    from edgecrew.tasks import parse_checks

    executions = rt.executions
    tasks = executions.tasks
    checks = parse_checks({"io": [{"input": "1 2", "expected": "3"}]}).to_json()
    task = tasks.create("adder", "add two numbers", checks=checks)
    tasks.add_code(task.id, "solution.py", b"print(4)\n")
    wrong = await executions.run(task.id, 1)  # a version that runs and fails its check
    assert wrong.status == "failed" and wrong.checks_total == 1
    queued = tasks.create_execution(task.id, 1, executor=executions.executor)
    cancelled = await executions.cancel(queued.id)  # a person cancelled it
    assert cancelled.status == "killed"

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "run_sandboxed", broken)
    crashed = await executions.run(task.id, 1)  # edgecrew's own error
    assert crashed.status == "failed" and crashed.checks_total is None
    now = time.time()
    found = Ops.of(rt).supervisor.detect(now - 3600, now + 1)
    assert [(f.subject_type, f.subject) for f in found] == [("execution", str(crashed.id))]
    assert "No space left on device" in found[0].error


async def test_an_escalated_failure_writes_a_regression_case_and_its_twin_reuses_it(
    rt: Runtime, project_dir: Path
) -> None:
    sup = Ops.of(rt).supervisor
    first = sup.record(_finding("j1"))
    assert first is not None
    path = await sup.escalate(first.id, "nobody knows")
    assert path is not None and Path(path).parent == project_dir / "regressions"
    assert sup.get(first.id).state == "escalated"
    twin = sup.record(_finding("j2"))
    assert twin is not None
    decision = await sup.decide(twin.id)  # same fingerprint: no model call, the earlier case
    assert decision.decided_by == "duplicate" and decision.params == {"duplicate_of": first.id}
    assert await sup.escalate(twin.id, decision.reason) == path


async def test_a_failure_escalated_because_no_model_answered_is_asked_about_again(
    project_dir: Path, edgecrew_home: Path
) -> None:
    # The reflection model was down for the first incident: nobody judged that failure, so the same
    # failure later is put to the model (back now), not escalated as "the same failure, escalated before".
    runtime = _answering(
        project_dir, '{error: unavailable, message: "sup model down"}', '{json: {action: retry, reason: "flaky"}}'
    )
    sup = Ops.of(runtime).supervisor
    first = sup.record(_finding("j1"))
    assert first is not None
    unanswered = await sup.decide(first.id)
    assert (unanswered.action, unanswered.decided_by) == ("escalate", "supervisor")
    assert unanswered.reason.startswith("no model could decide (model 'local': sup model down")
    await sup.escalate(first.id, unanswered.reason)
    assert sup.get(first.id).state == "escalated" and sup.get(first.id).decided_by == "supervisor"
    again = sup.record(_finding("j2"))
    assert again is not None
    decision = await sup.decide(again.id)
    assert (decision.action, decision.decided_by, decision.reason) == ("retry", "model", "flaky")


async def test_a_model_change_for_a_model_incident_names_the_model_not_its_time_bucket(
    project_dir: Path, edgecrew_home: Path
) -> None:
    # A twin whose model is down: the model's own incident (subject 'local@<bucket>') has no team run.
    runtime = _answering(project_dir, '{json: {action: change_model, reason: "down", params: {model: local}}}')
    sup = Ops.of(runtime).supervisor
    [finding] = model_findings([_event("model_called", {"alias": "broken", "error": "backend down"})], 300)
    incident = sup.record(finding)
    assert incident is not None and incident.subject.startswith("broken@")
    decision = await sup.decide(incident.id)
    assert decision.action == "escalate"
    assert decision.reason == (
        "the model chose change_model, but this incident is about model 'broken' itself (model broken failed"
        " 1 call(s)), not a team run: there is no agent whose model to change (a run that failed on it is an"
        " incident of its own)"
    )


def test_a_supervisor_model_that_is_no_alias_is_said_when_the_server_starts(
    project_dir: Path, edgecrew_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A misspelt reflection model was only found at the first novel failure, escalated unasked.
    assert Ops.of(_answering(project_dir, '"unused"')).supervisor.model_problem() is None
    monkeypatch.setenv("EDGECREW_SUPERVISOR_MODEL", "big-reflector")
    reset_settings()
    problem = Ops.of(bootstrap()).supervisor.model_problem()
    assert problem == (
        "EDGECREW_SUPERVISOR_MODEL names no model here (unknown model alias 'big-reflector'; known: local,"
        " local-gemma): every failure no rule knows will be escalated without asking a model; set it to one"
        " of this project's aliases"
    )
    monkeypatch.setenv("EDGECREW_SUPERVISOR_MODEL", "tag:small")  # a tag some model has is a model
    reset_settings()
    assert Ops.of(bootstrap()).supervisor.model_problem() is None
    monkeypatch.setenv("EDGECREW_SUPERVISOR_MODEL", "big-reflector")
    reset_settings()
    with caplog.at_level(logging.WARNING, logger="edgecrew.supervisor"), TestClient(create_app()):
        pass
    assert problem in caplog.messages


async def test_a_regression_case_that_cannot_be_written_still_escalates_the_incident(
    project_dir: Path, edgecrew_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A project folder the server may not write to (or a file where the folder should be): the
    # incident was left open for ever, never escalated nor announced.
    write(project_dir / "not-a-folder", "x")
    monkeypatch.setenv("EDGECREW_SUPERVISOR_REGRESSIONS_DIR", str(project_dir / "not-a-folder"))
    reset_settings()
    sup = Ops.of(_answering(project_dir, '"unused"')).supervisor
    incident = sup.record(_finding("j1"))
    assert incident is not None
    assert await sup.escalate(incident.id, "nobody knows") is None
    ended = sup.get(incident.id)
    assert ended.state == "escalated" and ended.regression_path is None
    assert ended.reason is not None
    assert ended.reason.startswith("nobody knows (its regression case could not be written")
    assert str(project_dir / "not-a-folder") in ended.reason


def test_a_regression_case_parses_and_names_its_reproduction(tmp_path: Path) -> None:
    incident = SimpleNamespace(
        id="iabc",
        kind="oom",
        subject_type="job",
        title="ran out of memory: job j1",
        error="MemoryError",
        diagnosis={
            "job": {
                "kind": "command",
                "command": ["python3", "-c", "x"],
                "sandbox": True,
                "needs": {"memory_bytes": 1024 * MiB},
                "tags": [],
            }
        },
    )
    path = write_regression(regression_case(incident, "memory cap reached"), tmp_path / "regressions", NOW)
    assert path.name == "2025-06-15-oom-iabc.yaml"
    case = load_regression(path)
    assert case.command() == [
        "edgecrew",
        "jobs",
        "submit",
        "--sandbox",
        "--memory",
        "1024MiB",
        "--",
        "python3",
        "-c",
        "x",
    ]
    assert case.expected["state"] == "succeeded" and "memory cap reached" in case.expected["note"]
    run = SimpleNamespace(
        id="ir",
        kind="run_failed",
        subject_type="run",
        title="t",
        error="e",
        diagnosis={"run": {"team": "crew", "task": "write a haiku"}, "failing_step": "writer.1"},
    )
    assert regression_case(run, "x").command() == ["edgecrew", "run", "crew", "write a haiku"]
    (tmp_path / "junk.yaml").write_text("just: text\n")
    with pytest.raises(ValueError, match="not a regression case"):
        load_regression(tmp_path / "junk.yaml")


# -- entry points ------------------------------------------------------------------------------------


def test_the_api_lists_and_shows_incidents(rt: Runtime) -> None:
    from edgecrew.api.routers import incidents

    sup = Ops.of(rt).supervisor
    made = sup.record(_finding())
    assert made is not None
    app = FastAPI()
    app.state.rt, app.state.ops = rt, Ops.of(rt)
    app.include_router(incidents.router)
    from edgecrew.api.auth import _SCOPE_OF

    for dependency in _SCOPE_OF:  # signed in: the auth matrix checks the scope on the real app
        app.dependency_overrides[dependency] = lambda: None
    client = TestClient(app)
    listed = client.get("/incidents", params={"state": "open"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 1 and listed.json()["items"][0]["id"] == made.id
    shown = client.get(f"/incidents/{made.id}").json()
    assert shown["diagnosis"]["job"]["command"] == ["sh", "-c", "exit 3"] and shown["events"][0]["kind"] == "detected"
    assert client.get("/incidents", params={"state": "bogus"}).status_code == 422


def test_the_cli_lists_and_shows_incidents(rt: Runtime) -> None:
    import typer

    from edgecrew.cli.incidents import incidents_app

    made = Ops.of(rt).supervisor.record(_finding())
    assert made is not None
    app = typer.Typer()
    app.add_typer(incidents_app, name="incidents")
    runner = CliRunner()
    listed = runner.invoke(app, ["incidents", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)[0]["id"] == made.id
    shown = runner.invoke(app, ["incidents", "show", made.id[:8]])
    assert shown.exit_code == 0 and "flux" in shown.output and "detected" in shown.output
    assert runner.invoke(app, ["incidents", "list", "--state", "nope"]).exit_code == 1
    assert runner.invoke(app, ["incidents", "show", "izzzz"]).exit_code == 1


def test_the_cli_refuses_an_unknown_kind_and_says_what_a_filter_left_out(rt: Runtime) -> None:
    """`--kind bogus` listed "no incidents: the supervisor has seen no failure" (exit 0), and so did a
    filter that matched none while incidents of other kinds or states were there."""
    import typer

    from edgecrew.cli.incidents import incidents_app

    assert Ops.of(rt).supervisor.record(_finding()) is not None  # one open job_failed incident
    app = typer.Typer()
    app.add_typer(incidents_app, name="incidents")
    runner = CliRunner()
    bogus = runner.invoke(app, ["incidents", "list", "--kind", "bogus"])
    assert bogus.exit_code == 1 and "not an incident kind" in bogus.output and "worker_lost" in bogus.output
    none = runner.invoke(app, ["incidents", "list", "--kind", "oom", "--state", "healed"])
    assert none.exit_code == 0 and "no incidents in state healed and of kind oom" in none.output, none.output
    assert "seen no failure" not in none.output


def test_the_supervisor_is_one_per_runtime(rt: Runtime) -> None:
    assert isinstance(Ops.of(rt).supervisor, Supervisor) and Ops.of(rt).supervisor is Ops.of(rt).supervisor
    assert time.time() > NOW
