"""Platform tools on real files and programs: copier renders the templates, git makes the repository,
check-jsonschema and kubernetes-validate check pipelines and manifests offline, and a fake kubectl on
PATH records what k8s.apply asks of it. Every call goes through a ToolRegistry, so the schemas are used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from edgecrew.errors import ToolError
from edgecrew.platform import PLATFORM_TOOLS, PlatformConfig, register_platform_tools
from edgecrew.tools.base import ToolContext, ToolRegistry
from edgecrew.tools.filepolicy import FilePolicy

IMAGE = "ghcr.io/acme/payments-api:0.1.0"


class Workspace:
    """A run workspace with the platform tools registered on a fresh registry."""

    def __init__(self, root: Path, config: PlatformConfig | None = None) -> None:
        self.root = root
        self.files: FilePolicy | None = None
        self.registry = ToolRegistry()
        register_platform_tools(self.registry, config or PlatformConfig())

    async def __call__(self, tool: str, **arguments: Any) -> Any:
        spec = self.registry.find(tool)
        assert spec is not None, tool
        return await spec.call(arguments, ToolContext("run-1", "copilot", self.root, self.files))

    def read(self, path: str) -> str:
        return (self.root / path).read_text(encoding="utf-8")

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "workspace"
    root.mkdir()
    return Workspace(root)


def yaml_load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def git(repo: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def test_every_tool_is_registered_with_an_inline_schema_and_its_risk() -> None:
    registry = ToolRegistry()
    register_platform_tools(registry, PlatformConfig())
    assert sorted(registry.names()) == sorted(PLATFORM_TOOLS)
    for spec in registry.specs():
        assert spec.risk == ("risky" if spec.name == "k8s.apply" else "safe"), spec.name
        schema = json.dumps(spec.input_schema)
        assert "$ref" not in schema and "$defs" not in schema, spec.name
        assert 20 < len(spec.description) < 120, spec.name


# -- platform.validate_name ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "rule", "says"),
    [
        ("Payments_API", "python-service", "name.pattern", "try 'payments-api'"),
        ("ab", "cli", "name.length", "has 2 characters"),
        ("x" * 41, "cli", "name.length", "has 41 characters"),
        ("kube-system", "fastapi-app", "name.reserved", "reserved"),
        ("payments--api", "cli", "name.pattern", "lowercase-kebab"),
        ("payments-api", "lambda", "kinds", "python-service, fastapi-app, cli"),
    ],
)
async def test_validate_name_rejects_bad_names_naming_the_rule(
    ws: Workspace, name: str, kind: str, rule: str, says: str
) -> None:
    result = await ws("platform.validate_name", name=name, kind=kind)
    assert result["valid"] is False
    assert [p["rule"] for p in result["problems"]] == [rule]
    assert says in result["problems"][0]["message"]


async def test_validate_name_accepts_a_good_name(ws: Workspace) -> None:
    assert await ws("platform.validate_name", name="payments-api", kind="python-service") == {
        "valid": True,
        "name": "payments-api",
        "kind": "python-service",
        "problems": [],
        "package": "payments_api",
        "template": "python-service",
    }


async def test_a_workspace_platform_yaml_replaces_sections_of_the_rules(ws: Workspace) -> None:
    ws.write("platform.yaml", "kinds:\n  worker:\n    template: python-service\n")
    assert (await ws("platform.validate_name", name="payments-api", kind="worker"))["valid"]
    assert (await ws("platform.validate_name", name="kube-system", kind="worker"))["problems"][0]["rule"] == (
        "name.reserved"
    )  # the name section kept its defaults
    assert not (await ws("platform.validate_name", name="payments-api", kind="cli"))["valid"]

    ws.write("platform.yaml", "kubernetes:\n  version: 1.30\n")
    with pytest.raises(ToolError, match=r"kubernetes\.version: .*write the version in quotes"):
        await ws("platform.validate_name", name="payments-api", kind="cli")
    ws.write("platform.yaml", "naming:\n  pattern: x\n")
    with pytest.raises(ToolError, match="unknown sections naming"):
        await ws("platform.validate_name", name="payments-api", kind="cli")


async def test_a_kind_whose_template_does_not_exist_is_refused_naming_the_rules_file(ws: Workspace) -> None:
    """Before, validate_name called such a kind valid and repo.create said "unknown template 'go-service'",
    as if the caller had named it, not the rules file."""
    ws.write("platform.yaml", "kinds:\n  go-service:\n    template: go-service\n")
    for tool in ("platform.validate_name", "repo.create"):
        with pytest.raises(ToolError) as caught:
            await ws(tool, name="payments-api", kind="go-service")
        assert str(caught.value) == (
            f"the platform rules ({ws.root / 'platform.yaml'}) are invalid: kinds.go-service.template: "
            "no template 'go-service'; the templates: cli, fastapi-app, python-service"
        )
    assert not (ws.root / "payments-api").exists()


async def test_a_configured_rules_file_is_read(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("name:\n  pattern: '^[a-z]+$'\n  min_length: 3\n  max_length: 10\n", encoding="utf-8")
    (tmp_path / "ws").mkdir()
    ws = Workspace(tmp_path / "ws", PlatformConfig(rules=rules))
    result = await ws("platform.validate_name", name="payments-api", kind="cli")
    assert [p["rule"] for p in result["problems"]] == ["name.length", "name.pattern"]


async def test_the_projects_platform_yaml_is_read_by_every_run(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README said 'platform.yaml in the workspace', but a run's workspace is made when it starts:
    a person's platform.yaml beside edgecrew.yaml was never read. It is now, unless the setting names one."""
    from edgecrew.bootstrap import bootstrap
    from edgecrew.settings import reset_settings

    (project_dir / "platform.yaml").write_text(
        "name:\n  pattern: '^[a-z]+$'\n  min_length: 3\n  max_length: 10\n", encoding="utf-8"
    )
    spec = bootstrap().tools.find("platform.validate_name")
    assert spec is not None
    ctx = ToolContext("run-1", "copilot", tmp_path)
    result = await spec.call({"name": "payments-api", "kind": "cli"}, ctx)
    assert [p["rule"] for p in result["problems"]] == ["name.length", "name.pattern"]
    named = tmp_path / "rules.yaml"
    named.write_text("kubernetes:\n  version: '1.30'\n", encoding="utf-8")
    monkeypatch.setenv("EDGECREW_PLATFORM_RULES", str(named))
    reset_settings()  # the conftest fixture resets them again afterwards
    spec = bootstrap().tools.find("platform.validate_name")
    assert spec is not None
    assert (await spec.call({"name": "payments-api", "kind": "cli"}, ctx))["valid"]  # the setting wins


# -- templates -------------------------------------------------------------------------------------


async def test_templates_list_describes_the_three_templates(ws: Workspace) -> None:
    listed = {t["name"]: t for t in await ws("templates.list")}
    assert sorted(listed) == ["cli", "fastapi-app", "python-service"]
    for template in listed.values():
        assert len(template["description"]) > 20
        assert {"pyproject.toml", "README.md", ".gitignore"} <= set(template["files"])
        assert set(template["questions"]) == {"project_name", "description", "python_version"}


@pytest.mark.parametrize("template", ["python-service", "fastapi-app", "cli"])
async def test_each_template_applies_and_its_files_are_valid(ws: Workspace, template: str) -> None:
    result = await ws("templates.apply", template=template, name="payments-api", description='Pays "bills" \\ fast')
    project = ws.root / "payments-api"
    assert result["path"] == "payments-api" and "payments-api/README.md" in result["files"]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == "payments-api"
    assert pyproject["project"]["description"] == 'Pays "bills" \\ fast'
    sources = sorted(project.rglob("*.py"))
    assert any(p.parent.name == "payments_api" for p in sources) and any(p.parent.name == "tests" for p in sources)
    for source in sources:
        compile(source.read_text(encoding="utf-8"), str(source), "exec")
    assert (project / ".gitignore").is_file() and "payments-api" in (project / "README.md").read_text()
    # The template's own checks: its linter and its tests pass as rendered.
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project, capture_output=True)
    assert lint.returncode == 0, lint.stdout.decode()
    plain = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # this venv's plugins cost seconds to load
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=plain,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout[-2000:]


async def test_templates_apply_refuses_bad_names_taken_dirs_and_the_file_policy(ws: Workspace) -> None:
    with pytest.raises(ToolError, match=r"unknown template 'django'; .*cli, fastapi-app, python-service"):
        await ws("templates.apply", template="django", name="payments-api")
    with pytest.raises(ToolError, match=r"name\.pattern"):
        await ws("templates.apply", template="cli", name="Payments API")
    ws.write("payments-api/notes.md", "mine\n")
    with pytest.raises(ToolError, match="already exists and is not empty"):
        await ws("templates.apply", template="cli", name="payments-api")
    ws.files = FilePolicy(write=("drafts/*",))
    with pytest.raises(ToolError, match=r"may not write 'tool-x/\.gitignore'"):
        await ws("templates.apply", template="cli", name="tool-x")
    ws.files = FilePolicy(write=("tool-x/*.md", "tool-x/.gitignore", "tool-x/pyproject.toml"))
    with pytest.raises(ToolError, match=r"may not write 'tool-x/src/tool_x/__init__\.py'"):
        await ws("templates.apply", template="cli", name="tool-x")
    assert not (ws.root / "tool-x").exists()  # nothing half-written
    ws.files = FilePolicy(write=("tool-x/*",))
    assert "tool-x/src/tool_x/cli.py" in (await ws("templates.apply", template="cli", name="tool-x"))["files"]
    with pytest.raises(ToolError, match="outside the workspace"):
        await ws("templates.apply", template="cli", name="tool-x", dest="../elsewhere")


async def test_a_path_outside_the_workspace_is_refused_with_the_calls_own_name_as_the_example(ws: Workspace) -> None:
    with pytest.raises(ToolError) as refused:
        await ws("templates.apply", template="cli", name="log-tail", dest="/tmp")
    assert str(refused.value) == "path '/tmp' is outside the workspace; use a path relative to it, like 'log-tail'"
    # A path of no project's own suggests no project's name either.
    with pytest.raises(ToolError) as refused:
        await ws("ci.validate", path="/etc")
    assert str(refused.value) == "path '/etc' is outside the workspace; use a path relative to it"


# -- repo.create -----------------------------------------------------------------------------------


async def test_repo_create_makes_a_repository_with_a_commit_on_main_and_the_policy(ws: Workspace) -> None:
    result = await ws("repo.create", name="payments-api", kind="python-service", description="Takes payments.")
    repo = ws.root / "payments-api"
    assert result["path"] == "payments-api" and result["branch"] == "main"
    assert result["policy"] == "payments-api/.platform/branch-protection.yaml"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    log = git(repo, "log", "--format=%h %an %s").splitlines()
    assert log == [f"{result['commit']} edgecrew Create payments-api (python-service) from the python-service template"]
    assert git(repo, "status", "--porcelain") == ""  # everything committed
    tracked = git(repo, "ls-files").split()
    assert {".platform/branch-protection.yaml", "pyproject.toml", "src/payments_api/service.py"} <= set(tracked)
    main = yaml_load((repo / ".platform/branch-protection.yaml").read_text())["branches"]["main"]
    assert main["allow_force_pushes"] is False and main["allow_deletions"] is False
    assert main["required_pull_request_reviews"]["required_approving_review_count"] == 1
    assert main["required_status_checks"]["contexts"] == ["lint", "test", "build"]
    assert yaml_load((repo / ".platform/project.yaml").read_text())["kind"] == "python-service"
    assert tomllib.loads((repo / "pyproject.toml").read_text())["project"]["description"] == "Takes payments."

    with pytest.raises(ToolError, match="already exists"):
        await ws("repo.create", name="payments-api", kind="python-service")
    with pytest.raises(ToolError, match=r"name\.reserved: 'platform' is reserved"):
        await ws("repo.create", name="platform", kind="cli")


async def test_repo_create_refuses_a_template_that_is_not_the_kinds_naming_the_kinds_template(ws: Workspace) -> None:
    with pytest.raises(ToolError) as refused:
        await ws("repo.create", name="svc-c", kind="cli", template="fastapi-app")
    assert str(refused.value) == (
        "template 'fastapi-app' (the template of kind fastapi-app) does not match kind 'cli': the platform rules "
        "create a cli from template 'cli' (kinds.cli.template); leave the template out, or ask for kind fastapi-app"
    )
    assert not (ws.root / "svc-c").exists()  # nothing half-made
    # The workspace's rules decide: a kind whose template they change accepts that one, and only that one.
    ws.write("platform.yaml", "kinds:\n  cli: {template: python-service}\n")
    with pytest.raises(ToolError, match=r"does not match kind 'cli': .* from template 'python-service' .*out$"):
        await ws("repo.create", name="svc-c", kind="cli", template="cli")
    made = await ws("repo.create", name="svc-c", kind="cli", template="python-service")
    assert made["template"] == "python-service"


async def test_repo_commit_commits_what_the_tools_wrote_in_the_projects_own_repository(ws: Workspace) -> None:
    await ws("repo.create", name="payments-api", kind="python-service")
    repo = ws.root / "payments-api"
    git(ws.root, "init", "-q")  # the workspace's own repository stays untouched
    await ws("ci.write", project="payments-api")
    await ws("docs.generate", project="payments-api")
    result = await ws("repo.commit", project="payments-api", message="Add the pipeline and the docs")
    assert result["committed"] and result["clean"] and result["branch"] == "main"
    assert sorted(f["path"] for f in result["files"]) == [".github/workflows/ci.yml", "docs/README.md"]
    assert (
        git(repo, "log", "--format=%h %an %s", "-n1").strip()
        == f"{result['commit']} edgecrew Add the pipeline and the docs"
    )
    assert git(repo, "status", "--porcelain") == "" and "payments-api" in git(ws.root, "status", "--porcelain")
    again = await ws("repo.commit", project="payments-api", message="Nothing new")
    assert not again["committed"] and again["commit"] == result["commit"] and again["files"] == []

    with pytest.raises(ToolError, match=r"'payments-api/docs' is not a project: .* like 'payments-api'"):
        await ws("repo.commit", project="payments-api/docs", message="x")
    await ws("templates.apply", template="cli", name="plain-cli")  # a project, without a repository
    with pytest.raises(ToolError, match=r"'plain-cli' is not a git repository yet; repo\.create makes"):
        await ws("repo.commit", project="plain-cli", message="x")
    git(repo, "config", "core.sshCommand", "touch /tmp/pwned")  # an agent may write .git/config
    with pytest.raises(ToolError, match=r"refusing: \.git/config sets core\.sshcommand"):
        await ws("repo.commit", project="payments-api", message="x")
    ws.files = FilePolicy(read=("other/*",), write=("other/*",))
    with pytest.raises(ToolError, match=r"^agent 'copilot' may not read 'payments-api'; allowed to read: other/\*$"):
        await ws("repo.commit", project="payments-api", message="x")


# -- ci.write / ci.validate ------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "path"), [("github", ".github/workflows/ci.yml"), ("gitlab", ".gitlab-ci.yml")])
async def test_ci_write_output_passes_ci_validate(ws: Workspace, provider: str, path: str) -> None:
    await ws("repo.create", name="payments-api", kind="fastapi-app")
    written = await ws("ci.write", project="payments-api", provider=provider)
    assert written["path"] == f"payments-api/{path}" and written["jobs"][:3] == ["lint", "test", "build"]
    pipeline = yaml_load(ws.read(written["path"]))
    jobs = pipeline["jobs"] if provider == "github" else pipeline
    assert "pytest" in json.dumps(jobs["test"]) and "python -m build" in json.dumps(jobs["build"])
    assert await ws("ci.validate", path=written["path"]) == {"valid": True, "files": [written["path"]], "errors": []}
    assert (await ws("ci.validate", path="payments-api"))["valid"]  # the project's pipelines, found by path


async def test_a_broken_pipeline_fails_with_the_schema_error_named(ws: Workspace) -> None:
    ws.write(
        "app/.github/workflows/ci.yml",
        "on: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    step:\n      - run: pytest\n",
    )
    ws.write("app/.gitlab-ci.yml", "test:\n  stage: test\n  scripts: [pytest]\n")
    result = await ws("ci.validate", path="app")
    assert result["valid"] is False
    assert result["errors"] == [
        {
            "file": "app/.github/workflows/ci.yml",
            "path": "$.jobs.test",
            "message": "Additional properties are not allowed ('step' was unexpected)",
        },
        {
            "file": "app/.gitlab-ci.yml",
            "path": "$.test",
            "message": "Additional properties are not allowed ('scripts' was unexpected)",
        },
    ]
    ws.write("app/.gitlab-ci.yml", "test:\n  script: [pytest\n")
    errors = (await ws("ci.validate", path="app/.gitlab-ci.yml"))["errors"]
    assert len(errors) == 1 and errors[0]["message"].startswith("not valid YAML") and "line 3" in errors[0]["message"]
    ws.write("app/pipeline.yml", "stages: [test]\n")
    with pytest.raises(ToolError, match="pass provider github or gitlab"):
        await ws("ci.validate", path="app/pipeline.yml")
    assert (await ws("ci.validate", path="app/pipeline.yml", provider="gitlab"))["valid"]
    with pytest.raises(ToolError, match="no pipeline in 'app/src'"):
        (ws.root / "app/src").mkdir()
        await ws("ci.validate", path="app/src")


# -- k8s -------------------------------------------------------------------------------------------


async def test_k8s_manifests_output_passes_k8s_validate(ws: Workspace) -> None:
    await ws("repo.create", name="payments-api", kind="python-service")
    written = await ws("k8s.manifests", project="payments-api", image=IMAGE, port=8080, replicas=3)
    assert written == {
        "files": [f"payments-api/deploy/k8s/{f}.yaml" for f in ("namespace", "deployment", "service")],
        "namespace": "payments-api",
        "warnings": [],
    }
    deployment = yaml_load(ws.read("payments-api/deploy/k8s/deployment.yaml"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3 and container["image"] == IMAGE
    assert container["ports"][0]["containerPort"] == 8080
    result = await ws("k8s.validate", path="payments-api")  # a project dir: its deploy/k8s/
    assert result["valid"] and result["errors"] == [] and result["version"] == "1.31"
    assert sorted(r.split(": ")[1] for r in result["resources"]) == [
        "Deployment/payments-api",
        "Namespace/payments-api",
        "Service/payments-api",
    ]
    assert (await ws("k8s.manifests", project="payments-api", image="payments-api"))["warnings"]


async def test_a_directory_that_is_not_a_project_is_refused_before_anything_is_written(ws: Workspace) -> None:
    """ci.write and docs.generate wrote a pipeline and docs into the workspace's root ('.') or a project's
    src/, and k8s.manifests named a Deployment after the run's id: none of them is a project."""
    await ws("repo.create", name="log-tail", kind="cli")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("ci.write", {}),
        ("docs.generate", {}),
        ("k8s.manifests", {"image": "x:1"}),
        ("repo.commit", {"message": "m"}),
    ]
    for project, hint in ((".", "the workspace itself"), ("log-tail/src", "'log-tail/src'")):
        for tool, arguments in calls:
            with pytest.raises(ToolError) as refused:
                await ws(tool, project=project, **arguments)
            assert str(refused.value) == (
                f"{hint} is not a project: it has no pyproject.toml or .platform/project.yaml; "
                "give a project's directory, like 'log-tail' (repo.create makes one)"
            ), tool
    assert not (ws.root / ".github").exists() and not (ws.root / "docs").exists()
    assert not (ws.root / "log-tail" / "src" / "docs").exists()
    assert (await ws("docs.generate", project="log-tail"))["path"] == "log-tail/docs/README.md"


async def test_a_project_without_manifests_is_said_so_not_validated_as_its_own_files(ws: Workspace) -> None:
    """A project dir means its deploy/k8s/; before k8s.manifests (or for a cli, which has none) its
    .platform/*.yaml and pipeline were checked as Kubernetes resources ('a resource needs apiVersion')."""
    await ws("repo.create", name="log-tail", kind="cli")
    await ws("ci.write", project="log-tail")
    await ws("repo.create", name="payments-api", kind="python-service")
    for tool in ("k8s.validate", "k8s.apply"):
        with pytest.raises(ToolError) as cli:
            await ws(tool, path="log-tail")
        assert str(cli.value) == (
            "no manifests in project 'log-tail': a cli project serves no HTTP, so it has none to validate or apply"
        )
        with pytest.raises(ToolError) as service:
            await ws(tool, path="payments-api/")
        assert str(service.value) == (
            "no manifests in project 'payments-api' (payments-api/deploy/k8s/ does not exist); "
            "k8s.manifests writes them"
        )


async def test_a_broken_manifest_fails_naming_the_field(ws: Workspace) -> None:
    await ws("repo.create", name="payments-api", kind="fastapi-app")
    await ws("k8s.manifests", project="payments-api", image=IMAGE, namespace="payments-staging")
    path = "payments-api/deploy/k8s/deployment.yaml"
    original = ws.read(path)
    ws.write(path, original.replace("replicas: 2", "replica: 2"))
    result = await ws("k8s.validate", path=path)
    assert result["valid"] is False
    assert result["errors"] == [
        {
            "file": path,
            "resource": "Deployment/payments-api",
            "field": "spec",
            "message": "Additional properties are not allowed ('replica' was unexpected)",
        }
    ]
    ws.write(path, original.replace("containerPort: 8000", "containerPort: eighty"))
    (error,) = (await ws("k8s.validate", path=path))["errors"]
    assert error["field"] == "spec.template.spec.containers.0.ports.0.containerPort"
    assert "'eighty' is not of type 'integer'" in error["message"]
    ws.write(path, "apiVersion: apps/v9\nkind: Deployment\nmetadata: {name: x}\n")
    (error,) = (await ws("k8s.validate", path=path))["errors"]
    assert error["field"] == "apiVersion" and "no Deployment in apps/v9" in error["message"]


async def test_k8s_manifests_refuse_a_cli_project(ws: Workspace) -> None:
    await ws("repo.create", name="payments-cli", kind="cli")
    with pytest.raises(ToolError, match="is a cli project"):
        await ws("k8s.manifests", project="payments-cli", image=IMAGE)
    with pytest.raises(ToolError, match="no project directory 'nope'"):
        await ws("k8s.manifests", project="nope", image=IMAGE)


def kubectl_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, apply: str) -> Path:
    """A kubectl on PATH: ``config current-context`` answers 'kind-staging'; any other call writes its
    arguments, one per line, to the file returned and then runs the shell text ``apply``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "kubectl-args"
    script = bin_dir / "kubectl"
    script.write_text(
        '#!/bin/sh\nif [ "$1" = config ]; then echo kind-staging; exit 0; fi\n'
        f'printf "%s\\n" "$@" > {record}\n{apply}\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubectl on PATH, with a current context, whose apply succeeds; it records apply's arguments."""
    return kubectl_stand_in(tmp_path, monkeypatch, 'echo "deployment.apps/payments-api configured"')


# What the real kubectl (v1.32) prints when the current context's server does not answer.
REFUSED = (
    'echo \'error: error validating "ns.yaml": error validating data: failed to download openapi: Get '
    '"https://127.0.0.1:1/openapi/v2?timeout=32s": dial tcp 127.0.0.1:1: connect: connection refused; if you '
    "choose to ignore these errors, turn validation off with --validate=false' >&2; exit 1"
)


@pytest.fixture
def unreachable_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubectl on PATH with a current context whose cluster refuses the connection."""
    return kubectl_stand_in(tmp_path, monkeypatch, REFUSED)


async def test_k8s_apply_runs_a_client_dry_run_without_a_context(ws: Workspace, fake_kubectl: Path) -> None:
    await ws("repo.create", name="payments-api", kind="python-service")
    await ws("k8s.manifests", project="payments-api", image=IMAGE)
    result = await ws("k8s.apply", path="payments-api/deploy/k8s")
    assert fake_kubectl.read_text().splitlines() == [
        "apply",
        "-f",
        "payments-api/deploy/k8s",
        "--recursive",
        "--dry-run=client",
    ]
    assert result["mode"] == "dry-run" and result["context"] is None
    assert result["output"] == "deployment.apps/payments-api configured"


async def test_k8s_apply_uses_the_configured_context(tmp_path: Path, fake_kubectl: Path) -> None:
    (tmp_path / "ws").mkdir()
    ws = Workspace(tmp_path / "ws", PlatformConfig(k8s_context="staging"))
    await ws("repo.create", name="payments-api", kind="python-service")
    await ws("k8s.manifests", project="payments-api", image=IMAGE)
    result = await ws("k8s.apply", path="payments-api/deploy/k8s/deployment.yaml", namespace="payments-api")
    assert fake_kubectl.read_text().splitlines() == [
        "apply",
        "-f",
        "payments-api/deploy/k8s/deployment.yaml",
        "--namespace",
        "payments-api",
        "--context",
        "staging",
    ]
    assert result["mode"] == "applied" and result["context"] == "staging"


async def test_k8s_apply_refuses_a_namespace_other_than_the_manifests_naming_the_file_and_both(
    ws: Workspace, unreachable_kubectl: Path
) -> None:
    """kubectl apply refuses it too: with no cluster to ask, the tool must not answer 'validated offline'."""
    await ws("repo.create", name="svc-a", kind="python-service")
    await ws("k8s.manifests", project="svc-a", image=IMAGE, namespace="svc-a-staging")
    with pytest.raises(ToolError) as refused:
        await ws("k8s.apply", path="svc-a/deploy/k8s", namespace="other-ns")
    assert str(refused.value) == (
        "namespace 'other-ns' does not match the manifests: svc-a/deploy/k8s/deployment.yaml puts "
        "Deployment/svc-a in namespace 'svc-a-staging'; svc-a/deploy/k8s/service.yaml puts Service/svc-a in "
        "namespace 'svc-a-staging' (kubectl apply refuses a namespace that differs from the manifest's); give "
        "namespace 'svc-a-staging' or leave it out, or write the manifests for 'other-ns' with k8s.manifests"
    )
    assert not unreachable_kubectl.exists()  # kubectl was never asked
    # The manifests' own namespace passes, and so does one for resources that name none (kubectl gives it them).
    assert (await ws("k8s.apply", path="svc-a/deploy/k8s", namespace="svc-a-staging"))["mode"] == "offline"
    ws.write("bare/deploy/k8s/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n")
    assert (await ws("k8s.apply", path="bare", namespace="other-ns"))["mode"] == "offline"


def test_the_context_comes_from_the_environment_until_a_setting_exists() -> None:
    config = PlatformConfig.from_env({"EDGECREW_K8S_CONTEXT": " staging ", "EDGECREW_PLATFORM_RULES": ""})
    assert config == PlatformConfig(k8s_context="staging")
    assert PlatformConfig.from_env({}).k8s_context is None


async def test_k8s_apply_refuses_invalid_manifests_without_running_kubectl(ws: Workspace, fake_kubectl: Path) -> None:
    ws.write("app/deploy/k8s/service.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {port: 80}\n")
    with pytest.raises(ToolError, match=r"refusing to apply .*'port' was unexpected"):
        await ws("k8s.apply", path="app")
    assert not fake_kubectl.exists()
    # each error reads 'file, resource, field: message' without empty parts, and the count left out is said
    ws.write("app/deploy/k8s/broken.yaml", "kind: [unclosed\n")
    ws.write("app/deploy/k8s/empty.yaml", "name: x\n")
    ws.write("app/deploy/k8s/more.yaml", "name: y\n")
    with pytest.raises(ToolError) as refused:
        await ws("k8s.apply", path="app/deploy/k8s")
    message = str(refused.value)
    assert message.startswith(
        "refusing to apply manifests that fail k8s.validate (4 errors): app/deploy/k8s/broken.yaml: not valid YAML"
    ), message
    assert "; app/deploy/k8s/empty.yaml, document 1: a resource needs apiVersion and kind;" in message
    assert message.endswith("; and 1 more (k8s.validate lists them all)")
    assert "  " not in message and " :" not in message


async def test_k8s_apply_without_kubectl_says_so(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write("app/deploy/k8s/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolError, match="kubectl is not installed here"):
        await ws("k8s.apply", path="app")


async def test_with_no_reachable_cluster_the_manifests_are_validated_offline_and_not_applied(
    ws: Workspace, unreachable_kubectl: Path
) -> None:
    ws.write("app/deploy/k8s/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n")
    result = await ws("k8s.apply", path="app")
    assert unreachable_kubectl.read_text().splitlines()[-1] == "--dry-run=client"  # it did try
    assert result["mode"] == "offline" and result["applied"] is False
    assert result["note"] == (
        "validated offline, not applied: no cluster reachable "
        "(context 'kind-staging': dial tcp 127.0.0.1:1: connect: connection refused)"
    )
    assert result["resources"] == ["app/deploy/k8s/ns.yaml: Namespace/app"]


async def test_a_cluster_that_answers_no_or_a_configured_context_out_of_reach_is_still_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ws").mkdir()
    staging = Workspace(tmp_path / "ws", PlatformConfig(k8s_context="staging"))
    staging.write("app/deploy/k8s/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n")
    kubectl_stand_in(tmp_path, monkeypatch, REFUSED)
    with pytest.raises(ToolError, match=r"kubectl apply failed \(exit 1\).*connection refused.*context is 'staging'"):
        await staging("k8s.apply", path="app")  # a person asked for this cluster: not reaching it is a failure
    plain = Workspace(tmp_path / "ws")
    kubectl_stand_in(tmp_path, monkeypatch, "echo 'Error from server (Forbidden): namespaces is forbidden' >&2; exit 1")
    with pytest.raises(ToolError, match=r"Forbidden.*dry run against the current context 'kind-staging'"):
        await plain("k8s.apply", path="app")
    # kubectl can print "unable to recognize" and exit 0: that is not a success either
    kubectl_stand_in(tmp_path, monkeypatch, "echo 'error: unable to recognize \"ns.yaml\": no matches' >&2; exit 0")
    with pytest.raises(ToolError, match="unable to recognize"):
        await plain("k8s.apply", path="app")


def kubectl_saying(said: str, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A namespace manifest in ``app`` and a kubectl whose apply prints ``said`` to stderr and fails."""
    ws.write("app/deploy/k8s/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n")
    kubectl_stand_in(tmp_path, monkeypatch, f"echo '{said}' >&2; exit 1")


@pytest.mark.parametrize(
    "said",
    [  # kubectl's words when the current context's cluster is out of reach: a dial error or a timeout
        "Unable to connect to the server: dial tcp 10.0.0.1:6443: i/o timeout",
        "Unable to connect to the server: dial tcp: lookup staging.example.com on 127.0.0.53:53: no such host",
        "Unable to connect to the server: dial tcp 10.0.0.1:6443: connect: no route to host",
        "Unable to connect to the server: net/http: TLS handshake timeout",
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?",
    ],
)
async def test_a_dial_error_or_a_timeout_is_a_cluster_out_of_reach(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str
) -> None:
    kubectl_saying(said, ws, tmp_path, monkeypatch)
    result = await ws("k8s.apply", path="app")
    assert result["mode"] == "offline" and not result["applied"]
    assert result["reason"] == "context 'kind-staging': " + said.split(" - did you")[0]  # kubectl's words


@pytest.mark.parametrize(
    ("said", "hint"),
    [  # a configured context that is broken: a person must fix it, so it is no "no cluster reachable"
        (
            "Unable to connect to the server: getting credentials: exec: executable gke-gcloud-auth-plugin not found",
            "credential plugin",
        ),
        (  # the plugin could not reach its login server: still the credentials, not the cluster
            "Unable to connect to the server: getting credentials: exec: executable kubelogin failed with exit "
            "code 1: dial tcp: lookup login.microsoftonline.com: no such host",
            "credential plugin",
        ),
        (
            "Unable to connect to the server: tls: failed to verify certificate: x509: certificate signed by "
            "unknown authority",
            "certificate check",
        ),
        (
            "Unable to connect to the server: x509: certificate is valid for 10.0.0.1, not 10.0.0.2",
            "certificate check",
        ),
    ],
)
async def test_a_credential_plugin_or_certificate_failure_stays_an_error_with_kubectls_words(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str, hint: str
) -> None:
    kubectl_saying(said, ws, tmp_path, monkeypatch)
    with pytest.raises(ToolError) as raised:
        await ws("k8s.apply", path="app")
    assert str(raised.value) == (
        f"kubectl apply failed (exit 1): {said}; the current context 'kind-staging' is configured but its {hint} "
        "failed: fix its user or cluster in the kubeconfig (kubectl config view --minify), or switch context"
    )


async def test_unable_to_connect_with_no_dial_error_or_timeout_after_it_is_an_error(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubectl_saying("Unable to connect to the server: EOF", ws, tmp_path, monkeypatch)
    with pytest.raises(ToolError, match=r"^kubectl apply failed \(exit 1\): Unable to connect to the server: EOF; it"):
        await ws("k8s.apply", path="app")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_the_real_kubectl_with_no_context_or_no_reachable_cluster_applies_nothing(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.write("app/deploy/k8s/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))  # a fresh machine: no kubeconfig at all
    result = await ws("k8s.apply", path="app")
    assert result["mode"] == "offline" and not result["applied"]
    assert result["note"] == (  # kubectl's own words, short enough for a checklist line
        "validated offline, not applied: no cluster reachable "
        "(no kubeconfig context: error: current-context is not set)"
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n"
        "clusters: [{name: nowhere, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: nobody, user: {token: none}}]\n"
        "contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    result = await ws("k8s.apply", path="app")
    assert result["mode"] == "offline" and not result["applied"]
    assert result["reason"].startswith("context 'nowhere': dial tcp 127.0.0.1:1") and "refused" in result["reason"]
    kubeconfig.write_text(  # a credential plugin that is not installed: the context is broken, not offline
        kubeconfig.read_text(encoding="utf-8").replace(
            "{token: none}", "{exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: no-such-plugin}}"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ToolError, match=r"(?s)executable no-such-plugin not found.*'nowhere' is configured but its"):
        await ws("k8s.apply", path="app")


# -- docs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "file", "section"),
    [
        ("which image tag should I deploy", "deployments.md", "Images"),
        ("readiness and liveness probes, memory limits", "deployments.md", "Replicas, resources and probes"),
        ("required checks before a pull request can merge", "ci.md", "Required jobs"),
        ("prometheus metrics names", "observability.md", "Metrics"),
        ("is the name kube-system reserved", "naming.md", "Reserved names"),
    ],
)
async def test_docs_search_finds_the_right_guideline(ws: Workspace, query: str, file: str, section: str) -> None:
    results = (await ws("docs.search", query=query, k=2))["results"]
    assert (results[0]["file"], results[0]["section"]) == (file, section)
    assert len(results) <= 2 and results[0]["score"] > 0 and results[0]["text"]


async def test_docs_search_says_when_nothing_matches(tmp_path: Path) -> None:
    guidelines = tmp_path / "guidelines"
    guidelines.mkdir()
    (guidelines / "security.md").write_text("# Security\n\n## Secrets\n\nKeep secrets in the vault.\n")
    (tmp_path / "ws").mkdir()
    ws = Workspace(tmp_path / "ws", PlatformConfig(guidelines=guidelines))
    assert (await ws("docs.search", query="vault secrets"))["results"][0]["section"] == "Secrets"
    found = await ws("docs.search", query="zebra")
    assert found["results"] == [] and "security.md" in found["note"]


async def test_docs_search_says_what_is_wrong_with_the_guidelines_setting(tmp_path: Path) -> None:
    """Before: a file was called a folder that "does not exist", and an empty folder answered no results
    without a word (as if nothing matched)."""
    (tmp_path / "ws").mkdir()
    a_file = tmp_path / "guide.md"
    a_file.write_text("# Guide\n\n## Names\n\nkebab-case\n", encoding="utf-8")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not markdown", encoding="utf-8")
    cases = {
        tmp_path / "missing": f"the guidelines folder {tmp_path / 'missing'} does not exist",
        a_file: f"the guidelines folder {a_file} is a file, not a folder",
        empty: f"the guidelines folder {empty} has no *.md file",
    }
    for guidelines, said in cases.items():
        ws = Workspace(tmp_path / "ws", PlatformConfig(guidelines=guidelines))
        with pytest.raises(ToolError) as caught:
            await ws("docs.search", query="names")
        assert str(caught.value) == said + "; set EDGECREW_PLATFORM_GUIDELINES to a folder of *.md"


async def test_docs_generate_writes_a_readme_from_the_project_files(ws: Workspace) -> None:
    await ws("repo.create", name="payments-api", kind="python-service", description="Takes payments.")
    await ws("ci.write", project="payments-api")
    await ws("k8s.manifests", project="payments-api", image=IMAGE)
    result = await ws("docs.generate", project="payments-api")
    assert result == {
        "path": "payments-api/docs/README.md",
        "sections": ["overview", "modules", "tests", "ci", "deployment", "branch protection"],
    }
    page = ws.read(result["path"])
    for expected in (
        "# payments-api\n\nTakes payments.",
        "| Type | python-service |",
        "`payments-api` → `payments_api.service:main`",
        "### `payments_api.service`",
        "- `handle(method, path)`: The status code and JSON body that answer one request.",
        "4 tests in 1 file(s)",
        "`.github/workflows/ci.yml` (GitHub Actions): jobs lint, test, build",
        "Deployment `payments-api` in namespace `payments-api`",
        "`main`: 1 approving review(s), required checks lint, test, build, force pushes not allowed",
    ):
        assert expected in page, expected
    await ws("docs.generate", project="payments-api")
    assert ws.read(result["path"]) == page  # deterministic


async def test_a_missing_optional_library_names_the_extra(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.write("app/deploy/k8s/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n")
    monkeypatch.setitem(sys.modules, "kubernetes_validate", None)  # what an environment without it imports
    with pytest.raises(ToolError) as error:
        await ws("k8s.validate", path="app")
    checkout = Path(__file__).resolve().parents[2]  # the tests run from a checkout: an editable install
    assert str(error.value) == (  # the command for the Python running edgecrew; 'edgecrew[platform]' would
        # replace the checkout with the package
        "k8s.validate needs kubernetes-validate, which is not installed; install edgecrew's platform extra "
        "(copier, check-jsonschema, kubernetes-validate) with: "
        f"{sys.executable} -m pip install -e '{checkout}[platform]'"
    )


def test_importing_the_package_leaves_the_optional_libraries_unloaded() -> None:
    code = (
        "import sys, edgecrew.platform; "
        "print(','.join(m for m in ('copier', 'check_jsonschema', 'kubernetes_validate', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
