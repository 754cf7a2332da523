"""The one reply validator: a bad reply fails with the same words whichever adapter produced it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgecrew.domain.messages import Message, ModelRequest, ToolCall, ToolDefinition
from edgecrew.errors import InvalidOutputError, UserError
from edgecrew.models.llamacpp import parse_reply
from edgecrew.models.replies import ProposedCall, reply_message

ADD = ToolDefinition(
    "add",
    "Add two integers.",
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]},
)
WHO = "model 'm'"


def ask(**options: Any) -> ModelRequest:
    return ModelRequest(messages=(Message("user", "2 + 3?"),), **options)


def failure(call: Any) -> str:
    with pytest.raises(InvalidOutputError) as raised:
        call()
    return str(raised.value)


@pytest.mark.parametrize(
    ("name", "arguments"),
    [("add", {"a": 2}), ("add", [2, 3]), ("sub", {"a": 1, "b": 2})],
    ids=["schema", "not an object", "unknown tool"],
)
def test_a_bad_call_fails_alike_as_a_grammar_envelope_and_as_a_provider_call(name: str, arguments: Any) -> None:
    req = ask(tools=(ADD,))
    envelope = json.dumps({"tool": name, "arguments": arguments})
    from_llamacpp = failure(lambda: parse_reply(envelope, req, who=WHO))
    from_provider = failure(lambda: reply_message(req, calls=[ProposedCall(name, json.dumps(arguments))], who=WHO))
    assert from_llamacpp.split("; reply:")[0] == from_provider.split("; reply:")[0]
    assert from_llamacpp.startswith(f"{WHO}: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [('{"n": 9}', "does not satisfy the output schema at n: 9 is greater than"), ("{", "is malformed JSON")],
)
def test_a_structured_reply_fails_alike_on_both_paths(text: str, expected: str) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"]}
    req = ask(output_schema=schema)
    from_llamacpp = failure(lambda: parse_reply(text, req, who=WHO))
    assert expected in from_llamacpp
    assert from_llamacpp == failure(lambda: reply_message(req, text=text, who=WHO))


def test_a_valid_provider_call_gets_a_deterministic_id_and_parsed_arguments() -> None:
    req = ask(tools=(ADD,))
    message = reply_message(req, text="Adding.", calls=[ProposedCall("add", '{"a": 2, "b": 3}')])
    assert message == Message("assistant", "Adding.", (ToolCall("call_1_0", "add", {"a": 2, "b": 3}),))
    truncated = failure(lambda: reply_message(req, calls=[ProposedCall("add", '{"a": 2')], truncated=True))
    assert "arguments of its call to 'add' are cut off at max_tokens=512" in truncated


def test_an_invalid_schema_is_the_users_mistake_and_says_whose() -> None:
    bad = ToolDefinition("odd", "Odd parameters.", {"type": 12})
    with pytest.raises(UserError, match=r"the parameters of tool 'odd' is not a valid JSON Schema"):
        reply_message(ask(tools=(bad,)), calls=[ProposedCall("odd", "{}")])


# -- several calls in one reply ------------------------------------------------------------------------

ECHO = ToolDefinition(
    "echo", "Echo text.", {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
)
TWO_CALLS = {
    "tool_calls": [
        {"tool": "add", "arguments": {"a": 2, "b": 3}},
        {"tool": "echo", "arguments": {"text": "hi"}},
    ]
}


def test_a_reply_with_several_calls_keeps_them_all_in_order() -> None:
    message = parse_reply(json.dumps(TWO_CALLS), ask(tools=(ADD, ECHO)))
    assert message.tool_calls == (
        ToolCall("call_1_0", "add", {"a": 2, "b": 3}),
        ToolCall("call_1_1", "echo", {"text": "hi"}),
    )
    # "name", the word of provider APIs, reads as "tool" in a reply written without the grammar
    by_name = {
        "tool_calls": [{"name": "echo", "arguments": {"text": "a"}}, {"name": "echo", "arguments": {"text": "b"}}]
    }
    assert [c.arguments["text"] for c in parse_reply(json.dumps(by_name), ask(tools=(ECHO,))).tool_calls] == ["a", "b"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"tool_calls": []}, "its tool_calls are not a non-empty list of calls"),
        ({"tool_calls": {"tool": "add"}}, "its tool_calls are not a non-empty list of calls"),
        ({"tool_calls": [{"arguments": {}}]}, "a call of its reply names no tool"),
        (
            {"tool_calls": [{"tool": "add", "arguments": {"a": 1, "b": 2}}, {"tool": "add", "arguments": {"a": 1}}]},
            "the arguments of its call to 'add' do not satisfy the tool's schema at (root): 'b' is a required",
        ),
        ({"tool_calls": [{"tool": "sub", "arguments": {}}]}, "it called unknown tool 'sub'"),
    ],
)
def test_one_bad_call_makes_the_whole_reply_unusable(reply: Any, expected: str) -> None:
    # A reply is retried whole: running its good calls and dropping a bad one would act on half a plan.
    assert expected in failure(lambda: parse_reply(json.dumps(reply), ask(tools=(ADD, ECHO)), who=WHO))


def test_several_calls_go_back_to_the_model_in_the_envelope_it_writes() -> None:
    from edgecrew.models.llamacpp_grammar import to_chat

    req = ask(tools=(ADD, ECHO))
    message = parse_reply(json.dumps(TWO_CALLS), req)
    assert json.loads(to_chat(message)["content"]) == TWO_CALLS
    one = parse_reply('{"tool": "add", "arguments": {"a": 1, "b": 1}}', req)
    assert json.loads(to_chat(one)["content"]) == {"tool": "add", "arguments": {"a": 1, "b": 1}}
    assert parse_reply(to_chat(message)["content"], req).tool_calls == message.tool_calls


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_the_envelope_schema_offers_one_call_several_calls_and_a_final_answer_unless_required(choice: str) -> None:
    from jsonschema import Draft202012Validator

    from edgecrew.models.llamacpp_grammar import MAX_CALLS_PER_REPLY, response_schema

    schema = response_schema(ask(tools=(ADD, ECHO), tool_choice=choice))
    assert schema is not None
    valid = Draft202012Validator(schema).is_valid
    assert valid(TWO_CALLS) and valid({"tool": "echo", "arguments": {"text": "x"}})
    assert valid({"tool_calls": [{"tool": "echo", "arguments": {"text": str(i)}} for i in range(MAX_CALLS_PER_REPLY)]})
    too_many = [{"tool": "echo", "arguments": {"text": str(i)}} for i in range(MAX_CALLS_PER_REPLY + 1)]
    assert not valid({"tool_calls": too_many}) and not valid({"tool_calls": []})
    assert not valid({"tool_calls": [{"tool": "add", "arguments": {"a": 1}}]})  # each call against its own tool
    assert valid({"final": "five"}) == (choice == "auto")


def test_the_grammar_caps_strings_in_every_call_of_a_list_like_a_single_calls() -> None:
    from edgecrew.models.llamacpp_grammar import grammar_schema, response_schema

    schema = response_schema(ask(tools=(ECHO,)))
    assert schema is not None
    single, several, final = grammar_schema(schema, max_tokens=40)["anyOf"]
    assert single["properties"]["arguments"]["properties"]["text"]["maxLength"] == 40
    item = several["properties"]["tool_calls"]["items"]
    assert item["properties"]["arguments"]["properties"]["text"]["maxLength"] == 40
    assert final["properties"]["final"]["maxLength"] == 120


def test_the_grammar_for_several_calls_compiles() -> None:
    pytest.importorskip("llama_cpp")
    from edgecrew.models.llamacpp_grammar import grammar_for, grammar_schema, response_schema

    schema = response_schema(ask(tools=(ADD, ECHO)))
    assert schema is not None
    assert "tool_calls" in grammar_for(json.dumps(grammar_schema(schema, 64)))._grammar


def test_the_tool_instructions_show_both_call_shapes_without_placeholders() -> None:
    from edgecrew.models.llamacpp_grammar import with_tool_instructions

    system = with_tool_instructions(ask(tools=(ADD,)))[0].content
    assert '{"tool": tool_name, "arguments": {argument_name: value}}' in system
    assert '{"tool_calls": [call, call]}' in system
    assert "<" not in system  # a quoted placeholder is a value a small model copies
