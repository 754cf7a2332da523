"""Teams on the real embedded model (SmolLM2-135M through llama.cpp): structured outputs must satisfy
their schemas, tool calls must be well formed, and the accounting must be real."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.cli.scaffold import create_project
from edgecrew.domain.text import counted
from edgecrew.engine import durable
from edgecrew.engine.service import RunService, TeamName
from tests.conftest import write

pytest.importorskip("llama_cpp", reason="the embedded model needs the [local] extra (make test installs it)")
pytestmark = pytest.mark.real_model


@pytest.fixture(autouse=True)
def _shutdown() -> Iterator[None]:
    yield
    durable.shutdown()


async def test_builtin_team_runs_on_smollm2_with_schema_valid_outputs() -> None:
    rt = bootstrap()
    svc = RunService(rt)
    team = rt.load_team("plan-write-review")
    started = await svc.start(TeamName("plan-write-review"), "Explain in two sentences why offline AI helps privacy.")
    run_id = started.run.id
    await started.handle.get_result()
    run = rt.store.get_run(run_id)
    assert run.status == "succeeded", run.error
    steps = rt.store.steps(run_id)
    agents = [s.agent for s in steps]
    assert agents[:3] == ["planner", "writer", "critic"] and len(agents) in (3, 5, 7)
    for step in steps:
        schema = team.agents[step.agent].output_schema
        if schema is not None:
            jsonschema.validate(step.output, dict(schema))
        else:
            assert step.output["text"].strip()
        assert step.prompt_tokens > 0 and step.completion_tokens > 0
    assert run.output == steps[[s.agent for s in steps].index("writer", len(steps) - 3)].output  # `output: writer`
    calls = [e for e in rt.store.events(run_id) if e.type == "model_called"]
    assert all(e.data["alias"] == "local" and e.data["tokens_per_s"] > 0 for e in calls)


# A model agent that calls a tool itself (`edgecrew init`'s example saves its notes with a tool agent).
TOOL_USING = """
name: tool-using
agents:
  researcher:
    model: local
    system: List the key points needed to answer the task, at most 3, each one short sentence.
    output_schema:
      type: object
      properties:
        points: {type: array, items: {type: string, maxLength: 120}, minItems: 1, maxItems: 3}
      required: [points]
    limits: {max_steps: 2, max_tokens: 160}
  summarizer:
    model: local
    tools: [files.write]
    system: >
      Write a short summary of the key points, save it with files.write to notes.md,
      then give the summary as your final answer.
    limits: {max_steps: 4, max_tokens: 200}
graph:
  start: researcher
  edges:
    - {from: researcher, to: summarizer}
    - {from: summarizer, to: end}
"""


async def test_tool_using_agent_on_smollm2_makes_well_formed_calls(project_dir: Path) -> None:
    write(project_dir / "teams" / "tool-using.yaml", TOOL_USING)
    rt = bootstrap()
    svc = RunService(rt)
    started = await svc.start(TeamName("tool-using"), "Summarize why edge AI matters.")
    run_id = started.run.id
    await started.handle.get_result()
    run = rt.store.get_run(run_id)
    tool_events = [e for e in rt.store.events(run_id) if e.type == "tool_called"]
    for event in tool_events:  # the grammar only lets the model call an allowed tool with valid arguments
        assert event.data["tool"] == "files.write"
        assert set(event.data["arguments"]) == {"path", "content"}
        if not event.data["is_error"]:
            written = Path(run.workspace or "") / event.data["arguments"]["path"]
            assert written.read_text() == event.data["arguments"]["content"]
    researcher = rt.store.steps(run_id)[0]
    assert researcher.agent == "researcher" and researcher.outcome == "final"
    assert 1 <= len(researcher.output["points"]) <= 3
    assert run.status in ("succeeded", "failed")
    if run.status == "failed":  # a 135M model may loop; the engine must say so, not hang or crash
        assert run.error and any(o in run.error for o in ("loop_detected", "max_steps", "invalid_output"))
    json.dumps(run.output)


async def test_the_init_example_team_succeeds_on_smollm2_and_saves_its_notes(project_dir: Path) -> None:
    """The first run a new user makes (`edgecrew init`, then the command it prints) must not fail."""
    create_project(project_dir)
    rt = bootstrap()
    started = await RunService(rt).start(TeamName("example"), "Summarize why edge AI matters")
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    assert run.status == "succeeded", run.error
    assert run.output["text"].strip()
    assert (Path(run.workspace or "") / "notes.md").read_text() == run.output["text"]


async def test_the_demo_team_answers_with_this_machines_real_figures_on_smollm2() -> None:
    import psutil

    from edgecrew.domain.templating import render_value

    rt = bootstrap()
    svc = RunService(rt)
    started = await svc.start(TeamName("machine-check"), "How much memory is free, and does a 2 GB job fit now?")
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    assert run.status == "succeeded", run.error
    steps = {s.agent: s for s in rt.store.steps(run.id)}  # each agent's latest step
    scheduler, text = steps["fits"].output, run.output["text"]
    total = render_value("{{ n | human_bytes }}", {"n": psutil.virtual_memory().total})
    assert f"free of {total}." in text
    assert ("fits now" if scheduler["fits"] else "does not fit now") in text
    assert f"{scheduler['free_memory_mb']} MiB free for jobs" in text
    advisor = steps["advisor"]
    assert advisor.completion_tokens > 0 and set(advisor.output) == {"fits", "action"}
    # the critic approved only a judgement that agrees with the scheduler; otherwise it is set aside
    if steps["critic"].output["verdict"] == "approve":
        assert advisor.output["fits"] == scheduler["fits"] and f"Recommended: {advisor.output['action']}." in text
    else:
        assert "set aside" in text


async def test_the_build_loop_runs_to_its_bound_on_smollm2_and_every_version_was_run() -> None:
    rt = bootstrap()
    svc = RunService(rt)
    request = "a program that prints the square of a number read from stdin. Checks: 3 -> 9; -4 -> 16"
    started = await svc.start(TeamName("build-loop"), request)
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    # The loop always reaches its end (no coder reply cut off in a JSON string fails the run any more),
    # and the answer is the report: the task done or failed, with its best version named.
    assert run.output is not None, run.error
    task = rt.tasks.get(run.output["task_id"])
    assert task.status in ("done", "failed") and task.best_version is not None
    assert run.output["status"] == task.status and run.output["best_version"] == task.best_version
    # ... and the run's status says which (`failed_when: status == 'failed'`): a script reads it as `run`'s exit code
    assert (run.status, task.status) in (("succeeded", "done"), ("failed", "failed")), run.error
    assert run.status == "succeeded" or "its work failed (failed_when: status == 'failed')" in (run.error or "")
    # the request's checks, exactly, not the generator's
    assert task.checks == {"io": [{"input": "3", "expected": "9"}, {"input": "-4", "expected": "16"}]}
    versions = [v.version for v in rt.tasks.code_versions(task.id)]
    assert 1 <= len(versions) <= 3 and run.output["versions"] == len(versions)
    # each version is the program out of the coder's reply, without its fences
    replies = [s.output["text"] for s in rt.store.steps(run.id) if s.agent == "coder"]
    saved = [rt.tasks.code_bytes(v).decode() for v in rt.tasks.code_versions(task.id)]
    assert len(replies) == len(saved) and all("```" not in code and code.strip() for code in saved)
    assert all(code.strip() in reply for code, reply in zip(saved, replies, strict=True))
    # every version the coder wrote ran in the sandbox, once; but one that repeats an earlier version
    # (a small model sampled alike often does) ends the loop unrun, and the answer says so
    repeated = [s.output["same_as"] for s in rt.store.steps(run.id) if s.agent == "save"][-1]
    ran = versions if repeated is None else versions[:-1]
    assert sorted(e.version for e in rt.tasks.executions(task.id)) == ran
    assert all(e.status in ("succeeded", "failed") for e in rt.tasks.executions(task.id))
    assert len(rt.tasks.feedback(task.id)) == len(ran)
    assert repeated is None or f"version {versions[-1]} is version {repeated} again" in run.output["summary"]
    summary = run.output["summary"]
    assert summary.startswith(
        "Done: " if task.status == "done" else f"Failed: {counted(len(versions), 'version')} written"
    )


async def test_platform_copilot_on_smollm2_builds_a_valid_repository_and_waits_for_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import subprocess

    from edgecrew.engine.approvals import ApprovalService

    bin_dir = tmp_path / "bin"  # a kubectl stand-in with a reachable cluster that records what it was asked
    bin_dir.mkdir()
    record = tmp_path / "kubectl.log"
    (bin_dir / "kubectl").write_text(
        f'#!/bin/sh\n[ "$1" = config ] && echo kind-staging && exit 0\necho "$@" >> {record}\necho applied\n'
    )
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rt = bootstrap()
    svc = RunService(rt)
    request = "create a Python service called payments-api with CI and a staging deployment"
    started = await svc.start(TeamName("platform-copilot"), request)
    approvals = ApprovalService(rt)
    pending: list[Any] = []
    for _ in range(600):  # the planner runs on the real model, then the tools until the deployment
        pending = approvals.list("pending", started.run.id)
        if pending or rt.store.get_run(started.run.id).status.terminal:
            break
        await asyncio.sleep(0.5)
    assert [a.tool for a in pending] == ["k8s.apply"], rt.store.get_run(started.run.id).error
    assert not record.exists()  # nothing applied before a person said so
    approvals.approve(pending[0].id)
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    assert run.status == "succeeded", run.error
    assert "--dry-run=client" in record.read_text()
    repo = rt.workspace(run.id) / "payments-api"  # the exact name, from the request's words
    git = ["git", "-C", str(repo)]
    assert len(subprocess.run([*git, "log", "--oneline"], capture_output=True, text=True).stdout.splitlines()) == 2
    assert subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    steps = {s.agent: s.output for s in rt.store.steps(run.id)}
    assert steps["check_pipeline"]["valid"] and steps["check_manifests"]["valid"]
    assert steps["plan"] == {
        "name": "payments-api",
        "kind": "python-service",
        "ci": "github",
        "staging": True,
        "guessed": [],
    }
    assert "- [ ]" not in run.output["text"]


@pytest.mark.parametrize(
    ("request_", "kind", "ci"),
    [
        ("create a FastAPI app called inventory-api with GitLab CI, no deployment", "fastapi-app", "gitlab"),
        ("a command-line tool called log-grep with GitLab CI and no staging", "cli", "gitlab"),
        ("a Python service called ledger-api with CI on GitHub, without a deployment", "python-service", "github"),
    ],
)
async def test_platform_copilot_on_smollm2_builds_the_kind_and_ci_the_request_names(
    request_: str, kind: str, ci: str
) -> None:
    import subprocess

    rt = bootstrap()
    started = await RunService(rt).start(TeamName("platform-copilot"), request_)
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    assert run.status == "succeeded", run.error
    steps = {s.agent: s.output for s in rt.store.steps(run.id)}
    assert (steps["plan"]["kind"], steps["plan"]["ci"], steps["plan"]["staging"]) == (kind, ci, False)
    assert steps["repo"]["template"] == kind and steps["check_pipeline"]["valid"] and "deploy" not in steps
    repo = rt.workspace(run.id) / steps["plan"]["name"]
    assert (
        subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout == ""
    )


# A failure edge on the real model: the agent's turn runs out of time inside llama.cpp (its time limit is
# far below a prompt's evaluation on this CPU), and the failure goes to a handler instead of failing the run.
FAILS_OVER = """
name: fails-over
agents:
  hasty:
    model: local
    system: Answer the question in one sentence.
    limits: {timeout_s: 0.05, max_tokens: 64}
  handler:
    template: "recovered from {{ outputs.hasty.outcome }}: {{ outputs.hasty.error }}"
graph:
  start: hasty
  edges:
    - {from: hasty, to: end}
    - {from: hasty, to: handler, on_failure: true, when: "outcome == 'timeout'"}
    - {from: handler, to: end}
"""


async def test_a_failure_edge_takes_a_real_models_failed_turn_to_its_handler(project_dir: Path) -> None:
    write(project_dir / "teams" / "fails-over.yaml", FAILS_OVER)
    rt = bootstrap()
    svc = RunService(rt)
    started = await svc.start(TeamName("fails-over"), "Why is the sky blue?")
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    assert run.status == "succeeded", run.error
    assert str(run.output["text"]).startswith("recovered from timeout: "), run.output
    outcomes = {s.agent: s.outcome for s in rt.store.steps(run.id)}
    assert outcomes == {"hasty": "timeout", "handler": "final"}
    routes = [e.data["edge"] for e in rt.store.events(run.id) if e.type == "route_taken"]
    assert routes[0] == "hasty -> handler on failure when outcome == 'timeout'"
