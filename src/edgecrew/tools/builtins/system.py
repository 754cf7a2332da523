"""system.snapshot: one look at this machine's CPU, memory, disks, busiest processes and GPUs.

Everything comes from psutil in one pass that samples CPU usage over a short window (``SAMPLE_S``), so
system and per-process CPU percentages describe the same moment. GPUs are read through NVML (the
optional ``nvidia-ml-py`` package) when it and a driver are present; otherwise ``gpus`` is empty and
``gpu_note`` says why. The result starts with a one-line ``summary`` for small models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function

SAMPLE_S = 0.25
MAX_TOP = 20
GIB = 1024**3

_NUM = {"type": "number", "minimum": 0}
_INT = {"type": "integer", "minimum": 0}
_PROC = {
    "type": "object",
    "properties": {"pid": _INT, "name": {"type": "string"}, "cpu_percent": _NUM, "rss_bytes": _INT},
    "required": ["pid", "name", "cpu_percent", "rss_bytes"],
}
_DISK = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "total_bytes": _INT,
        "used_bytes": _INT,
        "free_bytes": _INT,
        "percent": _NUM,
    },
    "required": ["path", "total_bytes", "used_bytes", "free_bytes", "percent"],
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "time": {"type": "string"},
        "uptime_s": _NUM,
        "cpu": {
            "type": "object",
            "properties": {
                "count": {"type": "integer", "minimum": 1},
                "percent": _NUM,
                "load_avg": {"type": "array", "items": _NUM, "minItems": 3, "maxItems": 3},
            },
            "required": ["count", "percent", "load_avg"],
        },
        "memory": {
            "type": "object",
            "properties": {"total_bytes": _INT, "available_bytes": _INT, "used_bytes": _INT, "percent": _NUM},
            "required": ["total_bytes", "available_bytes", "used_bytes", "percent"],
        },
        "disks": {"type": "array", "items": _DISK},
        "top_cpu": {"type": "array", "items": _PROC},
        "top_memory": {"type": "array", "items": _PROC},
        "gpus": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": _INT,
                    "name": {"type": "string"},
                    "memory_total_bytes": _INT,
                    "memory_used_bytes": _INT,
                    "utilization_percent": {"type": ["number", "null"]},
                    "temperature_c": {"type": ["number", "null"]},
                },
                "required": ["index", "name", "memory_total_bytes", "memory_used_bytes"],
            },
        },
        "gpu_note": {"type": "string"},
    },
    "required": ["summary", "time", "uptime_s", "cpu", "memory", "disks", "top_cpu", "top_memory", "gpus"],
}


def _processes(top: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Sample system and per-process CPU over the same window; return (top by CPU, top by RSS, cpu%)."""
    procs = list(psutil.process_iter(["pid", "name"]))
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.cpu_percent(None)
    psutil.cpu_percent(None)
    time.sleep(SAMPLE_S)
    system_percent = psutil.cpu_percent(None)
    rows: list[dict[str, Any]] = []
    for proc in procs:
        try:
            with proc.oneshot():
                rows.append(
                    {
                        "pid": proc.pid,
                        "name": proc.info["name"] or "?",
                        "cpu_percent": round(proc.cpu_percent(None), 1),
                        "rss_bytes": proc.memory_info().rss,
                    }
                )
        except psutil.Error:  # exited or not ours to read
            continue
    by_cpu = sorted(rows, key=lambda r: (r["cpu_percent"], r["rss_bytes"]), reverse=True)[:top]
    # Kernel threads and zombies hold no memory of their own: they are not "top memory" processes.
    by_mem = sorted((r for r in rows if r["rss_bytes"] > 0), key=lambda r: r["rss_bytes"], reverse=True)[:top]
    return by_cpu, by_mem, system_percent


def _disk(path: Path) -> dict[str, Any]:
    usage = psutil.disk_usage(str(path))
    return {
        "path": str(path),
        "total_bytes": usage.total,
        "used_bytes": usage.used,
        "free_bytes": usage.free,
        "percent": usage.percent,
    }


def _gpus() -> tuple[list[dict[str, Any]], str | None]:
    """GPUs through NVML, or an empty list and the reason there are none."""
    try:
        import pynvml
    except ImportError:
        return [], "no GPU data: the NVML bindings are not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no GPU data: NVML is unavailable ({exc}); no NVIDIA driver on this machine"
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpu: dict[str, Any] = {
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "memory_total_bytes": int(mem.total),
                "memory_used_bytes": int(mem.used),
                "utilization_percent": None,
                "temperature_c": None,
            }
            try:  # not every device (MIG slices, some Jetsons) reports these
                gpu["utilization_percent"] = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                gpu["temperature_c"] = float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
            except pynvml.NVMLError:
                pass
            gpus.append(gpu)
        return gpus, None if gpus else "NVML found no GPUs"
    except pynvml.NVMLError as exc:
        return [], f"no GPU data: NVML failed ({exc})"
    finally:
        pynvml.nvmlShutdown()


def system_snapshot(ctx: ToolContext, top: int = 5) -> dict[str, Any]:
    """Show this machine's CPU, memory, disk, busiest processes, uptime and GPUs right now."""
    top = max(1, min(top, MAX_TOP))
    top_cpu, top_mem, cpu_percent = _processes(top)
    mem = psutil.virtual_memory()
    disks = [_disk(Path(ctx.workspace).resolve()), _disk(Path("/"))]
    gpus, note = _gpus()
    count = psutil.cpu_count() or os.cpu_count() or 1
    uptime = max(time.time() - psutil.boot_time(), 0.0)
    used = mem.used
    gpu_text = ", ".join(
        f"{g['name']} {g['memory_used_bytes'] / GIB:.1f}/{g['memory_total_bytes'] / GIB:.1f} GiB" for g in gpus
    )
    summary = (
        f"CPU {cpu_percent:.0f}% of {count} cores (load {os.getloadavg()[0]:.2f}); "
        f"RAM {used / GIB:.1f}/{mem.total / GIB:.1f} GiB used; "
        f"workspace disk {disks[0]['percent']:.0f}% used; GPUs: {gpu_text or 'none'}"
    )
    result: dict[str, Any] = {
        "summary": summary,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "uptime_s": round(uptime, 1),
        "cpu": {"count": count, "percent": cpu_percent, "load_avg": [round(x, 2) for x in os.getloadavg()]},
        "memory": {
            "total_bytes": mem.total,
            "available_bytes": mem.available,
            "used_bytes": used,
            "percent": mem.percent,
        },
        "disks": disks,
        "top_cpu": top_cpu,
        "top_memory": top_mem,
        "gpus": gpus,
    }
    if note:
        result["gpu_note"] = note
    return result


def register(registry: ToolRegistry) -> None:
    spec = spec_from_function(system_snapshot, name="system.snapshot", risk="safe", timeout_s=15)
    registry.register(dataclasses.replace(spec, output_schema=OUTPUT_SCHEMA))
