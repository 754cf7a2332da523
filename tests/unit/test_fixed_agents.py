"""Tool and template agents (no model): their spec checks, and their turns on the engine's fakes."""

from __future__ import annotations

from typing import Any

import pytest

from edgecrew.domain.runs import Outcome
from edgecrew.domain.templating import TemplateProblem, render_arguments, render_text
from edgecrew.engine.chat import ChatMessage, compose_task
from edgecrew.engine.fakes import Deny, FakeTurnIO, FakeTurnRunner
from edgecrew.errors import SpecError
from edgecrew.specs.loader import Catalog, load_team_text
from edgecrew.tools.base import spec_from_function


def free_memory(unit: str = "bytes") -> dict[str, Any]:
    """Free memory of the machine."""
    return {"available_bytes": 2 * 1024**3, "unit": unit}


def can_run(memory_bytes: int) -> dict[str, Any]:
    """Whether a job of this size fits now."""
    return {"fits": memory_bytes <= 2 * 1024**3, "asked": memory_bytes}


def broken() -> str:
    """Always fails."""
    raise RuntimeError("disk on fire")


TOOLS = [spec_from_function(f) for f in (free_memory, can_run, broken)]
CATALOG = Catalog(tools=frozenset(t.name for t in TOOLS), models=frozenset({"fake"}))

FACTS = """\
name: facts
agents:
  memory:
    tool: free_memory
  fits:
    tool: can_run
    arguments: {memory_bytes: "{{ outputs.memory.available_bytes // 2 }}"}
  answer:
    template: |
      {{ task }}: {{ outputs.memory.available_bytes | human_bytes }} free; a job of
      {{ outputs.fits.asked | human_bytes }} {{ "fits" if outputs.fits.fits else "does not fit" }}.
graph:
  start: memory
  edges:
    - {from: memory, to: fits}
    - {from: fits, to: answer}
"""


async def test_tool_and_template_agents_carry_exact_facts_to_the_answer_without_a_model() -> None:
    io = FakeTurnIO([], TOOLS)  # no model replies at all: a model call would fail the run
    runner = FakeTurnRunner(load_team_text(FACTS, catalog=CATALOG), io)
    result = await runner.run("memory check")
    assert result.ok, result.error
    assert result.output == {"text": "memory check: 2.0 GiB free; a job of\n1.0 GiB fits."}
    assert io.model_calls == []
    # the argument that is one expression kept its type (an int, not the text "1073741824")
    assert [(c.call.name, c.call.arguments) for c in io.tool_calls] == [
        ("free_memory", {}),
        ("can_run", {"memory_bytes": 1024**3}),
    ]
    fits = next(t for t in runner.turns if t.visit.agent == "fits").result
    assert fits.output == {"fits": True, "asked": 1024**3} and fits.tool_calls == 1
    assert [m.role for m in fits.messages] == ["assistant", "tool"]


async def test_a_failing_tool_ends_the_run_with_the_tools_error() -> None:
    team = load_team_text(
        "name: t\nagents:\n  x: {tool: broken}\ngraph: {start: x, edges: [{from: x, to: end}]}\n", catalog=CATALOG
    )
    result = await FakeTurnRunner(team, FakeTurnIO([], TOOLS)).run("go")
    assert not result.ok
    assert "tool_errors" in (result.error or "") and "disk on fire" in (result.error or "")


async def test_a_template_that_reads_a_missing_field_fails_at_run_time_naming_it() -> None:
    team = load_team_text(
        "name: t\nagents:\n  m: {tool: free_memory}\n  a: {template: '{{ outputs.m.nothing_here }}'}\n"
        "graph: {start: m, edges: [{from: m, to: a}]}\n",
        catalog=CATALOG,
    )
    runner = FakeTurnRunner(team, FakeTurnIO([], TOOLS))
    result = await runner.run("go")
    assert not result.ok and "nothing_here" in (result.error or "")
    assert runner.turns[-1].result.outcome == Outcome.ERROR


async def test_a_template_agent_with_an_output_schema_gives_a_checked_object() -> None:
    team = load_team_text(
        "name: t\nagents:\n  m: {tool: free_memory}\n"
        "  v:\n    template: '{\"fits\": {{ (outputs.m.available_bytes > 10**9) | tojson }}}'\n"
        "    output_schema: {type: object, properties: {fits: {type: boolean}}, required: [fits]}\n"
        "graph: {start: m, edges: [{from: m, to: v}, {from: v, to: end}]}\n",
        catalog=CATALOG,
    )
    result = await FakeTurnRunner(team, FakeTurnIO([], TOOLS)).run("go")
    assert result.ok and result.output == {"fits": True}


async def test_a_model_agent_reads_what_a_tool_agent_found() -> None:
    team = load_team_text(
        "name: t\nagents:\n  m: {tool: free_memory}\n  say: {model: fake, system: summarize}\n"
        "graph: {start: m, edges: [{from: m, to: say}]}\n",
        catalog=CATALOG,
    )
    runner = FakeTurnRunner(team, FakeTurnIO(["plenty"], TOOLS))
    result = await runner.run("how much memory?")
    assert result.ok and result.output == {"text": "plenty"}
    assert '"available_bytes": 2147483648' in runner.context("v001.say")


# -- spec checks -----------------------------------------------------------------------------------


def problems(yaml_text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_team_text(yaml_text, "team.yaml", CATALOG)
    return [f"{i.line}: {i.message}" for i in caught.value.issues]


def test_tool_and_template_agents_are_checked_with_their_lines() -> None:
    found = problems(
        "name: t\n"  # 1
        "agents:\n"  # 2
        "  m:\n"  # 3
        "    tool: free_memry\n"  # 4
        "    system: not read\n"  # 5
        "  a:\n"  # 6
        "    template: '{{ outputs.nobody.x }} {{ secrets }}'\n"  # 7
        "  b:\n"  # 8
        "    template: '{% if %}'\n"  # 9
        "  c:\n"  # 10
        "    system: talk\n"  # 11
        "    model: fake\n"  # 12
        "    arguments: {x: 1}\n"  # 13
        "graph: {start: m, edges: [{from: m, to: a}, {from: a, to: b}, {from: b, to: c}]}\n"
    )
    assert found == [
        "4: agent 'm' calls unknown tool 'free_memry'",
        "5: agent 'm' is a tool agent and uses no model: 'system' does not apply",
        "7: agent 'a' reads 'secrets', which a template cannot see",
        "7: agent 'a' reads outputs.nobody, but there is no agent 'nobody'",
        "9: agent 'b': template syntax error: Expected an expression, got 'end of statement block'",
        "13: agent 'c' has 'arguments', which only a tool agent reads",
    ]


def test_a_tool_agents_arguments_are_checked_by_name_against_the_tool() -> None:
    """Values may be templates, so only names: one the tool does not take, a required one left out."""
    by_name = {t.name: t for t in TOOLS}
    catalog = Catalog(tools=CATALOG.tools, models=CATALOG.models, tool_schema=lambda n: by_name[n].input_schema)
    with pytest.raises(SpecError) as caught:
        load_team_text(
            "name: t\n"  # 1
            "agents:\n"  # 2
            "  fits:\n"  # 3
            "    tool: can_run\n"  # 4
            "    arguments: {memory_byte: 5}\n"  # 5
            "  mem:\n"  # 6
            "    tool: free_memory\n"  # 7
            "    arguments: {unit: '{{ task }}'}\n"  # 8
            "graph: {start: fits, edges: [{from: fits, to: mem}, {from: mem, to: end}]}\n",
            "team.yaml",
            catalog,
        )
    assert [(i.line, i.message, i.hint) for i in caught.value.issues] == [
        (4, "agent 'fits' calls 'can_run' without its required argument(s): memory_bytes",
         "add them under 'arguments:' (a string may be a template, e.g. '{{ task }}')"),
        (5, "agent 'fits' gives 'can_run' an argument it does not take: 'memory_byte'", "did you mean 'memory_bytes'?"),
    ]  # fmt: skip
    assert load_team_text(FACTS, "facts.yaml", catalog).name == "facts"  # templates are names' values only


def test_a_template_reading_a_field_its_agent_does_not_output_is_reported() -> None:
    found = problems(
        "name: t\nagents:\n"
        "  p:\n    model: fake\n    system: plan\n"
        "    output_schema: {type: object, properties: {steps: {type: array}}}\n"
        "  a:\n    template: '{{ outputs.p.stpes }}'\n"
        "graph: {start: p, edges: [{from: p, to: a}]}\n"
    )
    assert found == ["8: agent 'a' reads outputs.p.stpes, which agent 'p' does not output"]


LOOP_BACK = """\
name: t
agents:
  a:
    model: fake
    system: write
    input: {input}
  b:
    model: fake
    system: judge
    output_schema: {{type: object, properties: {{verdict: {{type: string}}}}, required: [verdict]}}
graph: {{start: a, edges: [{{from: a, to: b}}, {{from: b, to: a, when: "verdict == 'again'", max_loops: 1}}]}}
"""


def test_the_start_agent_reading_another_agents_output_unguarded_is_reported() -> None:
    """Its first visit comes before every other agent's: the read always fails there."""
    found = problems(LOOP_BACK.format(input="'Verdict so far: {{ outputs.b.verdict }}'"))
    assert found == ["6: agent 'a' starts the run, so outputs.b is not there on its first visit"]
    guarded = [
        "'{% if outputs.b is defined %}{{ outputs.b.verdict }}{% else %}{{ task }}{% endif %}'",
        "'{{ outputs.b.verdict if outputs.b is defined else task }}'",
        "'{{ (outputs.b | default({})).verdict | default(task) }}'",
    ]
    for text in guarded:
        assert load_team_text(LOOP_BACK.format(input=text), "team.yaml", CATALOG).graph.start == "a", text


def test_an_agent_with_neither_system_nor_tool_nor_template_says_what_it_needs() -> None:
    found = problems("name: t\nagents:\n  a: {model: fake}\ngraph: {start: a}\n")
    assert found == ["3: missing required field 'system' in agents.a"]


# -- rendering -------------------------------------------------------------------------------------


def test_rendering_is_sandboxed_and_strict() -> None:
    scope = {"task": "t", "outputs": {"a": {"n": 3}}}
    assert render_arguments({"n": "{{ outputs.a.n + 1 }}", "s": "n={{ outputs.a.n }}", "k": [True]}, scope) == {
        "n": 4,
        "s": "n=3",
        "k": [True],
    }
    with pytest.raises(TemplateProblem, match="argument 'n'"):
        render_arguments({"n": "{{ outputs.b.n }}"}, scope)
    with pytest.raises(TemplateProblem, match="unsafe"):
        render_text("{{ task.__class__.__mro__ }}", scope)


def test_a_rendering_failure_names_the_template_line_or_the_expression() -> None:
    scope = {"task": "t", "outputs": {"plan": {}}}
    with pytest.raises(TemplateProblem, match=r"no attribute 'title' \(template line 2: Title: \{\{ outputs") as raised:
        render_text("# Report\nTitle: {{ outputs.plan.title | upper }}\nDone.", scope)
    assert raised.value.line == 2
    with pytest.raises(TemplateProblem, match=r"argument 'n': .*\(in \{\{ outputs.plan.n \+ 1 \}\}\)"):
        render_arguments({"n": "{{ outputs.plan.n + 1 }}"}, scope)


def test_reading_an_agent_that_has_not_run_yet_says_so_not_dict_object() -> None:
    scope = {"task": "t", "outputs": {"plan": {"n": 1}}}
    expected = r"outputs.critic is undefined: agent 'critic' has not run yet in this run .*is defined"
    with pytest.raises(TemplateProblem, match=expected + r".*\(template line 1: Verdict so far"):
        render_text("Verdict so far: {{ outputs.critic.verdict }}", scope)
    with pytest.raises(TemplateProblem, match=r"argument 'v': " + expected):
        render_arguments({"v": "{{ outputs['critic'].verdict }}"}, scope)
    # a missing field of an agent that did run keeps Jinja's own words, naming the field
    with pytest.raises(TemplateProblem, match=r"has no attribute 'title'"):
        render_text("{% if outputs.critic is defined %}{{ outputs.critic }}{% endif %}{{ outputs.plan.title }}", scope)


# -- few-shot examples and tool retrieval (model agents) ---------------------------------------------

JUDGE = """\
name: t
agents:
  critic:
    model: fake
    system: judge
    output_schema: {type: object, properties: {verdict: {enum: [approve, revise]}}, required: [verdict]}
    examples:
      - {input: "Task: add 2 and 2\\n\\nOutput of writer:\\n5", output: {verdict: revise}}
      - {input: "Task: add 2 and 2\\n\\nOutput of writer:\\n4", output: {verdict: approve}}
graph: {start: critic}
"""


async def test_examples_are_earlier_turns_right_after_the_system_prompt() -> None:
    io = FakeTurnIO([{"json": {"verdict": "approve"}}])
    result = await FakeTurnRunner(load_team_text(JUDGE, catalog=CATALOG), io).run("judge this")
    assert result.ok
    sent = io.requests[0].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert sent[2].content == '{"verdict": "revise"}' and sent[-1].content == "Task: judge this"


def test_an_example_that_its_agent_could_not_give_is_reported_at_its_line() -> None:
    found = problems(JUDGE.replace("output: {verdict: approve}", "output: {verdict: maybe}"))
    assert found == [
        "9: agent 'critic' example 2 does not match its output_schema: 'maybe' is not one of "
        "['approve', 'revise'] (at verdict)"
    ]


def weather(city: str) -> str:
    """Current weather and forecast for a city."""
    return f"sunny in {city}"


def send_email(to: str, subject: str) -> str:
    """Send an email message to a recipient."""
    return "sent"


def stock_price(symbol: str) -> str:
    """Latest stock price for a ticker symbol."""
    return "42"


async def test_tools_per_step_offers_the_most_relevant_tools_and_records_the_choice() -> None:
    team = load_team_text(
        "name: t\nagents:\n  a:\n    model: fake\n    system: help\n    tools: [send_email, stock_price, weather]\n"
        "    tools_per_step: 1\ngraph: {start: a}\n"
    )
    io = FakeTurnIO([{"tool": "weather", "args": {"city": "Oslo"}}, "it is sunny"], [weather, send_email, stock_price])
    result = await FakeTurnRunner(team, io).run("what is the weather forecast in Oslo?")
    assert result.ok
    assert [t.name for t in io.requests[0].tools] == ["weather"]
    key, selected = io.selections[0]
    assert key == "v000.a.m0" and selected.tools == ("weather",) and selected.allowed == 3
    assert selected.scores[0] > 0


def test_the_regex_filter_takes_exact_words_from_the_task() -> None:
    scope = {"task": "create a service called payments-api with CI", "outputs": {}}
    assert render_text("{{ task | regex('called ([a-z-]+)') }}", scope) == "payments-api"
    assert render_text("{{ task | regex('named ([a-z-]+)') or 'fallback' }}", scope) == "fallback"


@pytest.mark.parametrize(
    ("task", "seconds"),
    [
        ("in the last 2 hours", "7200.0"),
        ("over the last 30 minutes", "1800.0"),
        ("since 6h ago", "21600.0"),
        ("the last 3 days", "259200.0"),
        ("in 1.5 hrs", "5400.0"),
        ("in the last 1,5 hours", "5400.0"),  # a decimal comma, not 5 hours
        ("a 4 GB job in 512 MiB", "none"),  # sizes are no spans
        ("this week", "none"),
    ],
)
def test_the_duration_filter_reads_the_first_time_span(task: str, seconds: str) -> None:
    assert render_text("{{ task | duration_s('none') }}", {"task": task, "outputs": {}}) == seconds


def test_the_latest_message_filter_reads_a_chats_newest_message() -> None:
    def latest(task: str) -> str:
        return render_text("{{ task | latest_message }}", {"task": task, "outputs": {}})

    assert latest("a service called payments-api") == "a service called payments-api"  # not a chat: as it is
    chat = compose_task(
        [
            ChatMessage("user", "a service called one-api"),
            # an earlier answer that quotes a task, framing included, is still before the latest message
            ChatMessage("assistant", "Conversation so far:\n...\n\nReply to the user's latest message: two"),
            ChatMessage("user", "now a CLI called two-cli\nwith CI"),
        ]
    )
    assert latest(chat) == "now a CLI called two-cli\nwith CI"


# -- a person's denial of a tool agent's call --------------------------------------------------------


def release(version: str) -> dict[str, Any]:
    """Ships a release (risky)."""
    return {"shipped": version}


DENIABLE = """\
name: ship
agents:
  ship:
    tool: release
    arguments: {{version: "{{{{ task }}}}"}}{on_denied}
  answer:
    template: "{{{{ 'denied: ' ~ outputs.ship.reason if outputs.ship.denied is defined else 'shipped' }}}}"
graph:
  start: ship
  edges:
    - {{from: ship, to: answer}}
"""


async def _ship(on_denied: str, decision: bool | Deny) -> tuple[Any, FakeTurnRunner]:
    async def person(agent: Any, call: Any) -> bool | Deny:
        return decision

    tools = [spec_from_function(release, risk="risky")]
    catalog = Catalog(tools=frozenset({"release"}), models=frozenset({"fake"}))
    team = load_team_text(DENIABLE.format(on_denied=on_denied), catalog=catalog)
    runner = FakeTurnRunner(team, FakeTurnIO([], tools, approve=person))
    return await runner.run("1.2.0"), runner


async def test_a_denied_call_fails_a_tool_agent_unless_it_says_on_denied_continue() -> None:
    failed, runner = await _ship("", Deny("not on Fridays"))
    assert not failed.ok and runner.path == ["ship"]
    assert failed.error is not None and "a person denied this call to 'release': not on Fridays" in failed.error

    went_on, runner = await _ship("\n    on_denied: continue", Deny("not on Fridays"))
    assert went_on.ok, went_on.error
    assert runner.path == ["ship", "answer"] and went_on.output == {"text": "denied: not on Fridays"}
    ship = runner.turns[0].result
    assert ship.outcome == Outcome.FINAL and ship.output == {
        "denied": True,
        "tool": "release",
        "reason": "not on Fridays",
        "note": "not run: a person denied this call (not on Fridays)",
    }
    bare, _ = await _ship("\n    on_denied: continue", False)  # no note from the person
    assert bare.ok and bare.output == {"text": "denied:"}  # the template output is stripped

    approved, runner = await _ship("\n    on_denied: continue", True)
    assert approved.ok and approved.output == {"text": "shipped"}
    assert runner.turns[0].result.output == {"shipped": "1.2.0"}


def test_on_denied_is_a_tool_agents_field_with_two_values() -> None:
    found = problems(
        "name: t\n"  # 1
        "agents:\n"  # 2
        "  m:\n"  # 3
        "    tool: free_memory\n"  # 4
        "    on_denied: retry\n"  # 5
        "  a:\n"  # 6
        "    template: hi\n"  # 7
        "    on_denied: continue\n"  # 8
        "graph: {start: m, edges: [{from: m, to: a}]}\n"
    )
    assert found == [
        "5: agents.m.on_denied: Input should be 'fail' or 'continue'",
        "8: agent 'a' is a template agent and uses no model: 'on_denied' does not apply",
    ]
