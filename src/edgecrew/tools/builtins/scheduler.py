"""scheduler.can_run: asks the model pool and the machine whether a job of a given size fits now."""

from __future__ import annotations

from typing import Any

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

MiB = 2**20


def can_run(ctx: ToolContext, memory_mb: float, cpu_cores: float = 1.0, gpu_memory_mb: float = 0.0) -> dict[str, Any]:
    """Whether a job needing this much memory (MB), CPU cores and GPU memory can start now, and why not."""
    if memory_mb < 0 or cpu_cores < 0 or gpu_memory_mb < 0:
        raise ToolError("memory_mb, cpu_cores and gpu_memory_mb must not be negative")
    pool = ctx.pool
    if pool is None:
        from edgecrew.models.pool import ModelPool

        pool = ModelPool(_no_loader)  # no models in this process: only the machine's free room counts
    verdict = pool.can_run(int(memory_mb * MiB), cpu_cores, int(gpu_memory_mb * MiB))
    return {
        "fits": verdict.fits,
        "reason": verdict.reason,
        "free_memory_mb": round(verdict.free_memory_bytes / MiB),
        "free_cpu_cores": round(verdict.free_cpu, 2),
        "free_gpu_memory_mb": round(verdict.free_gpu_bytes / MiB),
    }


async def _no_loader(alias: str) -> Any:
    raise ToolError(f"no models can be loaded here ('{alias}')")


def register(registry: ToolRegistry) -> None:
    registry.register(spec_from_function(can_run, name="scheduler.can_run", timeout_s=10))
