"""prometheus.query / query_range against a real Prometheus scraping a real exporter on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgecrew.errors import ToolError
from edgecrew.tools.base import ToolContext, ToolRegistry
from edgecrew.tools.builtins import prometheus
from edgecrew.tools.builtins.prometheus import parse_duration, parse_time
from tests import prom

needs_prometheus = pytest.mark.skipif(
    prom.binary() is None, reason="prometheus binary not found (Debian package `prometheus`; `make test` installs it)"
)


def _registry(url: str) -> ToolRegistry:
    registry = ToolRegistry()
    prometheus.register(registry, url)
    return registry


class Live:
    def __init__(self, url: str, exporter: prom.Exporter) -> None:
        self.url, self.exporter = url, exporter
        self.registry = _registry(url)

    async def call(self, tool: str, **arguments: Any) -> Any:
        return await self.registry.get(tool).call(arguments, ToolContext("run", "analyst", Path(".")))


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with prom.exporter() as exp, prom.prometheus_server([exp.address]) as url:
        exp.temperature.labels(room="lab").set(21.5)
        exp.temperature.labels(room="attic").set(-3)
        exp.jobs.inc(5)
        prom.wait_for(url, f'up{{job="{prom.JOB}"}} == 1', lambda r: len(r) == 1)
        prom.wait_for(url, "edgecrew_test_temperature_celsius", lambda r: len(r) == 2)
        yield Live(url, exp)


def _series(result: dict[str, Any], room: str) -> dict[str, Any]:
    return next(s for s in result["series"] if f'room="{room}"' in s["metric"])


@needs_prometheus
async def test_instant_query_returns_current_values(live: Live) -> None:
    result = await live.call("prometheus.query", query="edgecrew_test_temperature_celsius")
    assert result["result_type"] == "vector" and result["series_count"] == 2 and "note" not in result
    attic = _series(result, "attic")
    address = live.exporter.address
    assert attic == {
        "metric": f'edgecrew_test_temperature_celsius{{instance="{address}",job="{prom.JOB}",room="attic"}}',
        "value": -3.0,
    }
    total = await live.call("prometheus.query", query="sum(edgecrew_test_jobs_total)")
    assert total["series"] == [{"metric": "{}", "value": 5.0}]
    scalar = await live.call("prometheus.query", query="1 + 1", time="-1m")
    assert scalar["result_type"] == "scalar" and scalar["value"] == 2.0


@needs_prometheus
async def test_series_are_capped_with_a_note(live: Live) -> None:
    result = await live.call("prometheus.query", query="edgecrew_test_temperature_celsius", limit=1)
    assert len(result["series"]) == 1 and result["series_count"] == 2
    assert result["note"].startswith("showing 1 of 2 series; narrow the query")


@needs_prometheus
async def test_range_query_sees_a_value_change(live: Live) -> None:
    live.exporter.temperature.labels(room="lab").set(30)
    prom.wait_for(
        live.url, 'edgecrew_test_temperature_celsius{room="lab"}', lambda r: bool(r) and r[0]["value"][1] == "30"
    )
    result = await live.call(
        "prometheus.query_range", query="edgecrew_test_temperature_celsius", start="-5m", step="1s"
    )
    assert result["result_type"] == "matrix" and result["step_s"] == 1
    lab = _series(result, "lab")
    values = [v for _, v in lab["points"]]
    assert 21.5 in values and values[-1] == 30.0
    assert (lab["min"], lab["max"], lab["last"]) == (21.5, 30.0, 30.0)
    timestamps = [t for t, _ in lab["points"]]
    assert timestamps == sorted(timestamps) and len(lab["points"]) <= prometheus.MAX_POINTS
    rate = await live.call("prometheus.query_range", query="rate(edgecrew_test_jobs_total[10s])", start="now-30s")
    assert rate["series"] and rate["series"][0]["min"] >= 0


@needs_prometheus
async def test_long_ranges_are_downsampled_with_a_note(live: Live) -> None:
    result = await live.call("prometheus.query_range", query="vector(7)", start="-1h", end="now", step="1s")
    (series,) = result["series"]
    assert len(series["points"]) == prometheus.MAX_POINTS and series["last"] == 7.0
    assert series["points"][-1][0] - series["points"][0][0] == pytest.approx(3600, abs=1)
    assert "3601 points downsampled to 60; pass a larger step" in result["note"]
    auto = await live.call("prometheus.query_range", query="vector(7)", start="-1h")
    assert auto["step_s"] == 62 and len(auto["series"][0]["points"]) <= prometheus.MAX_POINTS
    assert "note" not in auto


@needs_prometheus
async def test_prometheus_errors_become_tool_errors(live: Live) -> None:
    with pytest.raises(ToolError, match=r"Prometheus rejected the query \(bad_data\): .*parse error"):
        await live.call("prometheus.query", query="sum(")
    with pytest.raises(ToolError, match="without Prometheus JSON; is it a Prometheus server"):
        await (
            _registry(f"http://{live.exporter.address}")
            .get("prometheus.query")
            .call({"query": "up"}, ToolContext("run", "analyst", Path(".")))
        )


async def test_unreachable_server_is_named() -> None:
    url = f"http://127.0.0.1:{prom.free_port()}"
    spec = _registry(url).get("prometheus.query")
    assert spec.description.endswith(f"(Prometheus at {url}).") and spec.risk == "safe"
    with pytest.raises(ToolError, match=f"Prometheus is unreachable at {url}"):
        await spec.call({"query": "up"}, ToolContext("run", "analyst", Path(".")))


async def test_bad_ranges_are_refused_before_asking_the_server() -> None:
    spec = _registry(f"http://127.0.0.1:{prom.free_port()}").get("prometheus.query_range")
    ctx = ToolContext("run", "analyst", Path("."))
    with pytest.raises(ToolError, match="must be before end"):
        await spec.call({"query": "up", "start": "now", "end": "-1h"}, ctx)
    with pytest.raises(ToolError, match="too many points; use a step of at least 10s"):
        await spec.call({"query": "up", "start": "-30h", "step": "1s"}, ctx)
    with pytest.raises(ToolError, match="cannot read duration 'fast'"):
        await spec.call({"query": "up", "step": "fast"}, ctx)
    with pytest.raises(ToolError, match="cannot read time 'yesterday'"):
        await spec.call({"query": "up", "start": "yesterday"}, ctx)


def test_time_and_duration_parsing() -> None:
    now = 1_714_564_800.0
    assert parse_time(None, now) == parse_time("now", now) == now
    assert parse_time("-15m", now) == parse_time("now-15m", now) == now - 900
    assert parse_time("1714564700", now) == parse_time(1714564700, now) == 1714564700
    assert parse_time("2024-05-01T12:00:00Z", now) == datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    assert parse_time("2024-05-01T14:00:00+02:00", now) == parse_time("2024-05-01T12:00:00", now)
    assert parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5 and parse_duration(15) == 15
    for bad in ("0s", "-5s", "1x", "m5", "1h 30m"):
        with pytest.raises(ToolError):
            parse_duration(bad)
