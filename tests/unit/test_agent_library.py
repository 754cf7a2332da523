"""The agent library: agents defined once in agents/*.yaml, used by name in teams with per-team
overrides, validated with file:line, listed and shown by the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecrew.bootstrap import bootstrap
from edgecrew.cli import app
from edgecrew.errors import SpecError
from tests.conftest import write

CRITIC = """
name: critic
role: critic
model: local
system: You check an answer and say approve or revise.
limits: {max_steps: 2, max_tokens: 64}
output_schema:
  type: object
  properties: {verdict: {enum: [approve, revise]}, notes: {type: string}}
  required: [verdict, notes]
"""

TEAM = """
name: reviewed
agents:
  writer: {system: write it}
  critic: {use: critic}
  strict:
    use: critic
    system: You are strict. Say revise unless it is perfect.
    limits: {max_tokens: 32}
graph:
  start: writer
  edges:
    - {from: writer, to: critic}
    - {from: critic, to: strict}
    - {from: strict, to: end}
"""


def _project(project: Path, team: str = TEAM, critic: str = CRITIC) -> None:
    write(project / "agents" / "critic.yaml", critic)
    write(project / "teams" / "reviewed.yaml", team)


def test_a_team_uses_a_library_agent_by_name_with_its_own_overrides(project_dir: Path) -> None:
    _project(project_dir)
    spec = bootstrap().load_named_team("reviewed")
    critic, strict = spec.agents["critic"], spec.agents["strict"]
    assert critic.role == "critic" and critic.system.endswith("say approve or revise.")
    assert critic.output_schema is not None and critic.limits.max_tokens == 64
    assert strict.system.startswith("You are strict.") and strict.output_schema == critic.output_schema
    assert (strict.limits.max_tokens, strict.limits.max_steps) == (32, 2)  # limits merged key by key
    # the run's snapshot holds the resolved agents: replaying it never needs the library again
    assert "use" not in spec.raw["agents"]["critic"] and spec.raw["agents"]["strict"]["role"] == "critic"


def test_an_unknown_library_agent_is_named_with_its_line_and_the_known_ones(project_dir: Path) -> None:
    _project(project_dir, TEAM.replace("critic: {use: critic}", "critic: {use: critc}"))
    with pytest.raises(SpecError) as caught:
        bootstrap().load_named_team("reviewed")
    text = str(caught.value)
    assert f"{project_dir / 'teams' / 'reviewed.yaml'}:5: agent 'critic' uses 'critc'" in text
    assert "did you mean 'critic'" in text
    assert len(caught.value.issues) == 1  # nothing else is said of an agent whose definition is unknown


def test_a_library_agent_named_by_its_file_not_its_name_says_which_file_declares_which_name(
    project_dir: Path,
) -> None:
    """agents/reviewer.yaml says `name: gatekeeper`: a team's `use: reviewer` was "not in the agent
    library" with a guess at another agent, and nothing pointed at the file whose name differs."""
    write(project_dir / "agents" / "reviewer.yaml", CRITIC.replace("name: critic", "name: gatekeeper"))
    write(project_dir / "teams" / "reviewed.yaml", TEAM.replace("{use: critic}", "{use: reviewer}"))
    agent_file = project_dir / "agents" / "reviewer.yaml"
    with pytest.raises(SpecError) as caught:
        bootstrap().load_named_team("reviewed")
    [issue] = [i for i in caught.value.issues if "'reviewer'" in i.message]
    assert issue.message == "agent 'critic' uses 'reviewer', which is not in the agent library"
    assert issue.hint == (
        f"{agent_file} declares the name 'gatekeeper': use 'gatekeeper', or set its name: to 'reviewer'"
    )
    shown = CliRunner().invoke(app, ["agents", "show", "reviewer"], env={"COLUMNS": "300"})
    said = " ".join(shown.output.split())
    assert shown.exit_code == 1 and f"{agent_file} declares the name 'gatekeeper'" in said, said
    fixed = TEAM.replace("{use: critic}", "{use: gatekeeper}").replace("use: critic", "use: gatekeeper")
    write(project_dir / "teams" / "reviewed.yaml", fixed)
    assert bootstrap().load_named_team("reviewed").agents["critic"].role == "critic"  # by its name: found


def test_two_library_files_declaring_one_name_are_a_problem_naming_both(project_dir: Path) -> None:
    _project(project_dir)
    second = project_dir / "agents" / "strict-critic.yaml"
    write(second, CRITIC.replace("say approve or revise.", "are strict."))
    result = CliRunner().invoke(app, ["validate"], env={"COLUMNS": "300"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert f"{second}: agent name 'critic' is also used by {project_dir / 'agents' / 'critic.yaml'}" in said, said
    with pytest.raises(SpecError) as caught:  # which file was meant is not for edgecrew to guess
        bootstrap().load_named_team("reviewed")
    assert "agent name 'critic' is also used by" in str(caught.value)
    second.unlink()
    assert bootstrap().load_named_team("reviewed").agents["critic"].system.endswith("say approve or revise.")


def test_a_broken_library_agent_is_reported_in_its_own_file(project_dir: Path) -> None:
    _project(project_dir, critic=CRITIC.replace("max_steps: 2", "max_stpes: 2"))
    result = CliRunner().invoke(app, ["validate"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    agent_file = project_dir / "agents" / "critic.yaml"
    team_file = project_dir / "teams" / "reviewed.yaml"
    assert f"{agent_file}:6: " in result.output and "max_stpes" in result.output
    # the teams that use it name it once each, at their `use:`, instead of repeating its problems
    assert f"{team_file}:5: agent 'critic' uses 'critic', whose own file has 1 problem(s)" in result.output
    assert f"{team_file}:7: agent 'strict' uses 'critic'" in result.output
    # the file's own report, and the first problem in each use: the project's two, and the built-in crew's
    # (a project agent replaces the built-in one of its name in every team, crew included)
    assert result.output.count("max_stpes") == 4
    assert "built-in team crew uses 'critic', which this project's agents/ replaces" in result.output
    _project(project_dir, critic=CRITIC.replace("model: local", "model: nope"))
    result = CliRunner().invoke(app, ["validate"], env={"COLUMNS": "300"})
    assert f"{agent_file}:4: " in result.output and "'nope'" in result.output
    # the file's own fields are an agent's, not a team's
    _project(project_dir, critic=CRITIC.replace("system:", "sytem:").replace("role: critic", "role: critic\nbogus: 1"))
    result = CliRunner().invoke(app, ["validate"], env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert "missing required field 'system' in agent 'critic'" in text, text
    assert "unknown field 'sytem' in agent 'critic' (did you mean 'system'?)" in text
    assert "unknown field 'bogus' in agent 'critic' (allowed fields: arguments, examples," in text
    assert " in team" not in text.split("reviewed.yaml")[0]


def test_agents_list_and_show(project_dir: Path) -> None:
    _project(project_dir)
    runner = CliRunner()
    listed = runner.invoke(app, ["agents", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "critic" in listed.output and "valid" in listed.output
    shown = runner.invoke(app, ["agents", "show", "critic"])
    assert shown.exit_code == 0 and '"verdict"' in shown.output and "{use: critic}" in shown.output
    missing = runner.invoke(app, ["agents", "show", "nobody"])
    assert missing.exit_code == 1 and "no library agent 'nobody' (known: archivist, builder, critic" in missing.output
    valid = runner.invoke(app, ["validate"], env={"COLUMNS": "200"})
    assert valid.exit_code == 0 and "✓ agent critic" in valid.output and "✓ reviewed" in valid.output


def test_the_built_in_library_holds_the_crews_eight_roles_and_each_is_valid(project_dir: Path) -> None:
    rt = bootstrap()
    roles = {"strategist", "builder", "planner", "critic", "synthesizer", "archivist", "execution-builder", "watcher"}
    assert roles <= set(rt.project.agents)
    for name in roles:
        agent = rt.project.load_agent(name, rt.catalog())
        assert agent.system and agent.role.startswith("The ")
