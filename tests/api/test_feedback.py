"""Feedback on runs' answers round-trips through the API, /v1, the CLI and the JSONL export, shows in
the run's events and is counted in /metrics."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgecrew.cli import app as cli
from tests.api.conftest import auth
from tests.api.telemetry_project import run_to_end
from tests.api.test_metrics import scrape, value


def test_feedback_round_trips_through_every_interface(client: TestClient, keys: dict[str, str]) -> None:
    run = run_to_end(client, keys, "echo", "what is the answer?")
    rid = run["id"]
    rated = client.post(
        f"/runs/{rid}/feedback",
        json={"rating": "down", "comment": "too vague", "correction": "42"},
        headers=auth(keys["runs"]),
    )
    assert rated.status_code == 201, rated.text
    assert rated.json()["rating"] == "down" and rated.json()["author"] == "test-runs" and rated.json()["via"] == "api"
    v1 = client.post(
        "/v1/feedback", json={"id": f"chatcmpl-{rid}", "rating": "up", "comment": "ok"}, headers=auth(keys["runs"])
    )
    assert v1.status_code == 201, v1.text
    result = CliRunner().invoke(cli, ["runs", "rate", rid[:8], "up", "-m", "from the shell"])
    assert result.exit_code == 0, result.output
    listed = client.get(f"/runs/{rid}/feedback", headers=auth(keys["read"])).json()
    assert [(f["rating"], f["via"]) for f in listed] == [("down", "api"), ("up", "v1"), ("up", "cli")]
    # each rating is an event of its run, so the timeline and /metrics see it
    events = client.get(f"/runs/{rid}/events", headers=auth(keys["read"])).json()
    given = [e["data"] for e in events if e["type"] == "feedback_given"]
    assert [(g["rating"], g["corrected"]) for g in given] == [(-1, True), (1, False), (1, False)]
    families = scrape(client, keys["read"])
    # counted as the server writes them: the CLI's rating went through a store of its own
    assert value(families, "edgecrew_feedback", "edgecrew_feedback_total", team="echo", rating="up") == 1
    assert value(families, "edgecrew_feedback", "edgecrew_feedback_total", team="echo", rating="down") == 1
    # the export: one JSON object per line, with chat messages using the correction when there is one
    export = client.get("/feedback/export", params={"rating": "down"}, headers=auth(keys["read"]))
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert len(rows) == 1 and rows[0]["task"] == "what is the answer?" and rows[0]["answer"] == "the answer is 42"
    assert rows[0]["messages"] == [
        {"role": "user", "content": "what is the answer?"},
        {"role": "assistant", "content": "42"},
    ]
    exported = CliRunner().invoke(cli, ["feedback", "export", "--team", "echo"])
    assert exported.exit_code == 0 and len(exported.output.strip().splitlines()) == 3


def test_bad_feedback_is_refused_with_reasons(client: TestClient, keys: dict[str, str]) -> None:
    run = run_to_end(client, keys, "echo")
    bad = client.post(f"/runs/{run['id']}/feedback", json={"rating": "meh"}, headers=auth(keys["runs"]))
    assert bad.status_code == 422
    missing = client.post("/runs/rffffffffffff/feedback", json={"rating": "up"}, headers=auth(keys["runs"]))
    assert missing.status_code == 404
    reader = client.post(f"/runs/{run['id']}/feedback", json={"rating": "up"}, headers=auth(keys["read"]))
    assert reader.status_code == 403
    cli_bad = CliRunner().invoke(cli, ["runs", "rate", run["id"], "sideways"])
    assert cli_bad.exit_code != 0 and "up or down" in cli_bad.output


def test_a_runs_checklist_is_readable_from_the_api_and_the_cli(client: TestClient, keys: dict[str, str]) -> None:
    run = run_to_end(client, keys, "echo", "say something")
    found = client.get(f"/runs/{run['id']}/checklist", headers=auth(keys["read"]))
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["meta"]["status"] == "succeeded" and [(i["text"], i["state"]) for i in body["items"]] == [
        ("solo", "done")
    ]
    assert body["markdown"].startswith("# say something\n") and "- [x] solo" in body["markdown"]
    shown = CliRunner().invoke(cli, ["runs", "checklist", run["id"]])
    assert shown.exit_code == 0 and "- [x] solo" in shown.output
