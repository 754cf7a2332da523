"""POST /teams/validate: a spec's warnings (valid, but it may fail at run time) beside its issues."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import auth
from tests.conftest import write

GAP = """\
name: gap
agents:
  judge:
    system: judge
    output_schema: {type: object, properties: {verdict: {enum: [approve, revise]}}, required: [verdict]}
graph:
  start: judge
  edges:
    - {from: judge, to: end, when: "verdict == 'aprove'"}
"""


def test_validate_returns_warnings_of_a_valid_team(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post("/teams/validate", json={"yaml": GAP}, headers=auth(keys["read"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is True and body["team"] == "gap" and body["issues"] == []
    found = {(w["line"], w["severity"], w["message"].split(":")[0]) for w in body["warnings"]}
    assert found == {(9, "warning", "agent 'judge' has no default edge"), (9, "warning", "edge 1")}
    typo = next(w for w in body["warnings"] if w["message"].startswith("edge 1"))
    assert "never holds" in typo["message"] and typo["hint"] == "did you mean 'approve'?"


def test_validate_returns_warnings_beside_the_issues_of_an_invalid_team(
    client: TestClient, keys: dict[str, str]
) -> None:
    r = client.post(
        "/teams/validate", json={"yaml": GAP.replace("start: judge", "start: jduge")}, headers=auth(keys["read"])
    )
    body = r.json()
    assert body["valid"] is False and [i["severity"] for i in body["issues"]] == ["error"]
    assert "start node 'jduge'" in body["issues"][0]["message"]
    assert {w["severity"] for w in body["warnings"]} == {"warning"} and len(body["warnings"]) == 2


@pytest.fixture
def gap_team(server_project: Path) -> None:
    write(server_project / "teams" / "gap.yaml", GAP)


def test_a_teams_warnings_show_in_the_team_list_and_its_pages(
    gap_team: None, client: TestClient, keys: dict[str, str]
) -> None:
    """The warnings came only from validate: the team list (API, UI) called the team "valid" and its page
    showed no sign of the condition that can never hold."""
    from tests.api.test_ui_pages import sign_in

    listed = {t["name"]: t for t in client.get("/teams", headers=auth(keys["read"])).json()}
    assert listed["gap"]["valid"] is True and len(listed["gap"]["warnings"]) == 2
    assert listed["echo"]["warnings"] == []
    csrf = sign_in(client, keys["admin"])
    teams = client.get("/ui/teams").text
    assert "2 warning(s)" in teams and teams.count("warning(s)") == 1
    page = client.get("/ui/teams/gap").text
    assert "2 warning(s)" in page and "agent &#39;judge&#39; has no default edge" in page
    checked = client.post("/ui/teams/gap/validate", data={"csrf": csrf, "yaml": GAP}).text
    assert "Valid: 1 agent(s)" in checked and "2 warning(s)" in checked and "did you mean &#39;approve&#39;?" in checked


def test_starting_a_run_says_the_teams_warnings_and_the_run_goes_on(
    gap_team: None, client: TestClient, keys: dict[str, str]
) -> None:
    """The CLI printed them; POST /runs and the UI's run form said nothing, and the run then failed
    where the warning had said it could."""
    from tests.api.test_ui_pages import sign_in

    r = client.post("/runs", json={"team": "gap", "task": "go"}, headers=auth(keys["runs"]))
    assert r.status_code == 201, r.text
    said = r.headers.get_list("X-Edgecrew-Warning")
    assert len(said) == 2 and all("gap.yaml:9:" in w for w in said)
    assert any("agent 'judge' has no default edge" in w for w in said)
    assert any("never holds" in w and "did you mean 'approve'?" in w for w in said)
    plain = client.post("/runs", json={"team": "echo", "task": "go"}, headers=auth(keys["runs"]))
    assert plain.status_code == 201 and "X-Edgecrew-Warning" not in plain.headers
    # /v1 says them too, answered or not (this run ends where the warning said it could)
    chat = {"model": "gap", "messages": [{"role": "user", "content": "go"}]}
    v1 = client.post("/v1/chat/completions", json=chat, headers=auth(keys["runs"]))
    assert v1.headers.get_list("X-Edgecrew-Warning") == said, (v1.status_code, v1.text)

    csrf = sign_in(client, keys["admin"])
    page = client.post("/ui/teams/gap/run", data={"csrf": csrf, "task": "go"})
    assert page.status_code == 200 and "agent &#39;judge&#39; has no default edge" in page.text


def test_validate_refuses_a_field_it_does_not_declare(client: TestClient, keys: dict[str, str]) -> None:
    """`{"yaml": ..., "name": "other"}` was answered for the YAML alone, the name dropped unread."""
    r = client.post("/teams/validate", json={"yaml": GAP, "name": "other"}, headers=auth(keys["read"]))
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == [["body", "name"]], r.json()
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ValidateIn"]
    assert schema["additionalProperties"] is False  # the document says so too
