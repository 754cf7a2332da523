"""system.snapshot against this real machine: values agree with psutil and lie in range."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry
from edgecrew.tools.builtins import system


@pytest.fixture
def registry() -> ToolRegistry:
    reg = ToolRegistry()
    system.register(reg)
    return reg


def _busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(10_000))


async def test_snapshot_reports_real_values(registry: ToolRegistry, tmp_path: Path) -> None:
    spec = registry.get("system.snapshot")
    assert spec.risk == "safe" and spec.output_schema is not None
    stop = threading.Event()
    burner = threading.Thread(target=_busy, args=(stop,), daemon=True)
    burner.start()  # make this process the busiest one, so it shows up in top_cpu
    try:
        # ToolSpec.call checks the result against the declared output schema.
        snap = await spec.call({"top": 10}, ToolContext("run", "agent", tmp_path))
    finally:
        stop.set()
        burner.join()
    json.dumps(snap)  # JSON-able as is

    mem = psutil.virtual_memory()
    assert snap["memory"]["total_bytes"] == mem.total
    assert 0 < snap["memory"]["available_bytes"] <= mem.total
    assert 0 < snap["memory"]["used_bytes"] <= mem.total
    assert snap["cpu"]["count"] == psutil.cpu_count()
    assert 0 <= snap["cpu"]["percent"] <= 100
    assert snap["cpu"]["load_avg"] == pytest.approx(list(os.getloadavg()), abs=2.0)
    assert 0 < snap["uptime_s"] == pytest.approx(time.time() - psutil.boot_time(), abs=60)

    workspace, root = snap["disks"]
    assert workspace["path"] == str(tmp_path.resolve()) and root["path"] == "/"
    assert workspace["total_bytes"] == psutil.disk_usage(str(tmp_path)).total
    for disk in snap["disks"]:
        assert disk["used_bytes"] + disk["free_bytes"] <= disk["total_bytes"] and 0 <= disk["percent"] <= 100

    assert 1 <= len(snap["top_cpu"]) <= 10 and 1 <= len(snap["top_memory"]) <= 10
    cpus = [p["cpu_percent"] for p in snap["top_cpu"]]
    assert cpus == sorted(cpus, reverse=True)
    # The burner thread keeps this process busy; other busy processes of a loaded machine may outrank it,
    # but the busiest one listed must be using the CPU.
    assert cpus[0] > 0, snap["top_cpu"]
    rss = [p["rss_bytes"] for p in snap["top_memory"]]
    assert rss == sorted(rss, reverse=True) and all(0 < r <= mem.total for r in rss)
    mine = psutil.Process().memory_info().rss
    assert rss[0] >= mine * 0.5  # the largest process is at least about as big as this test process

    assert "CPU" in snap["summary"] and "RAM" in snap["summary"]
    if snap["gpus"]:
        for gpu in snap["gpus"]:
            assert 0 <= gpu["memory_used_bytes"] <= gpu["memory_total_bytes"]
        assert "gpu_note" not in snap
    else:
        assert snap["gpu_note"].startswith(("no GPU data", "NVML found no GPUs"))


async def test_top_is_bounded(registry: ToolRegistry, tmp_path: Path) -> None:
    spec = registry.get("system.snapshot")
    with pytest.raises(ToolError, match="top: Input should be a valid integer"):
        await spec.call({"top": "many"}, ToolContext("run", "agent", tmp_path))
    snap = await spec.call({"top": 500}, ToolContext("run", "agent", tmp_path))
    # clamped, not refused: a model asking for more gets the most there is
    assert min(6, len(psutil.pids()) - 5) <= len(snap["top_memory"]) <= system.MAX_TOP
    snap = await spec.call({}, ToolContext("run", "agent", tmp_path))
    assert len(snap["top_cpu"]) == 5


def test_gpu_probe_says_why_there_are_none() -> None:
    gpus, note = system._gpus()
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        have_nvml = True
    except Exception:
        have_nvml = False
    if have_nvml:
        assert note is None or note == "NVML found no GPUs"
    else:
        assert gpus == [] and note is not None and "no GPU data" in note
