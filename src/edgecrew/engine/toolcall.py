"""One tool call as an agent makes it: whatever goes wrong becomes an observation the model reads.

The one design decision: a refused call, bad arguments, a tool that runs past the agent's time and
a tool's own crash are never exceptions here; each comes back as ``(text, is_error=True)`` so the
turn goes on and counts it against the agent's ``max_tool_errors``. The in-memory fake runs tool
calls through this function; the durable step words its observations the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from edgecrew.domain.events import preview_result
from edgecrew.domain.messages import ToolCall
from edgecrew.errors import EdgecrewError, ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry
from edgecrew.tools.permissions import refusal

MAX_OBSERVATION_CHARS = 4000


async def execute_tool(
    tools: ToolRegistry, call: ToolCall, allowed: Sequence[str], context: ToolContext, timeout_s: float
) -> tuple[str, bool]:
    """Run ``call`` if ``context.agent`` may (``allowed``), within ``timeout_s``; returns (observation, is_error)."""
    try:
        spec = tools.find(call.name)
        refused = refusal(context.agent, allowed, spec, call.name)
        if refused is not None or spec is None:
            raise ToolError(refused or f"there is no tool '{call.name}'")
        result = await spec.call(call.arguments, context, budget_s=timeout_s)
        content, is_error = (result if isinstance(result, str) else json.dumps(result, default=str)), False
    except EdgecrewError as exc:
        content, is_error = f"error: {exc}", True
    except Exception as exc:  # a tool's own bug must not end the turn: the model sees it
        content, is_error = f"error: tool '{call.name}' failed: {type(exc).__name__}: {exc}", True
    return observation(content), is_error


def observation(content: str) -> str:
    """What the model reads of a tool's result: all of it up to MAX_OBSERVATION_CHARS; a longer JSON
    result as JSON of the same shape, its long strings and lists cut and counted (a model handed half a
    JSON text reads it as broken); longer text as its first characters and how many more there were."""
    if len(content) <= MAX_OBSERVATION_CHARS:
        return content
    head = content[:MAX_OBSERVATION_CHARS]
    shown = preview_result(content, MAX_OBSERVATION_CHARS)
    if shown != head:  # a JSON value, shrunk to fit
        return shown
    return head + f" [... {len(content) - MAX_OBSERVATION_CHARS} more chars]"
