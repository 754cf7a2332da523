"""What the model pool reads from the machine: RAM and CPU through psutil, GPUs through NVML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

MiB = 1024 * 1024


def mib(n: int) -> str:
    """A byte count for people: '352 MiB'."""
    return f"{n / MiB:.0f} MiB"


MIN_MARGIN_BYTES = 256 * MiB  # left to the OS and the rest of the process by the default budget
MARGIN_FRACTION = 0.10  # ...or this share of the total, whichever is larger


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    used_bytes: int
    free_bytes: int


class SystemProbe(Protocol):
    """What the pool reads from the machine; tests pass a fake."""

    def total_memory(self) -> int: ...
    def available_memory(self) -> int: ...
    def process_memory(self) -> int: ...
    def free_cpu(self) -> float: ...
    def gpus(self) -> list[GpuInfo]: ...


class PsutilProbe:
    """RAM and CPU through psutil; GPUs through NVML when ``pynvml`` is installed and finds one."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._nvml: Any = None
        self._nvml_missing = False
        psutil.cpu_percent(interval=None)  # primes the counter: the next call measures since now

    def total_memory(self) -> int:
        return int(self._psutil.virtual_memory().total)

    def available_memory(self) -> int:
        return int(self._psutil.virtual_memory().available)

    def process_memory(self) -> int:
        return int(self._process.memory_info().rss)

    def free_cpu(self) -> float:
        cores = self._psutil.cpu_count() or 1
        return max(0.0, cores * (1.0 - self._psutil.cpu_percent(interval=None) / 100.0))

    def gpus(self) -> list[GpuInfo]:
        if self._nvml_missing:
            return []
        try:
            if self._nvml is None:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            nvml = self._nvml
            found = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                name = nvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else str(name)
                found.append(GpuInfo(index, name, int(mem.total), int(mem.used), int(mem.free)))
            return found
        except Exception:  # no pynvml, no driver, no GPU: the pool simply has no GPU budget
            self._nvml_missing = True
            return []


def default_budgets(probe: SystemProbe) -> tuple[int, int]:
    """(RAM, GPU) budgets: what is available now, less a safety margin for everything else."""
    ram = probe.available_memory() - max(MIN_MARGIN_BYTES, int(probe.total_memory() * MARGIN_FRACTION))
    gpus = probe.gpus()
    gpu = sum(g.free_bytes - max(MIN_MARGIN_BYTES, int(g.total_bytes * MARGIN_FRACTION)) for g in gpus)
    return max(0, ram), max(0, gpu)
