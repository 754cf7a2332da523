"""ci.write and ci.validate: a lint → test → build pipeline for GitHub Actions or GitLab CI, checked
offline against the provider's published schema.

Validation runs check-jsonschema (its command line is its stable interface) in a subprocess of this
interpreter with the schemas it vendors (``vendor.github-workflows``, ``vendor.gitlab-ci``), so no
network is needed and a typo such as ``step:`` comes back with its path before anything is pushed.
The job names are the branch-protection policy's required checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

from edgecrew.errors import ToolError
from edgecrew.platform.config import require
from edgecrew.platform.project import ProjectFacts, project_facts
from edgecrew.platform.workspace import Workspace
from edgecrew.platform.yamlio import dump_yaml

__all__ = ["PIPELINE_FILES", "Provider", "validate_pipelines", "write_pipeline"]

Provider = Literal["github", "gitlab"]
PIPELINE_FILES: dict[Provider, str] = {"github": ".github/workflows/ci.yml", "gitlab": ".gitlab-ci.yml"}
SCHEMAS: dict[Provider, str] = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}
VALIDATE_TIMEOUT_S = 60.0


def github_workflow(facts: ProjectFacts, branch: str) -> dict[str, Any]:
    checkout = {"uses": "actions/checkout@v4"}
    python = {
        "uses": "actions/setup-python@v5",
        "with": {"python-version": facts.python, "cache": "pip", "cache-dependency-path": "pyproject.toml"},
    }
    build_steps: list[dict[str, Any]] = [
        checkout,
        python,
        {"name": "Build the wheel", "run": "pip install build\npython -m build"},
        {"uses": "actions/upload-artifact@v4", "with": {"name": "dist", "path": "dist/"}},
    ]
    if facts.has_dockerfile:
        image = f"{facts.name}:${{{{ github.sha }}}}"
        build_steps.append({"name": "Build the image", "run": f"docker build -t {image} ."})
    return {
        "name": "ci",
        "on": {"push": {"branches": [branch]}, "pull_request": {"branches": [branch]}},
        "permissions": {"contents": "read"},
        "jobs": {
            "lint": {
                "runs-on": "ubuntu-latest",
                "steps": [
                    checkout,
                    python,
                    {"run": "pip install ruff"},
                    {"name": "Lint", "run": "ruff check .\nruff format --check ."},
                ],
            },
            "test": {
                "needs": "lint",
                "runs-on": "ubuntu-latest",
                "steps": [checkout, python, {"run": "pip install -e '.[dev]'"}, {"name": "Test", "run": "pytest"}],
            },
            "build": {"needs": "test", "runs-on": "ubuntu-latest", "steps": build_steps},
        },
    }


def gitlab_pipeline(facts: ProjectFacts, branch: str) -> dict[str, Any]:
    pipeline: dict[str, Any] = {
        "workflow": {
            "rules": [
                {"if": f'$CI_COMMIT_BRANCH == "{branch}"'},
                {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'},
            ]
        },
        "stages": ["lint", "test", "build"],
        "default": {"image": f"python:{facts.python}-slim"},
        "variables": {"PIP_CACHE_DIR": "$CI_PROJECT_DIR/.cache/pip"},
        "cache": {"key": {"files": ["pyproject.toml"]}, "paths": [".cache/pip"]},
        "lint": {"stage": "lint", "script": ["pip install ruff", "ruff check .", "ruff format --check ."]},
        "test": {"stage": "test", "script": ["pip install -e '.[dev]'", "pytest"]},
        "build": {
            "stage": "build",
            "script": ["pip install build", "python -m build"],
            "artifacts": {"paths": ["dist/"]},
        },
    }
    if facts.has_dockerfile:
        pipeline["build-image"] = {
            "stage": "build",
            "image": "docker:27",
            "services": ["docker:27-dind"],
            "variables": {"DOCKER_TLS_CERTDIR": "/certs"},
            "script": ['docker build -t "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA" .'],
        }
    return pipeline


def write_pipeline(ws: Workspace, project: Path, provider: Provider, branch: str) -> dict[str, Any]:
    """Write the provider's pipeline file into ``project``; its path and jobs."""
    facts = project_facts(project)
    build = github_workflow if provider == "github" else gitlab_pipeline
    pipeline = build(facts, branch)
    header = f"# CI for {facts.name}, written by ci.write: lint, test, build (the branch's required checks).\n"
    path = ws.write_text(project / PIPELINE_FILES[provider], header + dump_yaml(pipeline))
    jobs = (
        list(pipeline["jobs"])
        if provider == "github"
        else [k for k, v in pipeline.items() if isinstance(v, dict) and "stage" in v]
    )
    return {"path": path, "provider": provider, "jobs": jobs, "python": facts.python}


def _provider_of(path: Path) -> Provider | None:
    if path.name == ".gitlab-ci.yml" or path.name.endswith(".gitlab-ci.yml"):
        return "gitlab"
    if path.parent.name == "workflows" and path.parent.parent.name == ".github":
        return "github"
    return None


def _pipelines(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    workflows = target / ".github" / "workflows"
    found = sorted(p for p in workflows.glob("*") if p.suffix in (".yml", ".yaml")) if workflows.is_dir() else []
    return found + ([target / ".gitlab-ci.yml"] if (target / ".gitlab-ci.yml").is_file() else [])


def validate_pipelines(ws: Workspace, target: Path, provider: Provider | None) -> dict[str, Any]:
    """Validate a pipeline file, or every pipeline of a project directory, against the published
    schemas; {valid, files, errors: [{file, path, message}]}."""
    if not target.exists():
        raise ToolError(f"no file or directory '{ws.rel(target)}' in the workspace; ci.write writes a pipeline")
    files = _pipelines(target)
    if not files:
        raise ToolError(
            f"no pipeline in '{ws.rel(target)}' (.github/workflows/*.yml or .gitlab-ci.yml); ci.write writes one"
        )
    groups: dict[Provider, list[Path]] = {}
    for file in files:
        ws.check(file, "read")
        kind = provider or _provider_of(file)
        if kind is None:
            raise ToolError(
                f"cannot tell the CI provider of '{ws.rel(file)}' from its path; pass provider github or gitlab"
            )
        groups.setdefault(kind, []).append(file)
    errors = [e for file in files if (e := _syntax_error(ws, file)) is not None]
    broken = {e["file"] for e in errors}
    for kind, group in groups.items():
        parsed = [f for f in group if ws.rel(f) not in broken]
        errors += _check_jsonschema(ws, kind, parsed) if parsed else []
    return {"valid": not errors, "files": [ws.rel(f) for f in files], "errors": errors}


def _syntax_error(ws: Workspace, file: Path) -> dict[str, str] | None:
    """The YAML syntax error of ``file`` with its line (check-jsonschema names only the file)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:  # round-trip mode: it keeps tags it does not know, like GitLab's !reference
        list(YAML().load_all(file.read_text(encoding="utf-8")))
    except (YAMLError, UnicodeDecodeError) as exc:
        return {"file": ws.rel(file), "path": "$", "message": f"not valid YAML: {' '.join(str(exc).split())}"}
    return None


def _check_jsonschema(ws: Workspace, provider: Provider, files: list[Path]) -> list[dict[str, str]]:
    require("check_jsonschema", "check-jsonschema", "ci.validate")
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMAS[provider], "-o", "json"]
    if provider == "gitlab":
        command += ["--data-transform", "gitlab-ci"]  # GitLab's !reference tags
    try:
        proc = subprocess.run(
            [*command, *map(str, files)],
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"check-jsonschema took longer than {VALIDATE_TIMEOUT_S:g}s") from None
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ToolError(f"check-jsonschema failed: {(proc.stderr or proc.stdout).strip()[-800:]}") from None
    by_name = {str(f): ws.rel(f) for f in files}
    errors = []
    for err in report.get("errors", []):
        best = err.get("best_deep_match") or err.get("best_match") or err
        errors.append(
            {
                "file": by_name.get(err.get("filename", ""), err.get("filename", "")),
                "path": str(best.get("path", err.get("path", "$"))),
                "message": str(best.get("message", err.get("message", ""))),
            }
        )
    for err in report.get("parse_errors", []):
        name = err.get("filename", "")
        errors.append({"file": by_name.get(name, name), "path": "$", "message": str(err.get("message", ""))})
    return errors
