"""SIGKILL a real `edgecrew run` process at several points; resume must finish the run without
repeating any model or tool call whose step had finished (counted through the scripted model's
record file, which both processes append to)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import STORE_SQLITE, read_store, write

PROJECT = """
models:
  fake:
    backend: scripted
    record: calls.jsonl
    replies_by_agent:
      a: [{json: {topic: "durability"}}]
      b: [{tool: slow_tool, args: {text: "x"}}, {text: "B done", delay: 1.5}]
      c: [{json: {verdict: approve}}]
plugins: [tools.py]
"""

TOOLS = """
import json, os, time
from pathlib import Path
from edgecrew import tool

@tool(timeout_s=30)
def slow_tool(text: str) -> str:
    \"\"\"A tool that takes a while.\"\"\"
    log = Path(os.environ["CRASH_TOOL_LOG"])
    with log.open("a") as fh:
        fh.write(json.dumps({"phase": "start", "pid": os.getpid()}) + "\\n")
    time.sleep(1.5)
    with log.open("a") as fh:
        fh.write(json.dumps({"phase": "end", "pid": os.getpid()}) + "\\n")
    return "tool:" + text
"""

TEAM = """
name: crashy
agents:
  a:
    model: fake
    system: first
    output_schema: {type: object, properties: {topic: {type: string}}, required: [topic]}
  b: {model: fake, system: second, tools: [slow_tool]}
  c:
    model: fake
    system: third
    output_schema: {type: object, properties: {verdict: {enum: [approve]}}, required: [verdict]}
graph:
  start: a
  edges:
    - {from: a, to: b}
    - {from: b, to: c}
    - {from: c, to: end}
"""

EXPECTED_MODEL_CALLS = 4  # a, b (tool call), b (final), c


@pytest.fixture
def crash_env(project_dir: Path, edgecrew_home: Path) -> dict[str, str]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "crashy.yaml", TEAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        EDGECREW_HOME=str(edgecrew_home),
        EDGECREW_PROJECT=str(project_dir),
        CRASH_TOOL_LOG=str(project_dir / "tools.jsonl"),
        PYTHONUNBUFFERED="1",
    )
    return env


def _edgecrew(env: dict[str, str], *args: str, failpoints: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgecrew", *args],
        env={**env, "EDGECREW_FAILPOINTS": failpoints},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


SOLO = """
name: solo
agents:
  a: {model: fake, system: x, output_schema: {type: object, properties: {topic: {type: string}}}}
graph: {start: a, edges: [{from: a, to: end}]}
"""


def _killed_after_first_call(env: dict[str, str], home: Path) -> str:
    """`edgecrew run crashy first`, killed with SIGKILL right after its first model call; its run's id
    (the failpoint's marker removed, so a later process is not taken for the killed one)."""
    proc = _edgecrew(env, "run", "crashy", "first", failpoints="after_model_call:1")
    _wait_for(lambda: (home / "failpoint.hit").exists(), proc, "failpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    (home / "failpoint.hit").unlink()
    return _run_id(home)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(predicate, proc: subprocess.Popen[str], what: str, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"process ended before {what}: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _run_id(home: Path) -> str:

    with read_store(home / "edgecrew.db") as db:
        rows = db.execute("SELECT id FROM runs ORDER BY created_at").fetchall()
    assert len(rows) == 1
    return str(rows[0][0])


def _kill_then_resume(
    crash_env: dict[str, str], home: Path, project: Path, *, failpoints: str = "", when: str = ""
) -> tuple[str, list[dict[str, object]], int, str]:
    proc = _edgecrew(crash_env, "run", "crashy", "test durability", failpoints=failpoints)
    calls_file = project / "calls.jsonl"
    tools_file = project / "tools.jsonl"
    if when == "during_model_call":  # b's final answer takes 1.5 s: kill while it is in flight
        _wait_for(
            lambda: any(c["agent"] == "b" and c["phase"] == "start" and c["index"] == 2 for c in _lines(calls_file)),
            proc,
            "b's second model call",
        )
    elif when == "during_tool_call":
        _wait_for(lambda: any(t["phase"] == "start" for t in _lines(tools_file)), proc, "the tool call")
    else:
        _wait_for(lambda: (home / "failpoint.hit").exists(), proc, f"failpoint {failpoints}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed_pid = proc.pid
    run_id = _run_id(home)

    resumed = _edgecrew(crash_env, "resume", run_id)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    return run_id, _lines(calls_file), killed_pid, out


def _check_no_finished_call_repeated(calls: list[dict[str, object]], killed_pid: int) -> None:
    finished_before_kill = {c["step"] for c in calls if c["pid"] == killed_pid and c["phase"] == "end"}
    after = [c for c in calls if c["pid"] != killed_pid and c["phase"] == "start"]
    repeated = [c for c in after if c["step"] in finished_before_kill]
    # A call that ended inside the model but whose step was never recorded may run again; the
    # steps recorded before the kill must not. The failpoint tests kill only at recorded boundaries.
    assert not repeated or all(c["step"] == max(finished_before_kill) for c in repeated), repeated


def _assert_finished(home: Path, run_id: str) -> None:

    with read_store(home / "edgecrew.db") as db:
        status, output = db.execute("SELECT status, output FROM runs WHERE id = ?", (run_id,)).fetchone()
        finished = db.execute(
            "SELECT COUNT(*) FROM events WHERE run_id = ? AND type = 'step_finished'", (run_id,)
        ).fetchone()[0]
        step_outcomes = db.execute(
            "SELECT agent, outcome FROM steps WHERE run_id = ? ORDER BY key", (run_id,)
        ).fetchall()
    assert status == "succeeded"
    assert json.loads(output) == {"verdict": "approve"}
    assert finished == 3
    assert step_outcomes == [("a", "final"), ("b", "final"), ("c", "final")]


@pytest.mark.parametrize("failpoints", ["before_model_call:1", "before_model_call:3", "after_model_call:2"])
def test_kill_at_step_boundaries_then_resume_repeats_nothing(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path, failpoints: str
) -> None:
    run_id, calls, killed, _ = _kill_then_resume(crash_env, edgecrew_home, project_dir, failpoints=failpoints)
    _assert_finished(edgecrew_home, run_id)
    starts = [c for c in calls if c["phase"] == "start"]
    assert len(starts) == EXPECTED_MODEL_CALLS, starts  # killed at a boundary: not one call repeated
    assert len({c["step"] for c in starts}) == EXPECTED_MODEL_CALLS
    tool_starts = [t for t in _lines(project_dir / "tools.jsonl") if t["phase"] == "start"]
    assert len(tool_starts) == 1
    _check_no_finished_call_repeated(calls, killed)


def test_kill_during_model_call_repeats_only_that_call(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path
) -> None:
    run_id, calls, _killed, _ = _kill_then_resume(crash_env, edgecrew_home, project_dir, when="during_model_call")
    _assert_finished(edgecrew_home, run_id)
    starts = [c for c in calls if c["phase"] == "start"]
    steps = [c["step"] for c in starts]
    interrupted = [s for s in set(steps) if steps.count(s) > 1]
    assert len(starts) == EXPECTED_MODEL_CALLS + 1 and len(interrupted) == 1  # only the in-flight call again
    assert str(interrupted[0]).endswith(".m1")  # b's final answer
    tool_starts = [t for t in _lines(project_dir / "tools.jsonl") if t["phase"] == "start"]
    assert len(tool_starts) == 1  # the finished tool call was not repeated


def test_kill_during_tool_call_repeats_only_that_tool(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path
) -> None:
    run_id, calls, killed, _ = _kill_then_resume(crash_env, edgecrew_home, project_dir, when="during_tool_call")
    _assert_finished(edgecrew_home, run_id)
    starts = [c for c in calls if c["phase"] == "start"]
    assert len(starts) == EXPECTED_MODEL_CALLS  # no model call repeated
    tools = _lines(project_dir / "tools.jsonl")
    assert [t["phase"] for t in tools if t["pid"] == killed] == ["start"]
    assert len([t for t in tools if t["phase"] == "start"]) == 2  # the interrupted tool ran once more, to its end


def test_kill_inside_the_combined_write_of_a_call_repeats_only_that_call(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path
) -> None:
    """Killed inside the one transaction that records a call's output with its event (before its commit):
    neither is stored, so the resumed run makes that call once more, and writes its event once."""
    run_id, calls, killed, _ = _kill_then_resume(
        crash_env, edgecrew_home, project_dir, failpoints="call_recorded:2"
    )  # the 2nd recorded call: b's first model call (a's was the 1st)
    _assert_finished(edgecrew_home, run_id)
    starts = [c for c in calls if c["phase"] == "start"]
    steps = [str(c["step"]) for c in starts]
    assert len(starts) == EXPECTED_MODEL_CALLS + 1, starts
    repeated = [s for s in set(steps) if steps.count(s) > 1]
    assert repeated == [steps[1]] and starts[1]["agent"] == "b" and steps[1].endswith(".m0"), starts
    assert [c["step"] for c in calls if c["pid"] == killed and c["phase"] == "end"] == steps[:2]  # it had ended

    with read_store(edgecrew_home / "edgecrew.db") as db:
        model_events = db.execute(
            "SELECT key FROM events WHERE run_id = ? AND type = 'model_called' ORDER BY id", (run_id,)
        ).fetchall()
        journal = db.execute("SELECT key, kind FROM calls WHERE run_id = ? ORDER BY recorded_at", (run_id,)).fetchall()
    assert len(model_events) == EXPECTED_MODEL_CALLS == len({k for (k,) in model_events})  # none written twice
    assert [kind for _, kind in journal] == ["model", "model", "tool", "model", "model"]
    tool_starts = [t for t in _lines(project_dir / "tools.jsonl") if t["phase"] == "start"]
    assert len(tool_starts) == 1  # the tool call came after the kill: run once


def test_interrupted_run_resumes_automatically_when_edgecrew_starts(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path
) -> None:
    first = _killed_after_first_call(crash_env, edgecrew_home)
    # A later, unrelated `edgecrew run` picks the orphan up and finishes it too.
    write(project_dir / "teams" / "solo.yaml", SOLO)
    second = _edgecrew(crash_env, "run", "solo", "second")
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    assert f"Resuming 1 interrupted run(s) in this process: {first}" in out
    _assert_finished(edgecrew_home, first)


def test_orphans_of_another_project_are_reported_not_adopted(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path, tmp_path: Path
) -> None:
    first = _killed_after_first_call(crash_env, edgecrew_home)
    other = tmp_path / "other-project"
    write(other / "edgecrew.yaml", "models:\n  quick: {backend: scripted, replies: [done], cycle: true}\n")
    write(
        other / "teams" / "solo.yaml",
        """
        name: solo
        agents: {a: {model: quick, system: x}}
        graph: {start: a, edges: [{from: a, to: end}]}
    """,
    )
    env_other = {**crash_env, "EDGECREW_PROJECT": str(other)}
    ran = subprocess.run(
        [sys.executable, "-m", "edgecrew", "run", "solo", "x"],
        env=env_other,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    text = " ".join(ran.stdout.split())
    assert f"Run {first} of project {project_dir} was interrupted" in text
    assert "Resuming" not in text  # the other project has neither its model nor its tool
    # `resume` from the other project finds the run's own project and finishes it there.
    resumed = subprocess.run(
        [sys.executable, "-m", "edgecrew", "resume", first], env=env_other, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_finished(edgecrew_home, first)


GATED_TOOLS = (
    TOOLS
    + '''
@tool(risk="risky")
def deploy(target: str) -> str:
    """Deploy (needs a person's approval)."""
    return "deployed " + target
'''
)

GATED = """
name: gated
agents:
  d: {tool: deploy, arguments: {target: prod}}
graph: {start: d, edges: [{from: d, to: end}]}
"""


def test_a_run_answers_at_once_though_the_run_it_adopted_waits_for_an_approval(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path
) -> None:
    """An adopted run that waits for a person is left for later: the new run's JSON comes when it ends."""
    write(project_dir / "tools.py", GATED_TOOLS)
    write(project_dir / "teams" / "gated.yaml", GATED)
    gated = _edgecrew(crash_env, "run", "gated", "ship it")
    _wait_for(lambda: _status(edgecrew_home) == "waiting_approval", gated, "the approval")
    gated.send_signal(signal.SIGKILL)
    gated.wait(timeout=10)
    write(project_dir / "teams" / "solo.yaml", SOLO)
    second = _edgecrew(crash_env, "run", "solo", "second", "--json")
    try:
        out, _ = second.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        second.kill()
        pytest.fail(f"`edgecrew run --json` still waits: {second.communicate()[0]}")
    assert second.returncode == 0, out
    assert json.loads(out.strip().splitlines()[-1])["status"] == "succeeded"


def _status(home: Path) -> str | None:

    if not (home / "edgecrew.db").exists():
        return None
    try:
        with read_store(home / "edgecrew.db") as db:
            row = db.execute("SELECT status FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    except STORE_SQLITE.OperationalError:  # not migrated yet
        return None
    return row[0] if row else None


def test_a_run_whose_model_was_renamed_waits_to_be_resumed_until_it_is_back(
    crash_env: dict[str, str], edgecrew_home: Path, project_dir: Path
) -> None:
    """Resuming without a model the run needs would fail it for good at that step: refused, the run kept."""
    run_id = _killed_after_first_call(crash_env, edgecrew_home)
    write(project_dir / "edgecrew.yaml", PROJECT.replace("  fake:", "  renamed:"))
    refused = subprocess.run(
        [sys.executable, "-m", "edgecrew", "resume", run_id], env=crash_env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "no longer has model 'fake' (agent a)" in refused.stderr + refused.stdout
    assert _status(edgecrew_home) == "running"  # not failed: still resumable
    write(project_dir / "edgecrew.yaml", PROJECT)
    resumed = subprocess.run(
        [sys.executable, "-m", "edgecrew", "resume", run_id], env=crash_env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_finished(edgecrew_home, run_id)
