"""/jobs, /policies and the jobs pages against a real server on 127.0.0.1 (uvicorn in a thread, its
job queue served in that process): submit, read, wait, cancel, bad input, scopes, policy versions."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from edgecrew.app import create_app
from edgecrew.store.keys import SCOPES, ApiKeyStore
from tests.api.live import serve_in_thread, server_settings, write_project

LATER = datetime.now(UTC) + timedelta(hours=3)


@dataclass
class Live:
    url: str
    keys: dict[str, str]

    def client(self, scope: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[scope]}"}, timeout=30)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("jobs-api")
    project = write_project(root / "project")
    with (project / "edgecrew.yaml").open("a") as fh:
        fh.write(
            "policies:\n"
            "  nightly:\n"
            "    covers: {tags: [nightly]}\n"
            f"    windows: [{{start: '{LATER:%H:%M}', end: '{LATER + timedelta(hours=1):%H:%M}'}}]\n"
        )
    app = create_app(server_settings(root))
    with serve_in_thread(app) as server:
        store = ApiKeyStore(app.state.rt.store)
        keys = {scope: store.create(f"jobs-{scope}", (scope,))[1] for scope in SCOPES}
        keys["rw"] = store.create("jobs-rw", ("read", "runs"))[1]
        yield Live(server.url, keys)


def _ended(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["state"] not in ("queued", "waiting", "running", "cancelling"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


def test_a_sandboxed_command_and_a_team_run_are_submitted_run_and_read_back(live: Live) -> None:
    with live.client("rw") as runs:
        made = runs.post("/jobs", json={"argv": ["sh", "-c", "echo hello"], "needs": {"memory_mb": 64}})
        assert made.status_code == 201, made.text
        assert made.headers["location"] == f"/jobs/{made.json()['id']}"
        team = runs.post("/jobs", json={"team": "echo", "task": "answer", "priority": 80, "tags": ["qa"]})
        assert team.status_code == 201, team.text
        command = _ended(runs, made.json()["id"])
        ran = _ended(runs, team.json()["id"])
    assert command["state"] == "succeeded" and command["sandbox"] and command["exit_code"] == 0, command
    assert command["submitted_by"] == "jobs-rw" and command["needs"]["memory_bytes"] == 64 * 2**20
    assert [e["kind"] for e in command["events"]] == ["submitted", "allowed", "started", "finished"]
    assert ran["state"] == "succeeded" and ran["usage"]["model_calls"] == 1, ran
    with live.client("read") as read:
        run = read.get(f"/runs/{ran['run_id']}").json()
        assert run["trigger"] == {"kind": "job", "job": ran["id"]} and run["output"] == {"text": "the answer is 42"}
        listed = read.get("/jobs", params={"state": "succeeded", "limit": 200}).json()
        assert {command["id"], ran["id"]} <= {j["id"] for j in listed["items"]}


def test_a_waiting_job_says_which_policy_holds_it_and_is_cancelled(live: Live) -> None:
    with live.client("rw") as runs:
        job = runs.post("/jobs", json={"argv": ["true"], "tags": ["nightly"]}).json()
        deadline = time.monotonic() + 30
        while (seen := runs.get(f"/jobs/{job['id']}").json())["state"] != "waiting":
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        [holder] = seen["waiting_on"]
        assert holder["policy"] == "nightly" and holder["kind"] == "window"
        assert holder["reason"].startswith("outside its time windows (next opens")
        cancelled = runs.post(f"/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        again = runs.post(f"/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 422, "a job is a command (argv) or a team run (team and task)"),
        ({"argv": ["true"], "team": "echo", "task": "x"}, 422, "team.argv: Extra inputs are not permitted"),  # both
        ({"argv": ["true"], "prio": 3}, 422, "command.prio"),  # only the shape the body is: no "team" missing
        ({"team": "nope", "task": "x"}, 404, "no team 'nope'"),
        ({"team": "echo"}, 422, "task"),
        ({"argv": ["true"], "tags": ["Not OK"]}, 422, "tags"),
        ({"argv": [" "]}, 422, "argv"),
        ({"argv": ["true"], "deadline": 1}, 409, "deadline: it has already passed"),
        ({"argv": ["true"], "deadline": 1e308}, 422, "deadline"),  # past any date a page can show
        ({"argv": ["true"], "priority": 101}, 422, "priority"),
        ({"argv": []}, 422, "argv"),
        ({"argv": ["true"], "needs": {"memory": "4GiB"}}, 422, "needs.memory"),  # a typo is not a job needing 0
    ],
)
def test_bad_jobs_are_refused_saying_where_and_why(live: Live, body: dict[str, Any], status: int, says: str) -> None:
    with live.client("runs") as runs:
        answer = runs.post("/jobs", json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert says in answer.text
    assert "Field required" not in answer.text or body == {"team": "echo"}  # never the other shape's fields


def test_a_plain_command_needs_the_admin_scope(live: Live) -> None:
    with live.client("runs") as runs:
        refused = runs.post("/jobs", json={"argv": ["true"], "sandbox": False})
    assert refused.status_code == 403 and "needs the admin scope" in refused.json()["detail"]
    with live.client("admin") as admin:
        made = admin.post("/jobs", json={"argv": ["true"], "sandbox": False})
        assert made.json()["sandbox"] is False
        assert made.status_code == 201
        assert _ended(admin, made.json()["id"])["state"] == "succeeded"
    with live.client("read") as read:
        assert read.post("/jobs", json={"argv": ["true"]}).status_code == 403
        assert read.get("/jobs/nothing-here").status_code == 404
        bogus = read.get("/jobs", params={"state": "bogus"})
        assert bogus.status_code == 422 and "state" in bogus.text  # the schema lists the states


def test_policies_in_force_and_their_versions(live: Live) -> None:
    with live.client("read") as read:
        [nightly] = read.get("/policies").json()
        assert (nightly["name"], nightly["version"], nightly["source"]) == ("nightly", 1, "yaml")
        assert nightly["doc"]["covers"]["tags"] == ["nightly"]
        versions = read.get("/policies/nightly/versions").json()
        assert [(v["version"], v["source"], v["reason"]) for v in versions] == [
            (1, "yaml", "declared in edgecrew.yaml")
        ]
        missing = read.get("/policies/nope/versions")
        assert missing.status_code == 404 and "no policy 'nope' (known: nightly)" in missing.json()["detail"]


def test_the_jobs_pages_list_submit_and_say_why_a_job_waits(live: Live) -> None:
    from tests.api.test_ui_pages import sign_in

    with httpx.Client(base_url=live.url, timeout=30) as browser:
        csrf = sign_in(browser, live.keys["rw"])  # type: ignore[arg-type]
        listing = browser.get("/ui/jobs")
        assert listing.status_code == 200 and "Submit a job" in listing.text and "nightly" in listing.text
        refused = browser.post("/ui/jobs", data={"csrf": csrf, "kind": "command", "command": "true"},
                               follow_redirects=False)  # fmt: skip
        assert refused.status_code == 303 and "needs%20the%20admin%20scope" in refused.headers["location"]
        made = browser.post("/ui/jobs", data={"csrf": csrf, "kind": "command", "command": "sh -c 'exit 0'",
                                              "sandbox": "1", "tags": "nightly"}, follow_redirects=False)  # fmt: skip
        assert made.status_code == 303, made.text
        job_url = made.headers["location"]
        deadline = time.monotonic() + 30
        while "Why it waits" not in (shown := browser.get(job_url)).text:
            assert time.monotonic() < deadline, shown.text
            time.sleep(0.1)
        assert re.search(r"<b>nightly</b> says no: outside its time windows", shown.text)
        cancelled = browser.post(f"{job_url}/cancel", data={"csrf": csrf}, follow_redirects=True)
        print(cancelled.text)
        assert "job cancelled" in cancelled.text and "cancelled by ui:jobs-rw before it started" in cancelled.text
        forged = browser.post(f"{job_url}/cancel", data={"csrf": "forged"}, follow_redirects=False)
        assert forged.status_code == 403
        for size in ({"memory_mb": "inf"}, {"memory_mb": "1e300"}, {"cpu_cores": "inf"}):  # inf was a 500
            huge = browser.post("/ui/jobs", data={"csrf": csrf, "kind": "command", "command": "true", "sandbox": "1",
                                                  **size}, follow_redirects=False)  # fmt: skip
            assert huge.status_code == 400 and "less than or equal to" in huge.text, (size, huge.status_code)


def test_a_team_job_whose_run_waits_for_approval_says_so_in_the_api_and_pages(live: Live) -> None:
    from tests.api.test_ui_pages import sign_in

    with live.client("admin") as admin:
        made = admin.post("/jobs", json={"team": "ship", "task": "ship the fix"})
        assert made.status_code == 201, made.text
        job_id = made.json()["id"]
        deadline = time.monotonic() + 60
        while (job := admin.get(f"/jobs/{job_id}").json())["run_status"] != "waiting_approval":
            assert time.monotonic() < deadline and job["state"] in ("queued", "waiting", "running"), job
            time.sleep(0.1)
        assert job["state"] == "running" and "waits for a person's approval" in job["reason"], job
        [listed] = [j for j in admin.get("/jobs", params={"limit": 200}).json()["items"] if j["id"] == job_id]
        assert listed["run_status"] == "waiting_approval" and "approval" in listed["reason"]
        with httpx.Client(base_url=live.url, timeout=30) as browser:
            sign_in(browser, live.keys["rw"])  # type: ignore[arg-type]
            assert "waiting for approval" in browser.get("/ui/jobs").text
            assert "waiting for approval" in browser.get(f"/ui/jobs/{job_id}").text
        [approval] = admin.get("/approvals", params={"run": job["run_id"]}).json()
        assert admin.post(f"/approvals/{approval['id']}/approve").is_success
        done = _ended(admin, job_id)
    assert done["state"] == "succeeded" and done["run_status"] is None, done
