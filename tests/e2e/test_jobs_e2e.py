"""Jobs across a kill -9 of the real `edgecrew serve` that admits them (a temp SQLite home).

1. A job waits for its policy's window; the server is killed while it waits; the window is moved to
   open a few seconds later (an applied policy version, computed from the clock); a second server
   starts, the job waits for the window and runs once (its command appends a line to a file).
2. A job is running when its server is killed: the command outlives it; the second server never
   starts it again, waits for the command to end and records the job interrupted.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.ops import Ops
from edgecrew.ops.jobs import MAX_SLEEP_S
from edgecrew.settings import Settings
from tests.api.live import ServerProcess, cli_env
from tests.conftest import read_store, write


def _hms(at: datetime) -> str:
    return at.strftime("%H:%M:%S")


@pytest.fixture
def env(project_dir: Path, edgecrew_home: Path) -> Iterator[dict[str, str]]:
    later = datetime.now(UTC) + timedelta(hours=2)  # closed now, for an hour or more
    write(
        project_dir / "edgecrew.yaml",
        f"""\
        policies:
          window:
            windows: [{{start: "{_hms(later)}", end: "{_hms(later + timedelta(hours=1))}"}}]
        """,
    )
    yield cli_env(project_dir, edgecrew_home)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "edgecrew", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _job(home: Path) -> dict[str, Any]:
    with read_store(home / "edgecrew.db") as db:
        cursor = db.execute("SELECT * FROM jobs")
        [row] = cursor.fetchall()
        return dict(zip([c[0] for c in cursor.description], row, strict=True))


def _events(home: Path, job_id: str) -> list[tuple[str, str | None]]:
    with read_store(home / "edgecrew.db") as db:
        return db.execute("SELECT kind, detail FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()


def _wait(
    predicate: Callable[[], bool],
    what: str,
    server: ServerProcess | None,
    timeout: float = 90,
    home: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if server is not None and server.proc is not None and server.proc.poll() is not None:
            pytest.fail(f"the server exited before {what}:\n{server.output()}")
        time.sleep(0.1)
    said = f"\n{server.output()}" if server else ""
    pytest.fail(f"timed out waiting for {what}{said}" + (f"\n{_durable_state(home)}" if home else ""))


def _durable_state(home: Path) -> str:
    """The job, its events and the durable engine's rows, for a failure to say where the admission stood."""
    lines = [f"job: {_job(home)}", f"events: {_events(home, _job(home)['id'])}"]
    lines += ["policy_versions:", *(f"  {row}" for row in _versions(home))]
    with sqlite3.connect(home / "dbos.sqlite") as db:
        for table, columns in [
            ("workflow_status", "workflow_uuid, status, name, queue_name, executor_id, recovery_attempts, updated_at"),
            ("operation_outputs", "workflow_uuid, function_id, function_name, output, child_workflow_id"),
            ("notifications", "*"),
        ]:
            lines += [f"{table}:", *(f"  {row}" for row in db.execute(f"SELECT {columns} FROM {table}"))]
    return "\n".join(lines)


def _versions(home: Path) -> list[tuple[Any, ...]]:
    """The policy versions on disk, oldest first (policy, version, source, reason, doc, created_at)."""
    with read_store(home / "edgecrew.db") as db:
        return db.execute(
            "SELECT policy, version, source, reason, doc, created_at FROM policy_versions ORDER BY policy, version"
        ).fetchall()


def _kill(server: ServerProcess) -> int:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=30)
    return server.proc.pid


def test_a_waiting_job_survives_kill_9_and_runs_once_when_its_window_opens(
    env: dict[str, str], project_dir: Path, edgecrew_home: Path
) -> None:
    out = project_dir / "ran.txt"
    first = ServerProcess(project_dir, env).start()
    try:
        _cli(env, "jobs", "submit", "--name", "append", "--", "sh", "-c", f"echo ran >> {out}")
        _wait(lambda: _job(edgecrew_home)["state"] == "waiting", "the job to wait for its window", first)
        assert "window: outside its time windows" in _job(edgecrew_home)["reason"]
    finally:
        killed = _kill(first)
    # The window moves: it opens a few seconds from now (a new, applied version of the policy).
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=12)
    settings = Settings(home=edgecrew_home, project=project_dir)
    jobs = Ops.of(bootstrap(settings)).jobs
    jobs.apply_policy("window", {"windows": [{"start": _hms(opens), "end": _hms(opens + timedelta(hours=1))}]},
                      "open it soon", "test")  # fmt: skip
    assert _versions(edgecrew_home)[-1][:3] == ("window", 2, "test"), _versions(edgecrew_home)  # newest, on disk
    second = ServerProcess(project_dir, env).start()
    try:
        # The first server's last check put the job to sleep for up to MAX_SLEEP_S, recorded: the second
        # server's replay sleeps to the same moment before it checks the moved window again.
        assert first.proc is not None and second.proc is not None
        print(f"servers: first pid {first.proc.pid} (killed), second pid {second.proc.pid}")  # in a failure's report
        _wait(lambda: _job(edgecrew_home)["state"] in ("succeeded", "failed"), "the job to end", second,
              timeout=MAX_SLEEP_S + 60, home=edgecrew_home)  # fmt: skip
    finally:
        second.stop()
    job = _job(edgecrew_home)
    assert job["state"] == "succeeded", job
    assert out.read_text().splitlines() == ["ran"]  # ran once
    assert job["allowed_at"] >= opens.timestamp()  # not before its window opened
    assert str(killed) not in job["executor"]  # the second server started it
    kinds = [kind for kind, _ in _events(edgecrew_home, job["id"])]
    assert kinds[:2] == ["submitted", "waiting"] and kinds[-3:] == ["allowed", "started", "finished"]
    assert kinds.count("started") == 1
    shown = _cli(env, "jobs", "show", job["id"])
    assert "succeeded" in shown and "exit code 0" in shown


def test_a_running_job_whose_server_dies_is_interrupted_and_never_started_again(
    env: dict[str, str], project_dir: Path, edgecrew_home: Path
) -> None:
    log = project_dir / "phases.txt"
    (project_dir / "edgecrew.yaml").write_text("policies: {}\n")
    first = ServerProcess(project_dir, env).start()
    try:
        script = f"echo start >> {log}; sleep 15; echo end >> {log}"  # outlives the restart
        _cli(env, "jobs", "submit", "--", "sh", "-c", script)
        # Its pid is stored a commit after the command starts: killed before that, the next server
        # could not know the command still runs.
        _wait(
            lambda: log.exists() and "start" in log.read_text() and _job(edgecrew_home)["pid"] is not None,
            "the command to start",
            first,
        )
        assert _job(edgecrew_home)["state"] == "running"
    finally:
        _kill(first)
    second = ServerProcess(project_dir, env).start()
    try:
        _wait(lambda: _job(edgecrew_home)["state"] not in ("queued", "waiting", "running"), "the job to end", second)
    finally:
        second.stop()
    job = _job(edgecrew_home)
    assert job["state"] == "interrupted", job
    assert "went on to its end" in job["reason"]
    assert log.read_text().splitlines() == ["start", "end"]  # started once, by the first server only
    assert [k for k, _ in _events(edgecrew_home, job["id"])].count("started") == 1
    assert job["pid"] is not None and not _pid_alive(job["pid"])


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_job_submitted_while_no_server_runs_starts_once_a_server_starts(
    env: dict[str, str], project_dir: Path, edgecrew_home: Path
) -> None:
    out = project_dir / "ran.txt"
    (project_dir / "edgecrew.yaml").write_text("policies: {}\n")
    first = ServerProcess(project_dir, env).start()  # registers the job queue, then goes away
    first.stop()
    _cli(env, "jobs", "submit", "--", "sh", "-c", f"echo ran >> {out}")
    second = ServerProcess(project_dir, env).start()
    try:
        _wait(lambda: _job(edgecrew_home)["state"] == "succeeded", "the job to run", second, timeout=60)
    finally:
        second.stop()
    assert out.read_text().splitlines() == ["ran"]
