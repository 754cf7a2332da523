"""SIGKILL `edgecrew run build-loop` while a code version runs in the sandbox: the execution is recorded as
interrupted (it can be rerun), `edgecrew resume` runs the version again and the loop ends with the task done.
The same for SIGKILL of `edgecrew serve` with a run started over HTTP: the next server marks the execution
interrupted, adopts the run, and the loop ends without repeating a model call that had finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.live import ServerProcess, cli_env, create_key
from tests.conftest import STORE_SQLITE, read_store, write

CODE = "import sys, time\\ntime.sleep(4)\\na, b = map(int, sys.stdin.read().split())\\nprint(a + b)\\n"
PROJECT = f"""
models:
  local:                      # the team's models, scripted: this test is about the sandbox and the store
    backend: scripted
    tags: [coding]
    replies_by_agent:
      generator:
        - json: {{title: add, spec: "print the sum of two integers", io: [{{input: "2 3", expected: "5"}}]}}
      coder: [{{text: "```python\\n{CODE}```"}}]
"""
RECORDED = PROJECT.replace("backend: scripted", "backend: scripted\n    record: calls.jsonl")


def _executions(db: Path) -> list[tuple[int, str]]:
    if not db.exists():
        return []
    with read_store(db) as conn:
        try:
            return conn.execute("SELECT id, status FROM executions ORDER BY id").fetchall()
        except STORE_SQLITE.OperationalError:  # the table is not there yet
            return []


def test_an_execution_killed_with_its_process_is_interrupted_and_the_loop_resumes(
    project_dir: Path, edgecrew_home: Path
) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(EDGECREW_HOME=str(edgecrew_home), EDGECREW_PROJECT=str(project_dir), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "edgecrew"]
    proc = subprocess.Popen([*command, "run", "build-loop", "add two numbers"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    db = edgecrew_home / "edgecrew.db"
    deadline = time.monotonic() + 60
    while not any(status == "running" for _, status in _executions(db)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no running execution: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with read_store(db) as conn:
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]

    resumed = subprocess.run([*command, "resume", run_id], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with read_store(db) as conn:
        rows = conn.execute("SELECT version, status, reason FROM executions ORDER BY id").fetchall()
        task = conn.execute("SELECT status, best_version FROM tasks").fetchone()
        run = conn.execute("SELECT status FROM runs").fetchone()[0]
    assert [(v, s) for v, s, _ in rows] == [(1, "interrupted"), (1, "succeeded")]
    assert "run the version again" in rows[0][2] or "interrupted" in rows[0][2]
    assert task == ("done", 1) and run == "succeeded"


def test_an_execution_killed_with_the_server_is_interrupted_and_the_next_server_resumes_the_loop(
    project_dir: Path, edgecrew_home: Path
) -> None:
    write(project_dir / "edgecrew.yaml", RECORDED)
    env = cli_env(project_dir, edgecrew_home)
    headers = {"Authorization": f"Bearer {create_key(env, 'e2e', 'admin')}"}
    db, calls_file = edgecrew_home / "edgecrew.db", project_dir / "calls.jsonl"
    server = ServerProcess(project_dir, env).start()
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            started = http.post("/runs", json={"team": "build-loop", "task": "add two numbers"})
            assert started.status_code == 201, started.text
            run_id = started.json()["id"]
            deadline = time.monotonic() + 60
            while not any(status == "running" for _, status in _executions(db)):
                if server.proc is None or server.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"no running execution: {http.get(f'/runs/{run_id}').text}\n{server.output()}")
                time.sleep(0.05)
        assert server.proc is not None
        killed = server.proc.pid
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
        before = _calls(calls_file)

        server = ServerProcess(project_dir, env, port=server.port).start()
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            deadline = time.monotonic() + 120
            while (run := http.get(f"/runs/{run_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
                if time.monotonic() > deadline:
                    pytest.fail(f"the run did not end after the restart: {run}\n{server.output()}")
                time.sleep(0.1)
            assert run["status"] == "succeeded", (run, server.output())
            [task] = http.get("/tasks").json()["items"]
            executions = http.get(f"/tasks/{task['id']}/executions").json()
    finally:
        server.kill()
    assert (task["status"], task["best_version"]) == ("done", 1)
    assert [(e["version"], e["status"]) for e in executions] == [(1, "interrupted"), (1, "succeeded")]
    assert "interrupted" in executions[0]["reason"] and str(killed) in executions[0]["reason"]
    # the model calls that had ended before the kill (generator, coder) were not made again
    finished = {c["step"] for c in before if c["phase"] == "end"}
    assert {c["agent"] for c in before if c["phase"] == "end"} == {"generator", "coder"}, before
    starts = [c["step"] for c in _calls(calls_file) if c["phase"] == "start"]
    assert all(starts.count(step) == 1 for step in finished), starts
    assert all(c["pid"] == killed for c in _calls(calls_file)), "the next server made a model call"


def _calls(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
