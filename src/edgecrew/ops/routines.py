"""Stub: routines (written next)."""

from __future__ import annotations

from edgecrew.engine.runtime import Runtime


class RoutineService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
