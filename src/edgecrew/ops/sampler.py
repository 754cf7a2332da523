"""The built-in metric sampler: this machine's CPU, load, memory, swap, disks, GPUs (NVML) and busiest
processes, plus the process trees other parts asked it to track, recorded in the store at a fixed
interval and kept for a retention period, so the ops tools and alerts work on a bare box.

The one design decision: the sampler is synchronous and stateless between calls apart from the set
of tracked trees (a lock guards it), and the store holds everything else. Any thread may call
``sample_now``, ``series``, ``latest`` or ``top``; the server's background loop is only a caller that
runs ``sample_now`` in a worker thread every ``sample_interval_s`` and waits for it to end on stop.
The one-pass psutil and NVML readers are those of ``system.snapshot``, so both tell the same story.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Literal

import psutil

from edgecrew.engine.runtime import Runtime
from edgecrew.errors import UserError
from edgecrew.ops.periodic import Periodic
from edgecrew.specs.alerts import SAMPLER_METRICS
from edgecrew.store.samples import ProcessRow, Sample, SampleStore
from edgecrew.tools.builtins.system import _gpus, _processes

__all__ = ["SERIES_METRICS", "MetricSampler"]

log = logging.getLogger("edgecrew.ops.sampler")
SERIES_METRICS = SAMPLER_METRICS  # what ``series`` answers for (the first eleven are the contract)
DAY_S = 86400.0


class MetricSampler:
    """Samples of this host in the store, and the queries other code asks of them."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.host = socket.gethostname()
        self.samples = SampleStore(rt.store)
        self._tracked: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = Periodic(
            "edgecrew-metric-sampler",
            self._tick,
            "the metric sampler could not take or store a sample",
            "the metric sampler",
        )

    # -- tracking ---------------------------------------------------------------------------------
    def track(self, label: str, pid: int) -> None:
        """Record the RSS and CPU of ``pid``'s process tree under ``label`` (e.g. "job:12") in each sample."""
        if not label or len(label) > 255:
            raise UserError(f"a tracked label needs 1 to 255 characters, got {len(label)}")
        if pid <= 0:
            raise UserError(f"cannot track pid {pid}: not a process id")
        with self._lock:
            self._tracked[label] = pid

    def untrack(self, label: str) -> None:
        """Stop recording ``label`` (nothing happens when it is not tracked)."""
        with self._lock:
            self._tracked.pop(label, None)

    def tracked(self) -> dict[str, int]:
        with self._lock:
            return dict(self._tracked)

    # -- sampling ---------------------------------------------------------------------------------
    def sample_now(self) -> dict[str, Any]:
        """Take one sample of this host, store it, and return it (``host``, ``at``, ``metrics``,
        ``processes``, ``tracked``; ``gpus`` and ``gpu_note`` as system.snapshot reads them)."""
        settings = self.rt.settings
        tracked = self.tracked()
        trees = {label: _tree(pid) for label, pid in tracked.items()}
        for procs in trees.values():  # start their CPU clocks: read after the busiest-process window
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.cpu_percent(None)
        by_cpu, by_mem, cpu_percent = _processes(max(settings.sample_top_processes, 1))
        at = time.time()
        metrics = _host_metrics(cpu_percent, _existing(settings.home))
        gpus, gpu_note = _gpus()
        metrics |= _gpu_metrics(gpus)
        rows: list[ProcessRow] = []
        if settings.sample_top_processes:
            seen: set[int] = set()
            for busy in [*by_mem, *by_cpu]:
                if busy["pid"] not in seen:
                    seen.add(busy["pid"])
                    rows.append(
                        ProcessRow("process", busy["name"], busy["pid"], busy["rss_bytes"], busy["cpu_percent"])
                    )
        for label, procs in trees.items():
            row = _tree_row(label, tracked[label], procs)
            if row is not None:
                rows.append(row)
        sample = Sample(self.host, at, metrics, rows)
        self.samples.write(sample)
        result = sample.to_dict()
        result["gpus"] = gpus
        if gpu_note:
            result["gpu_note"] = gpu_note
        return result

    def prune(self, now: float | None = None) -> int:
        """Delete samples older than the retention period; how many rows went."""
        before = (time.time() if now is None else now) - self.rt.settings.sample_retention_days * DAY_S
        return self.samples.prune(before)

    # -- queries ----------------------------------------------------------------------------------
    def series(
        self, name: str, since: float, until: float | None = None, host: str | None = None
    ) -> list[tuple[float, float]]:
        """(time, value) of one host metric, oldest first (``host``: this machine when None)."""
        if name not in SERIES_METRICS:
            raise UserError(f"no sampler metric {name!r}; known: {', '.join(SERIES_METRICS)}")
        return self.samples.series(name, host or self.host, since, until)

    def latest(self, host: str | None = None) -> dict[str, Any] | None:
        """The newest stored sample of this machine (or ``host``), as ``sample_now`` returns it
        without the GPU details; None before the first."""
        sample = self.samples.latest(host or self.host)
        return None if sample is None else sample.to_dict()

    def latest_value(self, name: str, max_age_s: float, now: float | None = None) -> tuple[float, float] | None:
        """(time, value) of ``name`` in this machine's newest sample, when that is at most ``max_age_s`` old."""
        since = (time.time() if now is None else now) - max_age_s
        sample = self.samples.latest(self.host, since=since)
        if sample is None or name not in sample.metrics:
            return None
        return sample.at, sample.metrics[name]

    def top(
        self, resource: Literal["memory", "cpu"], since: float, limit: int = 5, host: str | None = None
    ) -> list[dict[str, Any]]:
        """Processes and tracked labels by peak use of ``resource`` since ``since``, the biggest first:
        each has kind (process | tracked), label, pid, peak_rss_bytes, peak_cpu_percent,
        avg_cpu_percent, samples, first_seen and last_seen."""
        if resource not in ("memory", "cpu"):
            raise UserError(f"resource must be 'memory' or 'cpu', not {resource!r}")
        return self.samples.top(host or self.host, resource, since, max(1, limit))

    def count(self, since: float, host: str | None = None) -> int:
        """How many samples this machine (or ``host``) took since ``since``."""
        return self.samples.count(host or self.host, since)

    # -- background loop --------------------------------------------------------------------------
    async def start(self) -> None:
        """Sample every ``sample_interval_s`` in the background (0: never); the first sample is now."""
        self._loop.start(self.rt.settings.sample_interval_s)

    async def stop(self) -> None:
        """End the loop, waiting for a sample in progress to be stored."""
        await self._loop.stop()

    async def _tick(self) -> None:
        await asyncio.to_thread(self.sample_now)
        await asyncio.to_thread(self.prune)


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the data dir may not be created yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _host_metrics(cpu_percent: float, data_dir: Path) -> dict[str, float]:
    mem, swap = psutil.virtual_memory(), psutil.swap_memory()
    load1, load5, load15 = os.getloadavg()
    data, root = psutil.disk_usage(str(data_dir)), psutil.disk_usage("/")
    return {
        "cpu_percent": float(cpu_percent),
        "load1": load1,
        "load5": load5,
        "load15": load15,
        "memory_total_bytes": float(mem.total),
        "memory_available_bytes": float(mem.available),
        "memory_used_bytes": float(mem.used),  # as system.snapshot reports it
        "memory_used_percent": float(mem.percent),
        "swap_used_bytes": float(swap.used),
        "swap_used_percent": float(swap.percent),
        "disk_free_bytes": float(data.free),
        "disk_used_percent": float(data.percent),
        "root_disk_free_bytes": float(root.free),
        "root_disk_used_percent": float(root.percent),
    }


def _gpu_metrics(gpus: list[dict[str, Any]]) -> dict[str, float]:
    """All GPUs as one figure each: memory summed, utilization averaged, the hottest temperature."""
    if not gpus:
        return {}
    metrics = {
        "gpu_memory_used_bytes": float(sum(g["memory_used_bytes"] for g in gpus)),
        "gpu_memory_total_bytes": float(sum(g["memory_total_bytes"] for g in gpus)),
    }
    utilization = [g["utilization_percent"] for g in gpus if g.get("utilization_percent") is not None]
    temperature = [g["temperature_c"] for g in gpus if g.get("temperature_c") is not None]
    if utilization:
        metrics["gpu_utilization_percent"] = float(statistics.fmean(utilization))
    if temperature:
        metrics["gpu_temperature_c"] = float(max(temperature))
    return metrics


def _tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_row(label: str, pid: int, procs: list[psutil.Process]) -> ProcessRow | None:
    rss, cpu, alive = 0, 0.0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                cpu += proc.cpu_percent(None)
            alive += 1
        except psutil.Error:  # ended since the tree was listed
            continue
    return ProcessRow("tracked", label, pid, rss, cpu, alive) if alive else None
