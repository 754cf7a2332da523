"""The real `edgecrew serve` process driven over HTTP only: a run goes from start through an
approval to its finish; a second run left waiting survives a SIGTERM (the server stops promptly
even with an SSE client connected), the next server adopts it, and after the approval it
finishes with the risky tool run exactly once."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api.live import ServerProcess, SseEvent, cli_env, create_key, iter_sse
from tests.conftest import write
from tests.e2e.test_approval_restart import TEAM, TOOLS

PROJECT = """
models:
  fake:
    backend: scripted
    record: calls.jsonl   # the restarted server continues the script where the stopped one was
    replies: [{tool: deploy, args: {target: prod}, text: "the fix must ship"}, "shipped"]
plugins: [tools.py]
"""


SSE = {"Accept": "text/event-stream"}
TIMEOUT = httpx.Timeout(60.0)


def _events_until(http: httpx.Client, run_id: str, stop: str, after: str | None = None) -> list[SseEvent]:
    """Read the run's stream until an event of type ``stop`` (or the stream's end)."""
    headers = {**SSE, **({"Last-Event-ID": after} if after else {})}
    seen: list[SseEvent] = []
    with http.stream("GET", f"/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        for event in iter_sse(response):
            seen.append(event)
            if event.event == stop:
                break
    return seen


def _approve_pending(http: httpx.Client, run_id: str) -> dict[str, Any]:
    pending = http.get("/approvals").json()
    assert [(a["run_id"], a["tool"], a["status"]) for a in pending] == [(run_id, "deploy", "pending")], pending
    assert pending[0]["reason"] == "the fix must ship" and pending[0]["arguments"] == {"target": "prod"}
    decided = http.post(f"/approvals/{pending[0]['id']}/approve", json={"note": "go"})
    assert decided.status_code == 200, decided.text
    answer: dict[str, Any] = decided.json()
    assert answer["status"] == "approved"
    return answer


def _start(http: httpx.Client) -> str:
    started = http.post("/runs", json={"team": "ship", "task": "ship the fix"}, headers={"Idempotency-Key": "x"})
    assert started.status_code in (200, 201), started.text
    run_id: str = started.json()["id"]
    return run_id


def test_served_run_through_approval_and_restart(project_dir: Path, edgecrew_home: Path) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "ship.yaml", TEAM)
    deploys = project_dir / "deploys.log"
    env = cli_env(project_dir, edgecrew_home, DEPLOY_LOG=str(deploys))
    key = create_key(env, "e2e", "admin")
    assert key.startswith("ec_")
    headers = {"Authorization": f"Bearer {key}"}

    server = ServerProcess(project_dir, env).start()
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=TIMEOUT) as http:
            # 1. start -> approval_requested -> approve -> run_finished
            started = http.post("/runs", json={"team": "ship", "task": "ship the fix"})
            assert started.status_code == 201, started.text
            first = started.json()["id"]
            asked = _events_until(http, first, "approval_requested")
            assert asked[0].event == "run_created" and asked[-1].event == "approval_requested"
            _approve_pending(http, first)
            rest = _events_until(http, first, "run_finished", after=asked[-1].id)
            assert rest[-1].event == "run_finished" and rest[-1].json()["data"]["status"] == "succeeded"
            assert "tool_called" in [e.event for e in rest]
            run = http.get(f"/runs/{first}").json()
            assert run["status"] == "succeeded" and run["output"] == {"text": "shipped"}
            assert [(s["agent"], s["status"], s["tool_calls"]) for s in run["steps"]] == [("op", "finished", 1)]
            assert deploys.read_text() == "prod\n"

            # 2. a second run waits for its approval while a client follows its stream
            second = _start(http)
            waiting = _events_until(http, second, "approval_requested")
            assert http.get(f"/runs/{second}").json()["status"] == "waiting_approval"

        follower_saw: list[SseEvent] = []
        follower_error: list[BaseException] = []

        def follow() -> None:
            try:
                with (
                    httpx.Client(base_url=server.url, headers=headers, timeout=TIMEOUT) as http,
                    http.stream("GET", f"/runs/{second}/events", headers=SSE) as response,
                ):
                    follower_saw.extend(iter_sse(response))
            except httpx.HTTPError as exc:  # the server going away may cut the stream mid-chunk
                follower_error.append(exc)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        _wait_for(lambda: len(follower_saw) >= len(waiting), "the follower to catch up")
        code = server.stop(timeout=30)  # SIGTERM; a hung shutdown fails here
        follower.join(timeout=30)
        assert not follower.is_alive(), "the SSE client was left hanging after the server stopped"
        # uvicorn shuts down, then re-raises the signal it caught: the exit is the signal's own
        assert code in (0, -signal.SIGTERM), server.output()
        assert not follower_error, follower_error  # the stream ended cleanly, not cut mid-response
        assert "run_finished" not in [e.event for e in follower_saw]
        assert '"level": "error"' not in server.output() and "Traceback" not in server.output(), server.output()
        assert deploys.read_text() == "prod\n"  # nothing ran while waiting

        # 3. the next server adopts the run; the approval lets it finish; deploy ran once for it
        server = ServerProcess(project_dir, env, port=server.port).start()
        with httpx.Client(base_url=server.url, headers=headers, timeout=TIMEOUT) as http:
            assert http.get(f"/runs/{second}").json()["status"] == "waiting_approval"
            again = _start(http)  # a client retrying its start after the restart gets the same run
            assert again == second
            _approve_pending(http, second)
            tail = _events_until(http, second, "run_finished", after=waiting[-1].id)
            assert tail[-1].json()["data"]["status"] == "succeeded", [e.json() for e in tail]
            kinds = [e.event for e in tail]
            assert kinds[0] == "run_resumed" and kinds.count("tool_called") == 1, kinds  # adopted, not restarted
            run = http.get(f"/runs/{second}").json()
            assert run["status"] == "succeeded" and run["output"] == {"text": "shipped"}
            assert [s["tool_calls"] for s in run["steps"]] == [1]
        assert deploys.read_text() == "prod\nprod\n"  # once per run
    finally:
        server.kill()


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
