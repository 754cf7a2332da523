"""What `edgecrew run` imports before its first model call: nothing only some runs need (issue 19's
start-up work; bench/startup.py times it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import edgecrew.cli
from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
rt = bootstrap()
rt.store.get_run  # the store is open (its SQLite connections load sqlite-vec when installed)
with rt.store.engine.connect() as conn:
    conn.exec_driver_sql("SELECT 1")
print(",".join(sorted(m for m in ("numpy", "edgecrew.voice.stt", "edgecrew.app", "uvicorn") if m in sys.modules)))
"""


def test_a_run_imports_no_numpy_voice_or_server(tmp_path: Path) -> None:
    env = {"EDGECREW_HOME": str(tmp_path / "home"), "EDGECREW_PROJECT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported on the run path: {done.stdout.strip()}"
