"""Cancelling a run that another process is executing stops it at its next step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import write


def test_cancel_from_another_process_stops_the_run(project_dir: Path, edgecrew_home: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """
        models:
          slow:
            backend: scripted
            record: calls.jsonl
            delay: 6.0   # long enough that two CLI starts (list, cancel) fit inside the run on a busy box
            replies: ["one", "two", "three"]
    """,
    )
    write(
        project_dir / "teams" / "slow.yaml",
        """
        name: slow
        agents:
          a: {model: slow, system: x}
          b: {model: slow, system: y}
          c: {model: slow, system: z}
        graph:
          start: a
          edges: [{from: a, to: b}, {from: b, to: c}, {from: c, to: end}]
    """,
    )
    env = {**os.environ, "EDGECREW_HOME": str(edgecrew_home), "EDGECREW_PROJECT": str(project_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecrew", "run", "slow", "go", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    calls = project_dir / "calls.jsonl"
    deadline = time.monotonic() + 90
    while not (calls.exists() and calls.read_text().count('"start"') >= 1):
        assert time.monotonic() < deadline and proc.poll() is None, "run did not start"
        time.sleep(0.05)
    listed = subprocess.run(
        [sys.executable, "-m", "edgecrew", "runs", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    run_id = json.loads(listed.stdout)[0]["id"]
    cancel = subprocess.run(
        [sys.executable, "-m", "edgecrew", "cancel", run_id], env=env, capture_output=True, text=True, timeout=120
    )
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert "cancelled" in cancel.stdout
    started_before_cancel_returned = calls.read_text().count('"start"')
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "cancelled"
    # The call in flight may finish; no model call starts once the cancel has returned.
    assert calls.read_text().count('"start"') == started_before_cancel_returned
