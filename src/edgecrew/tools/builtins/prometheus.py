"""prometheus.query / prometheus.query_range: PromQL over Prometheus's HTTP API, shaped for small models.

The server URL is bound when the tools are made: ``prometheus_tools(url)`` returns fresh ToolSpecs whose
functions close over it, and ``register(registry, url)`` puts them in a registry (re-registering with
another URL replaces them). No module state and no environment: two registries in one process can talk
to two servers, tests point them at a throwaway server, and the composition root turns the project's
``edgecrew.yaml`` ``prometheus: {url: ...}`` into one ``register`` call. The built-ins use Prometheus's
default local address until a project says otherwise.

Results are compact: each series is ``name{label="value",...}`` with its value (instant) or its points
plus min/max/last (range), capped in series and points with a note saying what was left out and how to
narrow the query. Prometheus's own error text is passed on, since it names what is wrong in the PromQL.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolRegistry, ToolSpec, spec_from_function

DEFAULT_URL = "http://127.0.0.1:9090"
MAX_SERIES = 100
MAX_POINTS = 60  # per series in a range result; more are evenly downsampled
SERVER_MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_TIME_HELP = "use RFC3339 like 2024-05-01T12:00:00Z, unix seconds like 1714564800, 'now', or relative like -15m"


def parse_duration(text: str | float) -> float:
    """Seconds in a Prometheus duration ('30s', '1h30m') or a plain number of seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip()
        try:
            seconds = float(raw)
        except ValueError:
            parts = _DURATION.findall(raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise ToolError(
                    f"cannot read duration '{text}': use e.g. 15s, 1m, 1h30m or a number of seconds"
                ) from None
            seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ToolError(f"duration '{text}' must be positive")
    return seconds


def parse_time(value: str | float | None, now: float) -> float:
    """Unix seconds for RFC3339, unix seconds, 'now', or relative '-15m' / 'now-15m' (naive times are UTC)."""
    if value is None:
        return now
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if text in ("", "now"):
        return now
    relative = text.removeprefix("now")
    if relative.startswith("-"):
        return now - parse_duration(relative[1:])
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ToolError(f"cannot read time '{value}': {_TIME_HELP}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _series_name(metric: dict[str, str]) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    name = metric.get("__name__", "")
    return f"{name}{{{labels}}}" if labels or not name else name


def _number(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text  # NaN/Inf are not JSON; keep Prometheus's spelling


def _stamp(ts: float) -> float | int:
    return int(ts) if float(ts).is_integer() else round(ts, 3)


def _downsample(points: list[Any], limit: int) -> list[Any]:
    if len(points) <= limit:
        return points
    return [points[round(i * (len(points) - 1) / (limit - 1))] for i in range(limit)]


class _Client:
    """One Prometheus server: GET an API path, return ``data`` or raise ToolError."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    async def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        import httpx  # here, not at the top: every runtime registers this tool, few runs call it

        params = {**params, "timeout": f"{self.timeout_s:g}s"}
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s + 2) as client:
                response = await client.get(path, params=params)
        except httpx.ConnectError as exc:
            raise ToolError(
                f"Prometheus is unreachable at {self.url} ({exc}); check that it is running and the configured URL"
            ) from None
        except httpx.TimeoutException:
            raise ToolError(
                f"Prometheus at {self.url} did not answer within {self.timeout_s:g}s; "
                "try a shorter time range or a simpler query"
            ) from None
        except httpx.HTTPError as exc:
            raise ToolError(f"request to Prometheus at {self.url} failed: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise ToolError(
                f"{self.url} answered HTTP {response.status_code} without Prometheus JSON; is it a Prometheus server?"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", response.text[:300]) if isinstance(body, dict) else response.text[:300]
            kind = body.get("errorType", f"HTTP {response.status_code}") if isinstance(body, dict) else "error"
            raise ToolError(f"Prometheus rejected the query ({kind}): {error}")
        data = body.get("data")
        return data if isinstance(data, dict) else {}


def _shape(data: dict[str, Any], limit: int, points: int = MAX_POINTS) -> dict[str, Any]:
    kind = data.get("resultType", "")
    result = data.get("result")
    out: dict[str, Any] = {"result_type": kind}
    if kind in ("scalar", "string"):
        out["value"] = _number(result[1]) if kind == "scalar" and result else (result or [None, None])[1]
        return out
    rows = result if isinstance(result, list) else []
    notes = []
    if len(rows) > limit:
        notes.append(f"showing {limit} of {len(rows)} series; narrow the query with label filters or sum by (...)")
    series = []
    for row in rows[:limit]:
        item: dict[str, Any] = {"metric": _series_name(row.get("metric", {}))}
        if kind == "vector":
            item["value"] = _number(row["value"][1])
        else:
            values = [[_stamp(ts), _number(v)] for ts, v in row.get("values", [])]
            finite = [v for _, v in values if isinstance(v, float)]
            if finite:
                item.update(min=min(finite), max=max(finite))
            item["last"] = values[-1][1] if values else None
            if len(values) > points:
                notes.append(f"{item['metric']}: {len(values)} points downsampled to {points}; pass a larger step")
            item["points"] = _downsample(values, points)
        series.append(item)
    out.update(series_count=len(rows), series=series)
    if notes:
        out["note"] = "; ".join(notes[:3]) + ("; ..." if len(notes) > 3 else "")
    return out


def prometheus_tools(url: str = DEFAULT_URL, *, timeout_s: float = 10.0) -> list[ToolSpec]:
    """ToolSpecs for ``prometheus.query`` and ``prometheus.query_range`` bound to the server at ``url``."""
    client = _Client(url, timeout_s)

    async def prometheus_query(query: str, time: str | float | None = None, limit: int = 20) -> Any:
        """Run a PromQL query at one moment (default now) and get each series' current value."""
        at = parse_time(time, _now())
        data = await client.get("/api/v1/query", {"query": query, "time": f"{at:.3f}"})
        return {"query": query, "time": _rfc3339(at), **_shape(data, max(1, min(limit, MAX_SERIES)))}

    async def prometheus_query_range(
        query: str,
        start: str | float = "-15m",
        end: str | float = "now",
        step: str | float | None = None,
        limit: int = 20,
    ) -> Any:
        """Run a PromQL query over a time range (default the last 15 minutes) and get each series' points."""
        now = _now()
        t0, t1 = parse_time(start, now), parse_time(end, now)
        if t0 >= t1:
            raise ToolError(f"start ({_rfc3339(t0)}) must be before end ({_rfc3339(t1)})")
        seconds = parse_duration(step) if step is not None else max(1.0, math.ceil((t1 - t0) / (MAX_POINTS - 1)))
        if (t1 - t0) / seconds + 1 > SERVER_MAX_POINTS:
            raise ToolError(
                f"step {seconds:g}s over {t1 - t0:g}s gives too many points; use a step of at least "
                f"{math.ceil((t1 - t0) / (SERVER_MAX_POINTS - 1))}s"
            )
        params = {"query": query, "start": f"{t0:.3f}", "end": f"{t1:.3f}", "step": f"{seconds:g}"}
        data = await client.get("/api/v1/query_range", params)
        window = {"start": _rfc3339(t0), "end": _rfc3339(t1), "step_s": seconds}
        return {"query": query, **window, **_shape(data, max(1, min(limit, MAX_SERIES)))}

    specs = []
    for fn, name in ((prometheus_query, "prometheus.query"), (prometheus_query_range, "prometheus.query_range")):
        spec = spec_from_function(fn, name=name, risk="safe", timeout_s=timeout_s + 5)
        specs.append(
            dataclasses.replace(spec, description=f"{spec.description.rstrip('.')} (Prometheus at {client.url}).")
        )
    return specs


def _now() -> float:
    return time.time()


def register(registry: ToolRegistry, url: str = DEFAULT_URL, *, timeout_s: float = 10.0) -> None:
    for spec in prometheus_tools(url, timeout_s=timeout_s):
        registry.register(spec)
