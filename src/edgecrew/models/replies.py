"""Checking a model's reply against what its request asked for: one validator for every adapter.

A reply is usable when its structured output parses and satisfies the output schema, and when each
tool call names an offered tool with a JSON object of arguments valid against that tool's schema.
The one design decision: an adapter only says what the model produced (text, calls with raw or
parsed arguments, whether generation hit ``max_tokens``); the checks and the wording of their
:class:`InvalidOutputError` live here once, so a reply fails the same way on every backend, and the
agent loop, which hands that message back to the model for a retry, says the same thing to each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from edgecrew.domain.messages import Message, ModelRequest, ModelResponse, ToolCall, ToolDefinition
from edgecrew.errors import InvalidOutputError, UserError

SHOWN = 200  # characters of a bad reply (or schema) quoted in an error message


def response_of(message: Callable[[], Message], text: str, **fields: Any) -> ModelResponse:
    """The response of a call whose reply ``message()`` checks; when it raises InvalidOutputError, the
    error carries what the call spent all the same (``spent``: the raw ``text``, usage and timing), so
    a reply cut off at ``max_tokens`` still counts its tokens and time in the run."""
    try:
        checked = message()
    except InvalidOutputError as exc:
        exc.spent = ModelResponse(message=Message("assistant", text), **fields)
        raise
    return ModelResponse(message=checked, **fields)


@dataclass(frozen=True)
class ProposedCall:
    """A tool call as the model produced it, not yet checked."""

    name: str
    arguments: Any  # their JSON text (as a provider sends it), or the parsed value when not json_text
    id: str | None = None  # the provider's id; a deterministic one is made when it gives none
    json_text: bool = True


def reply_message(
    req: ModelRequest,
    *,
    text: str = "",
    calls: Iterable[ProposedCall] = (),
    truncated: bool = False,
    who: str = "model",
) -> Message:
    """The assistant message for a reply, or InvalidOutputError saying what is wrong with it.

    ``truncated``: generation stopped at ``req.max_tokens``, which explains JSON that does not parse.
    """
    checked = tuple(tool_call(req, call, position, truncated=truncated, who=who) for position, call in enumerate(calls))
    if checked:
        return Message(role="assistant", content=text, tool_calls=checked)
    if req.output_schema is not None:
        check_output(load_json(text, req.max_tokens if truncated else None, who=who), req, text, who=who)
    return Message(role="assistant", content=text)


def tool_call(req: ModelRequest, call: ProposedCall, position: int, *, truncated: bool, who: str) -> ToolCall:
    """``call`` checked against the request's tools: an offered name, arguments valid for it."""
    tool = next((t for t in req.tools if t.name == call.name), None)
    if tool is None:
        offered = ", ".join(t.name for t in req.tools) or "none"
        raise InvalidOutputError(f"{who}: it called unknown tool {call.name!r} (it may call: {offered})")
    arguments = call.arguments
    about = f"{who}: the arguments of its call to '{tool.name}'"
    if call.json_text:
        raw = str(arguments or "").strip() or "{}"
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            why = f"cut off at max_tokens={req.max_tokens}" if truncated else f"malformed JSON ({exc.msg})"
            raise InvalidOutputError(f"{about} are {why}: {raw[:SHOWN]!r}") from None
    if not isinstance(arguments, dict):
        raise InvalidOutputError(f"{about} are not a JSON object: {_shown(call.arguments)!r}")
    schema, failure = arguments_schema(tool), f"{about} do not satisfy the tool's schema"
    check(arguments, schema, failure, _shown(call.arguments), what=f"the parameters of tool '{tool.name}'")
    # Deterministic ids where the model gives none keep a recorded conversation byte-identical on replay.
    return ToolCall(id=call.id or f"call_{len(req.messages)}_{position}", name=tool.name, arguments=arguments)


def check_output(data: Any, req: ModelRequest, text: str, *, who: str) -> None:
    """Raise InvalidOutputError unless ``data`` satisfies the request's output schema."""
    failure = f"{who}: its reply does not satisfy the output schema"
    check(data, req.output_schema or {}, failure, text, what="the output schema")


def load_json(text: str, cut_at: int | None, *, who: str) -> Any:
    """The JSON value of a structured reply; ``cut_at``: the max_tokens the reply ran into, if it did."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if cut_at is not None:
            raise InvalidOutputError(
                f"{who}: its reply was cut off at max_tokens={cut_at} before its JSON was complete; raise "
                f"max_tokens or ask for a shorter answer (add maxItems/maxLength to the schema): {text[:SHOWN]!r}"
            ) from None
        raise InvalidOutputError(
            f"{who}: its structured reply is malformed JSON ({exc.msg} at {exc.pos}): {text[:SHOWN]!r}"
        ) from None


def check(data: Any, schema: Mapping[str, Any], failure: str, shown: str, *, what: str) -> None:
    """Raise InvalidOutputError (``failure`` at the first bad path) unless ``data`` satisfies ``schema``
    (``what``: the schema, named in the UserError when it is not a valid JSON Schema)."""
    from jsonschema import exceptions

    error = exceptions.best_match(validator(schema, what).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise InvalidOutputError(f"{failure} at {where}: {error.message}; reply: {shown[:SHOWN]!r}")


def validator(schema: Mapping[str, Any], what: str) -> Any:
    """A JSON Schema validator for ``schema``; UserError when ``what`` (the user's schema) is not one."""
    return _validator(json.dumps(schema, sort_keys=True), what)


@lru_cache(maxsize=64)
def _validator(schema_json: str, what: str) -> Any:
    from jsonschema import exceptions, validators

    schema = json.loads(schema_json)
    validator_class = validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise UserError(f"{what} is not a valid JSON Schema ({exc.message}): {schema_json[:SHOWN]}") from None
    return validator_class(schema)


def arguments_schema(tool: ToolDefinition) -> dict[str, Any]:
    return tool.parameters or {"type": "object"}


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
