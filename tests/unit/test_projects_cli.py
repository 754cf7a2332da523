"""`edgecrew projects ...` through typer's test runner, on the real store of the test's home: create,
list, show, members, the case file, artifacts (write, lock refusing a write, unlock, publish) and the
graph (add, neighbours, path), with clear errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgecrew.cli.projects import projects_app
from edgecrew.store import repo

REVISION = "0013"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _head_at_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    if repo.HEAD < REVISION:
        monkeypatch.setattr(repo, "HEAD", REVISION)


def invoke(*args: str, code: int = 0) -> Any:
    done = runner.invoke(projects_app, list(args))
    assert done.exit_code == code, done.output
    return done


def test_projects_create_list_show_members_and_case_file(edgecrew_home: Path) -> None:
    made = invoke("create", "Launch", "-d", "Ship the box.", "--manager", "crew/strategist", "--by", "ana")
    assert "created project Launch" in made.output and str(edgecrew_home / "projects") in made.output
    assert "Launch" in invoke("list").output
    invoke("add-member", "Launch", "crew/planner", "--ai", "--behaviour", "scheduled")
    invoke("add-member", "Launch", "Ana", "--role", "owner")
    bad = invoke("add-member", "Launch", "crew/critic", "--ai", "--behaviour", "lazy", code=1)
    assert "autonomous, semi, reactive, scheduled" in bad.output
    invoke("case-file", "Launch", "--append", "## Monday\nOKRs.")
    assert invoke("case-file", "Launch").output.rstrip().endswith("## Monday\nOKRs.")
    shown = json.loads(invoke("show", "Launch", "--json").output)
    assert [m["name"] for m in shown["members"]] == ["crew/planner", "Ana"]
    assert shown["case_file"]["version"] == 2 and shown["manager"] == "crew/strategist"
    assert "members: crew/planner (ai, scheduled), Ana (human)" in invoke("show", "Launch").output
    missing = invoke("show", "Nope", code=1)
    assert "no project 'Nope'" in missing.output


def test_artifacts_from_the_cli_and_a_lock_refusing_a_write(tmp_path: Path) -> None:
    invoke("create", "Launch")
    invoke("artifacts", "write", "Launch", "okr", "--text", "O1", "--kind", "intellectual", "--by", "ana")
    content = tmp_path / "okr.md"
    content.write_text("O1\nO2\n")
    assert "version 2" in invoke("artifacts", "write", "Launch", "okr", "--file", str(content)).output
    assert invoke("artifacts", "show", "Launch", "okr", "--version", "1").output.rstrip().endswith("O1")
    invoke("artifacts", "lock", "Launch", "okr", "--by", "ana")
    refused = invoke("artifacts", "write", "Launch", "okr", "--text", "O3", "--by", "bo", code=1)
    assert "locked by ana since" in refused.output
    assert "only they may unlock it" in invoke("artifacts", "unlock", "Launch", "okr", "--by", "bo", code=1).output
    invoke("artifacts", "unlock", "Launch", "okr", "--by", "ana")
    assert "version 1 is published" in invoke("artifacts", "publish", "Launch", "okr", "--version", "1").output
    listed = json.loads(invoke("artifacts", "list", "Launch", "--json").output)
    assert listed[0]["latest"] == 2 and listed[0]["published_version"] == 1 and not listed[0]["locked"]
    assert "--text or --file" in invoke("artifacts", "write", "Launch", "okr", code=1).output


def test_graph_from_the_cli() -> None:
    invoke("create", "Launch")
    invoke("graph", "add", "Ana", "works_on", "Launch", "--in", "Launch")
    invoke("graph", "add", "Launch", "depends_on", "GPU", "--in", "Launch")
    assert "already known" in invoke("graph", "add", "ana", "works on", "launch", "--in", "Launch").output
    near = invoke("graph", "neighbours", "Ana", "--depth", "2", "--in", "Launch").output
    assert "2 node(s) within 2 hop(s)" in near and "GPU" in near
    path = invoke("graph", "path", "Ana", "GPU", "--in", "Launch").output
    assert "2 hop(s)" in path and "Launch --depends_on--> GPU" in path
    invoke("graph", "path", "GPU", "Ana", "--directed", "--in", "Launch", code=1)
    invoke("graph", "add", "I", "like", "tea", "--agent", "crew/planner")
    assert "I --like--> tea" in invoke("graph", "show", "--agent", "crew/planner").output
    assert "name one graph" in invoke("graph", "show", code=1).output


def test_project_files_listed_and_printed_from_the_cli() -> None:
    invoke("create", "Launch")
    assert "no files yet in " in invoke("files", "Launch").output
    folder = Path(json.loads(invoke("show", "Launch", "--json").output)["files"])
    (folder / "daily").mkdir()
    (folder / "daily" / "plan.md").write_text("# Plan\n- ship\n")
    listed = invoke("files", "Launch").output
    assert "daily/plan.md" in listed and "edgecrew projects files Launch PATH" in listed
    assert json.loads(invoke("files", "Launch", "--json").output)[0] | {"modified": 0} == {
        "path": "daily/plan.md", "size": 14, "modified": 0,
    }  # fmt: skip
    assert invoke("files", "Launch", "daily/plan.md").output == "# Plan\n- ship\n"
    assert "is outside project 'Launch's files" in invoke("files", "Launch", "../../edgecrew.db", code=1).output
    assert "no file 'nope.md' in project 'Launch's files" in invoke("files", "Launch", "nope.md", code=1).output
    assert "no project 'Nope'" in invoke("files", "Nope", code=1).output
