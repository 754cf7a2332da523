"""The ``edgecrew`` command leaves without tearing the interpreter down (``cli.main``), yet as the
interpreter would: its status, its whole output through a pipe, exit handlers run, threads joined."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _edgecrew(
    args: list[str], home: Path, prelude: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(prelude) + f"\nimport sys\nsys.argv = {['edgecrew', *args]!r}\n"
    script += "from edgecrew.cli import main\nmain()\n"
    env = {**os.environ, "EDGECREW_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, cwd=cwd)


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


def test_an_output_that_cannot_be_written_is_an_error_not_a_success(tmp_path: Path) -> None:
    """A full disk under ``> file``: the command says so and exits 120, as Python's own exit does."""
    prelude = """
        import io, sys
        class Full(io.TextIOWrapper):
            def flush(self):
                raise OSError(28, "No space left on device")
        sys.stdout = Full(io.BytesIO(), encoding="utf-8")
    """
    done = _edgecrew(["runs", "list", "--json"], tmp_path / "home", prelude)
    assert done.returncode == 120, (done.returncode, done.stderr)
    assert "could not write the output" in done.stderr and "No space left on device" in done.stderr


def test_a_copy_of_each_database_file_alone_is_whole_after_a_command(tmp_path: Path) -> None:
    """The store's and DBOS's write-ahead logs are folded back into their files at exit (the interpreter's
    teardown did it when it closed their connections): a backup that copies a file alone loses nothing."""
    project, home = tmp_path / "project", tmp_path / "home"
    (project / "teams").mkdir(parents=True)
    (project / "edgecrew.yaml").write_text('models:\n  fake: {backend: scripted, replies: ["hello"]}\n')
    (project / "teams" / "solo.yaml").write_text(
        "name: solo\nagents:\n  a: {model: fake, system: say hi}\ngraph:\n  start: a\n  edges: [{from: a, to: end}]\n"
    )
    done = _edgecrew(["run", "solo", "hi"], home, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (home / "edgecrew.db-wal").exists()
    for name, query in (
        ("edgecrew.db", "SELECT count(*) FROM runs WHERE status = 'succeeded'"),
        ("dbos.sqlite", "SELECT count(*) FROM workflow_status WHERE name = 'edgecrew.team_run'"),
    ):
        copy = tmp_path / f"copy-{name}"
        shutil.copyfile(home / name, copy)  # the file alone, without its -wal
        with contextlib.closing(sqlite3.connect(copy)) as db:
            assert db.execute(query).fetchone() == (1,), name
