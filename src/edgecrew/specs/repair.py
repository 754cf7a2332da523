"""Repairing a spec after shape errors, so that its meaning checks still run on what can be trusted.

``edgecrew validate`` promises every problem at once, but the meaning checks (graph, tools, models)
need a document of the right shape. So a copy of the plain document is repaired and validated again.
The one design decision: a repair never invents meaning. Each broken path is matched against rules
that say what the checks may assume instead: the field's default (drop the key), or a placeholder
that no check can object to; a rule may also *mute* its part (its checks do not run, nothing is
reported under it). A path no rule covers means the meaning checks cannot be trusted at all. Only
mapping keys are removed or replaced, never list items, so every path still names the same YAML line.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["ANY", "DROP", "Loc", "Rule", "repair"]

Loc = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)
ANY = "*"  # in a rule's pattern: any key or index (an agent's name, an edge's position)


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()  # a rule's replacement: remove the key, so the field takes its default


@dataclass(frozen=True)
class Rule:
    """What the meaning checks may assume when the value at ``pattern`` is broken or misspelt."""

    pattern: Loc
    replacement: Any  # DROP, or a placeholder value (copied where it is used)
    mute: bool = False  # skip the checks of this part and report nothing under it


def repair(
    plain: Any,
    exc: ValidationError,
    model: type[M],
    rules: Sequence[Rule],
    suspect: Callable[[Loc], Loc | None],
) -> tuple[M, frozenset[Loc]] | None:
    """The document with ``exc``'s errors repaired, validated, and the paths to mute; None: give up.

    An unknown key is removed; ``suspect`` names the field it may be a misspelling of (or None), and a
    suspected field the document lacks is repaired as if it were broken, since its default would lie.
    """
    doc = copy.deepcopy(plain)
    broken: list[Loc] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and _remove(doc, loc):
            target = suspect(loc)
            if target is not None and not _exists(doc, target):
                broken.append(target)
        else:
            broken.append(loc)  # an unknown key under a union branch (not a real path) lands here too
    fixes: dict[Loc, Rule] = {}
    for loc in broken:
        rule = _rule_for(rules, loc)
        if rule is None:
            return None
        fixes[loc[: len(rule.pattern)]] = rule
    muted: set[Loc] = set()
    for path in sorted(fixes, key=len, reverse=True):  # inner fixes first: an outer one may replace them
        rule = fixes[path]
        if not _put(doc, path, rule.replacement):
            return None
        if rule.mute:
            muted.add(path)
    try:
        return model.model_validate(doc), frozenset(muted)
    except ValidationError:
        return None


def _rule_for(rules: Sequence[Rule], loc: Loc) -> Rule | None:
    """The rule with the longest pattern that matches the start of ``loc``."""
    best: Rule | None = None
    for rule in rules:
        size = len(rule.pattern)
        matches = size <= len(loc) and all(p in (ANY, k) for p, k in zip(rule.pattern, loc, strict=False))
        if matches and (best is None or size > len(best.pattern)):
            best = rule
    return best


def _parent(doc: Any, loc: Loc) -> dict[str, Any] | None:
    node = doc
    for key in loc[:-1]:
        is_item = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if not (is_item or (isinstance(node, dict) and key in node)):
            return None
        node = node[key]
    return node if isinstance(node, dict) and loc else None


def _exists(doc: Any, loc: Loc) -> bool:
    parent = _parent(doc, loc)
    return parent is not None and loc[-1] in parent


def _remove(doc: Any, loc: Loc) -> bool:
    parent = _parent(doc, loc)
    if parent is None or loc[-1] not in parent:
        return False
    del parent[loc[-1]]
    return True


def _put(doc: Any, path: Loc, replacement: Any) -> bool:
    parent = _parent(doc, path)
    if parent is None:
        return replacement is DROP  # nothing there to drop
    if replacement is DROP:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = copy.deepcopy(replacement)
    return True
