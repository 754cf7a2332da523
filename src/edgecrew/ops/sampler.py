"""Stub: the psutil metric sampler (helper: metrics and alerts). TO BE FILLED."""

from __future__ import annotations

from edgecrew.engine.runtime import Runtime


class MetricSampler:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
