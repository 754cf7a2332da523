"""The metric sampler on this machine: host metrics and processes into a real SQLite store, the query
contract (series, latest, top, track), retention, the background loop, and the metrics tools on it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ToolError, UserError
from edgecrew.ops import Ops, metric_tools
from edgecrew.ops.sampler import MetricSampler, _gpu_metrics
from edgecrew.store.samples import ProcessRow, Sample
from edgecrew.tools.base import ToolContext, ToolRegistry

CONTRACT = (
    "cpu_percent",
    "load1",
    "load5",
    "load15",
    "memory_available_bytes",
    "memory_used_percent",
    "swap_used_percent",
    "disk_free_bytes",
)
MiB = 2**20
# A parent that starts a child holding 64 MiB (bytes filled in, so the pages are really there).
TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import sys, time; data = b'x' * (64 * 1024 * 1024); print('ready', flush=True); time.sleep(120)"])
time.sleep(120)
"""


@pytest.fixture
def rt() -> Runtime:
    return bootstrap()


@pytest.fixture
def sampler(rt: Runtime) -> MetricSampler:
    return Ops.of(rt).sampler


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()


def test_a_sample_records_this_machines_metrics(sampler: MetricSampler) -> None:
    before = time.time()
    taken = sampler.sample_now()
    assert set(CONTRACT) <= set(taken["metrics"]), taken["metrics"]
    mem = psutil.virtual_memory()
    assert 0 < taken["metrics"]["memory_available_bytes"] <= mem.total
    assert taken["metrics"]["memory_total_bytes"] == mem.total
    assert taken["processes"] and all(p["kind"] == "process" for p in taken["processes"])
    assert "gpus" in taken and (taken["gpus"] or taken["gpu_note"])  # GPU figures only with NVML
    for name in CONTRACT:
        assert sampler.series(name, before) == [(taken["at"], taken["metrics"][name])], name
    assert sampler.series("cpu_percent", before, until=before - 1) == []
    assert sampler.series("cpu_percent", before, host="another-box") == []
    latest = sampler.latest()
    assert latest is not None and latest["metrics"] == taken["metrics"] and latest["processes"] == taken["processes"]
    assert sampler.count(before) == 1


def test_unknown_names_are_clear_errors(sampler: MetricSampler) -> None:
    with pytest.raises(UserError, match="no sampler metric 'memory_free'; known: cpu_percent, load1"):
        sampler.series("memory_free", 0)
    with pytest.raises(UserError, match="resource must be 'memory' or 'cpu'"):
        sampler.top("disk", 0)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="cannot track pid 0"):
        sampler.track("job:1", 0)
    assert sampler.latest(host="nowhere") is None


def test_a_tracked_process_tree_is_recorded_under_its_label(
    sampler: MetricSampler, tree: subprocess.Popen[str]
) -> None:
    since = time.time()
    sampler.track("job:12", tree.pid)
    taken = sampler.sample_now()
    [job] = taken["tracked"]
    assert (job["label"], job["pid"], job["processes"]) == ("job:12", tree.pid, 2)
    assert job["rss_bytes"] >= 64 * MiB  # the child's memory counts for the tree
    top = sampler.top("memory", since, limit=50)
    tracked = [row for row in top if row["kind"] == "tracked"]
    assert [(r["label"], r["pid"], r["samples"]) for r in tracked] == [("job:12", tree.pid, 1)]
    assert tracked[0]["peak_rss_bytes"] == job["rss_bytes"]
    assert sampler.top("cpu", since, limit=1)[0]["peak_cpu_percent"] >= 0

    sampler.untrack("job:12")
    sampler.untrack("job:never")  # untracking what is not tracked is fine
    assert sampler.sample_now()["tracked"] == []


def test_a_tracked_process_that_ended_is_left_out(sampler: MetricSampler) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    sampler.track("job:gone", int(done.stdout))
    assert sampler.sample_now()["tracked"] == []


def test_retention_deletes_rows_older_than_the_setting(rt: Runtime, sampler: MetricSampler) -> None:
    now = time.time()
    days = rt.settings.sample_retention_days
    old = Sample(sampler.host, now - (days + 1) * 86400, {"load1": 9.0}, [ProcessRow("process", "old", 1, 1, 1)])
    recent = Sample(sampler.host, now - 60, {"load1": 1.0}, [ProcessRow("tracked", "job:1", 2, 5, 0, 3)])
    sampler.samples.write(old)
    sampler.samples.write(recent)
    assert [v for _, v in sampler.series("load1", 0)] == [9.0, 1.0]
    assert sampler.prune(now) == 2  # the old sample's metric row and process row
    assert sampler.series("load1", 0) == [(recent.at, 1.0)]
    assert [r["label"] for r in sampler.top("memory", 0)] == ["job:1"]
    assert sampler.prune(now) == 0


def test_gpus_are_folded_into_one_figure_each() -> None:
    gpus = [
        {"memory_used_bytes": 1, "memory_total_bytes": 10, "utilization_percent": 20.0, "temperature_c": 50.0},
        {"memory_used_bytes": 2, "memory_total_bytes": 10, "utilization_percent": 40.0, "temperature_c": 70.0},
    ]
    assert _gpu_metrics(gpus) == {
        "gpu_memory_used_bytes": 3.0,
        "gpu_memory_total_bytes": 20.0,
        "gpu_utilization_percent": 30.0,
        "gpu_temperature_c": 70.0,
    }
    assert _gpu_metrics([]) == {}
    quiet = [{"memory_used_bytes": 1, "memory_total_bytes": 2, "utilization_percent": None, "temperature_c": None}]
    assert set(_gpu_metrics(quiet)) == {"gpu_memory_used_bytes", "gpu_memory_total_bytes"}


async def test_the_background_loop_samples_until_stopped(rt: Runtime) -> None:
    rt.settings = rt.settings.model_copy(update={"sample_interval_s": 0.05})
    sampler = MetricSampler(rt)
    since = time.time() - 1
    await sampler.start()
    await sampler.start()  # a second start is a no-op
    try:
        for _ in range(400):
            if sampler.count(since) >= 2:
                break
            await asyncio.sleep(0.05)
        assert sampler.count(since) >= 2
    finally:
        await sampler.stop()
    taken = sampler.count(since)
    await asyncio.sleep(0.2)
    assert sampler.count(since) == taken  # stopped: no sample after stop returned
    await sampler.stop()  # stopping twice is fine


async def test_an_interval_of_zero_never_samples(rt: Runtime) -> None:
    rt.settings = rt.settings.model_copy(update={"sample_interval_s": 0})
    sampler = MetricSampler(rt)
    await sampler.start()
    await sampler.stop()
    assert sampler.latest() is None


# -- the metrics tools on the sampler --------------------------------------------------------------


async def _call(registry: ToolRegistry, name: str, **arguments: object) -> dict[str, object]:
    result = await registry.get(name).call(dict(arguments), ToolContext("run", "ops", Path(".")))
    assert isinstance(result, dict) and next(iter(result)) == "summary"  # small models read it first
    return result


async def test_summary_answers_from_the_sampler_on_a_bare_box(rt: Runtime) -> None:
    spec = rt.tools.get("metrics.summary")
    assert spec.risk == "safe" and spec.output_schema is not None and "window" in spec.input_schema["properties"]
    first = await _call(rt.tools, "metrics.summary", window="1h")  # no sample yet: it takes one
    assert first["source"] == "sampler" and first["samples"] == 1 and first["host"] == Ops.of(rt).sampler.host
    now = first["now"]
    assert isinstance(now, dict) and set(CONTRACT) <= set(now)
    assert str(first["summary"]).startswith(f"Now on {first['host']}: CPU ")
    assert "GiB available" in str(first["summary"])
    sampler = Ops.of(rt).sampler
    sampler.samples.write(Sample(sampler.host, time.time() - 30, {"cpu_percent": 100.0}, []))
    again = await _call(rt.tools, "metrics.summary", window="5m")
    stats = again["stats"]
    assert isinstance(stats, dict) and stats["cpu_percent"]["max"] == 100.0 and again["samples"] == 2


async def test_top_says_what_used_the_most_memory(rt: Runtime, tree: subprocess.Popen[str]) -> None:
    sampler = Ops.of(rt).sampler
    sampler.track("job:7", tree.pid)
    sampler.sample_now()
    answer = await _call(rt.tools, "metrics.top", resource="memory", window="1h", limit=20)
    assert answer["source"] == "sampler" and answer["resource"] == "memory"
    items = answer["items"]
    assert isinstance(items, list) and items
    peaks = [i["peak_memory_bytes"] for i in items]
    assert peaks == sorted(peaks, reverse=True)
    job = next(i for i in items if i["kind"] == "tracked")
    assert job["name"] == "job:7" and job["pid"] == tree.pid and job["peak_memory_bytes"] >= 64 * MiB
    assert str(answer["summary"]).startswith("In the last 1h (1 sample(s) of ")
    assert f"the most memory was used by {items[0]['name']} (pid {items[0]['pid']}, peak " in str(answer["summary"])
    cpu = await _call(rt.tools, "metrics.top", resource="cpu", limit=1)
    assert cpu["window"] == "1h" and len(cpu["items"]) == 1  # type: ignore[arg-type]


async def test_tool_arguments_are_checked(rt: Runtime) -> None:
    ctx = ToolContext("run", "ops", Path("."))
    with pytest.raises(ToolError, match="cannot read duration 'an hour'"):
        await rt.tools.get("metrics.summary").call({"window": "an hour"}, ctx)
    with pytest.raises(ToolError, match=r"invalid arguments for metrics\.top: resource"):
        await rt.tools.get("metrics.top").call({"resource": "disk"}, ctx)
    with pytest.raises(ToolError, match=r"invalid arguments for metrics\.top: limit"):
        await rt.tools.get("metrics.top").call({"limit": 0}, ctx)


async def test_unbound_tools_are_listed_but_say_so_when_called() -> None:
    registry = ToolRegistry()
    metric_tools.register(registry)
    assert set(metric_tools.METRIC_TOOLS) <= registry.names()
    with pytest.raises(ToolError, match="not bound to a runtime"):
        await registry.get("metrics.top").call({}, ToolContext("run", "ops", Path(".")))
