"""`edgecrew chat`: talk to a team through the real command (typer's runner) on a scripted model, carry
on the session later with --session, list and show sessions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgecrew.cli import app as edgecrew_app
from edgecrew.cli.chat import chat_app
from edgecrew.engine import durable
from edgecrew.settings import reset_settings
from tests.api.test_sessions_api import STRICT  # its run fails (failed_when), its answer says why
from tests.conftest import write

PROJECT = """
models:
  pal-model:
    backend: scripted
    replies: ["noted"]
  refuser:
    backend: scripted
    replies: ["Nothing was done.\\nFailed: the request names no project."]
  planner-model:
    backend: scripted
    replies: [{json: {steps: [look it up, answer]}, delay: 0.6}]
  writer-model:
    backend: scripted
    replies: ["The key is under the mat."]
"""
PAL = """
name: pal
agents:
  buddy: {model: pal-model, system: chat, memory: {recall: 2}}
graph: {start: buddy, edges: [{from: buddy, to: end}]}
"""
# A planner answering in JSON, then a writer answering in words: the chat shows the words only.
PLANNED = """
name: planned
agents:
  planner:
    model: planner-model
    system: plan
    output_schema: {type: object, properties: {steps: {type: array, items: {type: string}}}, required: [steps]}
  writer: {model: writer-model, system: answer}
graph: {start: planner, edges: [{from: planner, to: writer}, {from: writer, to: end}]}
"""


@pytest.fixture
def cli(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "pal.yaml", PAL)
    write(project_dir / "teams" / "strict.yaml", STRICT)
    write(project_dir / "teams" / "planned.yaml", PLANNED)
    reset_settings()
    registered = any(getattr(g, "name", None) == "chat" for g in edgecrew_app.registered_groups)
    if registered:
        yield edgecrew_app
    else:  # until cli/__init__.py registers the group
        app = typer.Typer()
        app.add_typer(chat_app, name="chat")
        yield app
    durable.shutdown()


def test_a_chat_goes_on_in_a_later_command_with_its_turns_as_context(cli: typer.Typer) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["chat", "pal", "-m", "The key is under the mat."])
    assert first.exit_code == 0, first.output
    assert "pal: noted" in first.output
    session = re.search(r"session (s[0-9a-f]+)", first.output)
    assert session is not None
    later = runner.invoke(cli, ["chat", "--session", session.group(1), "-m", "Where is the key?"])
    assert later.exit_code == 0, later.output
    assert "you: The key is under the mat." in later.output  # the recent turns, shown again
    assert later.output.count("pal: noted") == 2  # the earlier answer, then this one
    from edgecrew.bootstrap import bootstrap

    task = bootstrap().store.list_runs(limit=1)[0].task
    assert "user: The key is under the mat.\nassistant: noted" in task and task.endswith("Where is the key?")
    listed = runner.invoke(cli, ["chat", "sessions"])
    assert listed.exit_code == 0 and session.group(1) in listed.output and "The key is under" in listed.output
    other = runner.invoke(cli, ["chat", "sessions", "--team", "nope"])  # it said "no chat sessions yet"
    assert other.exit_code == 0 and "no chat sessions with team 'nope'" in other.output
    assert "session" not in other.output.replace("chat sessions", "")  # no empty table under it
    shown = runner.invoke(cli, ["chat", "show", session.group(1)])
    assert shown.exit_code == 0
    assert [line.split(":")[0] for line in shown.output.splitlines()[1:]] == ["you", "pal", "you", "pal"]


def test_a_message_whose_run_failed_shows_its_answer_and_says_the_run_failed(cli: typer.Typer) -> None:
    """Before: a run that failed with an answer that says why (failed_when) read as answered, exit 0."""
    result = CliRunner().invoke(cli, ["chat", "strict", "-m", "make it so"])
    assert result.exit_code == 1, result.output
    run = re.search(r"run (r[0-9a-f]+) failed: its answer above says why", result.output)
    assert run is not None, result.output
    assert result.output.index("Failed: the request names no project.") < run.start()
    assert "failed_when" not in result.output  # the answer says why; the run's generic error is not repeated
    session = re.search(r"session (s[0-9a-f]+)", result.output)
    assert session is not None
    shown = CliRunner().invoke(cli, ["chat", "show", session.group(1)])
    assert shown.exit_code == 0 and f"Failed: the request names no project. (run {run.group(1)} failed)" in shown.output


def test_the_interactive_loop_reads_lines_until_quit(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["chat", "pal"], input="hello\n/new\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "pal: noted" in result.output and "new session s" in result.output


def test_chat_problems_exit_non_zero(cli: typer.Typer) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["chat", "no-such-team", "-m", "hi"]).exit_code == 1
    assert runner.invoke(cli, ["chat", "--session", "s0000", "-m", "hi"]).exit_code == 1
    assert runner.invoke(cli, ["chat", "start"]).exit_code == 2


def test_a_chat_says_when_its_run_waits_for_a_cluster_worker(cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgecrew run` says a run waits on a cluster's queue with no live worker; `edgecrew chat` printed
    its prompt and sat silent until a worker came."""
    from edgecrew.cli import chat

    said = "no live cluster worker: the run waits on queue edgecrew.cluster.runs"
    bare = chat.runtime

    def clustered(*args: object, **kwargs: object) -> object:
        rt = bare(*args, **kwargs)  # type: ignore[arg-type]
        rt.queue_check = lambda: said
        return rt

    monkeypatch.setattr(chat, "runtime", clustered)
    result = CliRunner().invoke(cli, ["chat", "pal", "-m", "anyone there?"])
    assert result.exit_code == 0, result.output
    assert f"warning: {said}" in result.output and "pal: noted" in result.output


def test_an_unknown_command_is_said_not_sent_to_the_team(cli: typer.Typer) -> None:
    """Before: "/help" (or a mistyped "/qiut") was a message: the team ran on it (platform-copilot
    would build a project under a name the model made up)."""
    from edgecrew.bootstrap import bootstrap

    result = CliRunner().invoke(cli, ["chat", "pal"], input="/help\n/qiut\nhello\n/quit\n")
    assert result.exit_code == 0, result.output
    for typed in ("/help", "/qiut"):
        assert f"unknown command {typed}: /new starts a new session with the same team, /quit leaves" in (
            " ".join(result.output.split())
        )
    assert [run.task for run in bootstrap().store.list_runs(limit=10)] == ["hello"]


GATED = """
  gated:
    backend: scripted
    replies: [{tool: deploy, args: {target: prod}, text: "ship"}, "shipped"]
plugins: [tools.py]
"""
SHIP = """
name: ship
agents:
  op: {model: gated, system: ship it, tools: [deploy]}
graph: {start: op, edges: [{from: op, to: end}]}
"""
DEPLOY = """
from edgecrew import tool

@tool(risk="risky")
def deploy(target: str) -> str:
    \"\"\"Deploy to a target.\"\"\"
    return "deployed " + target
"""


def test_a_message_refused_while_a_run_waits_for_approval_keeps_the_chat_open(
    cli: typer.Typer, project_dir: Path
) -> None:
    """Before: the refusal ("still answering ... waiting_approval") ended the chat, and /new or /quit
    after it were never read."""
    write(project_dir / "edgecrew.yaml", PROJECT.rstrip("\n") + GATED)
    write(project_dir / "tools.py", DEPLOY)
    write(project_dir / "teams" / "ship.yaml", SHIP)
    reset_settings()
    result = CliRunner().invoke(cli, ["chat", "ship"], input="ship it\nand again\n/new\n/quit\n")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "waits for a person's approval of deploy" in said and "is still answering its last message" in said
    assert "new session s" in said  # the lines after the refusal were read


def test_a_message_whose_run_waits_for_approval_names_the_call_and_how_to_decide_it(
    cli: typer.Typer, project_dir: Path
) -> None:
    """Before: "run R waits for an approval (edgecrew approvals list)", naming neither the call nor its id."""
    write(project_dir / "edgecrew.yaml", PROJECT.rstrip("\n") + GATED)
    write(project_dir / "tools.py", DEPLOY)
    write(project_dir / "teams" / "ship.yaml", SHIP)
    reset_settings()
    result = CliRunner().invoke(cli, ["chat", "ship", "-m", "ship it"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert 'deploy {"target": "prod"} (agent op): edgecrew approvals approve a' in said, said
    assert "the answer comes to this session once they are decided" in said


def test_a_chat_shows_the_answer_not_a_planners_json(cli: typer.Typer) -> None:
    """Before: every model call's live text streamed into the chat, so a planner's JSON came first
    (`platform-copilot: {"name": "payments-api", ...` and then the answer)."""
    result = CliRunner().invoke(cli, ["chat", "planned", "-m", "Where is the key?"])
    assert result.exit_code == 0, result.output
    assert "planned: The key is under the mat." in result.output
    assert "steps" not in result.output and "look it up" not in result.output


def test_a_message_no_run_can_take_makes_no_session(cli: typer.Typer, project_dir: Path) -> None:
    """Before: the session was made, then the message refused, and an empty session stayed listed."""
    from edgecrew.engine.sessions import MAX_MESSAGE

    too_long = CliRunner().invoke(cli, ["chat", "pal", "-m", "x" * (MAX_MESSAGE + 1)])
    assert too_long.exit_code == 1 and f"a message is at most {MAX_MESSAGE} characters" in too_long.output
    write(project_dir / "teams" / "desk.yaml", PAL.replace("name: pal", "name: desk\nneeds_project: true"))
    no_project = CliRunner().invoke(cli, ["chat", "desk", "-m", "hello"])
    assert no_project.exit_code == 1
    assert "team 'desk' works in a project (needs_project: true) and none was given" in no_project.output
    listed = CliRunner().invoke(cli, ["chat", "sessions"])
    assert listed.exit_code == 0 and "no chat sessions yet" in listed.output, listed.output
