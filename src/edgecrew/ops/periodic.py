"""One background loop for the server's periodic work (the metric sampler, alert evaluation).

``Periodic(name, tick)`` runs ``tick`` now and then every ``interval`` seconds until stopped; a tick
that raises is logged and the loop goes on; ``stop()`` lets a tick in progress finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("edgecrew.ops")


class Periodic:
    def __init__(self, name: str, tick: Callable[[], Awaitable[object]], failure: str) -> None:
        self.name, self._tick, self._failure = name, tick, failure
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
            except Exception:  # one failed tick must not end the loop
                log.exception(self._failure)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval)
