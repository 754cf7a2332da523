"""Warnings of a team spec: what validates but may fail at run time (a node with no default edge, a
condition that cannot hold). The team loads and carries them; a condition reading a nested field its
agent's schema does not declare is an error, like a top-level one."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecrew.errors import SpecError, SpecIssue
from edgecrew.specs.loader import Catalog, load_team
from edgecrew.specs.project import load_project

JUDGE = """\
  judge:
    system: judge
    output_schema:
      type: object
      properties:
        verdict: {enum: [approve, revise]}
        score: {type: number}
        notes: {type: string}
        done: {type: boolean}
        plan: {type: object, properties: {steps: {type: array, items: {type: string}}}}
      required: [verdict, done]
  writer: {system: write}
"""


def team(edges: str) -> str:
    return f"name: t\nagents:\n{JUDGE}graph:\n  start: judge\n  edges:\n{edges}"


def warnings(tmp_path: Path, text: str) -> list[SpecIssue]:
    path = tmp_path / "team.yaml"
    path.write_text(text, encoding="utf-8")
    spec = load_team(path)  # warnings never make a team invalid
    assert all(w.severity == "warning" and w.file == str(path) for w in spec.warnings)
    return list(spec.warnings)


def test_a_node_whose_every_edge_has_a_condition_is_warned_of_at_its_last_edge(tmp_path: Path) -> None:
    edges = """\
    - {from: judge, to: writer, when: "verdict == 'revise'"}
    - {from: judge, to: end, when: "score > 0.5"}
    - {from: writer, to: end}
"""
    (found,) = warnings(tmp_path, team(edges))
    assert found.line == 19  # the last edge from judge: where the default edge goes after
    assert "agent 'judge' has no default edge: edges 1 and 2 all have a condition" in found.message
    assert "the run fails (no edge from 'judge' matched its output)" in found.message  # as the engine says
    assert "without 'when'" in found.hint and "{from: judge, to: end}" in found.hint


def test_an_edge_bounded_by_max_loops_alone_is_no_default(tmp_path: Path) -> None:
    edges = """\
    - {from: judge, to: writer}
    - {from: writer, to: judge, max_loops: 2}
"""
    (found,) = warnings(tmp_path, team(edges))
    assert "agent 'writer' has no default edge: its one edge (edge 2) has max_loops" in found.message


@pytest.mark.parametrize(
    "conditions",
    [
        ["verdict in ['revise']", "verdict == 'approve'"],
        ["verdict == 'revise' or verdict == 'approve'"],
        ["done == true", "done == false"],
    ],
)
def test_conditions_that_cover_every_value_of_a_required_field_need_no_default(
    tmp_path: Path, conditions: list[str]
) -> None:
    edges = "".join(f'    - {{from: judge, to: writer, when: "{c}"}}\n' for c in conditions)
    edges += "    - {from: writer, to: end}\n"
    assert warnings(tmp_path, team(edges)) == []


def test_conditions_that_leave_a_value_out_need_a_default(tmp_path: Path) -> None:
    edges = "".join(
        f'    - {{from: judge, to: writer, when: "{c}"}}\n' for c in ("verdict == 'revise'", "score > 1 or done")
    )
    edges += "    - {from: writer, to: end}\n"
    (found,) = warnings(tmp_path, team(edges))
    assert "agent 'judge' has no default edge" in found.message


def test_an_edge_after_one_without_a_condition_is_never_taken(tmp_path: Path) -> None:
    edges = """\
    - {from: judge, to: end}
    - {from: judge, to: writer, when: "verdict == 'revise'"}
    - {from: writer, to: end}
"""
    (found,) = warnings(tmp_path, team(edges))
    assert found.line == 19 and "edge 2 from 'judge' is never taken: edge 1 before it has no condition" in found.message


@pytest.mark.parametrize(
    ("condition", "said"),
    [
        ("notes == 3", "notes == 3 never holds: notes is a string, 3 an integer"),
        ("verdict == 'aprove'", "verdict == 'aprove' never holds: verdict is one of 'approve', 'revise'"),
        ("verdict != 'aprove'", "verdict != 'aprove' always holds"),
        ("score > 'high'", "score > 'high': score is a number and 'high' a string; such a comparison fails"),
        ("'high' <= score", "'high' <= score: score is a number and 'high' a string"),  # as written
        ("done == 'yes'", "done == 'yes' never holds: done is a boolean, 'yes' a string"),
        ("len(score) > 2", "len(score) of a number fails"),
        ("3 in notes", "'3 in notes': notes is a string, so only a string can be in it"),
        ("verdict in [1, 2]", "verdict in [1, 2] never holds: verdict is a string, [1, 2] an integer"),
        ("plan.steps == 'x'", "plan.steps == 'x' never holds: plan.steps is an array"),
    ],
)
def test_a_condition_comparing_a_field_with_a_value_of_another_type(tmp_path: Path, condition: str, said: str) -> None:
    edges = f'    - {{from: judge, to: writer, when: "{condition}"}}\n    - {{from: judge, to: end}}\n'
    edges += "    - {from: writer, to: end}\n"
    (found,) = warnings(tmp_path, team(edges))
    assert found.line == 18 and found.message.startswith(f"edge 1: {said}"), found.message
    if "aprove" in condition:
        assert found.hint == "did you mean 'approve'?"


@pytest.mark.parametrize(
    "condition",
    [
        "verdict == 'revise' and score < 0.5",
        "score >= 1",  # an integer compares with a number
        "done > 0",  # a boolean is a number to Python
        "notes == null or plan == null",  # a field left out is null, whatever its type
        "'bug' in notes and len(plan.steps) > 2 and plan.steps[0] == 'x'",
        "done == true and not done",
    ],
)
def test_conditions_of_the_right_types_are_not_warned_of(tmp_path: Path, condition: str) -> None:
    edges = f'    - {{from: judge, to: writer, when: "{condition}"}}\n    - {{from: judge, to: end}}\n'
    edges += "    - {from: writer, to: end}\n"
    assert warnings(tmp_path, team(edges)) == []


def test_a_condition_on_free_text_knows_its_text_field(tmp_path: Path) -> None:
    edges = '    - {from: judge, to: writer}\n    - {from: writer, to: end, when: "text == 5"}\n'
    edges += "    - {from: writer, to: end}\n"
    (found,) = warnings(tmp_path, team(edges))
    assert "text == 5 never holds: text is a string" in found.message


def test_a_nested_field_the_schema_does_not_declare_is_an_error(tmp_path: Path) -> None:
    edges = '    - {from: judge, to: writer, when: "len(plan.stpes) > 0"}\n    - {from: judge, to: end}\n'
    edges += "    - {from: writer, to: end}\n"
    path = tmp_path / "team.yaml"
    path.write_text(team(edges), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_team(path)
    (issue,) = info.value.issues
    assert issue.line == 18 and issue.severity == "error"
    assert "reads plan.stpes, which agent 'judge' does not output (it is always null)" in issue.message
    assert "'judge' outputs there: steps" in issue.hint


def test_an_invalid_team_carries_its_warnings_beside_its_errors(tmp_path: Path) -> None:
    edges = '    - {from: judge, to: writer, when: "notes == 3"}\n    - {from: judge, to: end}\n'
    edges += "    - {from: writer, to: nobody}\n"
    path = tmp_path / "team.yaml"
    path.write_text(team(edges), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_team(path)
    assert [i.message for i in info.value.issues] == ["edge 3 goes to unknown agent 'nobody'"]
    assert [w.line for w in info.value.warnings] == [18]
    assert "warning" not in str(info.value) and "1 problem in spec" in str(info.value)  # errors only


@pytest.mark.parametrize(
    "schema",
    [
        "{type: object, properties: [verdict], required: 3}",
        "{type: object, properties: {verdict: {type: 7, enum: x}}, required: verdict}",
        "{type: object, properties: {verdict: {anyOf: [{type: string}, 5]}}}",
    ],
)
def test_a_malformed_output_schema_is_reported_as_such_and_nothing_else(tmp_path: Path, schema: str) -> None:
    text = f"""\
name: t
agents:
  judge: {{system: judge, output_schema: {schema}}}
graph:
  start: judge
  edges:
    - {{from: judge, to: end, when: "verdict == 'x' or len(verdict.a) > 1"}}
    - {{from: judge, to: end}}
"""
    path = tmp_path / "team.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_team(path)
    assert all("output_schema" in i.message for i in info.value.issues), info.value.issues


def test_builtin_teams_have_no_warnings(tmp_path: Path) -> None:
    project = load_project(tmp_path)
    catalog = Catalog(agents=project.agent_docs())  # the crew uses the agent library
    for name, source in project.teams.items():
        assert source.builtin and project.load_source(source, catalog).warnings == (), name


# --- failure edges: checked as edges, left out of routing's warnings ------------------------------


def test_a_failure_edge_is_no_default_and_its_condition_reads_the_failure(tmp_path: Path) -> None:
    edges = """\
    - {from: judge, to: end}
    - {from: judge, to: writer, on_failure: true, when: "outcome == 'invalid_output'"}
    - {from: writer, to: end}
"""
    assert warnings(tmp_path, team(edges)) == []  # neither "never taken" (after the default) nor a type warning
    spec = load_team(tmp_path / "team.yaml")
    (failure,) = [e for e in spec.graph.edges if e.on_failure]
    assert failure.label() == "judge -> writer on failure when outcome == 'invalid_output'"


@pytest.mark.parametrize(
    ("edge", "said"),
    [
        ("{from: [judge, writer], to: end, on_failure: true}", "edge 1 is a failure edge from several agents"),
        ("{from: judge, to: end, on_failure: true}", "edge 1 is a failure edge to 'end'"),
        (
            "{from: judge, to: writer, on_failure: true, when: \"verdict == 'revise'\"}",
            "edge 1: condition \"verdict == 'revise'\" reads verdict, which agent 'judge' does not output",
        ),
    ],
)
def test_a_failure_edge_that_cannot_work_is_an_error(tmp_path: Path, edge: str, said: str) -> None:
    text = team(f"    - {edge}\n    - {{from: judge, to: writer}}\n    - {{from: writer, to: end}}\n")
    path = tmp_path / "team.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_team(path)
    messages = [i.message for i in info.value.issues]
    assert any(said in m for m in messages), messages
    if "reads verdict" in said:
        assert "a failure edge's condition reads the failure: error, outcome" in info.value.issues[0].hint


def test_a_failure_handler_may_read_the_failure_of_the_agent_it_handles(tmp_path: Path) -> None:
    text = """\
name: t
agents:
  a: {system: answer}
  note: {template: "a failed: {{ outputs.a.outcome }} ({{ outputs.a.error }})"}
graph:
  start: a
  edges:
    - {from: a, to: end}
    - {from: a, to: note, on_failure: true}
    - {from: note, to: end}
"""
    assert warnings(tmp_path, text) == []  # loads: a may have output its failure
    path = tmp_path / "team.yaml"
    path.write_text(text.replace("    - {from: a, to: note, on_failure: true}\n", "    - {from: a, to: note}\n"))
    with pytest.raises(SpecError, match=r"reads outputs\.a\.outcome, which agent 'a' does not output"):
        load_team(path)  # without a failure edge, a outputs only its text


@pytest.mark.parametrize(
    ("failed_when", "said"),
    [
        ("verdict ==", "failed_when: "),
        ("verdit == 'revise'", "failed_when reads verdit, which the answer (agent 'judge') does not have"),
    ],
)
def test_a_failed_when_that_cannot_be_read_is_an_error(tmp_path: Path, failed_when: str, said: str) -> None:
    text = team("    - {from: judge, to: writer}\n    - {from: writer, to: end}\n")
    path = tmp_path / "team.yaml"
    path.write_text(text.replace("graph:", f'output: judge\nfailed_when: "{failed_when}"\ngraph:', 1))
    with pytest.raises(SpecError) as info:
        load_team(path)
    (issue,) = info.value.issues
    assert issue.message.startswith(said) and issue.line == 16, (issue.message, issue.line)
