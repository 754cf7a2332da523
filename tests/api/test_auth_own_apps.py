"""Keyless access from this machine and the rate limits, each test with an app (and durable engine) of
its own: apart from the auth matrix's module-wide app, which an engine started and stopped in the
middle of its tests would leave without one."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.store.keys import ApiKeyStore
from tests.api.live import assert_problem, serve_in_thread, server_settings, write_project

# -- keyless access from this machine ------------------------------------------------------------


def _no_key_status(url: str) -> int:
    return httpx.get(f"{url}/runs", timeout=30).status_code


def test_keyless_localhost_only_when_enabled(tmp_path: Path) -> None:
    write_project(tmp_path / "project")
    with serve_in_thread(create_app(server_settings(tmp_path))) as server:
        assert _no_key_status(server.url) == 401  # off by default, even from 127.0.0.1
    with serve_in_thread(create_app(server_settings(tmp_path, allow_keyless_localhost=True))) as server:
        assert _no_key_status(server.url) == 200
        # every scope: a run can be started, and a bad key is still refused, not ignored
        started = httpx.post(f"{server.url}/runs", json={"team": "echo", "task": "hi"}, timeout=30)
        assert started.status_code == 201, started.text
        bad = httpx.get(f"{server.url}/runs", headers={"Authorization": "Bearer nope"}, timeout=30)
        assert bad.status_code == 401


def test_keyless_is_refused_to_other_addresses(tmp_path: Path) -> None:
    """The test client's peer is "testclient", not a loopback address: enabled or not, no key, no entry."""
    write_project(tmp_path / "project")
    with TestClient(create_app(server_settings(tmp_path, allow_keyless_localhost=True))) as client:
        response = client.get("/runs")
        assert response.status_code == 401 and "WWW-Authenticate" in response.headers
        spoofed = client.get("/runs", headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"})
        assert spoofed.status_code == 401


# -- rate limit ---------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    write_project(tmp_path / "project")
    with TestClient(create_app(server_settings(tmp_path, rate_limit_per_minute=3))) as client:
        store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
        first, other = store.create("a", ("read",))[1], store.create("b", ("read",))[1]
        statuses = [client.get("/teams", headers={"X-API-Key": first}).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = client.get("/teams", headers={"X-API-Key": first})
        body = assert_problem(limited, 429, "GET /teams", "a fourth request")
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit" in body["detail"]
        assert client.get("/teams", headers={"X-API-Key": other}).status_code == 200  # per key
        assert client.get("/health").status_code == 200  # the open routes are not limited


def test_guessing_keys_is_rate_limited_by_address(tmp_path: Path) -> None:
    write_project(tmp_path / "project")
    with TestClient(create_app(server_settings(tmp_path, rate_limit_per_minute=3))) as client:
        good = ApiKeyStore(client.app.state.rt.store).create("good", ("read",))[1]  # type: ignore[attr-defined]
        guesses = [client.get("/teams", headers={"X-API-Key": f"ec_guess{i}"}).status_code for i in range(3)]
        assert guesses == [401, 401, 401]
        limited = client.get("/teams", headers={"X-API-Key": "ec_guess3"})
        assert_problem(limited, 429, "GET /teams", "a fourth wrong key")
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/teams", headers={"X-API-Key": good}).status_code == 200  # a real key has its own budget


# -- a server without keys ----------------------------------------------------------------------


def test_a_server_without_a_key_says_how_to_make_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every request but /health was refused and only the sign-in page explained why."""
    write_project(tmp_path / "project")
    advice = "no API key yet: every request but /health needs one"
    with caplog.at_level(logging.WARNING, "edgecrew"), TestClient(create_app(server_settings(tmp_path))) as client:
        ApiKeyStore(client.app.state.rt.store).create("me", ("admin",))  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records if advice in r.getMessage()] != []
    caplog.clear()
    with caplog.at_level(logging.WARNING, "edgecrew"), TestClient(create_app(server_settings(tmp_path))):
        pass  # a key exists now: nothing to say
    assert not [r for r in caplog.records if advice in r.getMessage()]
