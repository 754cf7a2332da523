"""GET /metrics: runs driven through the API, the scrape parsed with Prometheus's own text parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from edgecrew.api.metrics import ServerMetrics
from edgecrew.domain.events import RunFinished, RunStarted, StepFinished
from edgecrew.domain.runs import Outcome, RunStatus
from edgecrew.store.repo import open_store
from tests import pg
from tests.api.conftest import auth
from tests.api.telemetry_project import extend_project, run_to_end


@pytest.fixture
def server_project(server_project: Path) -> Path:
    return extend_project(server_project)


def scrape(client: TestClient, key: str) -> dict[str, Any]:
    answer = client.get("/metrics", headers=auth(key))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(answer.text)}


def samples(families: dict[str, Any], name: str) -> list[Sample]:
    return list(families[name].samples)


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    found = [s.value for s in families[family].samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, f"{sample}{labels} in {[(s.name, s.labels) for s in families[family].samples]}"
    return float(found[0])


def test_metrics_count_runs_steps_tools_models_and_requests(client: TestClient, keys: dict[str, str]) -> None:
    assert run_to_end(client, keys, "echo")["status"] == "succeeded"
    assert run_to_end(client, keys, "echo")["status"] == "succeeded"
    assert run_to_end(client, keys, "lookup")["status"] == "succeeded"
    assert run_to_end(client, keys, "broken")["status"] == "failed"

    m = scrape(client, keys["read"])

    # Names and types follow Prometheus conventions: counters end in _total, units are base units.
    types = {
        "edgecrew_runs_started": "counter",
        "edgecrew_runs_finished": "counter",
        "edgecrew_agent_steps": "counter",
        "edgecrew_tool_calls": "counter",
        "edgecrew_tool_call_duration_seconds": "histogram",
        "edgecrew_model_calls": "counter",
        "edgecrew_model_call_duration_seconds": "histogram",
        "edgecrew_model_time_to_first_token_seconds": "histogram",
        "edgecrew_model_tokens": "counter",
        "edgecrew_http_requests": "counter",
        "edgecrew_http_request_duration_seconds": "histogram",
        "edgecrew_pool_queue_depth": "gauge",
        "edgecrew_pool_resident_models": "gauge",
        "edgecrew_pool_model_memory_bytes": "gauge",
        "edgecrew_pool_memory_used_bytes": "gauge",
        "edgecrew_pool_memory_budget_bytes": "gauge",
        "edgecrew_pool_waits": "counter",
        "edgecrew_pool_loads": "counter",
        "edgecrew_pool_evictions": "counter",
        "edgecrew_runs_unfinished": "gauge",
    }
    for name, kind in types.items():
        assert m[name].type == kind, name

    # Runs by team and outcome; the failing run counts as failed.
    assert value(m, "edgecrew_runs_started", "edgecrew_runs_started_total", team="echo") == 2
    assert value(m, "edgecrew_runs_started", "edgecrew_runs_started_total", team="lookup") == 1
    assert value(m, "edgecrew_runs_finished", "edgecrew_runs_finished_total", team="echo", status="succeeded") == 2
    assert value(m, "edgecrew_runs_finished", "edgecrew_runs_finished_total", team="broken", status="failed") == 1
    assert value(m, "edgecrew_agent_steps", "edgecrew_agent_steps_total", agent="solo", outcome="final") == 2
    assert value(m, "edgecrew_agent_steps", "edgecrew_agent_steps_total", agent="finder", outcome="final") == 1
    assert value(m, "edgecrew_agent_steps", "edgecrew_agent_steps_total", agent="solo", outcome="error") == 1

    # The tool call, by tool and outcome, with its duration.
    assert value(m, "edgecrew_tool_calls", "edgecrew_tool_calls_total", tool="lookup", outcome="ok") == 1
    assert (
        value(m, "edgecrew_tool_call_duration_seconds", "edgecrew_tool_call_duration_seconds_count", tool="lookup") == 1
    )

    # Model calls: latency and TTFT histograms by alias and backend; tokens by alias and kind.
    scripted = {"backend": "scripted"}
    assert value(m, "edgecrew_model_calls", "edgecrew_model_calls_total", alias="fake", outcome="ok", **scripted) == 2
    assert value(m, "edgecrew_model_calls", "edgecrew_model_calls_total", alias="tooly", outcome="ok", **scripted) == 2
    assert (
        value(m, "edgecrew_model_calls", "edgecrew_model_calls_total", alias="broken", outcome="error", **scripted) >= 1
    )
    for family in ("edgecrew_model_call_duration_seconds", "edgecrew_model_time_to_first_token_seconds"):
        assert value(m, family, f"{family}_count", alias="fake", **scripted) == 2
        assert value(m, family, f"{family}_bucket", alias="fake", le="+Inf", **scripted) == 2
        assert value(m, family, f"{family}_sum", alias="fake", **scripted) >= 0
    assert value(m, "edgecrew_model_tokens", "edgecrew_model_tokens_total", alias="fake", kind="completion") == 2 * 4
    assert value(m, "edgecrew_model_tokens", "edgecrew_model_tokens_total", alias="fake", kind="prompt") > 0

    # Pool gauges, read at scrape time from the pool that served the calls.
    assert value(m, "edgecrew_pool_queue_depth", "edgecrew_pool_queue_depth") == 0
    assert value(m, "edgecrew_pool_resident_models", "edgecrew_pool_resident_models") == 3
    assert {s.labels["alias"] for s in samples(m, "edgecrew_pool_model_memory_bytes")} == {"fake", "tooly", "broken"}
    assert value(m, "edgecrew_pool_memory_budget_bytes", "edgecrew_pool_memory_budget_bytes") > 0
    assert value(m, "edgecrew_pool_loads", "edgecrew_pool_loads_total") == 3
    assert value(m, "edgecrew_pool_evictions", "edgecrew_pool_evictions_total") == 0
    assert value(m, "edgecrew_runs_unfinished", "edgecrew_runs_unfinished", status="running") == 0

    # HTTP requests by route template (never the raw path), method and status.
    routes = {s.labels["route"] for s in samples(m, "edgecrew_http_requests")}
    assert "/runs/{run_id}/events" in routes and "/runs" in routes
    assert not any(r.startswith("/runs/") and "{" not in r for r in routes), routes
    assert (
        value(m, "edgecrew_http_requests", "edgecrew_http_requests_total", route="/runs", method="POST", status="201")
        == 4
    )
    assert (
        value(
            m,
            "edgecrew_http_request_duration_seconds",
            "edgecrew_http_request_duration_seconds_count",
            route="/runs",
            method="POST",
        )
        == 4
    )

    # No label anywhere holds a run id or another unbounded value.
    run_ids = {r["id"] for r in client.get("/runs", headers=auth(keys["read"])).json()["items"]}
    for family in m.values():
        for sample in family.samples:
            assert not set(sample.labels.values()) & run_ids, sample


def test_metrics_route_labels_of_unknown_paths_and_refusals(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/no/such/path/12345").status_code == 404
    assert client.get("/runs/abc123", headers=auth(keys["read"])).status_code == 404
    assert client.get("/metrics").status_code == 401  # the read scope is needed
    m = scrape(client, keys["read"])
    count = "edgecrew_http_requests_total"
    assert value(m, "edgecrew_http_requests", count, route="(unmatched)", method="GET", status="404") == 1
    assert value(m, "edgecrew_http_requests", count, route="/runs/{run_id}", method="GET", status="404") == 1
    assert value(m, "edgecrew_http_requests", count, route="/metrics", method="GET", status="401") == 1


def test_metrics_need_the_read_scope_and_any_key_with_it_works(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/metrics", headers=auth("ec_" + "x" * 43)).status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": keys["admin"]}).status_code == 200
    assert client.get("/metrics", headers=auth(keys["runs"])).status_code == 403


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not pg.available():
        pytest.skip("needs the PostgreSQL server binaries (make test installs them)")
    with pg.postgres_server() as url:
        yield url


def test_a_rewritten_event_is_not_counted_twice(store_url: str, tmp_path: Path) -> None:
    """A replayed step rewrites its events (same run and key): the listener is told, and skips them."""
    store = open_store(store_url)
    store.create_run("r1", "echo", "go", {}, str(tmp_path))
    metrics = ServerMetrics()
    seen: list[bool] = []
    store.subscribe(lambda _event, new: seen.append(new))
    store.subscribe(metrics.observe)
    step = StepFinished(outcome=Outcome.FINAL, model_calls=1)
    for _ in range(2):
        store.emit("r1", "v0.solo.finished", step, step_key="v0.solo", agent="solo")
        store.emit("r1", "run_finished", RunFinished(status=RunStatus.SUCCEEDED))
    assert seen == [True, True, False, False]
    assert len(store.events("r1")) == 2
    text = metrics.registry.get_sample_value("edgecrew_agent_steps_total", {"agent": "solo", "outcome": "final"})
    assert text == 1
    assert (
        metrics.registry.get_sample_value("edgecrew_runs_finished_total", {"team": "unknown", "status": "succeeded"})
        == 1
    )


def test_a_failing_listener_does_not_fail_the_write(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_run("r1", "echo", "go", {}, str(tmp_path))

    def broken(_event: object, _new: bool) -> None:
        raise RuntimeError("observer bug")

    unsubscribe = store.subscribe(broken)
    store.emit("r1", "run_started", RunStarted(team="echo"))
    unsubscribe()
    store.emit("r1", "run_finished", RunFinished(status=RunStatus.SUCCEEDED))
    assert [e.type for e in store.events("r1")] == ["run_started", "run_finished"]


@pytest.fixture
def alert_project(server_project: Path) -> Path:
    """The project with two alert rules, one that cannot hold (asked for before ``client``)."""
    config = server_project / "edgecrew.yaml"
    config.write_text(
        config.read_text()
        + """
alerts:
  always:
    metric: memory_available_bytes
    above: 0
    severity: critical
  never:
    metric: cpu_percent
    above: 100  # a percent: never above 100
"""
    )
    return server_project


def test_metrics_show_which_alert_rules_fire(alert_project: Path, client: TestClient, keys: dict[str, str]) -> None:
    import asyncio

    from edgecrew.ops import Ops

    ops = Ops.of(client.app.state.rt)  # type: ignore[attr-defined]
    ops.sampler.sample_now()
    asyncio.run(ops.alerts.evaluate_now())
    families = scrape(client, keys["read"])
    assert value(families, "edgecrew_alert_firing", "edgecrew_alert_firing", rule="always", severity="critical") == 1
    assert value(families, "edgecrew_alert_firing", "edgecrew_alert_firing", rule="never", severity="warning") == 0
