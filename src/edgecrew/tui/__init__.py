"""``edgecrew tui``: a terminal mission control (Textual) for runs, approvals, routines and chat.

An entry point like the CLI, the API and the web UI: every screen reaches edgecrew through the same
use cases (:class:`~edgecrew.engine.service.RunService`, :class:`~edgecrew.engine.approvals.ApprovalService`,
the routines of :class:`~edgecrew.ops.Ops`, :class:`~edgecrew.engine.chat.ChatService`), never the store.
It sits below ``cli`` in the layers, so the command builds the runtime and hands in the CLI's event
renderer (:func:`edgecrew.cli.render.event_line`): one renderer for every terminal view of a run.
"""

from __future__ import annotations

from edgecrew.tui.app import EdgecrewTUI
from edgecrew.tui.services import EventLine, Services

__all__ = ["EdgecrewTUI", "EventLine", "Services"]
