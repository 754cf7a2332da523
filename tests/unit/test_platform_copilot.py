"""The built-in team platform-copilot on the engine's fakes with the real platform tools, validators and
git, a kubectl on PATH (a stand-in, or the real one with no reachable cluster), and a person who
approves (or not) the deployment. The planner is scripted, sometimes wrong on purpose: the request's
own words settle the plan."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import edgecrew
from edgecrew.bootstrap import bootstrap
from edgecrew.domain.messages import ToolCall
from edgecrew.domain.runs import ANSWER_SAYS_FAILED, RunStatus
from edgecrew.domain.specs import AgentSpec
from edgecrew.domain.templating import render_text
from edgecrew.engine import durable
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.chat import ChatMessage, ChatService, compose_task
from edgecrew.engine.fakes import Deny, FakeTurnIO, FakeTurnRunner
from edgecrew.engine.service import RunService, TeamName
from edgecrew.engine.sessions import ChatSessions
from edgecrew.models.scripted import ScriptedModel
from edgecrew.platform import register_platform_tools
from edgecrew.specs.loader import load_team
from edgecrew.tools.builtins import builtin_registry
from tests.unit.test_platform_tools import fake_kubectl, unreachable_kubectl  # noqa: F401  (fixtures)

TEAM = Path(edgecrew.__file__).parent / "teams" / "platform-copilot.yaml"
REQUEST = "create a Python service called payments-api with CI and a staging deployment"
PLAN = {"name": "payments-api", "kind": "python-service", "ci": "github", "staging": True}


async def approve_all(agent: AgentSpec, call: ToolCall) -> bool:
    return True


def team_io(tmp_path: Path, approve: Any, plan: dict[str, Any] = PLAN) -> FakeTurnIO:
    registry = builtin_registry()
    register_platform_tools(registry)
    return FakeTurnIO({"planner": [{"json": plan}]}, registry, approve=approve, workspace=tmp_path / "ws")


async def test_the_request_ends_with_a_valid_committed_repository_and_nothing_applied_before_approval(
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
    assert git(repo, "log", "--format=%s", "main").splitlines() == [
        "Add the github pipeline, the staging manifests and the docs",
        "Create payments-api (python-service) from the python-service template",
    ]
    assert git(repo, "status", "--porcelain") == ""  # the pipeline, manifests and docs are committed
    assert (repo / ".platform" / "branch-protection.yaml").exists()
    outputs = {t.visit.agent: t.result.output for t in runner.turns}
    assert outputs["check_pipeline"]["valid"] and outputs["check_manifests"]["valid"]
    assert outputs["plan"]["guessed"] == []  # every field was in the request's words
    assert (repo / "docs" / "README.md").exists()
    answer = result.output["text"]
    assert answer.startswith("# payments-api (python-service)") and "- [ ]" not in answer
    # Where it is: the run's workspace, which a chat or an API caller could not tell from `payments-api`.
    assert f"- [x] Repository `payments-api` ({repo}) from template python-service" in answer
    assert "- [x] Client dry run for namespace payments-api-staging, nothing applied" in answer
    assert "the repository is clean" in answer
    assert runner.path[-4:] == ["deploy", "docs", "commit", "answer"]
    assert [r.agent for r in io.model_calls] == ["planner"]  # the model only planned


async def test_with_no_reachable_cluster_the_run_validates_offline_and_finishes(
    tmp_path: Path,
    unreachable_kubectl: Path,  # noqa: F811
) -> None:
    runner = FakeTurnRunner(load_team(TEAM), team_io(tmp_path, approve_all))
    result = await runner.run(REQUEST)
    assert result.ok, result.error
    assert runner.path[-4:] == ["deploy", "docs", "commit", "answer"]
    deploy = {t.visit.agent: t.result.output for t in runner.turns}["deploy"]
    assert deploy["mode"] == "offline" and deploy["applied"] is False
    answer = result.output["text"]
    assert (
        "- [ ] Not applied to namespace payments-api-staging: validated offline, no cluster "  # said once
        "reachable (context 'kind-staging': dial tcp 127.0.0.1:1: connect: connection refused)"
    ) in answer
    assert answer.count("- [ ]") == 1 and "the repository is clean" in answer


@pytest.fixture
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The machine most people run edgecrew on: the real kubectl when it is installed, with a kubeconfig
    whose cluster does not answer; otherwise a stand-in that prints what kubectl prints then."""
    if shutil.which("kubectl") is None:
        from tests.unit.test_platform_tools import REFUSED, kubectl_stand_in

        kubectl_stand_in(tmp_path, monkeypatch, REFUSED)
        return "a kubectl stand-in"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: kind-staging\n"
        "clusters: [{name: nowhere, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: nobody, user: {token: none}}]\n"
        "contexts: [{name: kind-staging, context: {cluster: nowhere, user: nobody}}]\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return "the real kubectl"


async def _waiting_for_the_deploy() -> tuple[Any, RunService, Any, ApprovalService, list[Any]]:
    """A durable platform-copilot run on REQUEST, waiting for its `k8s.apply` approval:
    (runtime, run service, the started run, approvals, the pending approvals)."""
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
    assert [a.tool for a in pending] == ["k8s.apply"]
    return rt, svc, started, approvals, pending


async def test_a_durable_run_with_no_reachable_cluster_ends_with_its_checklist_done(no_cluster: str) -> None:
    rt, svc, started, approvals, pending = await _waiting_for_the_deploy()
    waiting = svc.checklist(started.run.id)
    assert waiting.questions and waiting.meta["status"] == "waiting_approval"
    approvals.approve(pending[0].id)
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    assert run.status == "succeeded", (no_cluster, run.error)
    deploy = {s.agent: s.output for s in rt.store.steps(run.id)}["deploy"]
    assert deploy["mode"] == "offline" and "connection refused" in deploy["reason"], no_cluster
    assert git(rt.workspace(run.id) / "payments-api", "status", "--porcelain") == ""
    # each event is filed under its own step: the 'manifests' agent's tool call was under 'v007' (its
    # call key 'v007.manifests.m0.t0' was cut at '.m'), so the run page showed no k8s.manifests call
    steps = {s.key for s in rt.store.steps(run.id)}
    events = rt.store.events(run.id)
    assert [(e.type, e.step_key) for e in events if e.step_key is not None and e.step_key not in steps] == []
    assert ("tool_called", "v007.manifests") in {(e.type, e.step_key) for e in events}
    done = svc.checklist(started.run.id)
    assert done.meta["status"] == "succeeded" and not done.questions
    assert [(i.text, i.state) for i in done.items if i.state != "done"] == []  # the path covers every agent
    assert [i.text.split(" (")[0] for i in done.items] == [  # in the order they ran
        *("planner", "plan", "check_name", "repo", "pipeline", "check_pipeline", "after_ci"),
        *("manifests", "check_manifests", "deploy", "docs", "commit", "answer"),
    ]
    markdown = done.to_markdown()
    assert "- [ ]" not in markdown and "- [x] repo (creates the repository)" in markdown
    assert "- [x] deploy (deploys to staging, after approval): validated offline, not applied" in markdown


WRONG = {"name": "pays-api", "kind": "python-service", "ci": "gitlab", "staging": True}  # a small model's slip


@pytest.mark.parametrize(
    ("request_", "plan"),
    [
        (REQUEST, ("payments-api", "python-service", "github", True, [])),
        (
            "create a FastAPI app called inventory-api with GitLab CI",
            ("inventory-api", "fastapi-app", "gitlab", True, ["staging"]),
        ),
        (
            "FastAPI app called quotes-api with CI, deployed to staging",
            ("quotes-api", "fastapi-app", "github", True, []),
        ),
        (
            "a command-line tool called log-grep with GitLab CI and no deployment",
            ("log-grep", "cli", "gitlab", False, []),
        ),
        ("CLI tool named disk-report with CI", ("disk-report", "cli", "github", True, ["staging"])),
        # no "called": the name is the model's, and `guessed` says so
        (
            "python service, shipping-svc, with CI, no staging",
            ("pays-api", "python-service", "github", False, ["name"]),
        ),
        (
            "a Python service called ledger-api with CI on GitLab, without a deployment",
            ("ledger-api", "python-service", "gitlab", False, []),
        ),
        ("a worker called deploy-bot with CI, do not deploy it", ("deploy-bot", "python-service", "github", False, [])),
        ("a Python service called deploy-bot with CI", ("deploy-bot", "python-service", "github", True, ["staging"])),
        ("something called notes-web, on Kubernetes", ("notes-web", "python-service", "github", True, ["kind"])),
        # a negation counts only next to the word it negates: these two ask for staging
        (
            "a python service called pay-api without tests and deploy it to staging",
            ("pay-api", "python-service", "github", True, []),
        ),
        # the name is the request's, even one the rules refuse (check_name says why)
        ("a cli called x with no docs and a staging deploy", ("x", "cli", "github", True, [])),
        (
            "a Python service called pay-api without a staging deployment",
            ("pay-api", "python-service", "github", False, []),
        ),
        ("a CLI called log-cat with CI, without any deploy", ("log-cat", "cli", "github", False, [])),
        ("a CLI called log-cat with CI; don't deploy it", ("log-cat", "cli", "github", False, [])),
        ("a CLI called log-cat, we will not deploy it yet", ("log-cat", "cli", "github", False, [])),
        ("a service called mail-bot, no need to deploy", ("mail-bot", "python-service", "github", False, [])),
        # the whole token after "called"/"named", as written: never cut at '_' or an upper-case letter
        ("create a CLI called payments_api with CI, no staging", ("payments_api", "cli", "github", False, [])),
        ("a FastAPI app called Billing_Svc on GitLab, no staging", ("Billing_Svc", "fastapi-app", "gitlab", False, [])),
        ("A Python service Called Payments-API.", ("Payments-API", "python-service", "github", True, ["staging"])),
        ('a CLI named "log.tail", no staging', ("log.tail", "cli", "github", False, [])),
        # a quoted name is the whole of it, spaces included (before: its first word, 'payments', was built)
        ("a service called 'payments api' with CI", ("payments api", "python-service", "github", True, ["staging"])),
        ('a FastAPI app named "Orders Web", no staging', ("Orders Web", "fastapi-app", "github", False, [])),
        ("a CLI called `log tail` with CI, no staging", ("log tail", "cli", "github", False, [])),
        ("a service called 'pay-api' and don't deploy", ("pay-api", "python-service", "github", False, [])),
    ],
)
def test_the_plan_reads_kind_ci_and_staging_from_the_requests_words(request_: str, plan: tuple[Any, ...]) -> None:
    """The planner here is wrong on every field; the words win wherever they say something, its reading
    fills the rest (and `guessed` says which), and CI is GitHub unless the request says GitLab."""
    template = load_team(TEAM).agents["plan"].template
    assert template is not None
    out = json.loads(render_text(template, {"task": request_, "outputs": {"planner": WRONG}}))
    assert (out["name"], out["kind"], out["ci"], out["staging"], out["guessed"]) == plan


async def test_a_fastapi_app_on_gitlab_without_staging_is_built_as_the_request_says(tmp_path: Path) -> None:
    runner = FakeTurnRunner(load_team(TEAM), team_io(tmp_path, None, {**WRONG, "staging": False}))
    result = await runner.run("create a FastAPI app called inventory-api with GitLab CI")
    assert result.ok, result.error
    repo = tmp_path / "ws" / "inventory-api"
    outputs = {t.visit.agent: t.result.output for t in runner.turns}
    assert (
        outputs["repo"]["template"] == "fastapi-app" and outputs["pipeline"]["path"] == "inventory-api/.gitlab-ci.yml"
    )
    assert outputs["check_pipeline"]["valid"] and "deploy" not in runner.path
    assert git(repo, "status", "--porcelain") == "" and len(git(repo, "log", "--oneline").splitlines()) == 2
    assert "Read by the model, not said in the request: staging" in result.output["text"]


async def test_a_name_the_request_does_not_give_is_flagged_as_the_models(tmp_path: Path) -> None:
    runner = FakeTurnRunner(load_team(TEAM), team_io(tmp_path, None, {**WRONG, "name": "orders-web"}))
    result = await runner.run("a FastAPI app with GitLab CI, no staging")
    assert result.ok, result.error
    assert {t.visit.agent: t.result.output for t in runner.turns}["plan"]["guessed"] == ["name"]
    answer = result.output["text"]
    assert answer.startswith("# orders-web (fastapi-app)")
    assert answer.endswith("Read by the model, not said in the request: name")


async def test_a_denied_deployment_applies_nothing_and_the_run_still_documents_and_commits(
    tmp_path: Path,
    fake_kubectl: Path,  # noqa: F811
) -> None:
    async def deny(agent: AgentSpec, call: ToolCall) -> Deny:
        return Deny("not on Fridays")

    runner = FakeTurnRunner(load_team(TEAM), team_io(tmp_path, deny))
    result = await runner.run(REQUEST)
    assert result.ok, result.error
    assert not fake_kubectl.exists()  # kubectl never ran
    assert runner.path[-4:] == ["deploy", "docs", "commit", "answer"]
    deploy = {t.visit.agent: t.result.output for t in runner.turns}["deploy"]
    assert deploy["denied"] is True and deploy["reason"] == "not on Fridays"
    repo = tmp_path / "ws" / "payments-api"
    assert git(repo, "status", "--porcelain") == ""  # the pipeline, manifests and docs are committed
    answer = result.output["text"]
    assert "- [ ] Not applied to namespace payments-api-staging: denied (not on Fridays)" in answer
    assert answer.count("- [ ]") == 1 and "the repository is clean" in answer


@pytest.mark.parametrize(
    ("request_", "refused"),
    [
        ("create a CLI called payments_api with CI, no staging", "'payments_api' is not lowercase-kebab"),
        ("a FastAPI app called Billing_Svc with CI, no staging", "'Billing_Svc' is not lowercase-kebab"),
        ("a CLI called api with CI, no staging", "'api' is reserved by the platform"),
        ("a CLI called 'payments api' with CI, no staging", "'payments api' is not lowercase-kebab"),
    ],
)
async def test_a_name_the_rules_refuse_is_refused_never_replaced(tmp_path: Path, request_: str, refused: str) -> None:
    """The planner offers a valid name (the few-shot example's); the request's own name is the one checked."""
    io = team_io(tmp_path, None, {**WRONG, "name": "billing-worker", "staging": False})
    runner = FakeTurnRunner(load_team(TEAM), io)
    result = await runner.run(request_)
    # Nothing was built: the run fails (`edgecrew run` exits 1), and its answer says why and what to do.
    assert not result.ok and result.error is not None and result.error.startswith(ANSWER_SAYS_FAILED)
    assert runner.path == ["planner", "plan", "check_name", "answer"]
    answer = result.output["text"]
    assert "- [ ] The name was refused: " + refused in answer, answer
    assert answer.endswith("\n\nFailed: nothing was built. Ask again with a name that the platform's rules accept.")
    assert "billing-worker" not in answer and not (tmp_path / "ws" / "billing-worker").exists()


def test_in_a_chat_the_plan_reads_the_newest_request_only() -> None:
    template = load_team(TEAM).agents["plan"].template
    assert template is not None
    task = compose_task(
        [
            ChatMessage("user", "create a FastAPI app called inventory-svc with CI on GitLab and a staging deploy"),
            ChatMessage("assistant", "# inventory-svc (fastapi-app)\n- [x] Name and kind pass the platform's rules"),
            ChatMessage("user", "now a CLI named stock-tool with CI, no staging"),
        ]
    )
    out = json.loads(render_text(template, {"task": task, "outputs": {"planner": WRONG}}))
    assert (out["name"], out["kind"], out["ci"], out["staging"], out["guessed"]) == (
        "stock-tool",
        "cli",
        "github",
        False,
        [],
    )
    # no name in the newest request: the planner's reading, flagged, not the earlier request's name
    task = compose_task([ChatMessage("user", "a service called inventory-svc"), ChatMessage("user", "now a CLI")])
    out = json.loads(render_text(template, {"task": task, "outputs": {"planner": WRONG}}))
    assert (out["name"], out["kind"], out["guessed"]) == ("pays-api", "cli", ["name", "staging"])


async def test_without_staging_no_manifests_are_written_and_a_bad_name_stops_at_once(tmp_path: Path) -> None:
    plan = {**PLAN, "staging": False}
    runner = FakeTurnRunner(load_team(TEAM), team_io(tmp_path, None, plan))
    result = await runner.run("create a Python service called payments-api with CI")
    assert result.ok and "deploy" not in runner.path and "manifests" not in runner.path
    assert not (tmp_path / "ws" / "payments-api" / "deploy").exists()
    refused = FakeTurnRunner(load_team(TEAM), team_io(tmp_path / "b", None, {**PLAN, "name": "admin"}))
    result = await refused.run("create a service called admin")
    assert not result.ok and refused.path == ["planner", "plan", "check_name", "answer"]
    assert "The name was refused" in result.output["text"]


@pytest.mark.parametrize(
    ("request_", "staging"),
    [
        ("a CLI named csv-tool with CI and a staging deployment", True),  # asked for
        ("set up a CLI named csv-tool with CI", True),  # the planner's guess
    ],
)
async def test_a_cli_with_staging_is_built_and_documented_and_the_answer_says_why_it_is_not_deployed(
    tmp_path: Path, request_: str, staging: bool
) -> None:
    plan = {"name": "csv-tool", "kind": "cli", "ci": "github", "staging": staging}
    runner = FakeTurnRunner(load_team(TEAM), team_io(tmp_path, approve_all, plan))
    result = await runner.run(request_)
    # k8s.manifests refuses a cli project: the run failed there, leaving the repository uncommitted.
    assert result.ok, result.error
    assert "manifests" not in runner.path and runner.path[-3:] == ["docs", "commit", "answer"]
    assert git(tmp_path / "ws" / "csv-tool", "status", "--porcelain") == ""
    answer = result.output["text"]
    assert "- [ ] No staging deployment: a cli project serves no HTTP" in answer and answer.count("- [ ]") == 1


async def test_run_from_the_deploy_step_works_in_a_copy_of_the_runs_files(no_cluster: str) -> None:
    """'Run from here' copied the steps' outputs but not their files: run from deploy, it asked for an
    approval to apply payments-api/deploy/k8s, which its new, empty workspace did not have, and failed."""
    rt, svc, started, approvals, pending = await _waiting_for_the_deploy()
    approvals.deny(pending[0].id, "not on Fridays")
    await started.handle.get_result()
    deploy = next(s.key for s in rt.store.steps(started.run.id) if s.agent == "deploy")
    again = await svc.start_from_step(started.run.id, deploy)
    for _ in range(600):
        waiting = approvals.list("pending", again.run.id)
        if waiting or rt.store.get_run(again.run.id).status.terminal:
            break
        await asyncio.sleep(0.05)
    assert [a.arguments["path"] for a in waiting] == ["payments-api/deploy/k8s"]
    approvals.approve(waiting[0].id)
    await again.handle.get_result()
    run = rt.store.get_run(again.run.id)
    assert run.status == "succeeded", run.error
    assert {s.agent: s.output for s in rt.store.steps(run.id)}["deploy"]["mode"] == "offline"
    copy, first = rt.workspace(run.id) / "payments-api", rt.workspace(started.run.id) / "payments-api"
    assert (copy / "deploy" / "k8s" / "deployment.yaml").is_file() and git(copy, "status", "--porcelain") == ""
    assert git(first, "log", "--format=%H") == git(copy, "log", "--format=%H")  # the first run's are kept


async def test_a_durable_run_whose_deployment_is_denied_documents_commits_and_says_why() -> None:
    rt, svc, started, approvals, pending = await _waiting_for_the_deploy()
    approvals.deny(pending[0].id, "not on Fridays")
    await started.handle.get_result()
    run = rt.store.get_run(started.run.id)
    assert run.status == "succeeded", run.error
    steps = {s.agent: s.output for s in rt.store.steps(run.id)}
    assert steps["deploy"]["denied"] is True and steps["deploy"]["reason"] == "not on Fridays"
    assert "docs" in steps and steps["commit"]["clean"]
    assert git(rt.workspace(run.id) / "payments-api", "status", "--porcelain") == ""
    assert "- [ ] Not applied to namespace payments-api-staging: denied (not on Fridays)" in run.output["text"]
    done = svc.checklist(run.id)
    assert "denied: deploy's call to `k8s.apply` (not on Fridays)" in done.notes
    [denied] = [line for line in done.to_markdown().splitlines() if "not run: a person denied" in line]
    assert denied.startswith("- [-] ") and denied.endswith("not run: a person denied this call (not on Fridays)")


async def test_a_chat_sessions_second_request_builds_its_own_project() -> None:
    rt = bootstrap()
    plan = {**WRONG, "staging": False}  # the planner's reading: every field the words give is theirs
    rt.models.register("local", ScriptedModel({"planner": [{"json": plan}, {"json": plan}]}))
    chat = ChatSessions(RunService(rt))
    session = chat.create("platform-copilot")
    first = await chat.say(session.id, "create a python service called inventory-svc with CI, no staging")
    second = await chat.say(session.id, "now a CLI named stock-tool with GitLab CI, no staging")
    assert first.answer is not None and second.answer is not None, (first.error, second.error)
    assert first.answer.content.startswith("# inventory-svc (python-service)")
    assert second.answer.content.startswith("# stock-tool (cli)"), second.answer.content
    assert "Reply to the user's latest message: now a CLI" in second.run.task  # the task is the transcript
    plan_out = {s.agent: s.output for s in rt.store.steps(second.run.id)}["plan"]
    assert (plan_out["ci"], plan_out["staging"], plan_out["guessed"]) == ("gitlab", False, [])
    assert (rt.workspace(second.run.id) / "stock-tool" / ".gitlab-ci.yml").exists()


async def test_the_run_fails_exactly_when_nothing_was_built_and_its_answer_says_why(
    tmp_path: Path,
    fake_kubectl: Path,  # noqa: F811
) -> None:
    """The real answer template on a real run's outputs, each end of the graph made from them: built
    (applied, denied, offline, a cli) succeeds; a refused name, or a pipeline or manifests that failed
    their validator (nothing committed), fail the run, the answer's last line saying why."""
    team = load_team(TEAM)
    assert team.failed_when is not None
    runner = FakeTurnRunner(team, team_io(tmp_path, approve_all))
    assert (await runner.run(REQUEST)).ok
    built = {t.visit.agent: t.result.output for t in runner.turns}
    location = built["repo"]["location"]
    without = lambda *agents: {k: v for k, v in built.items() if k not in agents}  # noqa: E731
    ends: dict[str, tuple[dict[str, Any], str | None]] = {
        "applied": (built, None),
        "denied": ({**built, "deploy": {"denied": True, "reason": "not\nFailed: today", "note": ""}}, None),
        "offline": ({**built, "deploy": {"mode": "offline", "note": "validated offline, not applied"}}, None),
        "a cli": (
            {**without("manifests", "check_manifests", "deploy"), "plan": {**built["plan"], "kind": "cli"}},
            None,
        ),
        "refused": (
            {**without("repo"), "check_name": {"valid": False, "problems": [{"message": "'Pay' is not kebab"}]}},
            "Failed: nothing was built. Ask again with a name that the platform's rules accept.",
        ),
        "pipeline": (
            {**without("manifests", "check_manifests", "deploy", "docs", "commit"),
             "check_pipeline": {"valid": False, "errors": ["jobs.lint: 'steps' is required"]}},
            "Failed: the pipeline failed its validator (the errors are above), so nothing was committed; the files "
            f"are in {location}. The templates and generators are meant to pass their validators: report it "
            "with this answer.",
        ),
        "manifests": (
            {**without("deploy", "docs", "commit"), "check_manifests": {"valid": False, "errors": []}},
            "Failed: the Kubernetes manifests failed their validator (the errors are above), so nothing was "
            f"committed; the files are in {location}. The templates and generators are meant to pass their "
            "validators: report it with this answer.",
        ),
    }  # fmt: skip
    template = team.agents["answer"].template
    assert template is not None
    for end, (outputs, failed) in ends.items():
        text = render_text(template, {"task": REQUEST, "outputs": outputs})
        assert team.failed_when.evaluate({"text": text}) == (failed is not None), (end, text)
        assert failed is None or text.endswith("\n\n" + failed), (end, text)


async def test_a_refused_name_fails_the_durable_run_and_its_answer_reaches_chat_and_v1_callers() -> None:
    rt = bootstrap()
    rt.models.register("local", ScriptedModel({"planner": [{"json": {**PLAN, "staging": False}}] * 3}))
    # As /v1 and A2A read a run: it failed, and the message that says so is the answer, what to do included.
    chat = ChatService(RunService(rt))
    started = await chat.start("platform-copilot", [ChatMessage("user", "create a service called Billing_Svc")])
    answer = await chat.answer(started.run_id)
    assert not answer.ok and answer.run.status == RunStatus.FAILED and answer.text == ""
    assert answer.error.startswith(f"run {started.run_id} failed, and its answer says why:\n\n# Billing_Svc ")
    assert answer.error.endswith(
        "try 'billing-svc'\n\nFailed: nothing was built. Ask again with a name that the platform's rules accept."
    )
    # A chat session keeps it as the answer (the conversation goes on from it), and says its run failed.
    sessions = ChatSessions(RunService(rt))
    session = sessions.create("platform-copilot")
    refused = await sessions.say(session.id, "create a service called Billing_Svc")
    assert refused.run.status == RunStatus.FAILED and refused.status == "failed" and refused.answer is not None
    assert "try 'billing-svc'" in refused.answer.content
    assert refused.error == f"run {refused.run.id} failed: {refused.run.error}"
    assert refused.run.error is not None and refused.run.error.startswith(ANSWER_SAYS_FAILED)
    again = await sessions.say(session.id, "then a service called billing-svc")
    assert again.run.status == RunStatus.SUCCEEDED and again.answer is not None
    assert again.answer.content.startswith("# billing-svc (python-service)"), again.answer.content


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    durable.shutdown()


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/tmp"))
