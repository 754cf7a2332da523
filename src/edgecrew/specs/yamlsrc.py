"""Reading YAML while keeping line numbers, and mapping a path in the document back to its line.

Documents are parsed in ruamel's round-trip mode only because it records where every key and item
sits; :func:`to_plain` then strips ruamel's scalar subclasses so validation sees ordinary types.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from edgecrew.errors import SpecError, SpecIssue


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML (round-trip mode keeps line numbers); a syntax error becomes a SpecError."""
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise SpecError(
            [SpecIssue(file, line, f"YAML error: {exc.problem}", "remove or rename the duplicate key")]
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        message = f"YAML syntax error: {problem}"
        if exc.context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
        hint = "check indentation, 'key: value' colons, quotes and closing brackets"
        raise SpecError([SpecIssue(file, line, message, hint)]) from None
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. bad encodings)
        raise SpecError([SpecIssue(file, None, f"cannot read YAML: {exc}", "fix the YAML syntax")]) from None


_parsed: dict[tuple[str, int, int], Any] = {}


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; the parsed document is cached by path, size and mtime (treat it as read-only)."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key in _parsed:
            return _parsed[key]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise SpecError([SpecIssue(str(path), None, f"cannot read file: {reason}", "check the path")]) from None
    doc = parse_yaml(text, str(path))
    if len(_parsed) >= 128:
        _parsed.pop(next(iter(_parsed)))
    _parsed[key] = doc
    return doc


def line_of(doc: Any, loc: Sequence[Any]) -> int | None:
    """1-based line of the element at ``loc`` (keys and indexes); the nearest known parent if missing."""
    line = _own_line(doc)
    node = doc
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


def _own_line(node: Any) -> int | None:
    lc = getattr(node, "lc", None)
    return lc.line + 1 if lc is not None and lc.line is not None else None


MAX_NODES = 100_000  # a spec is a few hundred nodes; aliases of aliases (a "YAML bomb") are not


def to_plain(node: Any, file: str = "<yaml>") -> Any:
    """Round-trip YAML nodes → plain dicts, lists and scalars (what the domain and JSON want).

    Aliases are expanded, so a document whose aliases nest into a huge tree is refused once the
    copy passes ``MAX_NODES`` instead of taking the process's time and memory.
    """
    budget = [MAX_NODES]

    def plain(node: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise SpecError(
                [
                    SpecIssue(
                        file,
                        None,
                        f"the document expands to more than {MAX_NODES} values (aliases of aliases?)",
                        "write the spec out without nested YAML aliases",
                    )
                ]
            )
        if isinstance(node, dict):
            return {str(k): plain(v) for k, v in node.items()}
        if isinstance(node, list):
            return [plain(v) for v in node]
        if isinstance(node, TaggedScalar):  # an explicit tag (!foo x) means nothing to us: keep the text
            return str(node.value)
        if isinstance(node, ScalarBoolean):  # an anchored boolean is an int subclass in ruamel
            return bool(node)
        if isinstance(node, bool):
            return node
        for kind in (str, int, float):
            if isinstance(node, kind):
                return kind(node)
        return node

    return plain(node)
