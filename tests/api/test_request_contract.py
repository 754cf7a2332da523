"""What every request goes through besides auth: the body size limit (announced or streamed), the
CORS allow-list, X-Request-ID (echoed or made up, recorded on the run and its events) and
Idempotency-Key on run starts (also under concurrent duplicates), over a real server where the
transport matters (chunked bodies, threads)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from edgecrew.api.problems import PROBLEM_JSON
from edgecrew.app import create_app
from edgecrew.store.keys import ApiKeyStore
from tests.api.conftest import auth
from tests.api.live import ThreadServer, serve_in_thread, server_settings, write_project

LIMIT = 2000
ALLOWED_ORIGIN = "http://dashboard.example:3000"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ThreadServer, str]]:
    write_project(tmp_path / "project")
    config = server_settings(tmp_path, max_body_bytes=LIMIT, cors_origins=f"{ALLOWED_ORIGIN}, http://other.example")
    with serve_in_thread(create_app(config)) as server:
        yield server, ApiKeyStore(server.app.state.rt.store).create("contract", ("admin",))[1]


def _wait_finished(http: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


# -- body size limit ------------------------------------------------------------------------------


def _assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == 413 and str(LIMIT) in body["detail"] and body["request_id"]
    assert response.headers["x-request-id"] == body["request_id"]


def test_body_over_the_limit_is_413_with_content_length(live: tuple[ThreadServer, str]) -> None:
    server, key = live
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        big = http.post("/runs", json={"team": "echo", "task": "x" * (LIMIT + 1)})
        _assert_too_large(big)
        assert http.get("/runs").json()["total"] == 0  # nothing was started
        fits = http.post("/runs", json={"team": "echo", "task": "x" * (LIMIT - 100)})
        assert fits.status_code == 201, fits.text


def test_body_over_the_limit_is_413_when_streamed(live: tuple[ThreadServer, str]) -> None:
    server, key = live

    def chunks() -> Iterator[bytes]:
        yield b'{"team": "echo", "task": "'
        for _ in range(10):
            yield b"y" * (LIMIT // 4)
        yield b'"}'

    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        response = http.post("/runs", content=chunks(), headers={"Content-Type": "application/json"})
        assert "content-length" not in response.request.headers  # sent chunked
        assert response.request.headers["transfer-encoding"] == "chunked"
        _assert_too_large(response)
        assert http.get("/runs").json()["total"] == 0
        assert http.get("/health").status_code == 200  # the server is fine afterwards


# -- CORS --------------------------------------------------------------------------------------------


def test_cors_allows_listed_origins_only(live: tuple[ThreadServer, str]) -> None:
    server, key = live
    with httpx.Client(base_url=server.url, timeout=30) as http:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = http.options("/runs", headers={"Origin": ALLOWED_ORIGIN, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

        refused = http.options("/runs", headers={"Origin": "http://evil.example", **preflight})
        assert "access-control-allow-origin" not in refused.headers

        simple = http.get("/runs", headers={"Origin": ALLOWED_ORIGIN, **auth(key)})
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        other = http.get("/runs", headers={"Origin": "http://evil.example", **auth(key)})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers

        # a browser must be able to read the errors too
        denied = http.get("/runs", headers={"Origin": ALLOWED_ORIGIN})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        big = http.post(
            "/runs", content=b"x" * (LIMIT + 1), headers={"Origin": ALLOWED_ORIGIN, "Content-Type": "application/json"}
        )
        assert big.status_code == 413 and big.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_no_cors_headers_without_an_allow_list(tmp_path: Path) -> None:
    write_project(tmp_path / "project")
    with TestClient(create_app(server_settings(tmp_path))) as client:
        response = client.get("/health", headers={"Origin": ALLOWED_ORIGIN})
        assert "access-control-allow-origin" not in response.headers


# -- X-Request-ID ------------------------------------------------------------------------------------


def test_request_id_is_echoed_or_made_up(live: tuple[ThreadServer, str]) -> None:
    server, key = live
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        assert http.get("/health", headers={"X-Request-ID": "abc-123.x:y"}).headers["x-request-id"] == "abc-123.x:y"
        made_up = http.get("/health").headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made_up)
        for insane in ("has spaces in it", "x" * 200, "semi;colon"):
            got = http.get("/health", headers={"X-Request-ID": insane}).headers["x-request-id"]
            assert got != insane and re.fullmatch(r"[0-9a-f]{32}", got)
        problem = http.get("/runs/nothing-here", headers={"X-Request-ID": "lookup-1"})
        assert problem.status_code == 404 and problem.json()["request_id"] == "lookup-1"
        assert problem.headers["x-request-id"] == "lookup-1"


def test_request_id_is_recorded_on_the_run_and_its_events(live: tuple[ThreadServer, str]) -> None:
    server, key = live
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        started = http.post("/runs", json={"team": "echo", "task": "hi"}, headers={"X-Request-ID": "corr-42"})
        assert started.status_code == 201 and started.headers["x-request-id"] == "corr-42"
        run_id = started.json()["id"]
        assert started.json()["request_id"] == "corr-42"
        assert _wait_finished(http, run_id)["request_id"] == "corr-42"
        events = http.get(f"/runs/{run_id}/events").json()
        assert events[-1]["type"] == "run_finished"
        assert {e["request_id"] for e in events} == {"corr-42"}, [(e["type"], e["request_id"]) for e in events]


def test_an_unexpected_error_is_a_bare_500_with_the_request_id(tmp_path: Path) -> None:
    write_project(tmp_path / "project")
    app = create_app(server_settings(tmp_path))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("internal detail: /etc/secret-path")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500 and response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.headers["x-request-id"] == "trace-500"
    body = response.json()
    assert body["request_id"] == "trace-500" and body["status"] == 500
    assert "secret-path" not in response.text and "RuntimeError" not in response.text


def test_a_single_valued_query_parameter_given_twice_is_refused(live: tuple[ThreadServer, str]) -> None:
    server, key = live
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        response = http.get("/approvals", params=[("run", "a"), ("run", "b"), ("status", "all")])
        assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM_JSON)
        assert response.json()["errors"] == [
            {"loc": ["query", "run"], "msg": "given 2 times; it takes one value", "type": "repeated"}
        ]
        assert http.get("/runs", params=[("limit", "5"), ("offset", "0")]).status_code == 200
        assert http.get("/runs", params={"limit": "5", "status": "succeeded"}).status_code == 200
        refused = httpx.get(f"{server.url}/runs", params=[("limit", "1"), ("limit", "2")], timeout=30)
        assert refused.status_code == 401  # the key is still checked first


def test_a_query_parameter_an_operation_does_not_take_is_refused_by_name(live: tuple[ThreadServer, str]) -> None:
    """GET /approvals?run_id=R listed every run's pending approvals, as if unfiltered (it takes `run`)."""
    server, key = live
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        response = http.get("/approvals", params={"run_id": "r1"})
        assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM_JSON)
        assert response.json()["errors"] == [
            {"loc": ["query", "run_id"], "msg": "not a parameter of this operation (it takes: run, status)",
             "type": "unknown"}
        ]  # fmt: skip
        assert http.get("/runs", params={"limit": "5", "offset": "0", "status": "succeeded"}).status_code == 200
        assert http.get("/health", params={"probe": "1"}).status_code == 200  # takes none: nothing to mistype
        assert httpx.get(f"{server.url}/approvals", params={"run_id": "r1"}, timeout=30).status_code == 401


# -- Idempotency-Key ---------------------------------------------------------------------------------


def test_idempotency_key_starts_a_run_once(live: tuple[ThreadServer, str]) -> None:
    server, key = live
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        body = {"team": "echo", "task": "once"}
        first = http.post("/runs", json=body, headers={"Idempotency-Key": "k-1"})
        again = http.post("/runs", json=body, headers={"Idempotency-Key": "k-1"})
        assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
        assert first.headers["location"] == f"/runs/{first.json()['id']}"
        assert again.json()["id"] == first.json()["id"]

        other = http.post("/runs", json={"team": "echo", "task": "something else"}, headers={"Idempotency-Key": "k-1"})
        assert other.status_code == 409 and other.headers["content-type"].startswith(PROBLEM_JSON)
        assert first.json()["id"] in other.json()["detail"]

        fresh = http.post("/runs", json=body, headers={"Idempotency-Key": "k-2"})
        assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
        assert http.get("/runs").json()["total"] == 2


def test_concurrent_duplicates_start_exactly_one_run(live: tuple[ThreadServer, str]) -> None:
    server, key = live
    n = 8
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=server.url, headers=auth(key), timeout=60) as http:
            barrier.wait()
            response = http.post("/runs", json={"team": "echo", "task": "race"}, headers={"Idempotency-Key": "race"})
            with lock:
                answers.append(response)

    threads = [threading.Thread(target=post) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * (n - 1) + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as http:
        assert http.get("/runs").json()["total"] == 1
