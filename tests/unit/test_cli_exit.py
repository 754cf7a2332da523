"""The ``edgecrew`` command leaves without tearing the interpreter down (``cli.main``), yet as the
interpreter would: its status, its whole output through a pipe, exit handlers run, threads joined."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _edgecrew(args: list[str], home: Path, prelude: str = "") -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(prelude) + f"\nimport sys\nsys.argv = {['edgecrew', *args]!r}\n"
    script += "from edgecrew.cli import main\nmain()\n"
    env = {**os.environ, "EDGECREW_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)


def test_exit_handlers_run_threads_are_joined_and_the_status_is_kept(tmp_path: Path) -> None:
    prelude = f"""
        import atexit, pathlib, threading, time
        atexit.register(lambda: pathlib.Path({str(tmp_path / "atexit")!r}).write_text("ran"))
        import edgecrew.cli as cli
        def late():
            time.sleep(0.3)
            pathlib.Path({str(tmp_path / "thread")!r}).write_text("done")
        command = cli.dispatch
        def dispatch():
            try:
                command()
            finally:  # started as the command ends: not a daemon, so the interpreter would wait for it
                threading.Thread(target=late).start()
        cli.dispatch = dispatch
    """
    done = _edgecrew(["runs", "show", "r-none"], tmp_path / "home", prelude)
    assert done.returncode == 1, done.stderr
    assert "no run 'r-none'" in done.stdout + done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "done"


def test_a_long_output_reaches_a_pipe_whole(tmp_path: Path) -> None:
    done = _edgecrew(["--help"], tmp_path / "home")
    assert done.returncode == 0, done.stderr
    commands = ["run", "runs", "teams", "serve", "doctor"]
    assert all(f" {name} " in done.stdout for name in commands), done.stdout
    assert done.stdout.rstrip().endswith("╯")  # the last box closed: nothing left in a buffer


def test_sys_exit_values_become_the_status_as_python_gives_them(tmp_path: Path) -> None:
    prelude = """
        import edgecrew.cli as cli
        def dispatch():
            raise SystemExit("a message, not a number")
        cli.dispatch = dispatch
    """
    done = _edgecrew([], tmp_path / "home", prelude)
    assert done.returncode == 1 and done.stderr.strip() == "a message, not a number"
