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
