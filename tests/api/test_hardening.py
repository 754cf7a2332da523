"""Findings of the server review, each pinned: keyless mode refuses other sites, the UI needs `read`,
YAML alias bombs are refused fast, out-of-range numbers are 4xx, metric labels stay bounded, and run-id
prefixes are literal."""

from __future__ import annotations

import html
import re
import socket
import textwrap
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from tests.api.conftest import auth
from tests.api.live import serve_in_thread

BOMB = (
    "name: t\nx:\n"
    + "\n".join(
        ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        + [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    )
    + "\nagents: {}\ngraph: {start: a}\n"
)


def test_keyless_localhost_refuses_other_sites(server_project: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECREW_ALLOW_KEYLESS_LOCALHOST", "1")
    reset_settings()
    with serve_in_thread(create_app()) as server:
        assert httpx.get(server.url + "/approvals").status_code == 200  # curl on this machine
        cross = [
            {"Origin": "http://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Host": "evil.example:8765"},  # a DNS-rebinding page names its own host
        ]
        for headers in cross:
            assert httpx.get(server.url + "/approvals", headers=headers).status_code == 401, headers
            post = httpx.post(server.url + "/ui/teams/echo/run", data={"task": "x"}, headers=headers)
            assert post.status_code == 303 and "/ui/login" in post.headers["location"], headers
        same = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
        ok = httpx.post(server.url + "/ui/teams/echo/run", data={"task": "x"}, headers=same)
        assert ok.status_code == 303 and ok.headers["location"].startswith("/ui/runs/r")


def sign_in(client: TestClient, key: str) -> httpx.Response:
    form = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    return client.post("/ui/login", data={"key": key, "login_token": token, "next": "/"})


def test_the_pages_need_the_read_scope(client: TestClient, keys: dict[str, str]) -> None:
    refused = sign_in(client, keys["approve"])
    assert "lacks the &#39;read&#39; scope" in refused.text or "lacks the 'read' scope" in html.unescape(refused.text)
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303


def test_a_yaml_alias_bomb_is_refused_quickly(client: TestClient, keys: dict[str, str]) -> None:
    started = time.perf_counter()
    r = client.post("/teams/validate", json={"yaml": BOMB}, headers=auth(keys["read"]))
    assert r.status_code == 200 and not r.json()["valid"]
    assert "aliases of aliases" in r.json()["issues"][0]["message"]
    assert time.perf_counter() - started < 30  # a guard against a hang, not a speed assertion


@pytest.mark.parametrize(
    "path",
    ["/runs/r1/events?after=100000000000000000000", "/tasks/t1/messages?after=99999999999999999999"],
)
def test_out_of_range_numbers_are_422(client: TestClient, keys: dict[str, str], path: str) -> None:
    r = client.get(path, headers=auth(keys["read"]))
    assert r.status_code == 422, r.text


def test_odd_last_event_ids_are_ignored(client: TestClient, keys: dict[str, str]) -> None:
    run_id = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"])).json()["id"]
    for last in (b"99999999999999999999", "\u00b2".encode("latin-1"), b"-1", b"abc"):
        r = client.get(f"/runs/{run_id}/events", headers={**auth(keys["read"]), "Last-Event-ID": last})  # type: ignore[dict-item]
        assert r.status_code == 200, (last, r.text)


def test_pages_answer_bad_numbers_with_an_html_400(client: TestClient, keys: dict[str, str]) -> None:
    sign_in(client, keys["read"])
    for path in ("/ui/runs?offset=100000000000000000000", "/ui/tasks/t1/code/100000000000000000000"):
        r = client.get(path)
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), path


def test_invented_http_methods_share_one_metric_label(client: TestClient, keys: dict[str, str]) -> None:

    with serve_in_thread(client.app) as server:  # type: ignore[arg-type]
        host, port = server.url.removeprefix("http://").split(":")
        for i in range(5):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(f"M{i:05d} /nowhere HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                sock.recv(1024)
        text = httpx.get(server.url + "/metrics", headers=auth(keys["read"])).text
    methods = set(re.findall(r'edgecrew_http_requests_total\{[^}]*method="([^"]+)"', text))
    assert not any(m.startswith("M0") for m in methods), methods
    assert "other" in methods


def test_run_id_prefixes_are_literal(client: TestClient, keys: dict[str, str]) -> None:
    client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"]))
    for prefix in ("%25", "_", "r%25"):
        assert client.get(f"/runs/{prefix}", headers=auth(keys["read"])).status_code == 404, prefix


def test_bomb_is_refused_in_the_ui_editor_too(client: TestClient, keys: dict[str, str]) -> None:
    sign_in(client, keys["read"])
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', client.get("/").text).group(1)  # type: ignore[union-attr]
    r = client.post("/ui/teams/echo/validate", data={"csrf": csrf, "yaml": textwrap.dedent(BOMB)})
    assert r.status_code == 200 and "aliases of aliases" in r.text


def test_a_path_no_operation_has_says_so(client: TestClient, keys: dict[str, str]) -> None:
    """POST /feedback (the route is /runs/{id}/feedback) answered a bare "Not Found", as if a run were
    missing; a route's own 404 keeps naming what it did not find."""
    r = client.post("/feedback", json={"run_id": "r1", "rating": 1}, headers=auth(keys["admin"]))
    assert r.status_code == 404
    assert r.json()["detail"] == "no operation POST /feedback; GET /openapi.json (or /docs) lists them"
    missing = client.get("/runs/rnothere", headers=auth(keys["read"]))
    assert missing.status_code == 404 and "no operation" not in missing.json()["detail"]
    wrong = client.delete("/teams", headers=auth(keys["admin"]))  # the path exists: 405, with what it allows
    assert wrong.status_code == 405 and wrong.json()["detail"].startswith("DELETE is not allowed here; use GET")
