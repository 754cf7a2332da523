"""repo.create: a local git repository from a template, with the branch-protection policy as a file.

Git runs as a subprocess with a scrubbed environment (no system or global config, hooks off, no
signing, no pager), so a commit works the same on a bare CI box and on a laptop with its own git
setup; the author is set through the environment. The policy is written in the shape of GitHub's
branch-protection API (``PUT /repos/{owner}/{repo}/branches/{branch}/protection``), so publishing the
repository can apply it as it is; the local repository records it, it cannot enforce it.

repo.commit commits what the other tools wrote into a project (pipeline, manifests, docs) in the
project's own repository, so a run leaves it clean; it checks that repository as git.commit checks the
workspace's (a plain .git, no config that can run programs) and runs git through the same runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecrew.errors import ToolError
from edgecrew.platform.project import POLICY_FILE, PROJECT_FILE
from edgecrew.platform.rules import BranchProtection, Rules, check_name, package_name
from edgecrew.platform.templates import apply_template
from edgecrew.platform.workspace import Workspace
from edgecrew.tools.builtins.git import check_repo, run_git

__all__ = ["commit_repo", "create_repo", "policy", "policy_yaml"]

IDENTITY = ("edgecrew", "edgecrew@localhost")


def _git(root: Path, *args: str) -> str:
    return run_git(root, *args, identity=IDENTITY).stdout


def policy(name: str, rules: BranchProtection) -> dict[str, Any]:
    """The branch-protection policy of a new repository, in the shape of GitHub's API."""
    return {
        "repository": name,
        "branches": {
            rules.branch: {
                "required_pull_request_reviews": {
                    "required_approving_review_count": rules.required_reviews,
                    "dismiss_stale_reviews": rules.dismiss_stale_reviews,
                    "require_code_owner_reviews": rules.require_code_owner_reviews,
                },
                "required_status_checks": {"strict": True, "contexts": list(rules.required_checks)},
                "enforce_admins": True,
                "required_linear_history": rules.require_linear_history,
                "allow_force_pushes": rules.allow_force_push,
                "allow_deletions": rules.allow_deletion,
            }
        },
    }


def policy_yaml(name: str, rules: BranchProtection) -> str:
    from edgecrew.platform.yamlio import dump_yaml

    header = (
        f"# Branch protection for {name}, written by repo.create from the platform's rules.\n"
        "# The shape of GitHub's branch-protection API: publishing the repository applies it.\n"
    )
    return header + dump_yaml(policy(name, rules))


def create_repo(
    ws: Workspace, rules: Rules, name: str, kind: str, template: str | None, description: str
) -> dict[str, Any]:
    """Render the kind's template into ``<workspace>/<name>``, add the policy and project files, and
    commit everything on the protected branch."""
    from edgecrew.platform.yamlio import dump_yaml

    problems = check_name(rules, name, kind)
    if problems:
        raise ToolError("; ".join(f"{p['rule']}: {p['message']}" for p in problems))
    template = _kind_template(rules, kind, template)
    dest = ws.directory(name, None)  # every file written is checked
    data = {"project_name": name, **({"description": description} if description.strip() else {})}
    files = apply_template(ws, template, dest, data)
    branch = rules.branch_protection.branch
    files.append(ws.write_text(dest / POLICY_FILE, policy_yaml(name, rules.branch_protection)))
    project = {"name": name, "kind": kind, "template": template, "package": package_name(name)}
    files.append(
        ws.write_text(
            dest / PROJECT_FILE,
            "# Written by repo.create; ci.write, k8s.manifests and docs.generate read it.\n" + dump_yaml(project),
        )
    )
    _git(dest, "init", "-q", "-b", branch)
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "--no-verify", "-m", f"Create {name} ({kind}) from the {template} template")
    commit = _git(dest, "rev-parse", "--short", "HEAD").strip()
    return {
        "path": ws.rel(dest),
        "location": str(dest),  # where a person finds it: the workspace is the run's, not the caller's folder
        "kind": kind,
        "template": template,
        "branch": branch,
        "commit": commit,
        "policy": f"{ws.rel(dest)}/{POLICY_FILE}",
        "files": sorted(files),
    }


def _kind_template(rules: Rules, kind: str, template: str | None) -> str:
    """The kind's template: the rules give each kind one, and another would build a project of another
    kind under this one's name (a FastAPI app whose project file says ``cli``)."""
    own = rules.kinds[kind].template
    if template is None or template == own:
        return own
    kinds = [k for k, rule in rules.kinds.items() if rule.template == template]
    whose = f" (the template of kind {', '.join(kinds)})" if kinds else ""
    other = f", or ask for kind {kinds[0]}" if kinds else ""
    raise ToolError(
        f"template '{template}'{whose} does not match kind '{kind}': the platform rules create a {kind} "
        f"from template '{own}' (kinds.{kind}.template); leave the template out{other}"
    )


def commit_repo(ws: Workspace, project: Path, message: str) -> dict[str, Any]:
    """Commit every change in the project's repository (made by repo.create) with ``message``;
    {path, committed, commit, branch, message, files: [{status, path}], clean}."""
    rel = ws.rel(project)
    if not message.strip():
        raise ToolError("the commit message is empty; say in a line what changed")
    root = check_repo(project, f"'{rel}'", "repo.create makes a project's repository")
    _git(root, "add", "-A")
    staged = run_git(root, "diff", "--cached", "--quiet", check=False).returncode != 0
    files: list[dict[str, str]] = []
    if staged:
        _git(root, "commit", "-q", "--no-verify", "-m", message.strip())
        changed = _git(root, "diff-tree", "--root", "--no-commit-id", "-r", "--name-status", "HEAD").splitlines()
        files = [{"status": s, "path": p} for s, _, p in (line.partition("\t") for line in changed)]
    return {
        "path": rel,
        "committed": staged,
        "commit": _git(root, "rev-parse", "--short", "HEAD").strip(),
        "branch": _git(root, "symbolic-ref", "--short", "-q", "HEAD").strip(),
        "message": message.strip().splitlines()[0],
        "files": files[:100],
        "clean": not _git(root, "status", "--porcelain").strip(),
    }
