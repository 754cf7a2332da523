"""metrics.summary and metrics.top: this machine's figures now and over a window, and what used the
most memory or CPU, for the ops copilot's questions ("What used the most memory in the last hour?").

The one design decision: one question, two sources, one answer shape. On a bare box the built-in
sampler's history answers; with ``EDGECREW_PROMETHEUS_URL`` set, the same tools ask Prometheus by
node_exporter metric names (host figures) and cAdvisor names (containers), through the Prometheus
tools' own client; when Prometheus has none of those series the sampler answers and ``note`` says so.
``source`` names which one answered, and ``summary`` comes first: small models read it.
The tools are closures over one runtime (``register(registry, rt)``); unbound, they are only listed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Annotated, Any, Literal

from pydantic import Field

from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ToolError
from edgecrew.ops.sampler import MetricSampler
from edgecrew.specs.alerts import SAMPLER_METRICS
from edgecrew.tools.base import ToolRegistry, spec_from_function
from edgecrew.tools.builtins.prometheus import _Client, parse_duration

__all__ = ["METRIC_TOOLS", "PROMQL", "register"]

METRIC_TOOLS = ("metrics.summary", "metrics.top")
GIB = 1024**3
# The figures metrics.summary reports (the sampler's contract names), and how node_exporter (and
# NVIDIA's DCGM exporter, for GPUs) spell them in PromQL, summed or averaged over every instance.
SUMMARY_METRICS = SAMPLER_METRICS[:11]  # the contract names, in the order the summary shows them
PROMQL: dict[str, str] = {
    "cpu_percent": '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[1m])))',
    "load1": "max(node_load1)",
    "load5": "max(node_load5)",
    "load15": "max(node_load15)",
    "memory_available_bytes": "sum(node_memory_MemAvailable_bytes)",
    "memory_used_percent": "100 * (1 - sum(node_memory_MemAvailable_bytes) / sum(node_memory_MemTotal_bytes))",
    "swap_used_percent": "100 * (1 - sum(node_memory_SwapFree_bytes) / sum(node_memory_SwapTotal_bytes))",
    "disk_free_bytes": 'sum(node_filesystem_avail_bytes{mountpoint="/"})',
    "gpu_memory_used_bytes": "sum(DCGM_FI_DEV_FB_USED) * 1048576",
    "gpu_utilization_percent": "avg(DCGM_FI_DEV_GPU_UTIL)",
    "gpu_temperature_c": "max(DCGM_FI_DEV_GPU_TEMP)",
}
# cAdvisor's per-container series (a real container has an image; cgroup parents have none).
CONTAINER_TOP = {
    "memory": 'topk({limit}, max_over_time(container_memory_working_set_bytes{{image!=""}}[{window}]))',
    "cpu": (
        'topk({limit}, 100 * max_over_time(rate(container_cpu_usage_seconds_total{{image!=""}}[1m])[{window}:{step}]))'
    ),
}
NAME_LABELS = ("container", "name", "pod", "id")

_NUM = {"type": ["number", "null"]}
_STATS = {
    "type": "object",
    "properties": {"min": {"type": "number"}, "avg": {"type": "number"}, "max": {"type": "number"}},
    "required": ["min", "avg", "max"],
}
SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "source": {"enum": ["sampler", "prometheus"]},
        "window": {"type": "string"},
        "window_s": {"type": "number"},
        "host": {"type": ["string", "null"]},
        "samples": {"type": "integer", "minimum": 0},
        "now": {"type": "object", "additionalProperties": {"type": "number"}},
        "stats": {"type": "object", "additionalProperties": _STATS},
        "note": {"type": "string"},
    },
    "required": ["summary", "source", "window", "window_s", "samples", "now", "stats"],
}
TOP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "source": {"enum": ["sampler", "prometheus"]},
        "resource": {"enum": ["memory", "cpu"]},
        "window": {"type": "string"},
        "window_s": {"type": "number"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"enum": ["process", "tracked", "container"]},
                    "pid": {"type": ["integer", "null"]},
                    "peak_memory_bytes": _NUM,
                    "peak_cpu_percent": _NUM,
                    "samples": {"type": ["integer", "null"]},
                },
                "required": ["name", "kind", "pid", "peak_memory_bytes", "peak_cpu_percent"],
            },
        },
        "note": {"type": "string"},
    },
    "required": ["summary", "source", "resource", "window", "window_s", "items"],
}

Window = Annotated[
    str, Field(min_length=1, max_length=20, description="How far back to look: 15m, 1h, 6h, 1d (default 1h).")
]
Limit = Annotated[int, Field(ge=1, le=20, description="How many to list (1 to 20).")]


def register(registry: ToolRegistry, rt: Runtime | None = None) -> None:
    """Register metrics.summary and metrics.top bound to ``rt``'s sampler and settings; unbound (None),
    they are only listed and a call says so. Registering again replaces them."""
    bound = _MetricTools(rt)
    for name, fn, schema in (
        ("metrics.summary", bound.summary, SUMMARY_SCHEMA),
        ("metrics.top", bound.top, TOP_SCHEMA),
    ):
        spec = spec_from_function(fn, name=name, risk="safe", timeout_s=30.0)
        registry.register(dataclasses.replace(spec, output_schema=schema))


def _unasked(exc: ToolError) -> str:
    """Why Prometheus gave no figures (down, slow, refusing), as an answer from the sampler says it."""
    return f"{str(exc).split(';')[0]}; answered from this machine's sampler"


class _MetricTools:
    """The tools' functions over one runtime (their docstrings are the descriptions)."""

    def __init__(self, rt: Runtime | None) -> None:
        self._rt = rt

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            raise ToolError("the metrics tools are not bound to a runtime in this process (they are only listed here)")
        return self._rt

    @property
    def sampler(self) -> MetricSampler:
        from edgecrew.ops import Ops

        return Ops.of(self.rt).sampler

    async def summary(self, window: Window = "1h") -> dict[str, Any]:
        """This machine's CPU, load, memory, swap, disk and GPU now, with min/avg/max over the window."""
        seconds = parse_duration(window)
        url = self.rt.settings.prometheus_url
        note = ""
        if url:
            try:
                found = await _prometheus_summary(_Client(url, 10.0), seconds)
            except ToolError as exc:  # down or unreachable: this machine's own figures still answer
                found, note = None, _unasked(exc)
            if found is not None:
                now, stats, samples = found
                missing = [m for m in SUMMARY_METRICS if m not in now]
                if missing:
                    note = f"Prometheus has no series for: {', '.join(missing)}"
                return _summary_answer("prometheus", window, seconds, None, samples, now, stats, note)
            note = note or f"Prometheus at {url} has no node_exporter series; answered from this machine's sampler"
        return await asyncio.to_thread(self._sampler_summary, window, seconds, note)

    def _sampler_summary(self, window: str, seconds: float, note: str) -> dict[str, Any]:
        sampler, at = self.sampler, time.time()
        fresh = max(60.0, 2 * self.rt.settings.sample_interval_s)
        latest = sampler.latest()
        if latest is None or latest["at"] < at - fresh:
            latest = sampler.sample_now()  # nothing recent (no server sampling): look now
        now = {m: latest["metrics"][m] for m in SUMMARY_METRICS if m in latest["metrics"]}
        stats = {}
        for metric in now:
            values = [v for _, v in sampler.series(metric, at - seconds)]
            if values:
                stats[metric] = _stats(values)
        samples = sampler.count(at - seconds)
        return _summary_answer("sampler", window, seconds, sampler.host, samples, now, stats, note)

    async def top(
        self, resource: Literal["memory", "cpu"] = "memory", window: Window = "1h", limit: Limit = 5
    ) -> dict[str, Any]:
        """What used the most memory (or CPU) in the window: processes, tracked jobs or containers, by peak."""
        seconds = parse_duration(window)
        url = self.rt.settings.prometheus_url
        note = ""
        if url:
            try:
                items = await _prometheus_top(_Client(url, 10.0), resource, seconds, limit)
            except ToolError as exc:  # down or unreachable: this machine's own figures still answer
                items, note = [], _unasked(exc)
            if items:
                return _top_answer("prometheus", resource, window, seconds, items, "")
            note = note or f"Prometheus at {url} has no cAdvisor container series; answered from this machine's sampler"
        return await asyncio.to_thread(self._sampler_top, resource, window, seconds, limit, note)

    def _sampler_top(
        self, resource: Literal["memory", "cpu"], window: str, seconds: float, limit: int, note: str
    ) -> dict[str, Any]:
        sampler = self.sampler
        since = time.time() - seconds
        if sampler.count(since) == 0:
            sampler.sample_now()  # no history in the window (no server sampling): look now
        items = [
            {
                "name": row["label"],
                "kind": row["kind"],
                "pid": row["pid"],
                "peak_memory_bytes": row["peak_rss_bytes"],
                "peak_cpu_percent": row["peak_cpu_percent"],
                "samples": row["samples"],
            }
            for row in sampler.top(resource, since, limit)
        ]
        samples = sampler.count(since)
        extra = f"{samples} sample(s) of {sampler.host}"
        return _top_answer("sampler", resource, window, seconds, items, note, extra)


# -- Prometheus ------------------------------------------------------------------------------------
async def _prometheus_summary(
    client: _Client, seconds: float
) -> tuple[dict[str, float], dict[str, dict[str, float]], int] | None:
    """(now, stats, points) from node_exporter's series over the window; None when it has none."""
    end = time.time()
    step = max(1.0, math.ceil(seconds / 60))
    params = {"start": f"{end - seconds:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}

    async def one(expr: str) -> list[float]:
        data = await client.get("/api/v1/query_range", {**params, "query": expr})
        rows = data.get("result") or []
        return _finite(v for _, v in rows[0].get("values", [])) if rows else []

    results = await asyncio.gather(*(one(PROMQL[m]) for m in SUMMARY_METRICS))
    now, stats, points = {}, {}, 0
    for metric, values in zip(SUMMARY_METRICS, results, strict=True):
        if values:
            now[metric], stats[metric] = values[-1], _stats(values)
            points = max(points, len(values))
    return (now, stats, points) if now else None


async def _prometheus_top(
    client: _Client, resource: Literal["memory", "cpu"], seconds: float, limit: int
) -> list[dict[str, Any]]:
    window, step = f"{math.ceil(seconds)}s", f"{max(1, math.ceil(seconds / 60))}s"
    expr = CONTAINER_TOP[resource].format(limit=limit, window=window, step=step)
    data = await client.get("/api/v1/query", {"query": expr, "time": f"{time.time():.3f}"})
    items = []
    for row in data.get("result") or []:
        values = _finite([row["value"][1]])
        if not values:
            continue
        labels = row.get("metric", {})
        name = next((labels[k] for k in NAME_LABELS if labels.get(k)), labels.get("instance", "?"))
        value = values[0]
        items.append(
            {
                "name": name,
                "kind": "container",
                "pid": None,
                "peak_memory_bytes": int(value) if resource == "memory" else None,
                "peak_cpu_percent": round(value, 1) if resource == "cpu" else None,
                "samples": None,
            }
        )
    key = "peak_memory_bytes" if resource == "memory" else "peak_cpu_percent"
    return sorted(items, key=lambda i: i[key], reverse=True)


# -- answers ---------------------------------------------------------------------------------------
def _summary_answer(
    source: str,
    window: str,
    seconds: float,
    host: str | None,
    samples: int,
    now: dict[str, float],
    stats: dict[str, dict[str, float]],
    note: str,
) -> dict[str, Any]:
    parts = []
    if "cpu_percent" in now:
        load = f" (load {now['load1']:.2f})" if "load1" in now else ""
        parts.append(f"CPU {now['cpu_percent']:.0f}%{load}")
    elif "load1" in now:
        parts.append(f"load {now['load1']:.2f}")
    if "memory_available_bytes" in now:
        used = f", {now['memory_used_percent']:.0f}% used" if "memory_used_percent" in now else ""
        parts.append(f"memory {now['memory_available_bytes'] / GIB:.1f} GiB available{used}")
    if "disk_free_bytes" in now:
        parts.append(f"disk {now['disk_free_bytes'] / GIB:.1f} GiB free")
    if "gpu_memory_used_bytes" in now:
        parts.append(f"GPU memory {now['gpu_memory_used_bytes'] / GIB:.1f} GiB used")
    over = []
    if "cpu_percent" in stats:
        over.append(f"CPU avg {stats['cpu_percent']['avg']:.0f}% max {stats['cpu_percent']['max']:.0f}%")
    if "memory_available_bytes" in stats:
        over.append(f"memory available min {stats['memory_available_bytes']['min'] / GIB:.1f} GiB")
    where = f" on {host}" if host else " (Prometheus)"
    text = f"Now{where}: " + ("; ".join(parts) or "no figures")
    if over:
        text += f". Over the last {window} ({samples} sample(s)): " + "; ".join(over)
    answer: dict[str, Any] = {
        "summary": text + ".",
        "source": source,
        "window": window,
        "window_s": seconds,
        "host": host,
        "samples": samples,
        "now": {k: _round(v) for k, v in now.items()},
        "stats": {k: {s: _round(x) for s, x in v.items()} for k, v in stats.items()},
    }
    if note:
        answer["note"] = note
    return answer


def _top_answer(
    source: str,
    resource: Literal["memory", "cpu"],
    window: str,
    seconds: float,
    items: list[dict[str, Any]],
    note: str,
    extra: str = "",
) -> dict[str, Any]:
    def figure(item: dict[str, Any]) -> str:
        pid = f"pid {item['pid']}, " if item["pid"] is not None else ""
        if resource == "memory":
            return f"{item['name']} ({pid}peak {item['peak_memory_bytes'] / GIB:.2f} GiB)"
        return f"{item['name']} ({pid}peak {item['peak_cpu_percent']:.0f}% CPU)"

    basis = f" ({extra})" if extra else ""
    if items:
        names = ", then ".join(figure(i) for i in items[:3])
        text = f"In the last {window}{basis}, the most {resource} was used by {names}."
    else:
        text = f"No {resource} use was recorded in the last {window}{basis}."
    answer: dict[str, Any] = {
        "summary": text,
        "source": source,
        "resource": resource,
        "window": window,
        "window_s": seconds,
        "items": items,
    }
    if note:
        answer["note"] = note
    return answer


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "avg": sum(values) / len(values), "max": max(values)}


def _finite(raw: Any) -> list[float]:
    out = []
    for text in raw:
        try:
            value = float(text)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append(value)
    return out


def _round(value: float) -> float:
    return round(value, 2) if abs(value) < 1e6 else float(round(value))
