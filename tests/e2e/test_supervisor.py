"""The supervisor on a real `edgecrew serve`, with no person in the loop, on SQLite (a temp home) and on
a real Postgres (a fresh database on a throwaway server).

1. Healing: a sandboxed job allocates 300 MB under a 200 MiB limit and dies of MemoryError; the
   supervisor records an ``oom`` incident (peak and limit in its diagnosis), its rule retries the job
   with twice the memory, the retry succeeds and the incident ends ``healed``.
2. Escalating: a job fails with an error no rule knows; the supervisor asks the model (a scripted
   one, answering ``escalate`` through the action schema), the incident ends ``escalated`` and a
   regression case is written that parses and names the command that reproduces it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecrew.ops.incidents import load_regression
from tests.api.live import ServerProcess, cli_env, create_key
from tests.conftest import write
from tests.e2e.databases import as_json, database, pg_server, rows, url_of

__all__ = ["database", "pg_server"]  # fixtures

pytestmark = pytest.mark.slow

PROJECT = """\
models:
  local:
    backend: scripted
    replies:
      - json: {action: escalate, reason: "an unknown failure: a person must look", params: {}}
policies: {}
"""
FAST = {
    "EDGECREW_SUPERVISOR_INTERVAL_S": "0.5",
    "EDGECREW_JOBS_CHECK_S": "0.2",
    "EDGECREW_JOBS_QUEUE_POLL_S": "0.2",
    "EDGECREW_SAMPLE_INTERVAL_S": "0",
}


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "edgecrew", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _incidents(url: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT * FROM incidents ORDER BY created_at")


def _wait(predicate: Callable[[], bool], what: str, server: ServerProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if server.proc is not None and server.proc.poll() is not None:
            pytest.fail(f"the server exited before {what}:\n{server.output()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{server.output()[-4000:]}")


def test_the_supervisor_heals_an_out_of_memory_job_by_itself(
    project_dir: Path, edgecrew_home: Path, database: dict[str, str]
) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT)
    env = cli_env(project_dir, edgecrew_home, **FAST, **database)
    url = url_of(env, edgecrew_home)
    server = ServerProcess(project_dir, env).start()
    try:
        hog = "b = bytearray(300 * 2**20); print('held', len(b))"
        _cli(env, "jobs", "submit", "--name", "hog", "--sandbox", "--memory", "200MiB", "--", "python3", "-c", hog)

        def settled() -> bool:
            found = _incidents(url)
            return bool(found) and found[0]["state"] in ("healed", "escalated", "failed")

        _wait(settled, "the incident to be healed", server)
        [incident] = _incidents(url)
        assert incident["kind"] == "oom" and incident["subject_type"] == "job", incident
        assert incident["state"] == "healed", incident
        assert incident["action"] == "retry_with_more_memory" and incident["decided_by"] == "rule"
        assert as_json(incident["action_params"])["memory_bytes"] == 400 * 2**20
        diagnosis = as_json(incident["diagnosis"])
        assert diagnosis["resources"]["memory_limit_bytes"] == 200 * 2**20
        assert any("MemoryError" in line for line in diagnosis["stderr_tail"])
        jobs = rows(url, "SELECT * FROM jobs ORDER BY created_at")
        assert [j["state"] for j in jobs] == ["failed", "succeeded"]
        retry = jobs[1]
        assert incident["follow_up"] == f"job:{retry['id']}"
        assert retry["submitted_by"] == f"supervisor:{incident['id']}#1"
        assert as_json(retry["needs"])["memory_bytes"] == 400 * 2**20
        kinds = [
            e["kind"]
            for e in rows(url, "SELECT kind FROM incident_events WHERE incident_id = :i ORDER BY id", i=incident["id"])
        ]
        assert kinds == ["detected", "decided", "applied", "healed"]
        assert incident["regression_path"] is None
        # The API says the same, behind the read scope.
        assert httpx.get(f"{server.url}/incidents", timeout=10).status_code == 401
        key = create_key(env, "reader", "read")
        listed = httpx.get(f"{server.url}/incidents", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert listed.status_code == 200 and listed.json()["items"][0]["state"] == "healed"
    finally:
        server.stop()


def test_the_supervisor_escalates_a_novel_failure_with_a_regression_case(
    project_dir: Path, edgecrew_home: Path, database: dict[str, str]
) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT)
    env = cli_env(project_dir, edgecrew_home, **FAST, **database)
    url = url_of(env, edgecrew_home)
    server = ServerProcess(project_dir, env).start()
    try:
        script = "echo 'flux capacitor misaligned at 88 mph' >&2; exit 3"
        _cli(env, "jobs", "submit", "--name", "odd", "--", "sh", "-c", script)

        def settled() -> bool:
            found = _incidents(url)
            return bool(found) and found[0]["state"] in ("healed", "escalated", "failed")

        _wait(settled, "the incident to be escalated", server)
    finally:
        server.stop()
    [incident] = _incidents(url)
    assert incident["kind"] == "job_failed" and incident["state"] == "escalated", incident
    assert incident["decided_by"] == "model" and incident["action"] == "escalate"
    assert "flux capacitor" in incident["error"]
    assert [j["state"] for j in rows(url, "SELECT state FROM jobs")] == ["failed"]  # nothing retried
    path = Path(incident["regression_path"])
    assert path.parent == project_dir / "regressions" and path.name.endswith(f"-job_failed-{incident['id']}.yaml")
    case = load_regression(path)
    assert case.incident == incident["id"] and case.expected["state"] == "succeeded"
    assert case.command() == ["edgecrew", "jobs", "submit", "--", "sh", "-c", script]
    assert "flux capacitor" in case.error
