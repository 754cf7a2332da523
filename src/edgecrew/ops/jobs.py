"""Stub: jobs under policies (helper: jobs). TO BE FILLED."""

from __future__ import annotations

from edgecrew.engine.runtime import Runtime


class JobService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
