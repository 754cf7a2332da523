"""What the embedded model is asked and how its answer is read: request → JSON Schema → grammar,
tool instructions in the prompt, the turns of a chat template without a system role (Gemma 3's),
and reply → message (stop strings: :mod:`edgecrew.domain.stops`).

Structured output and tool calls are both JSON constrained by a grammar built from a JSON Schema, so
even a 135M model can only emit a well-formed answer: with tools, the model must produce one call
``{"tool": <one of the allowed names>, "arguments": {...}}``, several calls in one reply
``{"tool_calls": [{"tool": ..., "arguments": {...}}, ...]}`` (run in order), or ``{"final": ...}``
(not offered with ``tool_choice="required"``; the only choice of a request that offers no tools after
earlier calls, whose turns show the envelope). The one design decision: the grammar is a help,
never the check. It cannot enforce every keyword (``minimum``, ``uniqueItems``...) and generation
can stop at ``max_tokens`` mid-object, so every constrained reply is parsed and validated by the
reply validator all adapters share (:mod:`edgecrew.models.replies`):
a reply that does not satisfy its schema raises :class:`InvalidOutputError`, never passes as an answer.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from edgecrew.domain.messages import Message, ModelRequest
from edgecrew.errors import InvalidOutputError, UserError
from edgecrew.models.replies import SHOWN, ProposedCall, arguments_schema, check_output, load_json, reply_message

# Calls one reply may hold: a parallel request rarely needs more, and the bound stops a small model
# that repeats a call from running to max_tokens inside the list.
MAX_CALLS_PER_REPLY = 8


def answers_after_calls(req: ModelRequest) -> bool:
    """A request offering no tools whose conversation holds tool calls (an agent's last step, told to
    answer with what its tools returned): the earlier turns show calls as JSON envelopes, and a small
    model writes one more as its answer (SmolLM2 answered a chat with ``{"tool": "memory.remember", ...}``
    in text). Its reply is held to the envelope's ``{"final": answer}`` instead."""
    return not req.tools and any(m.tool_calls for m in req.messages)


def _final_envelope(req: ModelRequest) -> dict[str, Any]:
    final = dict(req.output_schema) if req.output_schema is not None else {"type": "string"}
    return {"type": "object", "properties": {"final": final}, "required": ["final"], "additionalProperties": False}


def response_schema(req: ModelRequest) -> dict[str, Any] | None:
    """The JSON Schema the reply must satisfy: the output schema, or the tool-call envelope (only its
    final answer when the request offers no tools after earlier calls: ``answers_after_calls``)."""
    if not req.tools:
        if answers_after_calls(req):
            return _final_envelope(req)
        return dict(req.output_schema) if req.output_schema is not None else None
    calls: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": arguments_schema(t)},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in req.tools
    ]
    several = {
        "type": "object",
        "properties": {
            "tool_calls": {
                "type": "array",
                "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
                "minItems": 1,
                "maxItems": MAX_CALLS_PER_REPLY,
            }
        },
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    options = [*calls, several]
    if req.tool_choice == "required":
        return {"anyOf": options}
    options.append(_final_envelope(req))
    return {"anyOf": options}


@lru_cache(maxsize=64)
def grammar_for(schema_json: str) -> Any:
    """The llama.cpp grammar for a JSON Schema (given as JSON text, so it can be cached)."""
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    try:
        gbnf = json_schema_to_gbnf(schema_json)
    except Exception as exc:  # the converter signals unsupported schemas with assert and bare Exception
        raise UserError(
            f"this JSON Schema cannot be turned into a llama.cpp grammar ({exc or type(exc).__name__}); "
            "use type/properties/required/items/enum/const/anyOf/minItems/maxItems/maxLength/pattern: "
            f"{schema_json[:SHOWN]}"
        ) from None
    return LlamaGrammar.from_string(gbnf.replace(_LOOSE_JSON_CHAR, _STRICT_JSON_CHAR), verbose=False)


# llama-cpp-python's converter lets string characters be raw control characters (a newline inside a
# string), which no JSON parser accepts; llama.cpp's own converter excludes them, and so do we.
_LOOSE_JSON_CHAR = r'[^"\\] | "\\" ('
_STRICT_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" ('


def parse_reply(text: str, req: ModelRequest, *, truncated: bool = False, who: str = "model") -> Message:
    """Turn the raw completion into a message: text, structured JSON text, or a tool call.

    Raises InvalidOutputError (a ModelError the agent loop answers with a retry) when a constrained
    reply does not parse or does not satisfy its schema.
    """
    after_calls = answers_after_calls(req)
    if not req.tools and not after_calls:
        return reply_message(req, text=text, truncated=truncated, who=who)
    if after_calls and truncated and req.output_schema is None and (cut := _cut_final(text)) is not None:
        return Message(role="assistant", content=cut)  # as a plain reply cut off at max_tokens is kept
    data = load_json(text, req.max_tokens if truncated else None, who=who)
    if after_calls:
        if isinstance(data, dict) and "final" in data:
            return _final_message(data["final"], req, text, who=who)
        raise InvalidOutputError(f'{who}: its reply is not a final answer {{"final": ...}}: {text[:SHOWN]!r}')
    if isinstance(data, dict) and "tool" in data:
        return reply_message(req, calls=(proposed(data, who=who),), who=who)
    if isinstance(data, dict) and "tool_calls" in data:
        listed = data["tool_calls"]
        if not isinstance(listed, list) or not listed:
            raise InvalidOutputError(f"{who}: its tool_calls are not a non-empty list of calls: {text[:SHOWN]!r}")
        return reply_message(req, calls=[proposed(call, who=who) for call in listed], who=who)
    if isinstance(data, dict) and "final" in data:
        return _final_message(data["final"], req, text, who=who)
    raise InvalidOutputError(f"{who}: its reply is neither a tool call nor a final answer: {text[:SHOWN]!r}")


_FINAL_OPENING = re.compile(r'\s*\{\s*"final"\s*:\s*"')


def _cut_final(text: str) -> str | None:
    """The text of a ``{"final": "...`` answer cut off inside its string (None when it is not one)."""
    opening = _FINAL_OPENING.match(text)
    if opening is None:
        return None
    rest = text[opening.end() :]
    for trim in range(min(len(rest), 6) + 1):  # a cut may split an escape (\ or \u00e9): drop its start
        try:
            value = json.loads('"' + rest[: len(rest) - trim] + '"')
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, str) else None
    return None


def _final_message(final: Any, req: ModelRequest, text: str, *, who: str) -> Message:
    if req.output_schema is not None:
        check_output(final, req, text, who=who)
        return Message(role="assistant", content=json.dumps(final))
    return Message(role="assistant", content=final if isinstance(final, str) else json.dumps(final))


def proposed(call: Any, *, who: str) -> ProposedCall:
    """One call of a reply (``{"tool": name, "arguments": {...}}``; ``name`` is read for ``tool`` too,
    the word most models know from provider APIs, for replies written without the grammar)."""
    name = call.get("tool", call.get("name")) if isinstance(call, dict) else None
    if not isinstance(name, str):
        raise InvalidOutputError(f"{who}: a call of its reply names no tool: {json.dumps(call)[:SHOWN]!r}")
    return ProposedCall(name=name, arguments=call.get("arguments"), json_text=False)


def with_tool_instructions(req: ModelRequest) -> list[Message]:
    if not req.tools:
        return list(req.messages)
    # The grammar enforces the full schemas; the prompt only needs names, purposes and arguments, and a
    # short prompt is both faster and easier for a small model to follow.
    lines = ["You have these tools:"]
    for t in req.tools:
        schema = arguments_schema(t)
        lines.append(f"- {t.name}: {t.description} Arguments: {json.dumps(argument_types(schema))}")
        lines += argument_descriptions(schema)
    # The envelope's shape with bare names where the values go: a quoted placeholder ("<tool name>",
    # "<your answer>") is a string a small model copies as a value; a bare name is not JSON, so the
    # grammar makes it write a real value. Worked examples were copied too, and plain words without
    # the shape made SmolLM2 answer instead of calling (bench/tool_calls.py, README's models section).
    lines += [
        'To use a tool, reply with JSON: {"tool": tool_name, "arguments": {argument_name: value}}.',
        'To use several tools, or one tool several times, reply with JSON: {"tool_calls": [call, call]}.',
        'If no tool is needed, reply with JSON: {"final": answer}.',
    ]
    instructions = "\n".join(lines)
    messages = list(req.messages)
    if messages and messages[0].role == "system":
        # Tools first: agents that share tools (and a team preamble) then share a prompt prefix, whose
        # KV state the prefix cache computes once.
        messages[0] = Message(role="system", content=instructions + "\n\n" + messages[0].content)
    else:
        messages.insert(0, Message(role="system", content=instructions))
    return messages


def argument_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Each argument's schema without its description: a schema is an object, which no string argument
    can copy, and small models follow its types (bench/tool_calls.py measured it so)."""
    return {
        name: {k: v for k, v in prop.items() if k != "description"} if isinstance(prop, dict) else prop
        for name, prop in (schema.get("properties") or {}).items()
    }


def argument_descriptions(schema: dict[str, Any]) -> list[str]:
    """The arguments' descriptions as sentences (``  text is the fact or note, self-contained.``).

    Not inside the JSON: there, ``"text": {"description": "The fact or note, self-contained."}`` reads as
    the value to write, and SmolLM2 wrote it as the value.
    """
    lines = []
    for name, prop in (schema.get("properties") or {}).items():
        text = str(prop.get("description") or "").strip() if isinstance(prop, dict) else ""
        if text:
            if text[:1].isupper() and text[1:2].islower():  # "The fact" -> "the fact"; "YYYY-MM-DD" stays
                text = text[0].lower() + text[1:]
            lines.append(f"  {name} is {text}")
    return lines


def with_system_in_user_turn(chat: list[dict[str, str]]) -> list[dict[str, str]]:
    """``chat`` for a template without a system role that wants user and model turns to alternate.

    The system prompt opens the first user turn (what Gemma 3's own template does), and turns of one
    role in a row are joined into one (a tool result followed by the agent loop's nudge, say).
    """
    system = "\n\n".join(m["content"] for m in chat if m["role"] == "system")
    turns: list[dict[str, str]] = []
    for message in (m for m in chat if m["role"] != "system"):
        if turns and turns[-1]["role"] == message["role"]:
            turns[-1] = {**turns[-1], "content": turns[-1]["content"] + "\n\n" + message["content"]}
        else:
            turns.append(dict(message))
    if system:
        if turns and turns[0]["role"] == "user":
            turns[0] = {**turns[0], "content": system + "\n\n" + turns[0]["content"]}
        else:
            turns.insert(0, {"role": "user", "content": system})
    return turns


# Gemma 3's chat template (the GGUF we ship carries none, and ChatML's markers mean nothing to Gemma):
# user and model turns, a system message opening the first user turn as Gemma's own template does.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim "
    "+ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def to_chat(message: Message) -> dict[str, str]:
    # Small models' chat templates rarely know tool roles: calls and results travel as plain text.
    if message.tool_calls:
        # In the envelope the grammar holds the model to, so earlier turns show it what to write.
        calls = [{"tool": c.name, "arguments": c.arguments} for c in message.tool_calls]
        envelope = calls[0] if len(calls) == 1 else {"tool_calls": calls}
        return {"role": "assistant", "content": json.dumps(envelope)}
    if message.role == "tool":
        return {"role": "user", "content": f"Result of tool {message.name}: {message.content}"}
    return {"role": message.role, "content": message.content}


def grammar_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The schema the grammar enforces: tool arguments' free strings capped near the token budget
    (a runaway argument is the classic small-model failure), answers' strings more loosely."""
    answer_cap, argument_cap = max(24, 3 * max_tokens), max(24, max_tokens)
    if "anyOf" not in schema:
        return dict(_cap_strings(schema, answer_cap))
    options = [
        _cap_strings(option, argument_cap if {"tool", "tool_calls"} & set(option.get("properties", {})) else answer_cap)
        for option in schema["anyOf"]
    ]
    return {**schema, "anyOf": options}


def _cap_strings(schema: Any, limit: int) -> Any:
    """A copy of ``schema`` whose free-form strings have ``maxLength`` (at most ``limit``)."""
    if isinstance(schema, list):
        return [_cap_strings(s, limit) for s in schema]
    if not isinstance(schema, dict):
        return schema
    capped = {
        k: _cap_strings(v, limit) if k not in ("enum", "const", "default", "examples") else v for k, v in schema.items()
    }
    free = not any(k in schema for k in ("enum", "const", "pattern", "format"))
    if schema.get("type") == "string" and free:
        capped["maxLength"] = min(int(schema.get("maxLength", limit)), limit)
    return capped
