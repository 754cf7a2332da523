"""Code and checks read out of free text: a model's reply holding a program, a request holding its checks.

Templates use these as filters (``outputs.coder.text | code_block``, ``task | given_checks``), so a
small model may write code the way it was trained to (a fenced block, real newlines and indentation)
instead of escaping it inside a JSON string, and the checks a person wrote reach the sandbox exactly,
without passing through a model. The one design decision: a request that says ``Checks:`` and holds a
case that cannot be read is an error naming that case, never a silent fall back to made-up checks.
"""

from __future__ import annotations

import json
import re

__all__ = ["CHECKS_MARK", "code_block", "given_checks", "without_checks"]

# ```python ... ``` (any language tag, or none); the closing fence may end a line of code (Gemma-3-270M
# wrote `print("No")``` then prose), and an unclosed fence runs to the end of the text.
_FENCE = re.compile(r"```[ \t]*[\w+.-]*[ \t]*\r?\n(?P<body>.*?)(?:```|\Z)", re.DOTALL)
CHECKS_MARK = re.compile(r"(?:^|[\s.;,])checks?\s*:", re.IGNORECASE)
_ARROW = "->"


def code_block(text: str) -> str:
    """The program in a model's reply: the body of its first fenced block, else the whole reply."""
    match = _FENCE.search(text)
    body = match.group("body") if match is not None else text
    return body.strip("\n").rstrip() + "\n"


def without_checks(text: str) -> str:
    """``text`` up to its ``Checks:`` part (all of it when it has none)."""
    match = CHECKS_MARK.search(text)
    return (text[: match.start()] if match is not None else text).strip()


def given_checks(text: str) -> list[dict[str, str]]:
    """The cases written after ``Checks:`` in ``text``, as ``[{"input", "expected"}]`` ([] when it says none).

    Cases are separated by ``;`` or new lines, each ``INPUT -> EXPECTED``; a side is a JSON string
    (``"2 3" -> "5"``, ``"a\\nb" -> "b"``) or bare text, trimmed (``2 3 -> 5``). Raises ValueError naming
    the case that cannot be read.
    """
    match = CHECKS_MARK.search(text)
    if match is None:
        return []
    cases: list[dict[str, str]] = []
    mark = text[match.start() : match.end()].lstrip(" \t\r\n.;,")  # "Checks:" as the request writes it
    for number, raw in enumerate(_split_cases(text[match.end() :]), start=1):
        if _ARROW not in raw:
            raise ValueError(
                f"check {number} ({raw!r}) has no '->': what follows {mark!r} in the request is read as its "
                f"checks; write each as INPUT -> EXPECTED, or word the request without {mark!r}"
            )
        left, right = _sides(raw)
        try:
            case = {"input": _side(left), "expected": _side(right)}
        except ValueError as exc:
            raise ValueError(f"check {number} ({raw!r}): {exc}") from None
        if not case["expected"].strip():
            raise ValueError(f"check {number} ({raw!r}) expects no output: write what the program should print")
        cases.append(case)
    if not cases:
        raise ValueError("'Checks:' names no check: write each as INPUT -> EXPECTED, separated by ';'")
    return cases


def _split_cases(text: str) -> list[str]:
    """The cases of a checks part: split on ``;`` and new lines outside JSON strings."""
    cases: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if not quoted and char in ";\n":
            cases.append("".join(current))
            current = []
            continue
        current.append(char)
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
    cases.append("".join(current))
    return [c.strip() for c in cases if c.strip()]


def _sides(raw: str) -> tuple[str, str]:
    """``INPUT -> EXPECTED`` split at the arrow outside a JSON string on the left."""
    left = raw.lstrip()
    if left.startswith('"'):
        try:
            _, end = json.JSONDecoder().raw_decode(left)
        except ValueError:
            end = 0
        rest = left[end:]
        if end and rest.lstrip().startswith(_ARROW):
            return left[:end], rest.lstrip()[len(_ARROW) :]
    head, _, tail = raw.partition(_ARROW)
    return head, tail


def _side(text: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"{text} is not a complete JSON string (close its quote, escape inner ones)") from None
        if not isinstance(value, str):
            raise ValueError(f"{text} is not one string")
        return value
    return text
