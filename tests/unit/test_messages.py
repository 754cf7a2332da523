"""Messages and model responses as recorded: ``to_dict`` gives what ``dataclasses.asdict`` would (the
call journal and DBOS steps hold it), and ``from_dict`` reads it back to an equal value."""

from __future__ import annotations

import dataclasses
import json

from edgecrew.domain.messages import Message, ModelResponse, ToolCall, Usage


def _response() -> ModelResponse:
    call = ToolCall("c1", "search", {"query": "x", "filters": {"tags": ["a", "b"]}})
    message = Message("assistant", "thinking", tool_calls=(call,), name="planner")
    return ModelResponse(message, Usage(12, 3, 4), model="m", latency_s=0.5, time_to_first_token_s=0.1)


def test_to_dict_is_what_asdict_gives_and_reads_back() -> None:
    response = _response()
    assert response.to_dict() == dataclasses.asdict(response)
    assert json.dumps(response.to_dict()) == json.dumps(dataclasses.asdict(response))  # key order too
    assert ModelResponse.from_dict(json.loads(json.dumps(response.to_dict()))) == response
    plain = Message("tool", "42", tool_call_id="c1")
    assert plain.to_dict() == dataclasses.asdict(plain)


def test_to_dict_copies_tool_arguments() -> None:
    response = _response()
    data = response.to_dict()
    data["message"]["tool_calls"][0]["arguments"]["filters"]["tags"].append("c")
    assert response.message.tool_calls[0].arguments["filters"]["tags"] == ["a", "b"]
