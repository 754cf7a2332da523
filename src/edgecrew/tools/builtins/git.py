"""git.init / branch / commit / diff / log: version control of the run's workspace through the git CLI.

Agents can write any file in the workspace, ``.git/config`` and ``.git/hooks`` included, so the one thing
this module guards against is git running a program of an agent's choosing. Every call runs ``git`` in a
subprocess with a timeout, in the workspace, with a scrubbed environment (no inherited ``GIT_*``, no
system or global config, repository discovery stopped at the workspace, literal pathspecs), hooks
disabled and fsmonitor/pager/signing forced off on the command line, and the repository's own config is
checked against a short allow-list (no filter drivers, aliases, includes, external diff programs).
Paths must stay inside the workspace and pass the agent's file policy (``ctx.files``): diff and commit
read the paths they name (the whole workspace, ``.``, when none are named); a branch switch rewrites
working-tree files, so it needs write access to ``.``; ``.git`` itself is the tools' own state.
Refs may not look like options.

All five tools are ``safe``: they touch only the workspace's own repository, never a remote, and never
force; a commit or a branch switch is as reversible as ``files.write`` (git keeps the old states), and
asking a human to approve every routine commit would stall coding teams. Push, reset or a forced
checkout, if ever added, would be ``risky``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any, Literal

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

GIT_TIMEOUT_S = 20.0
IDENTITY = ("edgecrew", "edgecrew@localhost")  # used unless the repository's own config sets user.*
MAX_DIFF_CHARS = 50_000
_SEP = "\x1f"
_SAFE_KEYS = re.compile(
    r"core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|precomposeunicode|symlinks"
    r"|autocrlf|eol|quotepath)|user\.(name|email)|init\.defaultbranch|extensions\.objectformat"
    r"|branch\..+\.(remote|merge|rebase)|remote\..+\.(url|fetch)",
    re.IGNORECASE,
)


def _root(ctx: ToolContext) -> Path:
    return Path(ctx.workspace).resolve()


def _rel(ctx: ToolContext, root: Path, path: str, mode: str = "read") -> str:
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ToolError(f"path '{path}' is outside the workspace; use a path relative to it like 'src/app.py'")
    relative = str(target.relative_to(root))
    if ctx.files is not None:
        ctx.files.check(relative, mode, f"agent '{ctx.agent}'")
    return relative


def _spec(ctx: ToolContext, root: Path, paths: list[str] | None) -> list[str]:
    """Pathspecs after ``--`` for ``paths``; none (the whole workspace, checked as '.') when not given."""
    checked = [_rel(ctx, root, p) for p in paths or ["."]]
    return ["--", *checked] if paths else []


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_git(root, *args, check=check)


def run_git(
    root: Path, *args: str, check: bool = True, identity: tuple[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """git in ``root`` with no user or system config, hooks, pager, prompts or network; ``identity``
    (name, email) makes the commits' author and committer (the platform tools' repositories use it)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CEILING_DIRECTORIES": str(root.parent),
        "GIT_LITERAL_PATHSPECS": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    if identity is not None:
        for who in ("AUTHOR", "COMMITTER"):
            env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = identity
    forced = (
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "core.pager=cat",
        "commit.gpgsign=false",
        "protocol.allow=never",
        "core.quotePath=false",
        f"safe.directory={root}",
    )
    command = ["git", *(x for opt in forced for x in ("-c", opt)), *args]
    try:
        proc = subprocess.run(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=GIT_TIMEOUT_S,
        )
    except FileNotFoundError:
        raise ToolError("git is not installed on this machine (Debian package `git`)") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"git {args[0]} timed out after {GIT_TIMEOUT_S:g}s") from None
    if check and proc.returncode != 0:
        text = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()
        raise ToolError(f"git {args[0]} failed: " + " ".join(line.strip() for line in text[:4]))
    return proc


def _repo(ctx: ToolContext) -> Path:
    """The workspace root, once it is checked to hold a repository that is safe to run git in."""
    return check_repo(_root(ctx), "the workspace", "call git.init first")


def check_repo(root: Path, where: str, make_one: str) -> Path:
    """``root``, once it is checked to hold a repository that is safe to run git in: a plain ``.git``
    directory with its own objects and only allow-listed config keys. ``where`` names it in errors
    ("the workspace"); ``make_one`` says how to create one when there is none."""
    dotgit = root / ".git"
    if dotgit.is_symlink() or (dotgit.exists() and not dotgit.is_dir()):
        raise ToolError(f"refusing: {where}'s .git is not a plain directory (it may point outside)")
    if not dotgit.is_dir():
        raise ToolError(f"{where} is not a git repository yet; {make_one}")
    if (dotgit / "commondir").exists() or (dotgit / "objects" / "info" / "alternates").exists():
        raise ToolError(f"refusing: {where}'s repository borrows objects from outside it")
    keys = _git(root, "config", "--local", "--name-only", "--list", check=False).stdout.splitlines()
    unsafe = [key for key in keys if not _SAFE_KEYS.fullmatch(key)]
    if unsafe:
        raise ToolError(
            f"refusing: .git/config sets {', '.join(sorted(set(unsafe)))}, which edgecrew does not "
            "allow (they can run programs); remove those lines"
        )
    return root


def _ref(root: Path, ref: str) -> str:
    """``ref`` if it names a commit; otherwise a ToolError that says where to find valid ones."""
    if (
        not ref
        or ref.startswith("-")
        or _git(root, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False).returncode
    ):
        raise ToolError(f"unknown ref '{ref}'; use git.branch to list branches or git.log for commit ids")
    return ref


def _current(root: Path) -> str | None:
    return _git(root, "symbolic-ref", "--short", "-q", "HEAD", check=False).stdout.strip() or None


def _count(text: str) -> int | None:
    return int(text) if text.isdigit() else None  # git prints '-' for binary files


def _has_commits(root: Path) -> bool:
    return _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0


def git_init(ctx: ToolContext, branch: str = "main") -> str:
    """Make the workspace a git repository (does nothing if it already is one)."""
    root = _root(ctx)
    if (root / ".git").exists() or (root / ".git").is_symlink():
        root = _repo(ctx)
        return f"the workspace is already a git repository, on branch {_current(root) or '(detached HEAD)'}"
    root.mkdir(parents=True, exist_ok=True)
    if branch.startswith("-") or _git(root, "check-ref-format", "--branch", branch, check=False).returncode:
        raise ToolError(f"invalid branch name '{branch}'")
    _git(root, "init", "-q", "-b", branch)
    return f"initialized an empty git repository in the workspace, on branch {branch}"


def git_branch(
    ctx: ToolContext,
    action: Literal["list", "create", "switch"] = "list",
    name: str | None = None,
    start: str | None = None,
) -> dict[str, Any]:
    """List branches, create a branch and switch to it, or switch to an existing branch."""
    root = _repo(ctx)
    if action != "list":
        if not name or name.startswith("-") or _git(root, "check-ref-format", "--branch", name, check=False).returncode:
            raise ToolError(f"'{name or ''}' is not a valid branch name; use letters, digits, '-', '_' or '/'")
        if action == "switch" or start:
            _rel(ctx, root, ".", "write")  # checking out another commit rewrites working-tree files
        if action == "create":
            _git(root, "switch", "-q", "-c", name, *([_ref(root, start)] if start else []))
        elif _git(root, "rev-parse", "--verify", "-q", f"refs/heads/{name}", check=False).returncode:
            raise ToolError(f"no branch '{name}'; use action 'create' to make it, or 'list' to see branches")
        else:
            _git(root, "switch", "-q", name)
    branches = _git(root, "branch", "--format=%(refname:short)").stdout.split()
    return {"current": _current(root), "branches": branches}


def git_commit(message: str, ctx: ToolContext, paths: list[str] | None = None) -> dict[str, Any]:
    """Commit changes in the workspace: the given paths, or everything if no paths are given."""
    root = _repo(ctx)
    if not message.strip():
        raise ToolError("the commit message is empty; say in a line what changed")
    spec = _spec(ctx, root, paths)
    _git(root, "add", "-A", *spec)
    if _git(root, "diff", "--cached", "--quiet", *spec, check=False).returncode == 0:
        raise ToolError("nothing to commit: " + (f"{', '.join(paths or [])} did not change" if spec else "no changes"))
    configured = all(_git(root, "config", "--get", k, check=False).stdout.strip() for k in ("user.name", "user.email"))
    identity = [] if configured else ["-c", f"user.name={IDENTITY[0]}", "-c", f"user.email={IDENTITY[1]}"]
    _git(root, *identity, "commit", "-q", "--no-verify", "-m", message, *spec)
    changed = _git(root, "diff-tree", "--root", "--no-commit-id", "-r", "--name-status", "HEAD").stdout.splitlines()
    files = [{"status": s, "path": p} for s, _, p in (line.partition("\t") for line in changed)]
    commit = _git(root, "rev-parse", "--short", "HEAD").stdout.strip()
    return {
        "commit": commit,
        "branch": _current(root),
        "message": message.strip().splitlines()[0],
        "files": files[:100],
    }


def git_diff(
    ctx: ToolContext,
    ref: str | None = None,
    to: str | None = None,
    paths: list[str] | None = None,
    max_chars: int = 8000,
) -> dict[str, Any]:
    """Show changes: uncommitted work (default), the working tree against ref, or ref against to."""
    root = _repo(ctx)
    if to and not ref:
        raise ToolError("'to' needs 'ref': give both to compare two commits or branches")
    if ref:
        base = _ref(root, ref)
    elif _has_commits(root):
        base = "HEAD"
    else:  # nothing committed yet: compare with the empty tree
        base = _git(root, "hash-object", "-t", "tree", os.devnull).stdout.strip()
    refs = [base, _ref(root, to)] if to else [base]
    spec = _spec(ctx, root, paths)
    options = ["--no-ext-diff", "--no-textconv", "--no-color"]
    numstat = _git(root, "diff", *options, "--numstat", *refs, *spec).stdout.splitlines()
    rows = (line.split("\t", 2) for line in numstat[:200])
    files = [{"path": p, "added": _count(a), "deleted": _count(d)} for a, d, p in rows]
    text = _git(root, "diff", *options, *refs, *spec).stdout
    limit = max(500, min(max_chars, MAX_DIFF_CHARS))
    result: dict[str, Any] = {"from": ref or "HEAD", "to": to or "working tree", "files": files, "diff": text[:limit]}
    if not to:
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", *spec[1:]).stdout.splitlines()
        result["untracked"] = untracked[:200]
    if len(text) > limit:
        result["note"] = f"diff cut at {limit} of {len(text)} characters; pass paths to see fewer files"
    return result


def git_log(ctx: ToolContext, n: int = 10, ref: str | None = None, path: str | None = None) -> list[dict[str, str]]:
    """List the last n commits (newest first) with id, author, date and subject."""
    root = _repo(ctx)
    if ref is None and not _has_commits(root):
        return []
    fmt = _SEP.join(("%h", "%an", "%aI", "%s"))
    args = ["log", f"-n{max(1, min(n, 100))}", f"--format={fmt}", _ref(root, ref or "HEAD")]
    lines = _git(root, *args, *(["--", _rel(ctx, root, path)] if path else [])).stdout.splitlines()
    return [dict(zip(("commit", "author", "date", "subject"), line.split(_SEP, 3), strict=True)) for line in lines]


def register(registry: ToolRegistry) -> None:
    for fn in (git_init, git_branch, git_commit, git_diff, git_log):
        registry.register(spec_from_function(fn, name=fn.__name__.replace("_", "."), risk="safe", timeout_s=60))
