"""POST /approvals/{id}/deny and /approve: the decision's note is kept, under the name the CLI gives it
(`--reason`) too, and a body field the route does not know is refused, never dropped."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tests.api.conftest import auth


def pending_approval(client: TestClient, keys: dict[str, str]) -> str:
    run_id = client.post("/runs", json={"team": "ship", "task": "ship it"}, headers=auth(keys["runs"])).json()["id"]
    for _ in range(200):
        waiting = client.get("/approvals", params={"run": run_id}, headers=auth(keys["read"])).json()
        if waiting:
            approval_id: str = waiting[0]["id"]
            return approval_id
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never asked for an approval")


def test_a_denial_keeps_its_reason_under_either_name(client: TestClient, keys: dict[str, str]) -> None:
    approval_id = pending_approval(client, keys)
    # `{"reason": ...}`, as `edgecrew approvals deny --reason` says it, was accepted and dropped.
    denied = client.post(
        f"/approvals/{approval_id}/deny", json={"reason": "not on Fridays"}, headers=auth(keys["approve"])
    )
    assert denied.status_code == 200, denied.text
    assert (denied.json()["status"], denied.json()["decision_note"]) == ("denied", "not on Fridays")

    other = pending_approval(client, keys)
    refused = client.post(f"/approvals/{other}/deny", json={"comment": "no"}, headers=auth(keys["approve"]))
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["body", "comment"]
    assert client.get(f"/approvals/{other}", headers=auth(keys["read"])).json()["status"] == "pending"
    approved = client.post(f"/approvals/{other}/approve", json={"note": "ship it"}, headers=auth(keys["approve"]))
    assert (approved.json()["status"], approved.json()["decision_note"]) == ("approved", "ship it")
    assert client.post(f"/approvals/{pending_approval(client, keys)}/approve", headers=auth(keys["approve"])).is_success


def test_the_run_filter_takes_a_run_id_prefix_and_names_an_unknown_run(
    client: TestClient, keys: dict[str, str]
) -> None:
    """`?run=` (and `approvals list --run`) matched the whole id only: a prefix, which every other way of
    naming a run takes, listed nothing, as an unknown run did, with no word that the run was not found."""
    from typer.testing import CliRunner

    from edgecrew.cli import app

    approval_id = pending_approval(client, keys)
    run_id = client.get(f"/approvals/{approval_id}", headers=auth(keys["read"])).json()["run_id"]
    by_prefix = client.get("/approvals", params={"run": run_id[:8]}, headers=auth(keys["read"]))
    assert [a["id"] for a in by_prefix.json()] == [approval_id]
    unknown = client.get("/approvals", params={"run": "rnope"}, headers=auth(keys["read"]))
    assert unknown.status_code == 404 and "no run 'rnope'" in unknown.json()["detail"]
    runner = CliRunner()
    listed = runner.invoke(app, ["approvals", "list", "--json", "--run", run_id[:8]])
    assert listed.exit_code == 0 and approval_id in listed.output, listed.output
    assert runner.invoke(app, ["approvals", "list", "--run", "rnope"]).exit_code == 1
    client.post(f"/approvals/{approval_id}/deny", headers=auth(keys["approve"]))
    none = runner.invoke(app, ["approvals", "list", "--run", run_id])
    assert none.exit_code == 0 and f"no approvals waiting in run {run_id}" in none.output, none.output


def test_an_edit_refuses_a_field_it_does_not_declare(client: TestClient, keys: dict[str, str]) -> None:
    """POST /approvals/{id}/edit took `{"arguments": ..., "note": ...}`, changed the arguments and dropped
    the note unread (an edit keeps none): any field it does not declare is refused, naming it."""
    approval_id = pending_approval(client, keys)
    before = client.get(f"/approvals/{approval_id}", headers=auth(keys["read"])).json()
    for body, field in (
        ({"arguments": {"target": "staging"}, "note": "staging first"}, "note"),
        ({"arguments": {}, "args": {"target": "staging"}}, "args"),
    ):
        refused = client.post(f"/approvals/{approval_id}/edit", json=body, headers=auth(keys["approve"]))
        assert refused.status_code == 422, refused.text
        assert [e["loc"] for e in refused.json()["errors"]] == [["body", field]], refused.json()
    after = client.get(f"/approvals/{approval_id}", headers=auth(keys["read"])).json()
    assert (after["status"], after["arguments"]) == ("pending", before["arguments"])  # nothing was changed
    edited = client.post(
        f"/approvals/{approval_id}/edit", json={"arguments": {"target": "staging"}}, headers=auth(keys["approve"])
    )
    assert edited.status_code == 200 and edited.json()["arguments"] == {"target": "staging"}, edited.text
    schema = client.get("/openapi.json").json()["components"]["schemas"]["EditIn"]
    assert schema["additionalProperties"] is False  # the document says so too
