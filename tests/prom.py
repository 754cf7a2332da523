"""A throwaway Prometheus server and a tiny exporter on 127.0.0.1 for the Prometheus tool tests.

The server is the Debian `prometheus` package's binary (installed by `make test`), run with a temporary
config and data directory, scraping the exporter every second. The exporter is prometheus_client's own
HTTP server on a port the kernel picks, serving a registry that the test sets values in.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

JOB = "edgecrew-test"


def binary() -> str | None:
    return shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Exporter:
    """A live /metrics endpoint with a labelled gauge and a counter the test controls."""

    address: str  # host:port, as Prometheus names the target in its `instance` label
    temperature: Gauge
    jobs: Counter


@contextmanager
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    temperature = Gauge("edgecrew_test_temperature_celsius", "A gauge the test sets", ["room"], registry=registry)
    jobs = Counter("edgecrew_test_jobs", "A counter the test increments", registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield Exporter(f"127.0.0.1:{server.server_port}", temperature, jobs)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def prometheus_server(targets: list[str], scrape_interval: str = "1s") -> Iterator[str]:
    """Start Prometheus scraping ``targets`` (host:port) as job ``edgecrew-test``; yields its base URL."""
    prometheus = binary()
    assert prometheus, "the prometheus binary is missing: run `make test` (it installs the Debian package)"
    root = Path(tempfile.mkdtemp(prefix="edgecrew-prom-"))
    config = root / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: {targets!r}\n",
        encoding="utf-8",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{_tail(root / 'prometheus.log')}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus at {url} not ready in 30s:\n{_tail(root / 'prometheus.log')}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def wait_for(url: str, query: str, ready: Callable[[list[Any]], bool], timeout_s: float = 30) -> list[Any]:
    """Poll an instant query until ``ready(result)``; return that result (Prometheus's raw vector)."""
    deadline = time.monotonic() + timeout_s
    result: list[Any] = []
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
        result = body.get("data", {}).get("result", [])
        if ready(result):
            return result
        time.sleep(0.2)
    raise TimeoutError(f"{query!r} on {url} never became ready in {timeout_s:g}s; last result: {result}")


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""
