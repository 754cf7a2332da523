"""edgecrew: durable teams of LLM agents on small local models.

The public API is the curated list in ``__all__``; everything else is internal.
Heavy dependencies (DBOS, llama.cpp, SQLAlchemy) are imported lazily by the modules
that need them, so ``import edgecrew`` stays light.
"""

from edgecrew.domain.messages import Message, ModelRequest, ModelResponse, ToolCall, Usage
from edgecrew.domain.specs import AgentSpec, Edge, Graph, Limits, TeamSpec
from edgecrew.errors import EdgecrewError, RunError, SpecError, UserError
from edgecrew.models.base import ChatModel
from edgecrew.models.scripted import ScriptedModel
from edgecrew.tools.base import ToolSpec, tool
from edgecrew.version import __version__

__all__ = [
    "AgentSpec",
    "ChatModel",
    "Edge",
    "EdgecrewError",
    "Graph",
    "Limits",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "RunError",
    "ScriptedModel",
    "SpecError",
    "TeamSpec",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "UserError",
    "__version__",
    "tool",
]
