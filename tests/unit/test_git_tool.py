"""git.* tools on real repositories in tmp_path: the workflow, clear errors, and the workspace guard."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry
from edgecrew.tools.builtins import git
from edgecrew.tools.permissions import FilePolicy


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: FilePolicy | None = None
        self.registry = ToolRegistry()
        git.register(self.registry)

    async def __call__(self, tool: str, **arguments: Any) -> Any:
        return await self.registry.get(tool).call(arguments, ToolContext("run", "coder", self.root, self.files))

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "workspace"
    root.mkdir()
    return Workspace(root)


def test_every_git_tool_is_registered_safe_with_a_description() -> None:
    registry = ToolRegistry()
    git.register(registry)
    assert sorted(registry.names()) == ["git.branch", "git.commit", "git.diff", "git.init", "git.log"]
    for spec in registry.specs():
        assert spec.risk == "safe" and spec.wants_context and 10 < len(spec.description) < 100


async def test_init_commit_branch_diff_log(ws: Workspace) -> None:
    assert await ws("git.init") == "initialized an empty git repository in the workspace, on branch main"
    assert (await ws("git.init")).startswith("the workspace is already a git repository, on branch main")
    assert await ws("git.log") == []
    assert await ws("git.branch") == {"current": "main", "branches": []}

    ws.write("notes.md", "one\n")
    ws.write("src/app.py", "print('hi')\n")
    pending = await ws("git.diff")
    assert pending["untracked"] == ["notes.md", "src/app.py"] and pending["files"] == []
    first = await ws("git.commit", message="Add notes and app")
    assert first["branch"] == "main" and first["message"] == "Add notes and app"
    assert first["files"] == [{"status": "A", "path": "notes.md"}, {"status": "A", "path": "src/app.py"}]

    ws.write("notes.md", "one\ntwo\n")
    ws.write("draft.txt", "not yet\n")
    pending = await ws("git.diff")
    assert pending["files"] == [{"path": "notes.md", "added": 1, "deleted": 0}]
    assert "+two" in pending["diff"] and pending["untracked"] == ["draft.txt"] and "note" not in pending
    second = await ws("git.commit", message="Extend notes\n\nMore detail.", paths=["notes.md"])
    assert second["files"] == [{"status": "M", "path": "notes.md"}] and second["message"] == "Extend notes"
    assert (await ws("git.diff"))["untracked"] == ["draft.txt"]  # only the given path was committed

    assert await ws("git.branch", action="create", name="feature/x") == {
        "current": "feature/x",
        "branches": ["feature/x", "main"],
    }
    (ws.root / "src" / "app.py").unlink()
    third = await ws("git.commit", message="Drop app", paths=["src/app.py"])
    assert third["files"] == [{"status": "D", "path": "src/app.py"}] and third["branch"] == "feature/x"
    assert (await ws("git.branch", action="switch", name="main"))["current"] == "main"
    assert (ws.root / "src" / "app.py").exists()

    between = await ws("git.diff", ref="main", to="feature/x")
    assert between["files"] == [{"path": "src/app.py", "added": 0, "deleted": 1}]
    assert "-print('hi')" in between["diff"] and "untracked" not in between

    log = await ws("git.log")
    assert [c["subject"] for c in log] == ["Extend notes", "Add notes and app"]
    assert log[0]["commit"] == second["commit"] and log[0]["author"] == "edgecrew" and "T" in log[0]["date"]
    assert [c["subject"] for c in await ws("git.log", ref="feature/x", n=1)] == ["Drop app"]
    assert [c["subject"] for c in await ws("git.log", path="src/app.py")] == ["Add notes and app"]


async def test_errors_are_clear(ws: Workspace) -> None:
    with pytest.raises(ToolError, match=r"not a git repository yet; call git\.init first"):
        await ws("git.log")
    await ws("git.init")
    with pytest.raises(ToolError, match="nothing to commit: no changes"):
        await ws("git.commit", message="empty")
    ws.write("a.txt", "a\n")
    with pytest.raises(ToolError, match="commit message is empty"):
        await ws("git.commit", message="  ")
    await ws("git.commit", message="a")
    with pytest.raises(ToolError, match=r"nothing to commit: a\.txt did not change"):
        await ws("git.commit", message="again", paths=["a.txt"])
    with pytest.raises(ToolError, match="did not match any files"):
        await ws("git.commit", message="ghost", paths=["ghost.txt"])
    for bad in ("nope", "--output=/tmp/pwned", "HEAD~5"):
        with pytest.raises(ToolError, match=f"unknown ref '{bad}'; use git.branch"):
            await ws("git.diff", ref=bad)
    with pytest.raises(ToolError, match="unknown ref 'nope'"):
        await ws("git.log", ref="nope")
    with pytest.raises(ToolError, match="no branch 'nope'; use action 'create'"):
        await ws("git.branch", action="switch", name="nope")
    with pytest.raises(ToolError, match=r"'bad\.\.name' is not a valid branch name"):
        await ws("git.branch", action="create", name="bad..name")
    with pytest.raises(ToolError, match="'' is not a valid branch name"):
        await ws("git.branch", action="create")
    await ws("git.branch", action="create", name="dup")
    with pytest.raises(ToolError, match="git switch failed: fatal: a branch named 'dup' already exists"):
        await ws("git.branch", action="create", name="dup")
    with pytest.raises(ToolError, match="'to' needs 'ref'"):
        await ws("git.diff", to="main")
    with pytest.raises(ToolError, match=r"invalid arguments for git\.branch: action"):
        await ws("git.branch", action="delete", name="dup")
    for outside in ("../secret.txt", "/etc/passwd"):
        with pytest.raises(ToolError, match="is outside the workspace"):
            await ws("git.commit", message="x", paths=[outside])


async def test_long_diffs_are_cut_with_a_note(ws: Workspace) -> None:
    await ws("git.init")
    ws.write("big.txt", "".join(f"line {i}\n" for i in range(2000)))
    await ws("git.commit", message="big")
    ws.write("big.txt", "".join(f"changed {i}\n" for i in range(2000)))
    diff = await ws("git.diff", max_chars=1000)
    assert len(diff["diff"]) == 1000 and diff["files"] == [{"path": "big.txt", "added": 2000, "deleted": 2000}]
    assert diff["note"].startswith("diff cut at 1000 of ")
    (ws.root / "blob.bin").write_bytes(b"\x00\x01binary")
    await ws("git.commit", message="blob", paths=["blob.bin"])
    (ws.root / "blob.bin").write_bytes(b"\x00\x02binary")
    binary = await ws("git.diff", paths=["blob.bin"])
    assert binary["files"] == [{"path": "blob.bin", "added": None, "deleted": None}]
    assert "Binary files" in binary["diff"] and binary["untracked"] == []


async def test_outside_config_and_environment_are_ignored(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home-with-config"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Leaked Global\n\temail = leak@example.com\n")
    other = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Intruder")
    await ws("git.init")
    ws.write("a.txt", "a\n")
    await ws("git.commit", message="a")
    (commit,) = await ws("git.log")
    assert commit["author"] == "edgecrew"
    assert (ws.root / ".git" / "HEAD").exists() and not list((other / ".git" / "refs" / "heads").iterdir())

    # an identity set in the repository's own config wins over the fixed one
    subprocess.run(["git", "-C", str(ws.root), "config", "user.name", "Ada"], check=True, env={"PATH": "/usr/bin"})
    subprocess.run(["git", "-C", str(ws.root), "config", "user.email", "ada@x"], check=True, env={"PATH": "/usr/bin"})
    ws.write("b.txt", "b\n")
    await ws("git.commit", message="b")
    assert (await ws("git.log", n=1))[0]["author"] == "Ada"


async def test_nested_workspace_does_not_reach_the_enclosing_repository(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    ws = Workspace(tmp_path / "runs" / "r1")
    ws.root.mkdir(parents=True)
    with pytest.raises(ToolError, match=r"call git\.init first"):
        await ws("git.diff")
    await ws("git.init")
    assert (ws.root / ".git").is_dir()


async def test_hooks_and_program_running_config_are_refused(ws: Workspace, tmp_path: Path) -> None:
    await ws("git.init")
    marker = tmp_path / "hook-ran"
    hook = ws.root / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    ws.write("a.txt", "a\n")
    await ws("git.commit", message="a")
    assert not marker.exists()  # hooks never run

    config = ws.root / ".git" / "config"
    safe = config.read_text()
    config.write_text(safe + f'[filter "evil"]\n\tclean = touch {marker}\n[alias]\n\tst = status\n')
    ws.write(".gitattributes", "* filter=evil\n")
    with pytest.raises(ToolError, match=r"refusing: \.git/config sets alias\.st, filter\.evil\.clean"):
        await ws("git.commit", message="attrs")
    assert not marker.exists()
    config.write_text(safe)

    (ws.root / ".git").rename(ws.root / "real-git")
    (ws.root / ".git").write_text(f"gitdir: {ws.root / 'real-git'}\n")
    with pytest.raises(ToolError, match=r"refusing: the workspace's \.git is not a plain directory"):
        await ws("git.log")
    with pytest.raises(ToolError, match="not a plain directory"):
        await ws("git.init")


async def test_the_agents_file_policy_applies(ws: Workspace) -> None:
    await ws("git.init")
    ws.write("docs/a.md", "a\n")
    ws.write("src/b.py", "b\n")
    await ws("git.commit", message="both")
    await ws("git.branch", action="create", name="other")
    ws.files = FilePolicy(read=("docs/*",), write=("docs/*",))
    ws.write("docs/a.md", "a2\n")
    ws.write("src/b.py", "b2\n")
    assert (await ws("git.diff", paths=["docs/a.md"]))["files"][0]["path"] == "docs/a.md"
    with pytest.raises(ToolError, match=r"agent 'coder' may not read '\.'; allowed to read: docs/\*"):
        await ws("git.diff")
    with pytest.raises(ToolError, match=r"may not read 'src/b\.py'"):
        await ws("git.commit", message="b", paths=["src/b.py"])
    assert (await ws("git.commit", message="docs", paths=["docs/a.md"]))["files"] == [
        {"status": "M", "path": "docs/a.md"}
    ]
    assert [c["subject"] for c in await ws("git.log", n=1)] == ["docs"]  # history without paths reads no file
    assert (await ws("git.branch", action="create", name="third"))["current"] == "third"  # files stay as they are
    with pytest.raises(ToolError, match=r"may not write '\.'"):
        await ws("git.branch", action="switch", name="main")
