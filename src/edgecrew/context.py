"""The correlation id of the work in progress, carried through async code in a context variable.

The API sets it per request (``X-Request-ID``); a run records it and its workflow sets it again
whenever it runs (also after a restart), so logs, spans and event rows of the run all carry it.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("edgecrew_request_id", default=None)
