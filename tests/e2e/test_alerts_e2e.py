"""Usage alerts and metrics end to end, with real parts only: a child process that holds memory, the
sampler reading this machine, a webhook receiver on 127.0.0.1 that fails its first call, Debian's
Prometheus scraping an exporter of node_exporter/cAdvisor-named gauges (and the real
prometheus-node-exporter when it is installed), and the app serving /alerts and /ui/alerts."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from edgecrew.app import create_app
from edgecrew.bootstrap import bootstrap
from edgecrew.engine.runtime import Runtime
from edgecrew.ops import Ops
from edgecrew.settings import get_settings
from edgecrew.tools.base import ToolContext
from tests import prom
from tests.api.test_ui_pages import sign_in
from tests.conftest import write
from tests.webhook import Receiver, webhook_receiver

MiB = 2**20
# What the child holds, and how far below the reading at the start available memory must drop for the
# rule to fire: half of it, so that other processes of a shared machine may move available memory by
# up to that much (a few hundred MiB is common) without firing the rule early or keeping it firing.
HOG_MIB = 1024
MARGIN_MIB = HOG_MIB // 2
# Allocates and fills HOG_MIB (filled, so the pages are really resident), says so, holds it until stdin closes.
HOG = f"import sys; data = b'x' * ({HOG_MIB} * {MiB}); print('holding', flush=True); sys.stdin.read()"
TRIES = 60  # samples taken while waiting for the machine to show the load (or its end)
ATTEMPTS = 3  # whole tries, each with a fresh reading, data dir and receiver (see _scenario)

needs_prometheus = pytest.mark.skipif(
    prom.binary() is None, reason="prometheus binary not found (Debian package `prometheus`; `make test` installs it)"
)
NODE_EXPORTER = shutil.which("prometheus-node-exporter")


async def _until(rt: Runtime, state: str) -> Any:
    """Sample and evaluate until the rule reaches ``state``; None when it does not in TRIES samples."""
    ops = Ops.of(rt)
    for _ in range(TRIES):
        await asyncio.to_thread(ops.sampler.sample_now)
        [status] = await ops.alerts.evaluate_now()
        if status.state == state:
            return status
        await asyncio.sleep(0.25)
    return None


async def _scenario(project_dir: Path, home: Path, hook: Receiver) -> tuple[Runtime, int] | str:
    """One try: read available memory, declare the rule relative to it, hold memory in a child, let it
    go. The runtime and threshold, or why other processes moved the machine's memory too much for
    this try to tell (the code under test is wrong in every try, or in none)."""
    settings = get_settings().model_copy(update={"home": home})
    warm = bootstrap(settings)  # everything this process loads is loaded before the reading
    start = Ops.of(warm).sampler.sample_now()["metrics"]["memory_available_bytes"]
    threshold = int(start - MARGIN_MIB * MiB)
    write(
        project_dir / "edgecrew.yaml",
        f"""\
        alerts:
          low-memory:
            metric: memory_available_bytes
            below: {threshold}
            for: 0s
            severity: critical
            description: available memory dropped {MARGIN_MIB} MiB below the start
            webhook: {hook.url}
        """,
    )
    rt = bootstrap(settings)
    rt.settings = rt.settings.model_copy(update={"alert_webhook_backoff_s": 0.05})
    ops = Ops.of(rt)
    before = await _until(rt, "ok")
    if before is None:
        return "available memory fell below the threshold before the load"
    assert before.value >= threshold

    hog = subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == "holding"
        ops.sampler.track("job:hog", hog.pid)
        since = time.time()
        firing = await _until(rt, "firing")
        if firing is None:
            return "available memory never fell below the threshold under the load"
        assert firing.value < threshold
        # What used the most memory meanwhile: the tracked child is there with what it holds.
        top = await rt.tools.get("metrics.top").call(
            {"resource": "memory", "window": "5m", "limit": 20}, ToolContext("run", "ops", Path("."))
        )
        job = next(i for i in top["items"] if i["name"] == "job:hog")
        assert job["peak_memory_bytes"] >= HOG_MIB * MiB and job["pid"] == hog.pid
        assert ops.sampler.series("memory_available_bytes", since)
    finally:
        assert hog.stdin is not None
        hog.stdin.close()
        hog.wait(timeout=30)
        ops.sampler.untrack("job:hog")
    resolved = await _until(rt, "resolved")
    if resolved is None:
        return "available memory did not come back above the threshold after the load"
    assert resolved.value >= threshold
    return rt, threshold


async def test_memory_alert_fires_under_load_resolves_after_and_its_webhook_arrives(
    project_dir: Path, tmp_path: Path
) -> None:
    problems: list[str] = []
    for attempt in range(ATTEMPTS):
        with webhook_receiver(fail_first=1) as hook:
            outcome = await _scenario(project_dir, tmp_path / f"try-{attempt}", hook)
        if not isinstance(outcome, str):
            break
        problems.append(outcome)
    else:
        pytest.fail(f"other processes moved this machine's memory too much in all {ATTEMPTS} tries: {problems}")
    rt, threshold = outcome

    assert [a["status"] for a in hook.attempts] == [500, 200, 200]  # the first POST failed and was retried
    fired, ended = hook.delivered
    assert (fired["rule"], fired["status"], fired["severity"]) == ("low-memory", "firing", "critical")
    assert (ended["rule"], ended["status"]) == ("low-memory", "resolved")
    assert fired["value"] < threshold <= ended["value"] and fired["threshold"] == threshold
    history = Ops.of(rt).alerts.history()
    assert [(e.kind, e.value) for e in history] == [("resolved", ended["value"]), ("firing", fired["value"])]
    assert history[1].delivery == {hook.url: "delivered (HTTP 200) on attempt 2"}


# -- the Prometheus path ---------------------------------------------------------------------------


class Exporter:
    """Gauges named as node_exporter and cAdvisor name them, served on 127.0.0.1."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.available = Gauge("node_memory_MemAvailable_bytes", "MemAvailable", registry=r)
        self.total = Gauge("node_memory_MemTotal_bytes", "MemTotal", registry=r)
        self.load1 = Gauge("node_load1", "1m load average", registry=r)
        # The promql rule's own series: moving node_load1 would change the summary test's 2-minute
        # min/avg/max if it ran after the rule's test (a module shares one Prometheus).
        self.queue_depth = Gauge("edgecrew_test_queue_depth", "a series only the promql rule reads", registry=r)
        self.fs_avail = Gauge("node_filesystem_avail_bytes", "free bytes", ["mountpoint", "device"], registry=r)
        self.working_set = Gauge(
            "container_memory_working_set_bytes", "working set", ["name", "image", "id"], registry=r
        )
        self.address = ""


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=exp.registry)
    exp.address = f"127.0.0.1:{server.server_port}"
    exp.available.set(3 * 2**30)
    exp.total.set(8 * 2**30)
    exp.load1.set(5.5)
    exp.fs_avail.labels(mountpoint="/", device="sda1").set(40 * 2**30)
    exp.working_set.labels(name="db", image="postgres:16", id="/docker/a").set(900 * MiB)
    exp.working_set.labels(name="web", image="nginx:1", id="/docker/b").set(120 * MiB)
    exp.working_set.labels(name="", image="", id="/").set(6 * 2**30)  # the root cgroup: not a container
    try:
        yield exp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def prometheus_url(exporter: Exporter) -> Iterator[str]:
    if prom.binary() is None:
        pytest.skip("prometheus binary not found (Debian package `prometheus`)")
    with prom.prometheus_server([exporter.address]) as url:
        prom.wait_for(url, "node_memory_MemAvailable_bytes", lambda r: len(r) == 1)
        prom.wait_for(url, "container_memory_working_set_bytes", lambda r: len(r) == 3)
        yield url


def _on_prometheus(url: str) -> Runtime:
    rt = bootstrap()
    rt.settings = rt.settings.model_copy(update={"prometheus_url": url})
    return rt


async def _tool(rt: Runtime, name: str, **arguments: Any) -> dict[str, Any]:
    result: dict[str, Any] = await rt.tools.get(name).call(arguments, ToolContext("run", "ops", Path(".")))
    assert next(iter(result)) == "summary"
    return result


@needs_prometheus
async def test_summary_and_top_answer_by_promql(prometheus_url: str) -> None:
    rt = _on_prometheus(prometheus_url)
    summary = await _tool(rt, "metrics.summary", window="2m")
    assert summary["source"] == "prometheus" and summary["host"] is None
    now = summary["now"]
    assert now["memory_available_bytes"] == 3 * 2**30 and now["load1"] == 5.5
    assert now["memory_used_percent"] == pytest.approx(62.5) and now["disk_free_bytes"] == 40 * 2**30
    assert summary["stats"]["load1"] == {"min": 5.5, "avg": 5.5, "max": 5.5}
    assert "cpu_percent" in summary["note"] and "gpu_temperature_c" in summary["note"]  # no such series here
    assert summary["summary"].startswith("Now (Prometheus): load 5.50; memory 3.0 GiB available, 62% used; disk 40.0")

    top = await _tool(rt, "metrics.top", resource="memory", window="5m", limit=5)
    assert top["source"] == "prometheus"
    assert [(i["name"], i["kind"], i["peak_memory_bytes"]) for i in top["items"]] == [
        ("db", "container", 900 * MiB),
        ("web", "container", 120 * MiB),
    ]
    assert top["summary"].startswith("In the last 5m, the most memory was used by db (peak 0.88 GiB)")


@needs_prometheus
async def test_without_container_series_the_sampler_answers(prometheus_url: str) -> None:
    rt = _on_prometheus(prometheus_url)
    top = await _tool(rt, "metrics.top", resource="cpu")
    assert top["source"] == "sampler" and top["items"]
    assert (
        top["note"]
        == f"Prometheus at {prometheus_url} has no cAdvisor container series; answered from this machine's sampler"
    )


async def test_with_prometheus_down_the_sampler_answers_and_says_why() -> None:
    """Before: with EDGECREW_PROMETHEUS_URL set and Prometheus down, metrics.summary and metrics.top failed
    ('Prometheus is unreachable'), and EdgePilot had no figures though this machine's sampler had them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there once closed
    rt = _on_prometheus(down)
    summary = await _tool(rt, "metrics.summary", window="15m")
    top = await _tool(rt, "metrics.top", resource="memory")
    for answer in (summary, top):
        assert answer["source"] == "sampler"
        assert answer["note"].startswith(f"Prometheus is unreachable at {down} (")
        assert answer["note"].endswith("; answered from this machine's sampler")
    assert summary["now"]["memory_available_bytes"] > 0 and top["items"]


@needs_prometheus
async def test_edgepilot_says_when_the_sampler_answered_in_prometheus_stead(prometheus_url: str) -> None:
    """With EDGECREW_PROMETHEUS_URL set, an answer from the sampler (Prometheus had no such series) read
    as Prometheus's: the note saying so stayed in the tool's result, out of the answer."""
    rt = _on_prometheus(prometheus_url)
    steps = [{"action": "top_usage", "resource": "cpu", "window": "1h"}]
    out = await _tool(rt, "pilot.execute", steps=steps, question="What used the most CPU?")
    [fact] = out["facts"]
    assert fact["result"]["source"] == "sampler"
    assert fact["statement"].endswith(
        f"(Prometheus at {prometheus_url} has no cAdvisor container series; answered from this machine's sampler.)"
    ), fact["statement"]
    by_promql = await _tool(rt, "pilot.execute", steps=[{"action": "report", "window": "15m"}], question="busy?")
    assert by_promql["facts"][0]["result"]["source"] == "prometheus"
    assert "answered from" not in by_promql["summary"]  # a missing GPU series is no news in an answer


@needs_prometheus
async def test_a_promql_rule_fires_and_resolves(prometheus_url: str, exporter: Exporter, project_dir: Path) -> None:
    rule = "alerts:\n  busy-node:\n    promql: max(edgecrew_test_queue_depth)\n    above: 4\n"
    write(project_dir / "edgecrew.yaml", rule)
    rt = _on_prometheus(prometheus_url)
    alerts = Ops.of(rt).alerts
    exporter.queue_depth.set(5.5)
    prom.wait_for(prometheus_url, "edgecrew_test_queue_depth == 5.5", lambda r: len(r) == 1)
    [s] = await alerts.evaluate_now()
    assert (s.state, s.value, s.scope) == ("firing", 5.5, "")
    exporter.queue_depth.set(1)
    prom.wait_for(prometheus_url, "edgecrew_test_queue_depth == 1", lambda r: len(r) == 1)
    [s] = await alerts.evaluate_now()
    assert (s.state, s.value) == ("resolved", 1)
    assert [e.kind for e in alerts.history()] == ["resolved", "firing"]


@needs_prometheus
@pytest.mark.skipif(NODE_EXPORTER is None, reason="Debian package prometheus-node-exporter is not installed")
async def test_the_real_node_exporter_agrees_with_the_sampler() -> None:
    port = prom.free_port()
    node = subprocess.Popen(
        [
            str(NODE_EXPORTER),
            f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults",
            *("--collector.meminfo", "--collector.loadavg", "--collector.cpu", "--collector.filesystem"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with prom.prometheus_server([f"127.0.0.1:{port}"]) as url:
            prom.wait_for(url, "node_memory_MemAvailable_bytes", lambda r: len(r) == 1)
            prom.wait_for(url, 'rate(node_cpu_seconds_total{mode="idle"}[1m])', lambda r: len(r) > 0)
            rt = _on_prometheus(url)
            summary = await _tool(rt, "metrics.summary", window="1m")
            sampled = Ops.of(rt).sampler.sample_now()["metrics"]
            assert summary["source"] == "prometheus"
            now = summary["now"]
            total = sampled["memory_total_bytes"]
            assert abs(now["memory_available_bytes"] - sampled["memory_available_bytes"]) < 0.1 * total
            assert 0 <= now["cpu_percent"] <= 100 and now["load1"] >= 0
    finally:
        node.terminate()
        node.wait(timeout=10)


# -- the API and the page --------------------------------------------------------------------------


async def test_api_and_page_show_rules_state_and_history(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          roomy:
            metric: memory_available_bytes
            above: 1
            severity: info
            description: there is memory
          quiet:
            model_calls: error_percent
            above: 50
        """,
    )
    rt = bootstrap()
    await asyncio.to_thread(Ops.of(rt).sampler.sample_now)
    await Ops.of(rt).alerts.evaluate_now()
    with TestClient(create_app(runtime=rt, start_engine=False), raise_server_exceptions=False) as client:
        _, key = rt.keys.create("alerts-reader", ("read",))
        headers = {"Authorization": f"Bearer {key}"}
        listed = client.get("/alerts", headers=headers)
        assert listed.status_code == 200, listed.text
        by_name = {a["name"]: a for a in listed.json()}
        roomy, quiet = by_name["roomy"], by_name["quiet"]
        assert (roomy["state"], roomy["kind"], roomy["severity"], roomy["comparison"]) == (
            "firing",
            "metric",
            "info",
            "above",
        )
        assert roomy["value"] > 1 and roomy["since"] and roomy["host"] == Ops.of(rt).sampler.host
        assert (quiet["state"], quiet["value"], quiet["host"]) == ("ok", None, None)
        assert "fewer than min_calls=5" in quiet["error"]

        history = client.get("/alerts/history", headers=headers, params={"rule": "roomy", "limit": 10})
        assert history.status_code == 200, history.text
        page = history.json()
        assert page["total"] == 1 and page["next_offset"] is None
        assert [(e["rule"], e["kind"], e["delivery"]) for e in page["items"]] == [("roomy", "firing", None)]
        missing = client.get("/alerts/history", headers=headers, params={"rule": "nosuch"})
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert "no alert rule 'nosuch'" in missing.json()["detail"]
        bad = client.get("/alerts/history", headers=headers, params={"rule": "Bad Name!", "limit": 0})
        assert bad.status_code == 422 and {tuple(e["loc"]) for e in bad.json()["errors"]} == {
            ("query", "rule"),
            ("query", "limit"),
        }
        assert client.get("/alerts").status_code == 401

        sign_in(client, key, "/ui/alerts")
        shown = client.get("/ui/alerts")
        assert shown.status_code == 200, shown.text[-500:]
        assert 'id="rule-roomy"' in shown.text and 'id="rule-quiet"' in shown.text
        assert "roomy</strong> is firing (info): there is memory" in shown.text
        assert "Recent firings and resolutions" in shown.text and "alert-firing" in shown.text
