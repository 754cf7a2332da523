"""What `edgecrew run` imports before its first model call: nothing only some runs need (issue 19's
start-up work; bench/startup.py times it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Imported only by the runs that need them: numpy (voice, memory), the server, httpx (alerts, the
# Prometheus and A2A tools), the alerts service, jinja2 (tool and template agents' templates) and
# jsonschema (a tool or an agent with a JSON Schema; the probe stops before a team load, which still
# imports it: the built-in library's critic has an output_schema).
NOT_ON_THE_RUN_PATH = (
    "numpy",
    "edgecrew.voice.stt",
    "edgecrew.app",
    "uvicorn",
    "jsonschema",
    "httpx",
    "jinja2",
    "edgecrew.ops.alerts",
)

PROBE = f"""
import sys
import edgecrew.cli
from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
rt = bootstrap()
rt.store.get_run  # the store is open (its SQLite connections load sqlite-vec when installed)
with rt.store.engine.connect() as conn:
    conn.exec_driver_sql("SELECT 1")
print(",".join(sorted(m for m in {NOT_ON_THE_RUN_PATH!r} if m in sys.modules)))
"""


def imported(probe: str, tmp_path: Path) -> str:
    """What a fresh interpreter running ``probe`` printed (the modules it found imported)."""
    env = {"EDGECREW_HOME": str(tmp_path / "home"), "EDGECREW_PROJECT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_run_imports_no_numpy_voice_or_server(tmp_path: Path) -> None:
    found = imported(PROBE, tmp_path)
    assert found == "", f"imported on the run path: {found}"


SERVE_PROBE = """
import sys
from edgecrew.app import create_app
create_app()
print(",".join(sorted(m for m in ("a2a", "edgecrew.api.a2a_agents", "numpy") if m in sys.modules)))
"""


def test_a_server_imports_the_a2a_sdk_only_when_called_over_a2a(tmp_path: Path) -> None:
    found = imported(SERVE_PROBE, tmp_path)
    assert found == "", f"imported by `edgecrew serve` at start: {found}"
