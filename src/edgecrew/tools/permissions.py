"""Who may call what: the one place every tool call is checked, MCP tools included.

Tools are denied unless the agent's allow-list names them; ``forbidden`` tools are refused always;
``risky`` tools wait for a person unless the team's approval policy says ``never`` (or ``once`` and
this tool was already approved in the run), and never with arguments the tool would refuse. File
tools also check the agent's read/write globs, relative to the run workspace (fnmatch-style:
``drafts/*`` covers everything under drafts/).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolSpec
from edgecrew.tools.filepolicy import FilePolicy

__all__ = ["FilePolicy", "needs_approval", "refusal"]


def refusal(agent: str, allowed: Sequence[str], spec: ToolSpec | None, requested: str) -> str | None:
    """Why this call may not run at all (None when it may)."""
    if spec is None:
        return f"there is no tool '{requested}'; allowed: {', '.join(allowed) or 'none'}"
    if spec.name not in allowed:
        return f"tool '{requested}' is not allowed for agent '{agent}'; allowed: {', '.join(allowed) or 'none'}"
    if spec.risk == "forbidden":
        return f"tool '{spec.name}' is forbidden"
    return None


def needs_approval(
    spec: ToolSpec, policy: str, approved_tools: Collection[str], arguments: Mapping[str, Any] | None = None
) -> bool:
    """Whether this call waits for a person. A call whose ``arguments`` do not fit the tool's schema does
    not: it could never run, so it fails at once as an observation instead of asking someone to approve it."""
    if spec.risk != "risky" or policy == "never":
        return False
    if policy == "once" and spec.name in approved_tools:
        return False
    if arguments is not None:
        try:
            spec.validate_arguments(dict(arguments))
        except ToolError:
            return False
    return True
