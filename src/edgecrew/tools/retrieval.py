"""Tool retrieval: the few tools most relevant to a request, so a small model is offered only those.

A 135M model picks the right tool far more often out of two than out of twenty, and a shorter tool list
is a shorter prompt. Ranking is Okapi BM25 (Lucene's variant, whose IDF never goes negative, which
matters when a list has only two or three tools) from the ``bm25s`` library, over each tool's name
split into words (``get_weather``, ``math.hypot``, ``sendEmail``), its description and its arguments'
names and descriptions. The one design decision: ranking is lexical and deterministic (no embedding
model to load, nothing to download, the same answer on every box); equal scores keep the tools' own
order, and the library is imported on the first call so ``import edgecrew`` stays light.

    ranked = rank_tools(task_text, [spec.definition() for spec in specs], k=3)
    offered = [r.item for r in ranked]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from edgecrew.domain.messages import ToolDefinition
from edgecrew.tools.base import ToolSpec

__all__ = ["Ranked", "rank", "rank_tools", "tokens", "tool_text"]

T = TypeVar("T")
ToolT = TypeVar("ToolT", bound=ToolSpec | ToolDefinition)

# Words that say nothing about which tool fits; removing them keeps "the"/"of" from deciding a tie.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "get",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "please",
        "so",
        "such",
        "than",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
_WORD = re.compile(r"[A-Za-z0-9]+")
# camelCase and PascalCase boundaries, acronyms kept whole: "getHTTPResponse" -> get HTTP Response.
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


@dataclass(frozen=True)
class Ranked(Generic[T]):
    """One item of a ranking: the item, its BM25 score and its position in the list it came from."""

    item: T
    score: float
    index: int


def tokens(text: str) -> list[str]:
    """Lower-case words of ``text``: split on anything but letters and digits, then on camelCase;
    stopwords dropped (``"get_userName"`` -> ``["user", "name"]``)."""
    words = (part.lower() for word in _WORD.findall(text) for part in _CAMEL.findall(word))
    return [w for w in words if w not in _STOPWORDS]


def tool_text(tool: ToolSpec | ToolDefinition) -> str:
    """What a tool is ranked on: its name, description, and its arguments' names and descriptions."""
    schema = tool.input_schema if isinstance(tool, ToolSpec) else tool.parameters
    return " ".join([tool.name, tool.description, *_schema_words(schema)])


def rank(query: str, items: Sequence[T], k: int, text: Callable[[T], str]) -> list[Ranked[T]]:
    """The ``k`` items whose ``text(item)`` best matches ``query`` by BM25, best first.

    Ties (items with equal scores, all of them when the query has no word in common with any item)
    keep their order in ``items``; ``k`` larger than the list returns the whole list, ranked.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, not {k}")
    if not items or k == 0:
        return []
    scores = _bm25_scores(tokens(query), [tokens(text(item)) for item in items])
    order = sorted(range(len(items)), key=lambda i: (-scores[i], i))
    return [Ranked(items[i], scores[i], i) for i in order[:k]]


def rank_tools(query: str, tools: Sequence[ToolT], k: int) -> list[Ranked[ToolT]]:
    """The ``k`` tools (ToolSpec or ToolDefinition) most relevant to ``query``, best first (see :func:`rank`)."""
    return rank(query, tools, k, tool_text)


def _bm25_scores(query: list[str], corpus: list[list[str]]) -> list[float]:
    if not query or not any(corpus):
        return [0.0] * len(corpus)
    import bm25s

    # numpy only: the scipy backend (picked when scipy happens to be installed) buys nothing at this size.
    index = bm25s.BM25(method="lucene", csc_backend="numpy")
    # bm25s cannot index an empty document; a tool with no words gets a placeholder no query contains.
    index.index([doc or ["\x00"] for doc in corpus], show_progress=False)
    return [float(score) for score in index.get_scores(query)]


def _schema_words(schema: Any) -> list[str]:
    """Argument names and descriptions of a JSON Schema, nested objects and array items included."""
    if not isinstance(schema, Mapping):
        return []
    words: list[str] = []
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            words.append(str(name))
            if isinstance(sub, Mapping) and isinstance(sub.get("description"), str):
                words.append(sub["description"])
            words += _schema_words(sub)
    words += _schema_words(schema.get("items"))
    return words
