"""Team YAML → domain objects, and every kind of spec error reported with its line and a fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.domain.specs import END, Limits
from edgecrew.errors import SpecError, SpecIssue
from edgecrew.specs.loader import Catalog, build_team, load_team
from edgecrew.specs.yamlsrc import parse_yaml

CATALOG = Catalog(
    tools=frozenset({"files.read", "files.write"}),
    models=frozenset({"local", "gemma"}),
    normalize_tool=str.lower,
)

VALID = """\
name: research-team
description: Plan, research in parallel, merge, review.
agents:
  planner:
    role: planner
    system: Break the task into steps.
    output_schema:
      type: object
      properties:
        steps: {type: array, items: {type: string}}
      required: [steps]
    limits: {max_steps: 2, max_tokens: 128, timeout_s: 30}
  web:
    system: Search.
    model: gemma
    tools: [Files.Read]
  docs:
    system: Read the docs.
    tools: [files.read, files.write]
  merger:
    system: Merge the findings.
    plan_first: false
  critic:
    system: Judge the result.
    output_schema:
      type: object
      properties:
        verdict: {enum: [approve, revise]}
        score: {type: number}
      required: [verdict]
graph:
  start: planner
  edges:
    - {from: planner, to: [web, docs], when: "len(steps) > 0"}
    - from: [web, docs]
      to: merger
    - {from: merger, to: critic}
    - {from: critic, to: merger, when: "verdict == 'revise' and score < 0.5", max_loops: 3}
    - {from: critic, to: end}
limits: {max_visits: 20}
"""


def write(tmp_path: Path, text: str, name: str = "team.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, catalog: Catalog | None = CATALOG) -> list[SpecIssue]:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_team(path, catalog)
    assert all(issue.file == str(path) for issue in info.value.issues)
    return info.value.issues


def only(tmp_path: Path, text: str, catalog: Catalog | None = CATALOG) -> SpecIssue:
    issues = problems(tmp_path, text, catalog)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


# --- a valid team ------------------------------------------------------------------------------------


def test_valid_team_loads_into_domain_objects(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    spec = load_team(path, CATALOG)

    assert (spec.name, spec.description, spec.max_visits, spec.source) == (
        "research-team",
        "Plan, research in parallel, merge, review.",
        20,
        str(path),
    )
    assert list(spec.agents) == ["planner", "web", "docs", "merger", "critic"]
    planner, web, docs, merger = (spec.agents[n] for n in ("planner", "web", "docs", "merger"))
    assert planner.name == "planner" and planner.role == "planner" and planner.model == "local"
    assert planner.limits == Limits(max_steps=2, max_tokens=128, timeout_s=30.0)
    assert isinstance(planner.limits.timeout_s, float)
    assert planner.output_schema is not None and planner.output_schema["required"] == ["steps"]
    assert web.model == "gemma" and web.tools == ("files.read",)  # normalized by the catalog
    assert docs.tools == ("files.read", "files.write")
    assert web.limits == Limits() and web.plan_first is True and web.output_schema is None
    assert merger.plan_first is False

    graph = spec.graph
    assert graph.start == "planner"
    assert [(e.sources, e.targets, e.max_loops, e.index) for e in graph.edges] == [
        (("planner",), ("web", "docs"), None, 0),
        (("web", "docs"), ("merger",), None, 1),
        (("merger",), ("critic",), None, 2),
        (("critic",), ("merger",), 3, 3),
        (("critic",), (END,), None, 4),
    ]
    assert graph.edges[1].is_join and not graph.edges[0].is_join
    assert graph.edges[1].label() == "[web, docs] -> merger"
    fan_out, loop = graph.edges[0].when, graph.edges[3].when
    assert fan_out is not None and fan_out.names == {"steps"}
    assert loop is not None and loop.source == "verdict == 'revise' and score < 0.5"
    assert loop.evaluate({"verdict": "revise", "score": 0.2}) is True
    assert loop.evaluate({"verdict": "revise", "score": 0.9}) is False
    assert [e.index for e in graph.outgoing("critic")] == [3, 4]


def test_raw_snapshot_round_trips_through_json(tmp_path: Path) -> None:
    spec = load_team(write(tmp_path, VALID), CATALOG)
    assert team_from_snapshot(spec.raw, source=spec.source) == spec
    snapshot = json.loads(json.dumps(spec.raw))  # runs store the snapshot as JSON
    rebuilt = team_from_snapshot(snapshot)
    assert rebuilt.source == "<snapshot>"
    assert rebuilt.agents == spec.agents and rebuilt.graph == spec.graph
    assert snapshot["agents"]["web"]["tools"] == ["files.read"]  # the registered name, not "Files.Read"
    assert snapshot["graph"]["edges"][1]["from"] == ["web", "docs"]


def test_builtin_team_loads() -> None:
    import edgecrew

    path = Path(edgecrew.__file__).parent / "teams" / "plan-write-review.yaml"
    spec = load_team(path, Catalog(models=frozenset({"local"})))
    assert spec.graph.edges[2].max_loops == 2


def test_without_a_catalog_tools_and_models_are_not_checked(tmp_path: Path) -> None:
    text = VALID.replace("model: gemma", "model: nowhere").replace("[Files.Read]", "[made.up]")
    spec = load_team(write(tmp_path, text))
    assert spec.agents["web"].model == "nowhere" and spec.agents["web"].tools == ("made.up",)


def test_yaml_scalar_forms_become_plain_values(tmp_path: Path) -> None:
    text = VALID.replace("plan_first: false", "plan_first: *off").replace(
        "    model: gemma\n",
        "    model: gemma\n    plan_first: &off false\n    limits: {max_tokens: 0x100}\n",
    )
    spec = load_team(write(tmp_path, text), CATALOG)
    assert spec.agents["web"].plan_first is False and spec.agents["merger"].plan_first is False
    assert spec.agents["web"].limits.max_tokens == 256
    assert type(spec.raw["agents"]["web"]["plan_first"]) is bool


def test_inline_team_reports_lines_of_the_enclosing_file() -> None:
    text = "name: project\nteams:\n  - name: inline\n    agents:\n      a: {system: hi}\n    graph: {start: b}\n"
    with pytest.raises(SpecError) as info:
        build_team(parse_yaml(text, "edgecrew.yaml"), "edgecrew.yaml", None, ("teams", 0))
    assert [(i.file, i.line) for i in info.value.issues] == [("edgecrew.yaml", 6)]
    assert info.value.issues[0].message == "start node 'b' is not an agent of this team"
    assert info.value.issues[0].hint == "known: a"


def test_inline_teams_keyed_by_name_are_refused_with_how_to_write_the_list(tmp_path: Path) -> None:
    from edgecrew.specs.project import load_project

    (tmp_path / "edgecrew.yaml").write_text("models: {}\nteams:\n  mine:\n    agents: {a: {system: hi}}\n")
    with pytest.raises(SpecError) as info:
        load_project(tmp_path)
    [issue] = info.value.issues
    assert issue.line == 2 and "teams is a list" in issue.message and "- name: my-team" in issue.message


# --- one error at a time -----------------------------------------------------------------------------

MINI = """\
name: mini
agents:
  writer:
    system: Write.
  critic:
    system: Judge.
    output_schema:
      type: object
      properties:
        verdict: {enum: [approve, revise]}
graph:
  start: writer
  edges:
    - {from: writer, to: critic}
    - {from: critic, to: writer, when: "verdict == 'revise'", max_loops: 2}
    - {from: critic, to: end}
"""


def test_mini_is_valid(tmp_path: Path) -> None:
    assert load_team(write(tmp_path, MINI), CATALOG).name == "mini"


@pytest.mark.parametrize(
    ("old", "new", "line", "message", "hint"),
    [
        # YAML syntax
        (
            "{from: writer, to: critic}",
            "{from: writer, to: critic",
            15,
            "YAML syntax error",
            "closing brackets",
        ),
        ("    system: Judge.", "   system: Judge.", 7, "YAML syntax error", "indentation"),
        ("  critic:\n", "  writer:\n", 5, "duplicate key", "remove or rename the duplicate key"),
        # unknown fields
        ("    system: Write.", "    sytem: Write.", 4, "unknown field 'sytem' in agents.writer", None),
        (
            "    - {from: critic, to: end}",
            "    - {from: critic, to: end, if: done}",
            16,
            "unknown field 'if' in graph.edges.2",
            "did you mean 'when'?",
        ),
        (
            "graph:\n  start",
            "graph:\n  strat: x\n  start",
            12,
            "unknown field 'strat' in graph",
            "did you mean 'start'?",
        ),
        (
            "name: mini\n",
            "name: mini\nlimits: {max_visit: 3}\n",
            2,
            "unknown field 'max_visit' in limits",
            "did you mean 'max_visits'?",
        ),
        (
            "    system: Judge.\n",
            "    system: Judge.\n    limits: {max_step: 3}\n",
            7,
            "unknown field 'max_step' in agents.critic.limits",
            "did you mean 'max_steps'?",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    colour: red",
            5,
            "unknown field 'colour' in agents.writer",
            "allowed fields: arguments, examples, files, input, limits, memory, model, on_denied, output_schema, "
            "plan_first, role, system, temperature, template, tool, tools, tools_per_step",
        ),
        # wrong types
        (
            "    system: Write.",
            "    system: Write.\n    limits: {max_steps: '5'}",
            5,
            "agents.writer.limits.max_steps: expected a whole number, got str '5'",
            "without quotes",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    plan_first: 'no'",
            5,
            "agents.writer.plan_first: expected true or false, got str 'no'",
            "write true or false",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    tools: files.read",
            5,
            "agents.writer.tools: expected a list, got str 'files.read'",
            "write a list like [a, b]",
        ),
        (
            "    system: Write.",
            "    system: 42",
            4,
            "agents.writer.system: expected text, got int 42",
            "put the value in quotes",
        ),
        (
            "{from: writer, to: critic}",
            "{from: 7, to: critic}",
            14,
            "graph.edges.0.from: expected an agent name or a list of agent names",
            "from: [writer, critic]",
        ),
        (
            "{from: writer, to: critic}",
            "{from: writer, to: [critic, 3]}",
            14,
            "graph.edges.0.to.1: expected an agent name (text)",
            "put the value in quotes",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    limits: {max_steps: 0}",
            5,
            "agents.writer.limits.max_steps: Input should be greater than or equal to 1",
            "change 'max_steps'",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    temperature: 2.5",
            5,
            "agents.writer.temperature: Input should be less than or equal to 2",
            "change 'temperature'",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    temperature: warm",
            5,
            "agents.writer.temperature: expected a number, got str 'warm'",
            None,
        ),
        (
            "max_loops: 2",
            "max_loops: 0",
            15,
            "graph.edges.1.max_loops: Input should be greater than or equal to 1",
            "change 'max_loops'",
        ),
        (
            "    system: Write.\n",
            "    role: writer\n",
            3,
            "missing required field 'system' in agents.writer",
            "add 'system: ...' under agents.writer",
        ),
        # references to things that do not exist
        (
            "start: writer",
            "start: writr",
            12,
            "start node 'writr' is not an agent of this team",
            "did you mean 'writer'?",
        ),
        (
            "{from: writer, to: critic}",
            "{from: writer, to: critik}",
            14,
            "edge 1 goes to unknown agent 'critik'",
            "did you mean 'critic'?",
        ),
        (
            "{from: critic, to: end}",
            "{from: critic, to: ennd}",
            16,
            "edge 3 goes to unknown agent 'ennd'",
            "did you mean 'end'?",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    tools: [files.raed]",
            5,
            "agent 'writer' allows unknown tool 'files.raed'",
            "did you mean 'files.read'?",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    model: gemmma",
            5,
            "agent 'writer' uses unknown model 'gemmma'",
            "did you mean 'gemma'?",
        ),
        (
            "    system: Write.",
            "    system: Write.\n    model: gpt-9",
            5,
            "agent 'writer' uses unknown model 'gpt-9'",
            "known: gemma, local",
        ),
        # output schemas
        (
            "verdict: {enum: [approve, revise]}",
            "verdict: {type: strng}",
            10,
            "output_schema is not a valid JSON Schema",
            "json-schema.org",
        ),
        (
            "      type: object\n",
            "      type: array\n",
            7,
            "agent 'critic' output_schema must describe an object",
            "set 'type: object'",
        ),
        # conditions
        (
            "when: \"verdict == 'revise'\"",
            "when: \"verdict = 'revise'\"",
            15,
            "edge 2: cannot parse condition",
            "verdict == 'revise'",
        ),
        (
            "when: \"verdict == 'revise'\"",
            "when: \"__import__('os').system('ls')\"",
            15,
            "edge 2: only len() may be called in a condition",
            "e.g. verdict == 'revise'",
        ),
        (
            "when: \"verdict == 'revise'\"",
            "when: \"verdikt == 'revise'\"",
            15,
            "edge 2: condition \"verdikt == 'revise'\" reads verdikt, which agent 'critic' does not output",
            "'critic' outputs: verdict",
        ),
        (
            "{from: writer, to: critic}",
            '{from: writer, to: critic, when: "score > 1"}',
            14,
            "reads score, which agent 'writer' does not output",
            "agent 'writer' has no output_schema",
        ),
        # graph shape
        (
            "    - {from: critic, to: end}\n",
            "    - {from: critic, to: end}\n    - {from: [writer, critic], to: [critic, end]}\n",
            17,
            "edge 4 is both a join and a fan-out",
            "split it",
        ),
        (
            "    - {from: critic, to: end}\n",
            "    - {from: critic, to: end}\n    - {from: end, to: writer}\n",
            17,
            "edge 4 leaves 'end', the terminal node",
            "start the edge from an agent",
        ),
        (
            "    - {from: writer, to: critic}\n",
            "    - {from: writer, to: critic}\n    - {from: writer, to: []}\n",
            15,
            "edge 2 needs at least one 'from' and one 'to'",
            "name an agent in both",
        ),
        (
            "    - {from: writer, to: critic}\n",
            "",
            5,
            "agent 'critic' is unreachable from start 'writer'",
            "add an edge to 'critic'",
        ),
        (", max_loops: 2}", "}", 15, "cycle without a bound: writer -> critic -> writer", "add max_loops"),
        (
            "{from: critic, to: end}",
            "{from: critic, to: critic}",
            16,
            "cycle without a bound: critic -> critic",
            "add max_loops",
        ),
        # names
        ("name: mini", "name: my team", 1, "team name 'my team' is not a valid name", "letters, digits"),
        ("  critic:\n", "  end:\n", 5, "agent name 'end' is not allowed", "'end' is reserved"),
    ],
)
def test_each_error_names_its_line_and_a_fix(
    tmp_path: Path, old: str, new: str, line: int, message: str, hint: str | None
) -> None:
    assert old in MINI
    text = MINI.replace(old, new, 1)
    issues = problems(tmp_path, text)
    found = [i for i in issues if message in i.message]
    assert found, [str(i) for i in issues]
    assert found[0].line == line, str(found[0])
    if hint is not None:
        assert hint in found[0].hint, str(found[0])


def test_misspelled_field_reports_both_the_typo_and_the_missing_field(tmp_path: Path) -> None:
    issues = problems(tmp_path, MINI.replace("    system: Write.", "    sytem: Write."))
    assert [(i.line, i.message, i.hint) for i in issues] == [
        (3, "missing required field 'system' in agents.writer", "add 'system: ...' under agents.writer"),
        (4, "unknown field 'sytem' in agents.writer", "did you mean 'system'?"),
    ]


def test_unknown_field_hint_follows_the_agent_not_a_field_of_the_same_name(tmp_path: Path) -> None:
    # An agent called "limits" must not make the loader look for LimitsDoc fields.
    text = MINI.replace("critic", "limits").replace("    system: Judge.", "    system: Judge.\n    tooles: [x]")
    issue = only(tmp_path, text, None)
    assert (issue.line, issue.message, issue.hint) == (
        7,
        "unknown field 'tooles' in agents.limits",
        "did you mean 'tools'?",
    )


def test_synonyms_suggest_our_field_name(tmp_path: Path) -> None:
    issues = problems(tmp_path, MINI.replace("    system: Write.", "    prompt: Write."))
    assert ("unknown field 'prompt' in agents.writer", "did you mean 'system'?") in [
        (i.message, i.hint) for i in issues
    ]


def test_invalid_schema_points_at_the_bad_keyword(tmp_path: Path) -> None:
    text = MINI.replace("        verdict: {enum: [approve, revise]}", "        verdict:\n          type: strng")
    issue = only(tmp_path, text)
    assert issue.line == 11
    assert issue.message == (
        "agent 'critic' output_schema is not a valid JSON Schema: "
        "'strng' is not valid under any of the given schemas (at properties/verdict/type)"
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "the file is empty"),
        ("- a\n- b\n", 1, "a team must be a mapping"),
        ("name: x\nagents: {}\ngraph: {start: a}\n", 2, "the team has no agents"),
        ("name: x\nagents:\n  a: {system: hi}\n", 1, "missing required field 'graph' in team"),
        ("name: x\nagents:\n  a: null\ngraph: {start: a}\n", 3, "agents.a: expected a mapping, got nothing"),
    ],
)
def test_documents_of_the_wrong_shape(tmp_path: Path, text: str, line: int | None, message: str) -> None:
    issue = only(tmp_path, text)
    assert issue.line == line
    assert issue.message.startswith(message), issue.message
    assert issue.hint


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_team(tmp_path / "nope.yaml")
    assert info.value.issues[0].message.startswith("cannot read file")


# --- many errors at once -----------------------------------------------------------------------------

BROKEN = """\
name: broken
agents:
  writer:
    system: Write.
    model: lokal
    tools: [files.reed]
    limits: {max_stepz: 3}
  critic:
    system: Judge.
    output_schema: {type: object, properties: {verdict: {type: string}}}
  orphan:
    system: Nobody calls me.
graph:
  start: writer
  edges:
    - {from: writer, to: critic}
    - {from: critic, to: writer, when: "verdikt == 'revise'"}
    - {from: critic, to: edn}
"""


def test_every_shape_error_is_reported_at_once(tmp_path: Path) -> None:
    # max_stepz makes the writer's limits untrusted, which no meaning check reads: they all still run.
    issues = problems(tmp_path, BROKEN)
    assert [(i.line, i.message) for i in issues] == [
        (5, "agent 'writer' uses unknown model 'lokal'"),
        (6, "agent 'writer' allows unknown tool 'files.reed'"),
        (7, "unknown field 'max_stepz' in agents.writer.limits"),
        (11, "agent 'orphan' is unreachable from start 'writer'"),
        (17, "edge 2: condition \"verdikt == 'revise'\" reads verdikt, which agent 'critic' does not output"),
        (17, "cycle without a bound: writer -> critic -> writer"),
        (18, "edge 3 goes to unknown agent 'edn'"),
    ]


def test_an_invalid_team_name_is_reported_with_problems_no_repair_gets_past(tmp_path: Path) -> None:
    messages = [i.message for i in problems(tmp_path, 'name: "bad name!"\nagents: {}\n')]
    assert messages[0] == "team name 'bad name!' is not a valid name", messages  # not in a second round
    assert "the team has no agents" in messages and "missing required field 'graph' in team" in messages


def test_every_meaning_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN.replace("max_stepz", "max_steps"), "broken.yaml")
    with pytest.raises(SpecError) as info:
        load_team(path, CATALOG)
    issues = info.value.issues
    assert [(i.line, i.message) for i in issues] == [
        (5, "agent 'writer' uses unknown model 'lokal'"),
        (6, "agent 'writer' allows unknown tool 'files.reed'"),
        (11, "agent 'orphan' is unreachable from start 'writer'"),
        (17, "edge 2: condition \"verdikt == 'revise'\" reads verdikt, which agent 'critic' does not output"),
        (17, "cycle without a bound: writer -> critic -> writer"),
        (18, "edge 3 goes to unknown agent 'edn'"),
    ]
    assert all(i.hint for i in issues)
    text = str(info.value)
    assert text.startswith("6 problems in spec:")
    assert f"{path}:5: agent 'writer' uses unknown model 'lokal' (did you mean 'local'?)" in text


# --- shape and meaning errors together ---------------------------------------------------------------

TANGLED = """\
name: tangled
agents:
  writer:
    system: Write.
    limts: {max_steps: 3}
    tools: [files.raed]
  critic:
    system: Judge.
    model: gpt-9
graph:
  start: writer
  edges:
    - {from: writer, to: critic}
    - {from: critic, to: reviewer}
"""


def test_an_unknown_field_does_not_hide_the_meaning_errors(tmp_path: Path) -> None:
    issues = problems(tmp_path, TANGLED)
    assert [(i.line, i.message, i.hint) for i in issues] == [
        (5, "unknown field 'limts' in agents.writer", "did you mean 'limits'?"),
        (6, "agent 'writer' allows unknown tool 'files.raed'", "did you mean 'files.read'?"),
        (9, "agent 'critic' uses unknown model 'gpt-9'", "known: gemma, local"),
        (14, "edge 2 goes to unknown agent 'reviewer'", "known: writer, critic, 'end'"),
    ]


def test_a_wrong_typed_leaf_and_a_meaning_error_are_reported_together(tmp_path: Path) -> None:
    text = MINI.replace("    system: Write.", "    system: Write.\n    plan_first: 'no'\n    model: gemmma")
    issues = problems(tmp_path, text)
    assert [(i.line, i.message) for i in issues] == [
        (5, "agents.writer.plan_first: expected true or false, got str 'no'"),
        (6, "agent 'writer' uses unknown model 'gemmma'"),
    ]


def test_inline_team_with_shape_and_meaning_errors_keeps_the_enclosing_lines() -> None:
    text = "teams:\n  - name: inline\n    agents:\n      a: {system: hi, colour: red}\n    graph: {start: b}\n"
    with pytest.raises(SpecError) as info:
        build_team(parse_yaml(text, "edgecrew.yaml"), "edgecrew.yaml", None, ("teams", 0))
    assert [(i.line, i.message) for i in info.value.issues] == [
        (4, "unknown field 'colour' in agents.a"),
        (5, "start node 'b' is not an agent of this team"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "shape", "absent"),
    [
        # a misspelt graph field: dropping it would leave no edges, so every agent would look unreachable
        ("  edges:", "  edge:", "unknown field 'edge' in graph", "unreachable"),
        ("{from: writer, to: critic}", "{from: writer, too: critic}", "missing required field 'to'", "unreachable"),
        ("{from: writer, to: critic}", "{from: 7, to: critic}", "graph.edges.0.from", "unreachable"),
        ("  start: writer", "  start: [writer]", "graph.start: expected text", "unreachable"),
        # a broken bound must not turn into "cycle without a bound"
        ("max_loops: 2", "max_loop: 2", "unknown field 'max_loop'", "cycle"),
        ("max_loops: 2", "max_loops: 0", "greater than or equal to 1", "cycle"),
        # a broken output_schema must not make the conditions that read it look wrong
        ("    output_schema:", "    schema:", "unknown field 'schema' in agents.critic", "does not output"),
        ("    output_schema:", "    output_schema: [x]\n    old_schema:", "expected a mapping, got list", "output"),
        # a broken agent still exists: edges to it are not "unknown", it is not "unreachable"
        (
            "  critic:\n    system: Judge.\n",
            "  critic: Judge.\n  old:\n    system: Judge.\n",
            "agents.critic",
            "critic'",
        ),
        # a team whose agents are not a mapping: no meaning check can be trusted
        ("agents:\n", "agents: []\nold_agents:\n", "agents: expected a mapping", "unknown tool"),
    ],
)
def test_shape_errors_bring_no_follow_on_errors(tmp_path: Path, old: str, new: str, shape: str, absent: str) -> None:
    text = MINI.replace("    system: Write.", "    system: Write.\n    tools: [files.raed]", 1)
    assert old in text
    messages = [i.message for i in problems(tmp_path, text.replace(old, new, 1))]
    assert any(shape in m for m in messages), messages
    assert not any(absent in m for m in messages if shape not in m), messages
    if absent != "unknown tool":  # the meaning checks still ran on the parts that can be trusted
        assert "agent 'writer' allows unknown tool 'files.raed'" in messages


def test_a_broken_model_field_mutes_only_the_model_check(tmp_path: Path) -> None:
    catalog = Catalog(tools=CATALOG.tools, models=frozenset({"gemma"}))  # the default 'local' is unknown here
    text = MINI.replace("    system: Write.", "    system: Write.\n    modle: gemma\n    tools: [files.raed]")
    assert [(i.line, i.message) for i in problems(tmp_path, text, catalog)] == [
        (5, "unknown field 'modle' in agents.writer"),
        (6, "agent 'writer' allows unknown tool 'files.raed'"),
        (7, "agent 'critic' uses unknown model 'local'"),  # critic really has no model: a true error
    ]


def test_project_file_reports_shape_and_model_errors_together(project_dir: Path) -> None:
    from edgecrew.specs.project import load_project

    config = project_dir / "edgecrew.yaml"
    config.write_text(
        """\
models:
  remote:
    backend: litellm
  mine:
    backend: llamacpp
    pth: m.gguf
  spare:
    backend: scripted
    fallbacks: [mine, nosuch]
mcp_servers:
  srv: {url: "http://127.0.0.1:1/mcp", timeot_s: 3}
plugns: [tools.py]
""",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    found = [(i.line, i.message) for i in info.value.issues]
    assert [line for line, _ in found] == [2, 6, 9, 11, 12], found
    text = str(info.value)
    assert f"{config}:2: model 'remote' (litellm) needs 'model'" in text
    assert f"{config}:6: models.mine.pth" in text
    assert f"{config}:9: model 'spare' falls back to unknown model 'nosuch'" in text
    assert "mcp_servers.srv.timeot_s" in text and "plugns" in text
    # 'mine' is broken, not missing: no "needs 'path'" and no "unknown model 'mine'"
    assert not any("needs 'path'" in m or "unknown model 'mine'" in m for _, m in found), found


def test_a_snapshot_from_an_older_version_reads_with_the_domain_defaults() -> None:
    """Runs keep their snapshot; fields added later (approval, preamble, files, limits) take defaults."""
    old = {
        "name": "old",
        "agents": {"a": {"system": "x", "model": {"tag": "coding"}, "tools": ["files.read"]}},
        "graph": {"start": "a", "edges": [{"from": "a", "to": "end"}]},
    }
    team = team_from_snapshot(old)
    agent = team.agents["a"]
    assert agent.model == "tag:coding" and agent.tools == ("files.read",)
    assert (agent.approval, agent.preamble, agent.file_write, agent.limits.max_steps) == ("always", "", ("**",), 6)
    assert team.max_visits == 50 and team.graph.edges[0].targets == ("end",)


def test_an_agent_sets_its_own_temperature_and_a_tool_agent_may_not(tmp_path: Path) -> None:
    text = MINI.replace("    system: Write.", "    system: Write.\n    temperature: 0.7", 1)
    text = text.replace("    system: Judge.", "    system: Judge.\n    temperature: 0", 1)
    spec = load_team(write(tmp_path, text), CATALOG)
    assert spec.agents["writer"].temperature == 0.7 and spec.agents["critic"].temperature == 0.0
    again = team_from_snapshot(json.loads(json.dumps(spec.raw)))  # a run resumed from its snapshot
    assert again.agents["writer"].temperature == 0.7
    assert load_team(write(tmp_path, MINI), CATALOG).agents["writer"].temperature is None  # the model decides
    reads = "    tool: files.read\n    arguments: {path: a}\n    temperature: 1"
    tool_agent = MINI.replace("    system: Write.", reads)
    found = [str(i) for i in problems(tmp_path, tool_agent)]
    assert any("agent 'writer' is a tool agent and uses no model: 'temperature' does not apply" in f for f in found)
