"""The same durable runs on a real PostgreSQL server: store and DBOS system database on one URL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import pg
from tests.conftest import write
from tests.e2e.test_crash_resume import PROJECT, TEAM, TOOLS, _lines, _wait_for


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pg.postgres_server() as url:
        yield url


@pytest.mark.parametrize(
    ("failpoint", "model_calls"),
    [("after_model_call:2", 4), ("call_recorded:2", 5)],  # the second: inside the call's record, before its commit
)
def test_run_killed_on_postgres_resumes_without_repeating_calls(
    pg_url: str, project_dir: Path, edgecrew_home: Path, failpoint: str, model_calls: int
) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "crashy.yaml", TEAM)
    env = {
        **os.environ,
        "EDGECREW_HOME": str(edgecrew_home),
        "EDGECREW_PROJECT": str(project_dir),
        "EDGECREW_DATABASE_URL": pg_url,
        "CRASH_TOOL_LOG": str(project_dir / "tools.jsonl"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecrew", "run", "crashy", "on postgres"],
        env={**env, "EDGECREW_FAILPOINTS": failpoint},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(lambda: (edgecrew_home / "failpoint.hit").exists(), proc, "failpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        # The killed run, unfinished; the module's database keeps the other case's finished one.
        run_id = conn.execute(
            sa.text("SELECT id FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')")
        ).scalar_one()
        status = conn.execute(
            sa.text("SELECT status FROM dbos.workflow_status WHERE workflow_uuid = :i"), {"i": run_id}
        ).scalar_one()
    assert status == "PENDING"  # the DBOS system tables live on the same server
    assert not (edgecrew_home / "edgecrew.db").exists() and not (edgecrew_home / "dbos.sqlite").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "edgecrew", "resume", run_id], env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with engine.connect() as conn:
        status, output = conn.execute(sa.text("SELECT status, output FROM runs WHERE id = :i"), {"i": run_id}).one()
        finished = conn.execute(
            sa.text("SELECT COUNT(*) FROM events WHERE run_id = :i AND type = 'step_finished'"), {"i": run_id}
        ).scalar_one()
    engine.dispose()
    assert status == "succeeded" and output == {"verdict": "approve"} and finished == 3
    starts = [c for c in _lines(project_dir / "calls.jsonl") if c["phase"] == "start"]
    assert len(starts) == model_calls and len({c["step"] for c in starts}) == 4  # only an unrecorded call again

    shown = subprocess.run(
        [sys.executable, "-m", "edgecrew", "runs", "show", run_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [s["agent"] for s in json.loads(shown.stdout)["steps"]] == ["a", "b", "c"]
