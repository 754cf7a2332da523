"""SIGKILL `edgecrew run build-loop` while a code version runs in the sandbox: the execution is recorded as
interrupted (it can be rerun), `edgecrew resume` runs the version again and the loop ends with the task done."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write

CODE = "import sys, time\\ntime.sleep(4)\\na, b = map(int, sys.stdin.read().split())\\nprint(a + b)\\n"
PROJECT = f"""
models:
  local:                      # the team's models, scripted: this test is about the sandbox and the store
    backend: scripted
    tags: [coding]
    replies_by_agent:
      generator:
        - json: {{title: add, spec: "print the sum of two integers", io: [{{input: "2 3", expected: "5"}}]}}
      coder: [{{json: {{code: "{CODE}"}}}}]
"""


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

    def executions() -> list[tuple[int, str]]:
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            try:
                return conn.execute("SELECT id, status FROM executions ORDER BY id").fetchall()
            except sqlite3.OperationalError:  # the table is not there yet
                return []

    deadline = time.monotonic() + 60
    while not any(status == "running" for _, status in executions()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no running execution: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT id FROM runs").fetchone()[0]

    resumed = subprocess.run([*command, "resume", run_id], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT version, status, reason FROM executions ORDER BY id").fetchall()
        task = conn.execute("SELECT status, best_version FROM tasks").fetchone()
        run = conn.execute("SELECT status FROM runs").fetchone()[0]
    assert [(v, s) for v, s, _ in rows] == [(1, "interrupted"), (1, "succeeded")]
    assert "run the version again" in rows[0][2] or "interrupted" in rows[0][2]
    assert task == ("done", 1) and run == "succeeded"
