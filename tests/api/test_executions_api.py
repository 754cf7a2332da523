"""Executions over HTTP: a code version started in the server's background (202), polled to its end
with its result, logs and metrics; cancelled; followed live over SSE to its final status; refused
with a problem for an unknown version and for checks or limits the document forbids. Tasks carry
their checks, limits, creator and best version."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import auth
from tests.api.live import SseEvent, iter_sse

ADD = "import sys, json\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\nprint(json.dumps({'accuracy': 1}))\n"
CHECKS = {"io": [{"input": "1 2", "expected": "3"}, {"input": "10 -4", "expected": "6"}]}
LIMITS = {"cpu_s": 5, "wall_s": 10, "memory_mb": 256}
SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(30)\n"


@pytest.fixture
def rw(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["runs"])


@pytest.fixture
def ro(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


def task_with(client: TestClient, rw: dict[str, str], *codes: str, **body: Any) -> str:
    created = client.post("/tasks", json={"title": "add", "limits": LIMITS, **body}, headers=rw)
    assert created.status_code == 201, created.text
    task_id: str = created.json()["id"]
    for code in codes:
        up = client.post(f"/tasks/{task_id}/code", json={"filename": "add.py", "content": code}, headers=rw)
        assert up.status_code == 201, up.text
    return task_id


def start(client: TestClient, rw: dict[str, str], task_id: str, version: int) -> dict[str, Any]:
    resp = client.post(f"/tasks/{task_id}/versions/{version}/executions", headers=rw)
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    assert resp.headers["location"] == f"/executions/{body['id']}"
    assert (body["status"], body["task_id"], body["version"]) == ("queued", task_id, version)
    return body


def wait_for(client: TestClient, ro: dict[str, str], execution_id: int, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/executions/{execution_id}", headers=ro).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not reach {statuses}: {body}")


def problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    return body


def test_a_version_runs_to_a_result_with_logs_and_a_wrong_one_fails_with_the_reason(
    client: TestClient, rw: dict[str, str], ro: dict[str, str]
) -> None:
    wrong = ADD.replace("a + b", "a * b")
    task_id = task_with(client, rw, ADD, wrong, checks=CHECKS)
    task = client.get(f"/tasks/{task_id}", headers=ro).json()
    assert task["checks"] == {"io": CHECKS["io"], "test": None} and task["limits"] == {**LIMITS, "processes": None}
    assert (task["created_by"], task["best_version"]) == ("test-runs", None)

    first = start(client, rw, task_id, 1)
    done = wait_for(client, ro, first["id"], "succeeded", "failed")
    assert (done["status"], done["reason"], done["exit_code"]) == ("succeeded", None, 0), done
    assert (done["checks_passed"], done["checks_total"], done["agent"]) == (2, 2, "test-runs")
    assert done["metrics"]["accuracy"] == 1 and done["started_at"] <= done["finished_at"]
    results = client.get(f"/tasks/{task_id}/results?version=1", headers=ro).json()
    assert [r["id"] for r in results] == [done["result_id"]] and results[0]["accuracy"] == 1
    # Counts read as counts: "checks_passed": 2, not 2.0 (the store keeps every metric a float).
    counts = {name: results[0]["metrics"][name] for name in ("checks_passed", "checks_total")}
    assert counts == {"checks_passed": 2, "checks_total": 2} and {type(v) for v in counts.values()} == {int}

    out = client.get(done["stdout"], headers=ro)
    assert out.status_code == 200 and out.headers["content-type"] == "text/plain; charset=utf-8"
    assert "3\n" in out.text and "6\n" in out.text and "io check 2" in out.text
    assert out.headers["x-execution-status"] == "succeeded" and int(out.headers["x-log-size"]) == len(out.content)
    tail = client.get(f"/executions/{first['id']}/logs", params={"stream": "stdout", "offset": 10}, headers=ro)
    assert tail.content == out.content[10:]
    assert "io check 1" in client.get(done["stderr"], headers=ro).text

    second = start(client, rw, task_id, 2)
    failed = wait_for(client, ro, second["id"], "succeeded", "failed")
    assert failed["status"] == "failed" and (failed["checks_passed"], failed["checks_total"]) == (0, 2)
    assert failed["reason"].startswith("2 problems; first: io check 1 failed (input '1 2'): expected '3', got '2")

    listed = client.get(f"/tasks/{task_id}/executions", headers=ro).json()
    assert [(e["id"], e["status"]) for e in listed] == [(first["id"], "succeeded"), (second["id"], "failed")]
    assert [e["id"] for e in client.get(f"/tasks/{task_id}/executions?version=2", headers=ro).json()] == [second["id"]]

    best = client.patch(f"/tasks/{task_id}", json={"best_version": 1, "status": "done"}, headers=rw)
    assert best.status_code == 200 and best.json()["best_version"] == 1, best.text


def test_a_running_execution_is_cancelled_once(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    task_id = task_with(client, rw, SLEEPER)
    execution = start(client, rw, task_id, 1)
    wait_for(client, ro, execution["id"], "running")
    problem(client.post(f"/executions/{execution['id']}/cancel", headers=ro), 403)  # a write needs `runs`
    cancelled = client.post(f"/executions/{execution['id']}/cancel", headers=rw)
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["reason"]) == ("killed", "cancelled: the sandbox was killed")
    again = problem(client.post(f"/executions/{execution['id']}/cancel", headers=rw), 409)
    assert "already ended (killed)" in again["detail"]


def test_unknown_tasks_versions_and_executions_are_404(
    client: TestClient, rw: dict[str, str], ro: dict[str, str]
) -> None:
    task_id = task_with(client, rw, ADD)
    assert (
        "no code version 7"
        in problem(client.post(f"/tasks/{task_id}/versions/7/executions", headers=rw), 404)["detail"]
    )
    problem(client.post("/tasks/tnope/versions/1/executions", headers=rw), 404)
    problem(client.get("/tasks/tnope/executions", headers=ro), 404)
    for path in ("/executions/999", "/executions/999/logs", "/executions/999/events"):
        problem(client.get(path, headers=ro), 404)
    problem(client.post("/executions/999/cancel", headers=rw), 404)
    problem(client.post(f"/tasks/{task_id}/versions/0/executions", headers=rw), 422)
    problem(client.get("/executions/1/logs?stream=both", headers=ro), 422)
    assert client.get(f"/tasks/{task_id}/executions", headers=ro).json() == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"checks": {"io": [{"input": "1"}]}}, ["body", "checks", "io", "0", "expected"]),
        ({"checks": {"io": [{"input": 1, "expected": "1"}]}}, ["body", "checks", "io", "0", "input"]),
        ({"checks": {"tests": "assert True"}}, ["body", "checks", "tests"]),
        ({"checks": {"io": [{"input": "", "expected": ""}] * 101}}, ["body", "checks", "io"]),
        ({"checks": "assert True"}, ["body", "checks"]),
        ({"limits": {"wall_s": 0}}, ["body", "limits", "wall_s"]),
        ({"limits": {"cpu_s": True}}, ["body", "limits", "cpu_s"]),
        ({"limits": {"memory_mb": 2.5}}, ["body", "limits", "memory_mb"]),
        ({"limits": {"memory_mb": 16}}, ["body", "limits", "memory_mb"]),  # too small to start Python
        ({"limits": {"processes": 5000}}, ["body", "limits", "processes"]),
        ({"limits": {"disk_mb": 5}}, ["body", "limits", "disk_mb"]),
        ({"limits": {}}, ["body", "limits"]),  # empty, as `checks: {}` is: leave it out for the defaults
        ({"limits": {"wall_s": None}}, ["body", "limits"]),
    ],
)
def test_checks_and_limits_the_document_forbids_are_422_on_their_field(
    client: TestClient, rw: dict[str, str], body: dict[str, Any], loc: list[str]
) -> None:
    created = client.post("/tasks", json={"title": "t", **body}, headers=rw)
    assert problem(created, 422)["errors"][0]["loc"][: len(loc)] == loc
    task_id = task_with(client, rw)
    changed = client.patch(f"/tasks/{task_id}", json=body, headers=rw)
    assert problem(changed, 422)["errors"][0]["loc"][: len(loc)] == loc


def test_checks_and_limits_are_replaced_and_cleared(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    task_id = task_with(client, rw, ADD, checks=CHECKS)
    test = "import solution\nassert solution\n"
    changed = client.patch(f"/tasks/{task_id}", json={"checks": {"test": test}, "limits": {"wall_s": 2.5}}, headers=rw)
    assert changed.status_code == 200, changed.text
    assert changed.json()["checks"] == {"io": [], "test": test}
    assert {k: v for k, v in changed.json()["limits"].items() if v is not None} == {"wall_s": 2.5}
    empty = problem(client.patch(f"/tasks/{task_id}", json={"limits": {}}, headers=rw), 422)
    assert empty["errors"][0]["loc"] == ["body", "limits"], empty
    assert "limits is empty" in empty["detail"] and "null removes a task's limits" in empty["detail"]
    assert client.get(f"/tasks/{task_id}", headers=ro).json()["limits"]["wall_s"] == 2.5  # unchanged
    cleared = client.patch(f"/tasks/{task_id}", json={"checks": None, "limits": None}, headers=rw).json()
    assert (cleared["checks"], cleared["limits"]) == (None, None)
    assert (
        "no code version 9"
        in problem(client.patch(f"/tasks/{task_id}", json={"best_version": 9}, headers=rw), 404)["detail"]
    )
    problem(client.patch(f"/tasks/{task_id}", json={"title": None}, headers=rw), 422)


def read_stream(client: TestClient, ro: dict[str, str], execution_id: int, last: str | None = None) -> list[SseEvent]:
    headers = {**ro, "Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
    with client.stream("GET", f"/executions/{execution_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(iter_sse(response))  # the server ends the stream after the execution's end


def test_the_live_stream_carries_status_and_log_growth_and_ends_with_the_final_status(
    client: TestClient, rw: dict[str, str], ro: dict[str, str]
) -> None:
    task_id = task_with(client, rw, ADD, checks=CHECKS)
    execution = start(client, rw, task_id, 1)
    events = read_stream(client, ro, execution["id"])
    kinds = [e.event for e in events]
    assert kinds[0] == "status" and kinds[-1] == "end" and kinds.count("end") == 1, kinds
    final = events[-1].json()
    assert (final["id"], final["status"], final["checks_passed"]) == (execution["id"], "succeeded", 2)
    logs = [e.json() for e in events if e.event == "log"]
    stdout = "".join(log["text"] for log in logs if log["stream"] == "stdout")
    assert stdout == client.get(final["stdout"], headers=ro).text  # the whole log, in order, once
    assert "io check 2" in "".join(log["text"] for log in logs if log["stream"] == "stderr")

    # the JSON form is the execution now; a reconnect with Last-Event-ID gets only what is new
    assert client.get(f"/executions/{execution['id']}/events", headers=ro).json() == final
    first_log = next(e for e in events if e.event == "log")
    resumed = read_stream(client, ro, execution["id"], last=first_log.id)
    again = "".join(e.json()["text"] for e in resumed if e.event == "log" and e.json()["stream"] == "stdout")
    skipped = first_log.json()["text"] if first_log.json()["stream"] == "stdout" else ""
    assert skipped + again == stdout and resumed[-1].event == "end"
    assert [e.event for e in read_stream(client, ro, execution["id"], last=events[-1].id)] == ["end"]


def test_the_output_is_in_the_log_while_the_program_runs(
    client: TestClient, rw: dict[str, str], ro: dict[str, str]
) -> None:
    slow = "import time\nprint('first line', flush=True)\ntime.sleep(1.5)\nprint('second line')\n"
    task_id = task_with(client, rw, slow)
    execution = start(client, rw, task_id, 1)
    deadline, seen = time.monotonic() + 20, ""
    while "first line" not in seen and time.monotonic() < deadline:
        log = client.get(f"/executions/{execution['id']}/logs", headers=ro)
        seen, status = log.text, log.headers["x-execution-status"]
        time.sleep(0.05)
    assert "first line" in seen and "second line" not in seen and status == "running", (status, seen)
    events = read_stream(client, ro, execution["id"])
    assert events[-1].event == "end" and events[-1].json()["status"] == "succeeded"
    texts = [e.json()["text"] for e in events if e.event == "log" and e.json()["stream"] == "stdout"]
    assert any("first line" in t and "second line" not in t for t in texts), texts  # not in one piece at the end


# -- mission control --------------------------------------------------------------------------------


def test_the_task_page_runs_a_version_and_the_execution_page_follows_it(
    client: TestClient, keys: dict[str, str], rw: dict[str, str], ro: dict[str, str]
) -> None:
    from tests.api.test_ui_pages import sign_in

    task_id = task_with(client, rw, ADD, SLEEPER, checks=CHECKS)
    csrf = sign_in(client, keys["admin"])
    task_page = client.get(f"/ui/tasks/{task_id}")
    assert task_page.status_code == 200, task_page.text
    for version in (1, 2):
        assert f'action="/ui/tasks/{task_id}/code/{version}/run"' in task_page.text
    assert "10 -4" in task_page.text and "No executions yet" in task_page.text and "wall_s=10" in task_page.text

    refused = client.post(f"/ui/tasks/{task_id}/code/1/run", follow_redirects=False)
    assert refused.status_code == 403  # no CSRF token
    ran = client.post(f"/ui/tasks/{task_id}/code/1/run", data={"csrf": csrf}, follow_redirects=False)
    assert ran.status_code == 303 and ran.headers["location"].startswith("/ui/executions/"), ran.text
    execution_id = int(ran.headers["location"].rsplit("/", 1)[1])
    wait_for(client, ro, execution_id, "succeeded", "failed")
    page = client.get(f"/ui/executions/{execution_id}")
    assert page.status_code == 200, page.text
    assert 'class="badge status-succeeded"' in page.text and "accuracy" in page.text and "Run again" in page.text
    assert "io check 2" in page.text and "sse-connect" not in page.text  # finished: no live stream
    stream = client.get(f"/ui/executions/{execution_id}/stream")
    assert "event: stdout" in stream.text and "event: done" in stream.text
    assert client.get(f"/ui/executions/{execution_id}/log/stdout").text.startswith("[edgecrew] io check 1")
    listed = client.get(f"/ui/tasks/{task_id}")
    assert f'href="/ui/executions/{execution_id}"' in listed.text and "2/2" in listed.text

    sleeping = client.post(f"/ui/tasks/{task_id}/code/2/run", data={"csrf": csrf}, follow_redirects=False)
    sleeper_id = int(sleeping.headers["location"].rsplit("/", 1)[1])
    wait_for(client, ro, sleeper_id, "running")
    live = client.get(f"/ui/executions/{sleeper_id}")
    assert f'sse-connect="/ui/executions/{sleeper_id}/stream?stdout=' in live.text
    assert f'action="/ui/executions/{sleeper_id}/cancel"' in live.text
    cancelled = client.post(f"/ui/executions/{sleeper_id}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 200 and "cancelled" in cancelled.text and "status-killed" in cancelled.text
    missing = client.get("/ui/executions/999")
    assert missing.status_code == 404 and "Not found" in missing.text


def test_stats_count_the_executions_running_now(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    # /stats counted tasks, versions and runs, but said nothing of the code running in the sandbox.
    idle = client.get("/stats", headers=ro).json()
    assert idle["executions_running"] == 0 and set(idle["executions_by_status"].values()) == {0}
    assert list(idle["executions_by_status"]) == ["queued", "running", "succeeded", "failed", "killed", "interrupted"]
    task_id = task_with(client, rw, SLEEPER)
    execution = start(client, rw, task_id, 1)
    wait_for(client, ro, execution["id"], "running")
    # a row a process that is gone left running is not running: it reads interrupted
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    orphan = tasks.create_execution(task_id, 1, executor=f"{socket.gethostname()}:999999:1")
    tasks.update_execution(orphan.id, status="running")
    busy = client.get("/stats", headers=ro).json()
    assert busy["executions_running"] == 1, busy
    assert busy["executions_by_status"] | {"running": 1, "interrupted": 1} == busy["executions_by_status"]
    client.post(f"/executions/{execution['id']}/cancel", headers=rw)
    done = client.get("/stats", headers=ro).json()
    assert done["executions_running"] == 0 and done["executions_by_status"]["killed"] == 1
