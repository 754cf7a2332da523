"""The built-in team platform-copilot on the engine's fakes with the real platform tools, validators and
git, a kubectl stand-in on PATH, and a person who approves (or not) the deployment."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import edgecrew
from edgecrew.bootstrap import bootstrap
from edgecrew.domain.messages import ToolCall
from edgecrew.domain.specs import AgentSpec
from edgecrew.engine import durable
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.fakes import FakeTurnIO, FakeTurnRunner
from edgecrew.engine.service import RunService, TeamName
from edgecrew.models.scripted import ScriptedModel
from edgecrew.platform import register_platform_tools
from edgecrew.specs.loader import load_team
from edgecrew.tools.builtins import builtin_registry
from tests.unit.test_platform_tools import fake_kubectl  # noqa: F401  (a fixture)

TEAM = Path(edgecrew.__file__).parent / "teams" / "platform-copilot.yaml"
REQUEST = "create a Python service called payments-api with CI and a staging deployment"
PLAN = {"name": "payments-api", "kind": "python-service", "ci": "github", "staging": True}


def team_io(tmp_path: Path, approve: Any, plan: dict[str, Any] = PLAN) -> FakeTurnIO:
    registry = builtin_registry()
    register_platform_tools(registry)
    return FakeTurnIO({"planner": [{"json": plan}]}, registry, approve=approve, workspace=tmp_path / "ws")


async def test_the_request_ends_with_a_valid_repository_and_nothing_applied_before_approval(
    tmp_path: Path,
    fake_kubectl: Path,  # noqa: F811
) -> None:
    asked: list[tuple[str, bool]] = []

    async def approve(agent: AgentSpec, call: ToolCall) -> bool:
        asked.append((call.name, fake_kubectl.exists()))  # has kubectl run yet?
        return True

    io = team_io(tmp_path, approve)
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run(REQUEST)
    assert result.ok, result.error
    assert asked == [("k8s.apply", False)]  # one approval, asked before anything was applied
    assert "--dry-run=client" in fake_kubectl.read_text().splitlines()
    repo = tmp_path / "ws" / "payments-api"
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s", "main"], capture_output=True, text=True)
    assert log.returncode == 0 and log.stdout.strip()
    assert (repo / ".platform" / "branch-protection.yaml").exists()
    outputs = {t.visit.agent: t.result.output for t in runner.turns}
    assert outputs["check_pipeline"]["valid"] and outputs["check_manifests"]["valid"]
    assert (repo / "docs" / "README.md").exists()
    answer = result.output["text"]
    assert answer.startswith("# payments-api (python-service)") and "- [ ]" not in answer
    assert runner.path[-3:] == ["deploy", "docs", "answer"]
    assert [r.agent for r in io.model_calls] == ["planner"]  # the model only planned

    # The same request as a durable run through the runs use case: its checklist ends with every task done.
    fake_kubectl.unlink()
    rt = bootstrap()
    rt.models.register("local", ScriptedModel({"planner": [{"json": PLAN}]}))
    svc = RunService(rt)
    started = await svc.start(TeamName("platform-copilot"), REQUEST)
    approvals = ApprovalService(rt)
    for _ in range(600):
        pending = approvals.list("pending", started.run.id)
        if pending or rt.store.get_run(started.run.id).status.terminal:
            break
        await asyncio.sleep(0.05)
    assert [a.tool for a in pending] == ["k8s.apply"] and not fake_kubectl.exists()
    waiting = svc.checklist(started.run.id)
    assert waiting.questions and waiting.meta["status"] == "running"
    approvals.approve(pending[0].id)
    await started.handle.get_result()
    assert rt.store.get_run(started.run.id).status == "succeeded"
    done = svc.checklist(started.run.id)
    assert done.meta["status"] == "succeeded" and not done.questions
    assert [(i.text, i.state) for i in done.items if i.state != "done"] == []  # the path covers every agent
    assert "- [ ]" not in done.to_markdown() and "- [x] repo (creates the repository)" in done.to_markdown()


async def test_a_denied_deployment_applies_nothing(tmp_path: Path, fake_kubectl: Path) -> None:  # noqa: F811
    async def deny(agent: AgentSpec, call: ToolCall) -> bool:
        return False

    result = await FakeTurnRunner(load_team(TEAM), team_io(tmp_path, deny)).run(REQUEST)
    assert not result.ok and "denied" in (result.error or "")
    assert not fake_kubectl.exists()


async def test_without_staging_no_manifests_are_written_and_a_bad_name_stops_at_once(tmp_path: Path) -> None:
    plan = {**PLAN, "staging": False}
    runner = FakeTurnRunner(load_team(TEAM), team_io(tmp_path, None, plan))
    result = await runner.run("create a Python service called payments-api with CI")
    assert result.ok and "deploy" not in runner.path and "manifests" not in runner.path
    assert not (tmp_path / "ws" / "payments-api" / "deploy").exists()
    refused = FakeTurnRunner(load_team(TEAM), team_io(tmp_path / "b", None, {**PLAN, "name": "admin"}))
    result = await refused.run("create a service called admin")
    assert result.ok and refused.path == ["planner", "plan", "check_name", "answer"]
    assert "The name was refused" in result.output["text"]


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    durable.shutdown()


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/tmp"))
