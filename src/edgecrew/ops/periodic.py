"""One background loop for the server's periodic work (the metric sampler, alert evaluation).

``Periodic(name, tick, failure, who)`` runs ``tick`` now and then every ``interval`` seconds until stopped;
a tick that raises is logged and the loop goes on; ``stop()`` lets a tick in progress finish. A tick that
cannot reach the database is not a traceback a tick: ``who`` says once that it lost the database and
once that it is back (:class:`edgecrew.store.reach.Reach`, as a cluster worker's heartbeat does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from edgecrew.store.reach import OUT_OF_REACH, Reach

log = logging.getLogger("edgecrew.ops")


class Periodic:
    """One loop: ``failure`` is logged (with its traceback) when a tick fails; ``who`` says that the loop
    lost the database ("the supervisor")."""

    def __init__(self, name: str, tick: Callable[[], Awaitable[object]], failure: str, who: str) -> None:
        self.name, self._tick, self._failure = name, tick, failure
        self.reach = Reach(log, who, 0.0)
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, interval: float) -> None:
        """Begin ticking (a second start, or an interval of 0, does nothing)."""
        if self._task is not None or interval <= 0:
            return
        self._stopping = asyncio.Event()
        self.reach.every_s = interval
        self._task = asyncio.create_task(self._loop(interval, self._stopping), name=self.name)

    async def stop(self) -> None:
        task, stopping = self._task, self._stopping
        self._task = self._stopping = None
        if task is None or stopping is None:
            return
        stopping.set()
        await task

    async def _loop(self, interval: float, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self._tick()
            except OUT_OF_REACH as exc:
                self.reach.lost(time.time(), exc)
            except Exception:  # one failed tick must not end the loop
                log.exception(self._failure)
            else:
                self.reach.found(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval)
