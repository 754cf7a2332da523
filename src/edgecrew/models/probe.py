"""What the model pool reads from the machine: RAM and CPU through psutil, GPUs through NVML."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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


CPU_WINDOW_S = 1.0  # free CPU is measured over at least this long (a few ms of CPU time is noise)


class PsutilProbe:
    """RAM and CPU through psutil; GPUs through NVML when ``pynvml`` is installed and finds one.

    Free CPU comes from the probe's own CPU-time counters over a window of at least ``CPU_WINDOW_S``:
    ``psutil.cpu_percent(None)`` measures since whoever called it last (the sampler, system.snapshot),
    so two questions a few ms apart (EdgePilot's can_run, then suggest_window) got 2.0 and 0.0 cores.
    Asked again within the window, it answers the last full window's figure; before the first, the
    load average's. The CPU time of edgecrew's own process (its model calls: llama.cpp's threads) is
    not counted as busy: it comes and goes with its runs, and right after EdgePilot's planner had kept
    both cores of a small box busy, a job "did not fit now" on an idle machine. Jobs and sandboxed
    code are child processes: theirs counts. The ``cpu_times``, ``clock``, ``cpu_count``,
    ``load_average`` and ``own_cpu_time`` arguments are for tests.
    """

    def __init__(
        self,
        *,
        cpu_times: Callable[[], Any] | None = None,
        clock: Callable[[], float] | None = None,
        cpu_count: Callable[[], int | None] | None = None,
        load_average: Callable[[], float] | None = None,
        own_cpu_time: Callable[[], float] | None = None,
    ) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._nvml: Any = None
        self._nvml_missing = False
        self._cpu_times = cpu_times or psutil.cpu_times
        self._clock = clock or time.monotonic
        self._cpu_count = cpu_count or psutil.cpu_count
        self._load_average = load_average or (lambda: psutil.getloadavg()[0])
        self._own_cpu_time = own_cpu_time or self._process_cpu_time
        self._cpu_lock = threading.Lock()
        self._cpu_mark = (self._clock(), self._cpu_times(), self._own_cpu_time())
        self._cpu_busy: float | None = None  # the share of CPU time busy over the last full window

    def total_memory(self) -> int:
        return int(self._psutil.virtual_memory().total)

    def available_memory(self) -> int:
        return int(self._psutil.virtual_memory().available)

    def process_memory(self) -> int:
        return int(self._process.memory_info().rss)

    def free_cpu(self) -> float:
        cores = self._cpu_count() or 1
        with self._cpu_lock:
            now, times, own = self._clock(), self._cpu_times(), self._own_cpu_time()
            since, before, own_before = self._cpu_mark
            if now - since >= CPU_WINDOW_S:
                busy = _busy_share(before, times, own - own_before)
                if busy is not None:
                    self._cpu_busy = busy
                self._cpu_mark = (now, times, own)
            busy = self._cpu_busy
        if busy is None:  # no full window yet: the load average says how busy the cores are
            busy = min(1.0, max(0.0, self._load_average() / cores))
        return round(max(0.0, cores * (1.0 - busy)), 2)

    def _process_cpu_time(self) -> float:
        times = self._process.cpu_times()  # this process's threads only: not its children (jobs)
        return float(times.user + times.system)

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


def _busy_share(before: Any, after: Any, own_s: float = 0.0) -> float | None:
    """The share of CPU time spent working between two ``psutil.cpu_times()`` readings (as psutil's
    own cpu_percent counts it: idle and iowait are not busy; guest time is already in user), less
    ``own_s`` CPU seconds of edgecrew's own process."""

    def total(t: Any) -> float:
        return float(sum(t)) - float(getattr(t, "guest", 0.0)) - float(getattr(t, "guest_nice", 0.0))

    def busy(t: Any) -> float:
        return total(t) - float(t.idle) - float(getattr(t, "iowait", 0.0))

    elapsed = total(after) - total(before)
    if elapsed <= 0:
        return None
    return min(1.0, max(0.0, (busy(after) - busy(before) - max(0.0, own_s)) / elapsed))


def default_budgets(probe: SystemProbe) -> tuple[int, int]:
    """(RAM, GPU) budgets: what is available now, less a safety margin for everything else."""
    ram = probe.available_memory() - max(MIN_MARGIN_BYTES, int(probe.total_memory() * MARGIN_FRACTION))
    gpus = probe.gpus()
    gpu = sum(g.free_bytes - max(MIN_MARGIN_BYTES, int(g.total_bytes * MARGIN_FRACTION)) for g in gpus)
    return max(0, ram), max(0, gpu)
