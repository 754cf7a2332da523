"""What a team's edges promise at run time, checked before any run: the findings of ``validate`` that
are about routing (see :func:`edgecrew.engine.graph.route`: edges are tried in spec order, the first
that holds wins, and an agent none of whose edges holds fails the run).

The one design decision: a finding is a warning unless it is certain. A node whose every edge has a
condition may be fine (the model may always answer so that one holds), and a comparison of a field with
a value of another type may be meant for a schema being changed, so both are warnings: the spec loads
and the run starts. A condition that reads a nested field its agent's ``output_schema`` does not declare
always sees ``None``, which is certainly not what was meant: an error, like the top-level field that
:mod:`edgecrew.specs.loader` already reports.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edgecrew.domain.conditions import ConditionSyntaxError, compile_condition
from edgecrew.errors import Severity

__all__ = ["Finding", "edge_findings"]

Loc = tuple[str | int, ...]


# What is read of the loader's documents (TeamDoc and its parts), named here so that the loader may
# import this module and not the other way round.
class AgentDoc(Protocol):
    @property
    def output_schema(self) -> dict[str, Any] | None: ...
    @property
    def kind(self) -> str: ...


class EdgeDoc(Protocol):
    @property
    def source(self) -> str | list[str]: ...
    @property
    def when(self) -> str | None: ...
    @property
    def max_loops(self) -> int | None: ...
    @property
    def on_failure(self) -> bool: ...


class _Graph(Protocol):
    @property
    def edges(self) -> Sequence[EdgeDoc]: ...


class TeamDoc(Protocol):
    @property
    def agents(self) -> Mapping[str, AgentDoc]: ...
    @property
    def graph(self) -> _Graph: ...


@dataclass(frozen=True)
class Finding:
    """One routing finding, at ``loc`` in the team document."""

    loc: Loc
    message: str
    hint: str
    severity: Severity = "warning"


def edge_findings(team: TeamDoc) -> list[Finding]:
    """Dead ends, shadowed edges and conditions that cannot hold, for a team whose graph is trusted."""
    out = list(_routing(team))
    for i, edge in enumerate(team.graph.edges):
        out += _condition_types(i, edge, team.agents)
    return out


# --- routing: a node that may dead-end, an edge that is never tried ----------------------------------


def _sources(edge: EdgeDoc) -> list[str]:
    return [edge.source] if isinstance(edge.source, str) else list(edge.source)


def _routing(team: TeamDoc) -> Iterator[Finding]:
    outgoing: dict[str, list[int]] = {}
    for i, edge in enumerate(team.graph.edges):
        if edge.on_failure:  # taken only when the turn fails: no part of routing its output
            continue
        for s in _sources(edge):
            if s in team.agents:
                outgoing.setdefault(s, []).append(i)
    for agent, indexes in outgoing.items():
        edges = [team.graph.edges[i] for i in indexes]
        always = next((k for k, e in enumerate(edges) if e.when is None and e.max_loops is None), None)
        if always is not None:
            for k in range(always + 1, len(edges)):
                yield Finding(
                    ("graph", "edges", indexes[k]),
                    f"edge {indexes[k] + 1} from '{agent}' is never taken: edge {indexes[always] + 1} before it "
                    "has no condition, and edges are tried in order (the first that holds wins)",
                    "move the edge without 'when' after the conditional ones: it is the default",
                )
            continue
        if _exhaustive(edges, team.agents.get(agent)):
            continue
        loops = any(e.max_loops is not None for e in edges)  # used up, a bounded edge no longer holds
        if len(indexes) == 1:
            has = " and ".join(w for w, on in (("a condition", edges[0].when), ("max_loops", loops)) if on)
            which = f"its one edge (edge {indexes[0] + 1}) has {has}"
        else:
            which = f"edges {_and([str(i + 1) for i in indexes])} all have a condition" + (
                " or max_loops" if loops else ""
            )
        yield Finding(
            ("graph", "edges", indexes[-1]),
            f"agent '{agent}' has no default edge: {which}; when none holds at run time, the run fails "
            f"(no edge from '{agent}' matched its output)",
            f"add an edge from '{agent}' without 'when' or max_loops after them (e.g. {{from: {agent}, to: end}}): "
            "edges are tried in order, so the last one without a condition is the default",
        )


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _exhaustive(edges: Sequence[EdgeDoc], agent: AgentDoc | None) -> bool:
    """Whether the edges' conditions cover every value of one required field with a closed set of values
    (an enum, a boolean), so that one of them always holds: ``verdict == 'approve'`` / ``'revise'``."""
    schema = _output_schema(agent)
    if schema is None:
        return False
    covered: dict[str, list[Any]] = {}  # values may be lists: not hashable
    for edge in edges:
        if edge.max_loops is not None or edge.when is None:
            return False
        try:
            tree = compile_condition(edge.when).tree.body
        except ConditionSyntaxError:
            return False
        found = _values_tested(tree)
        if found is None:
            return False
        name, values = found
        covered.setdefault(name, []).extend(values)
    if len(covered) != 1:
        return False
    ((name, tested),) = covered.items()
    if name not in _required(schema):
        return False  # a missing field is None, which no test of values matches
    closed = _closed_values(_step(schema, name))
    return closed is not None and all(any(_same(v, c) for c in tested) for v in closed)


def _values_tested(node: ast.AST) -> tuple[str, list[Any]] | None:
    """``f == v``, ``f in [v, w]`` and their ``or``: the field and the values that make it hold."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        names: set[str] = set()
        values: list[Any] = []
        for part in node.values:
            found = _values_tested(part)
            if found is None:
                return None
            names.add(found[0])
            values += found[1]
        return (names.pop(), values) if len(names) == 1 else None
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.left, ast.Name)):
        return None
    op, right = node.ops[0], node.comparators[0]
    if isinstance(op, ast.Eq) and (value := _literal(right)) is not _NOT_LITERAL:
        return node.left.id, [value]
    if isinstance(op, ast.In) and isinstance(right, ast.List | ast.Tuple):
        values = [_literal(e) for e in right.elts]
        return None if any(v is _NOT_LITERAL for v in values) else (node.left.id, values)
    return None


def _required(schema: Mapping[str, Any]) -> list[Any]:
    found = schema.get("required")
    return found if isinstance(found, list) else []  # a malformed one is the loader's to report


def _closed_values(schema: Any) -> list[Any] | None:
    if not isinstance(schema, Mapping):
        return None
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    if schema.get("type") == "boolean":
        return [True, False]
    return None


def _enum(schema: Mapping[str, Any] | None) -> list[Any] | None:
    """The values an enum or const allows (a boolean's two are left to the type check)."""
    if schema is None or ("enum" not in schema and "const" not in schema):
        return None
    return _closed_values(schema)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


# --- conditions: a field compared with a value of another type ----------------------------------------

_NOT_LITERAL = object()
_TEXT_OUTPUT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
# What Python can order against what (<, >...): numbers with numbers (a boolean is one), text with text,
# lists with lists; anything else raises, and a condition that raises is false.
_ORDERED = {"integer": "number", "number": "number", "boolean": "number", "string": "string", "array": "array"}


def _output_schema(agent: AgentDoc | None) -> Mapping[str, Any] | None:
    """The schema of what a condition on this agent reads; None: unknown (a tool's output)."""
    if agent is None:
        return None
    if agent.output_schema is None:
        return None if agent.kind == "tool" else _TEXT_OUTPUT
    return agent.output_schema


def _condition_types(i: int, edge: EdgeDoc, agents: Mapping[str, AgentDoc]) -> list[Finding]:
    if edge.when is None or edge.on_failure:  # a failure edge reads the failure, not the agent's output
        return []
    try:
        tree = compile_condition(edge.when).tree.body
    except ConditionSyntaxError:
        return []  # reported by the loader
    out: list[Finding] = []
    for source in dict.fromkeys(_sources(edge)):
        schema = _output_schema(agents.get(source))
        if schema is None:
            continue
        for message, hint, severity in _problems(tree, schema, source):
            finding = Finding(("graph", "edges", i, "when"), f"edge {i + 1}: {message}", hint, severity)
            if finding not in out:
                out.append(finding)
    return out


def _problems(tree: ast.AST, schema: Mapping[str, Any], source: str) -> Iterator[tuple[str, str, Severity]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Subscript):
            missing = _missing_path(node, schema)
            if missing is not None:
                path, have = missing
                yield (
                    f"the condition reads {path}, which agent '{source}' does not output (it is always null)",
                    f"'{source}' outputs there: {have}; fix the name or add the field to its output_schema",
                    "error",
                )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
            found = _types_of(node.args[0], schema)
            types = found - {"null"} if found is not None else set()  # len(null) is 0
            if types and not types & {"string", "array", "object"}:
                yield (
                    f"len({ast.unparse(node.args[0])}) of {_kinds(types)} fails, so the comparison is false",
                    "len() counts the items of a list or the characters of a text",
                    "warning",
                )
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                yield from _compare(left, op, right, schema)
                left = right


def _compare(
    left: ast.expr, op: ast.cmpop, right: ast.expr, schema: Mapping[str, Any]
) -> Iterator[tuple[str, str, Severity]]:
    value, field = _literal(right), left
    if value is _NOT_LITERAL:
        value, field = _literal(left), right
    if value is _NOT_LITERAL or value is None:
        return  # two fields, or a test for null (a field left out is null whatever its type)
    field_schema = _schema_of(field, schema)
    found = _types_of(field, schema)
    types = found - {"null"} if found is not None else set()  # a field left out is null: never a mismatch
    if not types:
        return
    name, shown, said = ast.unparse(field), _show(value), f"{ast.unparse(left)} {_op(op)} {ast.unparse(right)}"
    if isinstance(op, ast.In | ast.NotIn) and field is right:  # 'bug' in notes
        if not types & {"string", "array", "object"}:
            yield (f"'{shown} in {name}': {name} is {_kinds(types)}, not a string or an array", _FIX_TYPE, "warning")
        elif types == {"string"} and not isinstance(value, str):
            yield (f"'{shown} in {name}': {name} is a string, so only a string can be in it", _FIX_TYPE, "warning")
        return
    candidates = value if isinstance(op, ast.In | ast.NotIn) and isinstance(value, list) else [value]
    if not candidates:
        return
    kinds = {_json_type(v) for v in candidates}
    if isinstance(op, _ORDERING):
        if not {_ORDERED.get(t) for t in types} & {_ORDERED.get(k) for k in kinds} - {None}:
            yield (
                f"{said}: {name} is {_kinds(types)} and {shown} {_kinds(kinds)}; "
                "such a comparison fails, so the condition is false",
                _FIX_TYPE,
                "warning",
            )
        return
    if not any(_matches(_json_type(v), types) for v in candidates):
        never = "never holds" if isinstance(op, ast.Eq | ast.In) else "always holds"
        yield (
            f"{said} {never}: {name} is {_kinds(types)}, {shown} {_kinds(kinds)}",
            _FIX_TYPE,
            "warning",
        )
        return
    allowed = _enum(field_schema)
    if allowed is not None and not any(_same(v, a) for v in candidates for a in allowed):
        never = "never holds" if isinstance(op, ast.Eq | ast.In) else "always holds"
        yield (
            f"{said} {never}: {name} is one of {', '.join(_show(a) for a in allowed)}",
            _closest(value, allowed),
            "warning",
        )


def _closest(value: Any, allowed: list[Any]) -> str:
    words = [a for a in allowed if isinstance(a, str)]
    close = difflib.get_close_matches(value, words, n=1) if isinstance(value, str) else []
    if close:
        return f"did you mean {_show(close[0])}?"
    return "compare with one of the values its output_schema's enum lists"


_FIX_TYPE = "compare with a value of the field's type in its agent's output_schema, or change that type"


def _op(op: ast.cmpop) -> str:
    return {
        ast.Eq: "==",
        ast.NotEq: "!=",
        ast.Lt: "<",
        ast.LtE: "<=",
        ast.Gt: ">",
        ast.GtE: ">=",
        ast.In: "in",
        ast.NotIn: "not in",
    }[type(op)]


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _kinds(types: set[str]) -> str:
    """JSON types as a reader says them: 'a string', 'an integer or a number'."""
    return " or ".join(("an " if t[0] in "aeiou" else "a ") + t for t in sorted(types))


def _literal(node: ast.AST) -> Any:
    """The value of a constant, ``true``/``false``/``null``, ``-3`` or a list of those; else _NOT_LITERAL."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in {"true", "false", "null"}:
        return {"true": True, "false": False, "null": None}[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal(node.operand)
        return -inner if isinstance(inner, int | float) and not isinstance(inner, bool) else _NOT_LITERAL
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(e) for e in node.elts]
        return _NOT_LITERAL if any(i is _NOT_LITERAL for i in items) else items
    return _NOT_LITERAL


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _matches(kind: str, types: set[str]) -> bool:
    """A value of JSON type ``kind`` can equal a value of one of ``types`` (in Python, where true == 1)."""
    if kind in {"integer", "boolean"}:
        return bool(types & {"integer", "number", "boolean"})
    if kind == "number":
        return "number" in types
    return kind in types


def _path(node: ast.AST) -> list[str | int] | None:
    """``a.b[0]['c']`` as ``['a', 'b', 0, 'c']``; None for anything else."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        base = _path(node.value)
        return None if base is None else [*base, node.attr]
    if isinstance(node, ast.Subscript):
        base, key = _path(node.value), _literal(node.slice)
        if base is None or not isinstance(key, str | int) or isinstance(key, bool):
            return None
        return [*base, key]
    return None


def _step(schema: Any, key: str | int) -> Any:
    """The schema of ``key`` inside ``schema``; None: unknown."""
    if not isinstance(schema, Mapping):
        return None
    if isinstance(key, int):
        items = schema.get("items")
        return items if isinstance(items, Mapping) else None
    props = schema.get("properties")
    return props.get(key) if isinstance(props, Mapping) else None


def _schema_of(node: ast.AST, schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = _path(node)
    if path is None:
        return None
    current: Any = schema
    for key in path:
        current = _step(current, key)
        if current is None:
            return None
    return current if isinstance(current, Mapping) else None


def _missing_path(node: ast.Attribute | ast.Subscript, schema: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first key of ``node``'s path (below the top level, which the loader checks) that a declared
    ``properties`` lacks, and the keys it has."""
    path = _path(node)
    if path is None:
        return None
    current: Any = schema
    for depth, key in enumerate(path):
        if isinstance(key, str) and depth > 0 and isinstance(current, Mapping):
            props = current.get("properties")
            if isinstance(props, Mapping) and key not in props and not current.get("additionalProperties"):
                shown = ".".join(str(k) for k in path[: depth + 1])
                return shown, ", ".join(sorted(props)) or "nothing"
        current = _step(current, key)
        if current is None:
            return None
    return None


def _types_of(node: ast.AST, schema: Mapping[str, Any]) -> set[str] | None:
    """The JSON types ``node`` (a field path) may have by the schema, with null when it may be left
    out; None: unknown (no path, no type declared)."""
    path = _path(node)
    if path is None:
        return None
    current: Any = schema
    optional = False
    for key in path:
        if isinstance(key, int) or not isinstance(current, Mapping) or key not in _required(current):
            optional = True
        current = _step(current, key)
        if current is None:
            return None
    types = _declared_types(current)
    if types is None:
        return None
    return types | {"null"} if optional else types


def _declared_types(schema: Any) -> set[str] | None:
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return {_json_type(schema["const"])}
    if isinstance(schema.get("enum"), list):
        return {_json_type(v) for v in schema["enum"]}
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        return set(kind)
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            found = [_declared_types(b) for b in branches]
            if any(f is None for f in found):
                return None
            return set().union(*(f for f in found if f is not None))
    return None
