"""A run waiting for approval survives a SIGKILL: resume waits again, a CLI approval from another
process lets it finish, and the approved call runs exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import write

PROJECT = """
models:
  fake:
    backend: scripted
    record: calls.jsonl   # lets the resumed process continue the script where the killed one stopped
    replies: [{tool: deploy, args: {target: prod}, text: "the fix must ship"}, "shipped"]
plugins: [tools.py]
"""

TOOLS = """
import os
from pathlib import Path
from edgecrew import tool

@tool(risk="risky")
def deploy(target: str) -> str:
    \"\"\"Deploy to a target.\"\"\"
    with Path(os.environ["DEPLOY_LOG"]).open("a") as fh:
        fh.write(target + "\\n")
    return "deployed " + target
"""

TEAM = """
name: ship
agents:
  op: {model: fake, system: ship it, tools: [deploy]}
graph: {start: op, edges: [{from: op, to: end}]}
"""


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecrew", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_pending(
    env: dict[str, str], run: subprocess.Popen[str] | None = None, said: Path | None = None
) -> dict[str, object]:
    """The first pending approval; ``run`` (its output in ``said``) is the process that should ask."""
    deadline = time.monotonic() + 90  # each look starts the CLI: seconds apiece on a loaded box
    while time.monotonic() < deadline:
        done = cli(env, "approvals", "list", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        listed = json.loads(done.stdout)
        if listed:
            return dict(listed[0])
        if run is not None and run.poll() is not None:
            break
        time.sleep(0.2)
    if run is not None and run.poll() is None:
        run.kill()
        run.wait(timeout=10)
    output = said.read_text(errors="replace")[-4000:] if said is not None and said.exists() else ""
    raise AssertionError(f"no pending approval appeared (run status {run and run.returncode}); it said:\n{output}")


def killed_while_waiting(project_dir: Path, edgecrew_home: Path) -> tuple[dict[str, str], dict[str, object], Path]:
    """A run of `ship` waiting for its deploy's approval, its process killed: (env, the approval, the deploy log)."""
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "ship.yaml", TEAM)
    log = project_dir / "deploys.log"
    env = {
        **os.environ,
        "EDGECREW_HOME": str(edgecrew_home),
        "EDGECREW_PROJECT": str(project_dir),
        "DEPLOY_LOG": str(log),
    }
    said = project_dir / "run.out"  # a file, not a pipe nobody reads until the end: a full pipe blocks the run
    with said.open("w") as out:
        first = subprocess.Popen(
            [sys.executable, "-m", "edgecrew", "run", "ship", "ship the fix"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    pending = wait_pending(env, first, said)
    assert pending["tool"] == "deploy" and pending["reason"] == "the fix must ship"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    return env, pending, log


def test_waiting_run_survives_kill_and_finishes_after_cli_approval(project_dir: Path, edgecrew_home: Path) -> None:
    env, pending, log = killed_while_waiting(project_dir, edgecrew_home)

    run_id = str(pending["run_id"])
    assert json.loads(cli(env, "runs", "list", "--json").stdout)[0]["status"] == "waiting_approval"
    resumed = subprocess.Popen(
        [sys.executable, "-m", "edgecrew", "resume", run_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(2)  # resume is now waiting for the decision again
    assert resumed.poll() is None and not log.exists()
    approved = cli(env, "approvals", "approve", str(pending["id"]))
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "no live edgecrew process" not in approved.stderr  # resume runs it
    again = cli(env, "approvals", "approve", str(pending["id"]))  # a second approval changes nothing
    assert again.returncode == 0 or "already succeeded" in again.stderr, again.stdout + again.stderr
    out, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, out
    assert log.read_text() == "prod\n"  # ran exactly once
    shown = json.loads(cli(env, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded" and shown["output"] == {"text": "shipped"}


def test_a_decision_on_a_run_nothing_runs_says_how_to_go_on(project_dir: Path, edgecrew_home: Path) -> None:
    """Approved while no process runs the run: recorded, and the CLI says `edgecrew resume RUN` takes it up."""
    env, pending, log = killed_while_waiting(project_dir, edgecrew_home)
    run_id = str(pending["run_id"])
    approved = cli(env, "approvals", "approve", str(pending["id"]))
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert f"run {run_id} is waiting_approval but no live edgecrew process runs it" in approved.stderr
    assert f"edgecrew resume {run_id}" in approved.stderr
    resumed = cli(env, "resume", run_id, timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert log.read_text() == "prod\n"
