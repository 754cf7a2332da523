"""Text a model is writing right now, per run: what a watcher shows before the call is recorded.

A model call streams its reply into :class:`LiveText` as it is generated; the run page reads it
while the call lasts. Nothing here is durable (the recorded model_called event is the truth once the
call ends): it lives in the process that runs the call, so the server's pages show the runs it
executes, and a reader of another process's run simply sees no live text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from edgecrew.engine.runtime import Runtime

MAX_LIVE_CHARS = 64 * 1024  # a watcher sees the reply's last 64 KiB; the whole one is recorded at the end


@dataclass(frozen=True)
class Writing:
    """One model call in progress: whose it is and the text so far."""

    run_id: str
    call_key: str  # the model call's key (step key + ".m<n>")
    step_key: str
    agent: str
    model: str
    text: str
    started: float  # time.time() of the call's start
    version: int  # grows with every change, so a reader knows whether to send it again
    plain: bool = True  # a reply in words (False: JSON for a schema), what a chat shows


class LiveText:
    """The model calls being written now, one per (run, call), fed by the engine and read by pages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], Writing] = {}
        self._version = 0

    @classmethod
    def of(cls, rt: Runtime) -> LiveText:
        """The runtime's one hub (the process's engine writes to it, its pages read it)."""
        return rt.extension(LiveText, lambda _rt: LiveText())

    def begin(
        self, run_id: str, call_key: str, step_key: str, agent: str, model: str, *, plain: bool = True
    ) -> Callable[[str], None]:
        """Start showing a call; returns the function that appends each piece of text it writes.
        ``plain``: the call answers in words (not JSON for a schema)."""
        with self._lock:
            self._version += 1
            self._calls[(run_id, call_key)] = Writing(
                run_id, call_key, step_key, agent, model, "", time.time(), self._version, plain
            )

        def append(text: str) -> None:
            if not text:
                return
            with self._lock:
                current = self._calls.get((run_id, call_key))
                if current is None:
                    return
                self._version += 1
                joined = (current.text + text)[-MAX_LIVE_CHARS:]
                self._calls[(run_id, call_key)] = replace(current, text=joined, version=self._version)

        return append

    def end(self, run_id: str, call_key: str) -> None:
        """The call is over (recorded, failed or abandoned): stop showing it."""
        with self._lock:
            if self._calls.pop((run_id, call_key), None) is not None:
                self._version += 1

    def of_run(self, run_id: str) -> list[Writing]:
        """The calls of ``run_id`` being written now, oldest first."""
        with self._lock:
            return sorted((w for (r, _), w in self._calls.items() if r == run_id), key=lambda w: w.started)
