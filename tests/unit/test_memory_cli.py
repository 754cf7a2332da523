"""`edgecrew memory list|search|show|forget` through typer's test runner, on the real store of the test's
home (the hashing embedder: the e5 model has its own tests): newest first across scopes or of one, a
project by name, scores, the whole text, forgetting after asking, and errors that name what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from edgecrew.cli import app
from edgecrew.store import repo

runner = CliRunner()


@pytest.fixture(autouse=True)
def _hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    if repo.HEAD < "0013":
        monkeypatch.setattr(repo, "HEAD", "0013")
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")
    from edgecrew.settings import reset_settings

    reset_settings()


def invoke(*args: str, code: int = 0, stdin: str | None = None, columns: int = 160) -> Any:
    done = runner.invoke(app, ["memory", *args], input=stdin, env={"COLUMNS": str(columns)})
    assert done.exit_code == code, done.output
    return done


def _seed() -> dict[str, Any]:
    from edgecrew.bootstrap import bootstrap
    from edgecrew.memory import MemoryService
    from edgecrew.projects import ProjectService

    rt = bootstrap()
    memory, projects = MemoryService.of(rt), ProjectService.of(rt)
    launch, other = projects.create("Launch"), projects.create("Other")
    ids = {
        "slip": memory.remember(
            "the launch slipped a week\nbecause the board asked for a demo", "project", launch.id,
            tags=["block", "evening"], agent="crew/planner", run="run-1",
        ),
        "other": memory.remember("the other project's budget is 3k", "project", other.id),
        "agent": memory.remember("I like tables in reports", "agent", "crew/planner", tags=["style"]),
        "team": memory.remember("the crew meets at nine", "team", "crew", tags=["block"]),
    }  # fmt: skip
    return {"ids": ids, "launch": launch, "other": other}


def test_list_is_newest_first_across_scopes_or_of_one_scope_or_tag() -> None:
    seed = _seed()
    ids, launch = seed["ids"], seed["launch"]
    every = json.loads(invoke("list", "--json").output)
    assert [r["id"] for r in every] == [ids["team"], ids["agent"], ids["other"], ids["slip"]]
    assert every[-1]["owner"] == "Launch" and every[-1]["scope_id"] == launch.id
    table = invoke("list").output
    assert "Launch" in table and "crew/planner" in table and "4 shown of 4" in table
    row = next(line for line in table.splitlines() if "the launch slipped a week because the board" in line)
    assert "Launch" in row and "block, evening" in row  # one line a memory: its lines joined
    narrow = invoke("list", columns=90).output.splitlines()
    row = next(line for line in narrow if "block, evening" in line)
    assert "the la" in row and "…" in row and "demo" not in row  # cut to fit, on that one line
    assert not any("demo" in line or "board" in line for line in narrow)
    by_name = json.loads(invoke("list", "--project", "Launch", "--json").output)
    assert [r["id"] for r in by_name] == [ids["slip"]]
    by_id = json.loads(invoke("list", "--scope", "project", "--id", launch.id, "--json").output)
    assert by_id == by_name
    agent = json.loads(invoke("list", "--scope", "agent", "--id", "crew/planner", "--json").output)
    assert [r["text"] for r in agent] == ["I like tables in reports"]
    tagged = json.loads(invoke("list", "--tag", "block", "--json").output)
    assert [r["id"] for r in tagged] == [ids["team"], ids["slip"]]
    assert [r["id"] for r in json.loads(invoke("list", "--limit", "2", "--json").output)] == [ids["team"], ids["agent"]]
    assert "1 shown of 4" in invoke("list", "--limit", "1").output
    assert "no memories" in invoke("list", "--scope", "team", "--id", "nobody").output


def test_list_and_search_name_what_is_wrong() -> None:
    _seed()
    assert "no project 'Nope'" in invoke("list", "--project", "Nope", code=1).output
    assert "--scope agent needs --id" in invoke("list", "--scope", "agent", code=1).output
    assert "--id crew needs --scope" in invoke("list", "--id", "crew", code=1).output
    assert "'galaxy' is not a memory scope" in invoke("list", "--scope", "galaxy", "--id", "x", code=1).output
    assert "not both" in invoke("list", "--project", "Launch", "--scope", "team", "--id", "crew", code=1).output
    assert "no project 'Nope'" in invoke("search", "launch", "--project", "Nope", code=1).output
    assert "QUERY is empty" in invoke("search", " ", code=1).output


def test_search_recalls_with_scores_in_every_scope_or_in_one() -> None:
    ids = _seed()["ids"]
    found = json.loads(invoke("search", "the launch slipped a week", "--json").output)
    assert found["hits"][0]["id"] == ids["slip"] and found["hits"][0]["owner"] == "Launch"
    scores = [h["score"] for h in found["hits"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4  # every scope was searched
    only = json.loads(invoke("search", "the launch slipped a week", "--project", "Other", "--json").output)
    assert [h["id"] for h in only["hits"]] == [ids["other"]]
    assert len(json.loads(invoke("search", "launch", "-k", "2", "--json").output)["hits"]) == 2
    table = invoke("search", "the launch slipped a week").output
    assert f"{found['hits'][0]['score']:.3f}" in table and "Launch" in table


def test_show_prints_the_whole_text_and_metadata() -> None:
    seed = _seed()
    slip = seed["ids"]["slip"]
    shown = invoke("show", str(slip)).output
    assert "the launch slipped a week\nbecause the board asked for a demo" in shown
    assert f"project Launch ({seed['launch'].id})" in shown and "block, evening" in shown
    assert "crew/planner" in shown and "run-1" in shown
    data = json.loads(invoke("show", str(slip), "--json").output)
    assert data["tags"] == ["block", "evening"] and data["model"]
    assert "no memory 999" in invoke("show", "999", code=1).output
    assert "Invalid value for 'ID'" in invoke("show", "abc", code=2).output


def test_forget_asks_first_and_deletes_one_memory_only() -> None:
    ids = _seed()["ids"]
    kept = invoke("forget", str(ids["agent"]), stdin="n\n", code=1)
    assert "I like tables in reports" in kept.output
    assert len(json.loads(invoke("list", "--json").output)) == 4  # nothing lost on a no
    assert "forgot memory" in invoke("forget", str(ids["agent"]), stdin="y\n").output
    assert "no memory" in invoke("show", str(ids["agent"]), code=1).output
    invoke("forget", str(ids["team"]), "--yes")
    assert [r["id"] for r in json.loads(invoke("list", "--json").output)] == [ids["other"], ids["slip"]]
    assert "no memory 999" in invoke("forget", "999", "--yes", code=1).output
