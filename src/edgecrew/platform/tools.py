"""The platform tools as the agents see them: names, argument schemas, risk levels, and the run's
workspace and file policy applied to every path.

They are methods of one object bound to a :class:`PlatformConfig` (registered by
:func:`register_platform_tools`, no module state); each reads the platform rules afresh, so a
``platform.yaml`` an agent adds to the workspace counts from its next call. Every tool but
``k8s.apply`` is ``safe``: it reads and writes inside the workspace (``repo.create`` makes a local
repository there, as ``git.init`` does; ``repo.commit`` commits in it, as ``git.commit`` does).
``k8s.apply`` acts on a cluster, so it is ``risky`` and waits for a person's approval. Arguments are
plain strings, numbers and enums (no ``$ref``), because the embedded model's grammar inlines each
tool's schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from edgecrew.errors import ToolError
from edgecrew.platform.ci import Provider, validate_pipelines, write_pipeline
from edgecrew.platform.config import PlatformConfig
from edgecrew.platform.docs import GuidelineIndex, PassageEmbedder, generate_docs
from edgecrew.platform.k8s import MANIFEST_DIR, apply_manifests, validate_manifests, write_manifests
from edgecrew.platform.project import PROJECT_FILE, project_facts
from edgecrew.platform.repos import commit_repo, create_repo
from edgecrew.platform.rules import Rules, check_name, load_rules, package_name
from edgecrew.platform.templates import apply_template, available, describe
from edgecrew.platform.workspace import Workspace
from edgecrew.tools.base import Risk, ToolContext, ToolRegistry, spec_from_function

__all__ = ["PLATFORM_TOOLS", "register_platform_tools"]

PLATFORM_TOOLS = (
    "platform.validate_name",
    "templates.list",
    "templates.apply",
    "repo.create",
    "repo.commit",
    "ci.write",
    "ci.validate",
    "k8s.manifests",
    "k8s.validate",
    "k8s.apply",
    "docs.search",
    "docs.generate",
)

Name = Annotated[
    str, Field(min_length=1, max_length=100, description="The project's name, lowercase-kebab, e.g. payments-api.")
]
Kind = Annotated[
    str, Field(min_length=1, max_length=100, description="The project type: python-service, fastapi-app or cli.")
]
Template = Annotated[
    str, Field(min_length=1, max_length=100, description="A template from templates.list, e.g. python-service.")
]
Project = Annotated[
    str,
    Field(min_length=1, max_length=300, description="The project's directory in the workspace, e.g. payments-api."),
]
Description = Annotated[str, Field(max_length=300, description="One line that says what the project does.")]
Path_ = Annotated[
    str, Field(min_length=1, max_length=300, description="A file or directory in the workspace, e.g. payments-api.")
]


class _PlatformTools:
    """The tools' functions, bound to one config (their docstrings are the tools' descriptions)."""

    def __init__(self, config: PlatformConfig, embedder: PassageEmbedder | None = None) -> None:
        self.config = config
        self.guidelines = GuidelineIndex(embedder)

    def _rules(self, ws: Workspace) -> Rules:
        return load_rules(ws.root, self.config.rules)

    def validate_name(self, name: Name, kind: Kind, ctx: ToolContext) -> dict[str, Any]:
        """Check a project name and type against the platform's naming rules before creating anything."""
        rules = self._rules(Workspace.of(ctx))
        problems = check_name(rules, name, kind)
        result: dict[str, Any] = {"valid": not problems, "name": name, "kind": kind, "problems": problems}
        if not problems:
            result |= {"package": package_name(name), "template": rules.kinds[kind].template}
        return result

    def templates_list(self) -> list[dict[str, Any]]:
        """List the project templates with their descriptions, questions and files."""
        return [describe(name) for name in available()]

    def templates_apply(
        self,
        template: Template,
        name: Name,
        ctx: ToolContext,
        dest: Annotated[
            str | None, Field(max_length=300, description="Directory to create; the name when not given.")
        ] = None,
        description: Description = "",
    ) -> dict[str, Any]:
        """Render a project template into a new directory of the workspace (no git repository)."""
        ws = Workspace.of(ctx)
        problems = check_name(self._rules(ws), name)
        if problems:
            raise ToolError("; ".join(f"{p['rule']}: {p['message']}" for p in problems))
        target = ws.directory(dest or name, None, example=name)  # apply_template checks every file it writes
        data = {"project_name": name, **({"description": description} if description.strip() else {})}
        files = apply_template(ws, template, target, data)
        return {"path": ws.rel(target), "template": template, "files": files}

    def repo_create(
        self,
        name: Name,
        kind: Kind,
        ctx: ToolContext,
        template: Annotated[
            str | None,
            Field(max_length=100, description="The kind's template (the platform rules give each kind one)."),
        ] = None,
        description: Description = "",
    ) -> dict[str, Any]:
        """Create a git repository for a new project from its template, with branch protection and a first commit."""
        ws = Workspace.of(ctx)
        return create_repo(ws, self._rules(ws), name, kind, template, description)

    def repo_commit(
        self,
        project: Project,
        message: Annotated[str, Field(min_length=1, max_length=300, description="What changed, in one line.")],
        ctx: ToolContext,
    ) -> dict[str, Any]:
        """Commit every change in a project's own repository (made by repo.create), e.g. its pipeline and docs."""
        ws = Workspace.of(ctx)
        return commit_repo(ws, ws.project(project), message)

    def ci_write(self, project: Project, ctx: ToolContext, provider: Provider = "github") -> dict[str, Any]:
        """Write a CI pipeline (lint, test, build) for a project: GitHub Actions or GitLab CI."""
        ws = Workspace.of(ctx)
        branch = self._rules(ws).branch_protection.branch
        return write_pipeline(ws, ws.project(project), provider, branch)

    def ci_validate(
        self,
        path: Path_,
        ctx: ToolContext,
        provider: Annotated[
            Provider | None, Field(description="github or gitlab; found from the file's path when not given.")
        ] = None,
    ) -> dict[str, Any]:
        """Validate a CI pipeline file, or a project's pipelines, against the provider's published schema."""
        ws = Workspace.of(ctx)
        return validate_pipelines(ws, ws.path(path, "read"), provider)

    def k8s_manifests(
        self,
        project: Project,
        image: Annotated[
            str, Field(min_length=1, max_length=300, description="Image with a fixed tag, e.g. ghcr.io/acme/app:0.1.0")
        ],
        ctx: ToolContext,
        port: Annotated[int, Field(ge=1, le=65535, description="The port the container listens on.")] = 8000,
        namespace: Annotated[
            str | None, Field(max_length=63, description="Kubernetes namespace; the project's name by default.")
        ] = None,
        replicas: Annotated[int, Field(ge=0, le=50)] = 2,
    ) -> dict[str, Any]:
        """Generate Kubernetes Namespace, Deployment and Service manifests into the project's deploy/k8s/."""
        ws = Workspace.of(ctx)
        return write_manifests(ws, ws.project(project), image, port, namespace, replicas)

    def k8s_validate(self, path: Path_, ctx: ToolContext) -> dict[str, Any]:
        """Validate Kubernetes manifests (a file, or every YAML file under a directory) against the schemas."""
        ws = Workspace.of(ctx)
        return validate_manifests(ws, self._target(ws, path), self._rules(ws).kubernetes.version)

    def k8s_apply(
        self,
        path: Path_,
        ctx: ToolContext,
        namespace: Annotated[
            str | None, Field(max_length=63, description="Namespace for resources without one.")
        ] = None,
    ) -> dict[str, Any]:
        """Apply Kubernetes manifests with kubectl (a dry run with no context; offline if no cluster answers)."""
        ws = Workspace.of(ctx)
        target = self._target(ws, path)
        version = self._rules(ws).kubernetes.version
        return apply_manifests(ws, target, namespace, self.config.k8s_context, self.config.kubectl, version)

    def docs_search(
        self,
        query: Annotated[str, Field(min_length=1, max_length=500, description="What to look up, in a few words.")],
        k: Annotated[int, Field(ge=1, le=10, description="How many sections to return.")] = 3,
    ) -> dict[str, Any]:
        """Search the platform's guidelines (naming, CI, deployments, observability) for the best sections."""
        return self.guidelines.search(self.config.guidelines_dir, query, k)

    def docs_generate(self, project: Project, ctx: ToolContext) -> dict[str, Any]:
        """Write docs/README.md for a project from its files: metadata, modules, tests, CI, deployment."""
        ws = Workspace.of(ctx)
        return generate_docs(ws, ws.project(project))

    @staticmethod
    def _target(ws: Workspace, path: str) -> Path:
        """``path``, or its deploy/k8s/ when it names a project directory; a project (made by
        repo.create) without one is refused, so its own YAML files are never read as manifests."""
        target = ws.path(path, "read")
        manifests = target / MANIFEST_DIR
        if not target.is_dir() or manifests.is_dir() or not (target / PROJECT_FILE).is_file():
            return manifests if manifests.is_dir() else target
        facts = project_facts(target)
        where = f"no manifests in project '{ws.rel(target)}'"
        if facts.kind == "cli":
            raise ToolError(f"{where}: a cli project serves no HTTP, so it has none to validate or apply")
        raise ToolError(f"{where} ({ws.rel(manifests)}/ does not exist); k8s.manifests writes them")


def register_platform_tools(
    registry: ToolRegistry, config: PlatformConfig | None = None, *, embedder: PassageEmbedder | None = None
) -> None:
    """Register the platform tools bound to ``config`` (from the environment when None); ``embedder``
    (the runtime's memory model) lets docs.search rank by meaning, BM25 without one. Registering again
    replaces them."""
    tools = _PlatformTools(config or PlatformConfig.from_env(), embedder)
    specs: list[tuple[str, Any, float, Risk]] = [
        ("platform.validate_name", tools.validate_name, 30.0, "safe"),
        ("templates.list", tools.templates_list, 30.0, "safe"),
        ("templates.apply", tools.templates_apply, 60.0, "safe"),
        ("repo.create", tools.repo_create, 90.0, "safe"),
        ("repo.commit", tools.repo_commit, 60.0, "safe"),
        ("ci.write", tools.ci_write, 30.0, "safe"),
        ("ci.validate", tools.ci_validate, 90.0, "safe"),
        ("k8s.manifests", tools.k8s_manifests, 30.0, "safe"),
        ("k8s.validate", tools.k8s_validate, 90.0, "safe"),
        ("k8s.apply", tools.k8s_apply, 180.0, "risky"),  # acts on a cluster: waits for a person's approval
        ("docs.search", tools.docs_search, 30.0, "safe"),
        ("docs.generate", tools.docs_generate, 30.0, "safe"),
    ]
    for name, fn, timeout_s, risk in specs:
        registry.register(spec_from_function(fn, name=name, timeout_s=timeout_s, risk=risk))
