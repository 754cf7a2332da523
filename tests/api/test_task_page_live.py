"""The build-loop's work is shown: after a run on the scripted model (the first version fails its checks,
the second passes) the task's page and the REST API show both versions, both results, both verdicts
and the task done, and the scoreboard counts the team's done task; while a run goes, the task page's
stream sends each version and verdict as it is stored, before the run ends."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from tests.api.conftest import auth
from tests.api.live import SseEvent, iter_sse, serve_in_thread, server_settings
from tests.api.telemetry_project import run_to_end
from tests.api.test_ui_pages import sign_in
from tests.conftest import write

GENERATED = {
    "title": "Add two numbers",
    "spec": "Read two integers from stdin and print their sum.",
    "io": [{"input": "2 3", "expected": "5"}, {"input": "10 -4", "expected": "6"}],
}
WRONG = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a - b)\n"
RIGHT = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"
FIRST_CODER_DELAY_S = 3.0  # the live test's page is read before v1 exists
SECOND_CODER_DELAY_S = 4.0  # and the first verdict arrives while the coder "thinks" about v2


def loop_project(first_delay: float = 0.0, second_delay: float = 0.0) -> str:
    """edgecrew.yaml with build-loop's models scripted (JSON is YAML); the coder's replies may wait."""
    # The coder writes its program as models do, in a fenced block (build-loop's `code_block` takes it out).
    first: dict[str, Any] = {"text": f"```python\n{WRONG}```", "delay": first_delay}
    second: dict[str, Any] = {"text": f"```python\n{RIGHT}```", "delay": second_delay}
    replies = {
        "generator": [{"json": GENERATED}],
        "coder": [first, second],
        "evaluator": [{"json": {"notes": "it subtracts; add the numbers instead"}}],
    }
    return json.dumps({"models": {"local": {"backend": "scripted", "tags": ["coding"], "replies_by_agent": replies}}})


@pytest.fixture
def server_project(project_dir: Path) -> Path:
    """Overrides tests/api/conftest.py's project: the conftest ``client`` serves this one."""
    write(project_dir / "edgecrew.yaml", loop_project())
    return project_dir


def section(html: str, name: str) -> str:
    """The inner HTML of the task page's live section ``name`` (its sse-swap target)."""
    found = re.search(rf'id="task-{name}" sse-swap="{name}">(.*?)(?:id="task-|$)', html, re.S)
    assert found, f"no {name} section in the page"
    return found.group(1)


def test_the_loops_versions_results_and_verdicts_are_shown(client: TestClient, keys: dict[str, str]) -> None:
    run = run_to_end(client, keys, "build-loop", "a program that adds two numbers")
    assert run["status"] == "succeeded", run
    read = auth(keys["read"])
    [task] = client.get("/tasks", headers=read).json()["items"]
    task_id = task["id"]
    assert client.get(f"/tasks/{task_id}", headers=read).json() == task

    # the REST API
    assert (task["status"], task["best_version"], task["team"]) == ("done", 2, "build-loop")
    assert [v["version"] for v in client.get(f"/tasks/{task_id}/code", headers=read).json()] == [1, 2]
    assert [r["version"] for r in client.get(f"/tasks/{task_id}/results", headers=read).json()] == [1, 2]
    verdicts = client.get(f"/tasks/{task_id}/feedback", headers=read).json()
    assert [(f["version"], f["verdict"]) for f in verdicts] == [(1, "needs_changes"), (2, "accepted")]
    executions = client.get(f"/tasks/{task_id}/executions", headers=read).json()
    assert [(e["version"], e["status"]) for e in executions] == [(1, "failed"), (2, "succeeded")]

    # the task's page
    sign_in(client, keys["read"])
    page = client.get(f"/ui/tasks/{task_id}")
    assert page.status_code == 200, page.text
    assert "sse-connect" not in page.text  # a settled task's page does not follow anything
    status = section(page.text, "status")
    assert '<span class="badge">done</span>' in status and "best: v2" in status
    versions = section(page.text, "versions")
    assert "v1 · solution.py" in versions and "v2 · solution.py" in versions
    results = section(page.text, "results")
    assert "<td>v1</td>" in results and "<td>v2</td>" in results
    feedback = section(page.text, "feedback")
    assert re.search(r"verdict-needs_changes\">needs changes</span> on v1 .*expected &#39;5&#39;", feedback)
    assert "add the numbers instead" in feedback
    assert re.search(r'verdict-accepted">accepted</span> on v2 .*all 2 checks pass', feedback)
    rows = section(page.text, "executions")
    assert rows.count("status-failed") == 1 and rows.count("status-succeeded") == 1

    # the scoreboard: the team with one task, done, in two versions
    board = client.get("/ui/tasks").text
    assert re.search(r"<td>build-loop</td><td>1</td><td>1</td><td>0</td><td>2\.0</td>", board), board

    # the stream of a settled task: every section (the client showed nothing yet), then done
    with client.stream("GET", f"/ui/tasks/{task_id}/stream") as stream:
        kinds = [line.removeprefix("event: ") for line in stream.iter_lines() if line.startswith("event: ")]
    assert kinds == ["status", "versions", "executions", "results", "feedback", "messages", "logs", "done"]
    assert client.get("/ui/tasks/tnope/stream").status_code == 404


def test_the_task_page_follows_a_run_as_it_goes(project_dir: Path, tmp_path: Path) -> None:
    write(project_dir / "edgecrew.yaml", loop_project(FIRST_CODER_DELAY_S, SECOND_CODER_DELAY_S))
    app = create_app(server_settings(tmp_path, allow_keyless_localhost=True))
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        started = http.post("/runs", json={"team": "build-loop", "task": "a program that adds two numbers"})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        task_id = _wait_for_task(http)

        page = http.get(f"/ui/tasks/{task_id}")
        seen = re.search(r'sse-connect="/ui/tasks/[^/]+/stream\?seen=(\w+)"', page.text)
        assert seen, "a task that a run works on is followed live"

        events: list[SseEvent] = []
        first_verdict_while: str | None = None  # the run's status when the first verdict came
        with http.stream("GET", f"/ui/tasks/{task_id}/stream", params={"seen": seen.group(1)}) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            for event in iter_sse(stream):
                events.append(event)
                if first_verdict_while is None and event.event == "feedback" and "verdict-needs_changes" in event.data:
                    first_verdict_while = http.get(f"/runs/{run_id}").json()["status"]
                if event.event == "done":
                    break
        assert first_verdict_while in ("queued", "running"), first_verdict_while  # shown before the run ended
        run = http.get(f"/runs/{run_id}").json()
        assert run["status"] == "succeeded", run

    kinds = [e.event for e in events]
    assert kinds[-1] == "done" and len(set(e.id for e in events if e.event != "done")) >= 2, kinds
    versions = [e.data for e in events if e.event == "versions"]
    assert any("v1 · solution.py" in v and "v2 ·" not in v for v in versions), versions  # v1 alone, then both
    assert "v2 · solution.py" in versions[-1]
    feedback = [e.data for e in events if e.event == "feedback"]
    assert "verdict-accepted" not in feedback[0] and "verdict-accepted" in feedback[-1]
    results = [e.data for e in events if e.event == "results"]
    assert "<td>v1</td>" in results[0] and "<td>v2</td>" in results[-1]
    statuses = [e.data for e in events if e.event == "status"]
    assert '<span class="badge">done</span>' in statuses[-1] and "best: v2" in statuses[-1]


def _wait_for_task(http: httpx.Client, timeout: float = 60) -> str:
    """The id of the task the run's generator files (the loop's second step)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = http.get("/tasks").json()["items"]
        if tasks:
            task_id: str = tasks[0]["id"]
            return task_id
        time.sleep(0.05)
    raise AssertionError("the run filed no task")
