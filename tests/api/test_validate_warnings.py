"""POST /teams/validate: a spec's warnings (valid, but it may fail at run time) beside its issues."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import auth

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
