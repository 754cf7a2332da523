"""Edge conditions: tiny, safe expressions over an agent's structured output.

``verdict == 'revise'``, ``score >= 0.8 and not done``, ``'bug' in notes``, ``len(steps) > 2``.
Names are top-level fields of the output; ``a.b``, ``a['b']`` and ``a[0]`` reach into nested values; a
missing field is ``None``. The expression is parsed with :mod:`ast` and only a whitelist of node types
is evaluated by our own interpreter (never ``eval``, never ``getattr``), so a spec cannot run code.
"""

from __future__ import annotations

import ast
import operator
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgecrew.errors import UserError

MAX_LENGTH = 500  # conditions are one-liners; the cap also bounds parser and checker recursion

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}
_FUNCTIONS: dict[str, Callable[[Any], Any]] = {"len": lambda v: len(v) if v is not None else 0}
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_ALLOWED = (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Constant, ast.List, ast.Tuple)


class ConditionSyntaxError(UserError, ValueError):
    """The expression is not valid condition syntax."""


@dataclass(frozen=True)
class Condition:
    """A compiled condition; ``names`` are the top-level output fields it reads."""

    source: str
    tree: ast.Expression = field(compare=False, repr=False)  # AST nodes compare by identity
    names: frozenset[str] = frozenset()

    def evaluate(self, output: Mapping[str, Any]) -> bool:
        try:
            return bool(_eval(self.tree.body, output))
        except TypeError:
            # Comparing values of unrelated types (None < 3) is "does not match", not a crash.
            return False


def compile_condition(source: str) -> Condition:
    """Parse and check ``source``; raise ConditionSyntaxError for anything outside the whitelist."""
    if len(source) > MAX_LENGTH:
        raise ConditionSyntaxError(f"condition is longer than {MAX_LENGTH} characters")
    try:
        with warnings.catch_warnings():  # Python lint (e.g. invalid escapes) is noise to a spec author
            warnings.simplefilter("ignore")
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionSyntaxError(f"cannot parse condition {source!r}: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError):
        raise ConditionSyntaxError(f"cannot parse condition {source!r}") from None
    names: set[str] = set()
    try:
        _check(tree.body, names)
    except RecursionError:
        raise ConditionSyntaxError(f"condition {source!r} is nested too deeply") from None
    return Condition(source=source, tree=tree, names=frozenset(names))


def _check(node: ast.AST, names: set[str]) -> None:
    if isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            raise ConditionSyntaxError(f"{node.id} must be called, like {node.id}(steps)")
        if node.id not in _LITERALS:
            names.add(node.id)
        return
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS) or node.keywords:
            raise ConditionSyntaxError(f"only {', '.join(_FUNCTIONS)}() may be called in a condition")
        if len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise ConditionSyntaxError(f"{node.func.id}() takes exactly one argument")
        _check(node.args[0], names)
        return
    if isinstance(node, ast.Attribute):
        _check_root(node.value, names)
        return
    if isinstance(node, ast.Subscript):
        _constant_key(node.slice)
        _check_root(node.value, names)
        return
    if not isinstance(node, _ALLOWED):
        raise ConditionSyntaxError(f"{type(node).__name__} is not allowed in a condition")
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not | ast.USub):
        raise ConditionSyntaxError("only 'not' and '-' are allowed as unary operators")
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ConditionSyntaxError(f"operator {type(op).__name__} is not allowed (use ==, !=, <, in...)")
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.cmpop | ast.boolop | ast.unaryop | ast.expr_context):
            _check(child, names)


def _check_root(node: ast.AST, names: set[str]) -> None:
    if isinstance(node, ast.Name) and node.id not in _FUNCTIONS and node.id not in _LITERALS:
        names.add(node.id)
    elif isinstance(node, ast.Attribute | ast.Subscript):
        _check(node, names)
    else:
        raise ConditionSyntaxError("attribute and subscript access must start from an output field")


def _constant_key(node: ast.AST) -> str | int:
    """The key of ``a['b']`` or ``a[0]`` / ``a[-1]``; anything computed is refused."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if isinstance(value, int) and not isinstance(value, bool):
            return -value
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int) and not isinstance(node.value, bool):
        return node.value
    raise ConditionSyntaxError("subscripts must be a constant string or integer, like a['b'] or a[0]")


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _LITERALS[node.id] if node.id in _LITERALS else env.get(node.id)
    if isinstance(node, ast.Attribute | ast.Subscript):
        base = _eval(node.value, env)
        key = node.attr if isinstance(node, ast.Attribute) else _constant_key(node.slice)
        if isinstance(base, Mapping):
            return base.get(key)
        if isinstance(base, list | tuple) and isinstance(key, int) and -len(base) <= key < len(base):
            return base[key]
        return None
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _FUNCTIONS[node.func.id](_eval(node.args[0], env))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, env) for v in node.values)
        return any(_eval(v, env) for v in node.values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, env)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise ConditionSyntaxError(f"{type(node).__name__} is not allowed in a condition")
