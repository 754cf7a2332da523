"""POST /runs and the JSON event list: retries by Idempotency-Key, and bounded event pages."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tests.api.conftest import auth


def wait_finished(client: TestClient, run_id: str, key: str) -> None:
    for _ in range(200):
        if client.get(f"/runs/{run_id}", headers=auth(key)).json()["status"] == "succeeded":
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_a_retry_answers_with_its_run_even_when_the_team_is_gone(
    client: TestClient, keys: dict[str, str], server_project: object
) -> None:
    headers = {**auth(keys["runs"]), "Idempotency-Key": "job-7"}
    first = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=headers)
    assert first.status_code == 201
    (client.app.state.rt.project.dir / "teams" / "echo.yaml").unlink()  # type: ignore[attr-defined]
    again = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    fresh = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"]))
    assert fresh.status_code == 404


def test_event_pages_are_bounded_and_continue_after_the_last_id(client: TestClient, keys: dict[str, str]) -> None:
    run_id = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"])).json()["id"]
    wait_finished(client, run_id, keys["read"])
    everything = client.get(f"/runs/{run_id}/events", headers=auth(keys["read"])).json()
    first = client.get(f"/runs/{run_id}/events?limit=3", headers=auth(keys["read"])).json()
    rest = client.get(f"/runs/{run_id}/events?after={first[-1]['id']}", headers=auth(keys["read"])).json()
    assert len(first) == 3 and first + rest == everything
    too_many = client.get(f"/runs/{run_id}/events?limit=100000", headers=auth(keys["read"]))
    assert too_many.status_code == 422 and "limit" in too_many.json()["detail"]


def test_a_run_says_where_its_files_are_as_the_cli_does(client: TestClient, keys: dict[str, str]) -> None:
    run_id = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"])).json()["id"]
    wait_finished(client, run_id, keys["read"])
    # An answer names files relative to the run's workspace (platform-copilot's "Repository `name`").
    shown = client.get(f"/runs/{run_id}", headers=auth(keys["read"])).json()
    stored = client.app.state.rt.store.get_run(run_id)  # type: ignore[attr-defined]
    assert stored.workspace and shown["workspace"] == stored.workspace
    listed = client.get("/runs", headers=auth(keys["read"])).json()["items"]
    assert [r["workspace"] for r in listed if r["id"] == run_id] == [stored.workspace]


def test_a_run_says_which_project_it_works_in(client: TestClient, keys: dict[str, str]) -> None:
    from edgecrew.projects import ProjectService

    launch = ProjectService.of(client.app.state.rt).create("launch")  # type: ignore[attr-defined]
    body = {"team": "echo", "task": "hi", "project": "launch"}
    in_it = client.post("/runs", json=body, headers=auth(keys["runs"])).json()["id"]
    alone = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"])).json()["id"]
    shown = client.get(f"/runs/{in_it}", headers=auth(keys["read"])).json()
    assert shown["project"] == {"id": launch.id, "name": "launch"}
    assert client.get(f"/runs/{alone}", headers=auth(keys["read"])).json()["project"] is None
