"""Automatic recall: the few memories closest to an agent's input, as a block of its prompt.

The one design decision: the engine does not search memory itself. It asks :func:`prompt_recall`
once per visit, inside a recorded (durable) step, and puts the block at the start of the agent's user message and the
:class:`MemoryRecalledData` in the run's events; a resumed run replays the recorded block, so its
prompt, and the model calls recorded after it, stay the same. The block is short on purpose: small
local models have small contexts and follow the first lines they read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from edgecrew.domain.events import MemoryRecalled
from edgecrew.memory.service import MemoryService, Recall, ScopeRef

__all__ = ["HEADER", "MemoryRecalledData", "PromptRecall", "prompt_recall", "recall_block"]

HEADER = "Memories from earlier runs (most relevant first; they may be out of date):"
QUERY_CHARS = 2_000  # of the agent's input, embedded as the query
MEMORY_CHARS = 300  # of each memory, in the prompt
BLOCK_CHARS = 1_500


# The payload of the run's ``memory_recalled`` event is the event itself.
MemoryRecalledData = MemoryRecalled


@dataclass(frozen=True)
class PromptRecall:
    """The block for the prompt (None: nothing recalled) and the event that records it."""

    block: str | None
    event: MemoryRecalledData


def prompt_recall(service: MemoryService, query: str, scopes: Sequence[ScopeRef], k: int) -> PromptRecall:
    """Recall up to ``k`` memories of ``scopes`` for ``query`` and render them for a system prompt.

    Never raises: a recall that fails (the model missing, the database busy) leaves the prompt without
    memories and says why in the event's ``error``, because the turn is worth more than its memories.
    """
    empty = MemoryRecalledData(query=query[:200], scopes=tuple(str(s) for s in scopes))
    if k <= 0:
        return PromptRecall(None, empty)
    try:
        found = service.recall(query[:QUERY_CHARS], scopes, k)
    except Exception as exc:  # any failure of an optional prompt block is reported, not raised
        return PromptRecall(None, empty.model_copy(update={"error": f"{type(exc).__name__}: {exc}"[:500]}))
    return PromptRecall(_render(found), _event(found))


def recall_block(service: MemoryService, query: str, scopes: Sequence[ScopeRef], k: int) -> str | None:
    """The prompt block of the ``k`` memories of ``scopes`` closest to ``query``; None when none match."""
    return prompt_recall(service, query, scopes, k).block


def _render(found: Recall) -> str | None:
    if not found.hits:
        return None
    lines = [HEADER]
    used = len(HEADER)
    for hit in found.hits:
        text = " ".join(hit.text.split())
        if len(text) > MEMORY_CHARS:
            text = text[: MEMORY_CHARS - 1] + "…"
        day = datetime.fromtimestamp(hit.created_at, UTC).strftime("%Y-%m-%d")
        line = f"- [{hit.scope} {hit.scope_id}, {day}] {text}"
        if used + len(line) > BLOCK_CHARS and len(lines) > 1:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _event(found: Recall) -> MemoryRecalledData:
    return MemoryRecalledData(
        query=found.query[:200],
        scopes=tuple(str(s) for s in found.scopes),
        ids=tuple(h.id for h in found.hits),
        scores=tuple(h.score for h in found.hits),
        backend=found.backend,
        note=found.note,
    )
