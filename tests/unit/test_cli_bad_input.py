"""The CLI given odd but plausible input: a clear error (exit 1 or 2), never a traceback, nothing half-done."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecrew.cli import app
from edgecrew.engine import durable

runner = CliRunner()


@pytest.fixture(autouse=True)
def _engine(project_dir: Path) -> Iterator[None]:
    yield
    durable.shutdown()


def test_a_key_named_with_brackets_is_shown_and_listed_as_written() -> None:
    made = runner.invoke(app, ["keys", "create", "[/]k"])
    assert made.exit_code == 0, made.output
    assert "([/]k)" in made.output and made.output.strip().splitlines()[-1].startswith("ec_")  # the secret
    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0 and "[/]k" in listed.output, listed.output
    key_id = made.output.split("created key ")[1].split()[0]
    revoked = runner.invoke(app, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0 and "([/]k)" in revoked.output, revoked.output


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "list", "--limit", "99999999999999999999"],
        ["runs", "list", "--limit", "0"],
        ["routines", "runs", "r1", "--limit", "-5"],
        ["models", "bench", "--runs", "0"],
        ["serve", "--port", "99999"],
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_option(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Invalid value for" in result.output, result.output


def test_serve_on_a_port_in_use_says_so_before_starting_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}: another program is using it" in result.output
    assert "serving on" not in result.output


def test_feedback_export_to_a_path_it_cannot_write_says_why(tmp_path: Path) -> None:
    for target, why in [(tmp_path / "no" / "such" / "f.jsonl", "No such file"), (tmp_path, "Is a directory")]:
        result = runner.invoke(app, ["feedback", "export", "-o", str(target)])
        assert result.exit_code == 1 and f"cannot write {target}" in result.output and why in result.output


def test_init_on_a_file_or_where_it_cannot_write_leaves_nothing_half_made(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = runner.invoke(app, ["init", str(afile)])
    assert result.exit_code == 1 and "is a file, not a directory" in result.output, result.output
    target = tmp_path / "p"
    (target / "teams").mkdir(parents=True)
    (target / "teams" / "example.yaml").mkdir()  # in the way of the second file
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 1 and "already exists" in result.output, result.output
    (target / "teams" / "example.yaml").rmdir()
    (target / "teams").rmdir()
    (target / "teams").write_text("not a folder")  # the second file cannot be written, after the first
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 1 and "cannot write the project" in result.output, result.output
    assert not (target / "edgecrew.yaml").exists()  # taken back: `init` again starts clean


def test_a_damaged_or_unreachable_database_is_named_not_a_traceback(
    edgecrew_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecrew.settings import reset_settings

    edgecrew_home.mkdir(parents=True, exist_ok=True)
    (edgecrew_home / "edgecrew.db").write_text("garbage")
    result = runner.invoke(app, ["runs", "list"])
    assert result.exit_code == 1, result.output
    assert "cannot use the store at sqlite:///" in result.output and "file is not a database" in result.output
    monkeypatch.setenv("EDGECREW_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:1/x")
    reset_settings()
    result = runner.invoke(app, ["runs", "list"])
    assert result.exit_code == 1 and "cannot use the store at postgresql://nobody:***@127.0.0.1:1/x" in result.output
    assert "secret" not in result.output and "edgecrew doctor" in result.output
    monkeypatch.setenv("EDGECREW_DATABASE_URL", "mysql://x")
    reset_settings()
    result = runner.invoke(app, ["runs", "list"])
    assert result.exit_code != 0 and "EDGECREW_DATABASE_URL" in result.output, result.output


def test_a_damaged_durable_engine_database_is_named(edgecrew_home: Path) -> None:
    assert runner.invoke(app, ["runs", "list"]).exit_code == 0  # the store made
    (edgecrew_home / "dbos.sqlite").write_text("garbage")
    result = runner.invoke(app, ["run", "plan-write-review", "x"])
    assert result.exit_code == 1, result.output
    assert "cannot use the durable engine's database at sqlite:///" in result.output


def test_text_that_is_not_utf8_is_refused_naming_where(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from edgecrew.cli import dispatch

    monkeypatch.setattr("sys.argv", ["edgecrew", "run", "trio", "bad\udcffbyte"])  # how Python keeps such bytes
    with pytest.raises(SystemExit) as stopped:
        dispatch()
    assert stopped.value.code == 2 and "argument 3 (bad\\xffbyte) is not valid UTF-8" in capsys.readouterr().err
    assert runner.invoke(app, ["projects", "create", "main"]).exit_code == 0
    piped = runner.invoke(app, ["projects", "case-file", "main", "--append", "-"], input=b"\xff\xfe")
    assert piped.exit_code == 1 and "stdin is not UTF-8 text" in piped.output, piped.output
    latin = tmp_path / "plan.txt"
    latin.write_bytes(b"caf\xe9")
    written = runner.invoke(app, ["projects", "artifacts", "write", "main", "plan", "--file", str(latin)])
    assert written.exit_code == 1 and "plan.txt: cannot read it (it is not UTF-8 text)" in written.output


def test_a_project_directory_that_is_not_there_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in -p is not an empty project (whose built-in teams would answer 'no team')."""
    from edgecrew.settings import reset_settings

    missing = tmp_path / "typo"
    result = runner.invoke(app, ["run", "trio", "x", "-p", str(missing)])
    assert result.exit_code == 1 and f"the project directory {missing} does not exist" in result.output
    monkeypatch.setenv("EDGECREW_PROJECT", str(missing))
    reset_settings()
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2 and f"{missing} does not exist" in result.output and "None" not in result.output


def test_chat_with_nothing_to_say_makes_no_session() -> None:
    result = runner.invoke(app, ["chat", "twin", "-m", "   "])
    assert result.exit_code == 2 and "--message is empty" in result.output, result.output
    listed = runner.invoke(app, ["chat", "sessions"])
    assert listed.exit_code == 0 and "no chat sessions yet" in listed.output, listed.output
