"""The server's logs: JSON lines with the request id, an access line per request, and secrets
(API keys valid or not, Authorization headers, secret body fields, a provider's API key) found
nowhere: not in the captured log output, not in any event row, not in any error response."""

from __future__ import annotations

import importlib.util
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from edgecrew.store.keys import SCOPES, ApiKeyStore
from edgecrew.telemetry.logging import REDACTED, Redactor, configure_logging
from tests.api.conftest import auth
from tests.api.telemetry_project import extend_project, run_to_end
from tests.conftest import write

PROVIDER_KEY_ENV = "EDGECREW_TEST_PROVIDER_KEY"


@contextmanager
def serve(app: FastAPI) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app under a TestClient started now (so its log handler writes to the stderr captured now)."""
    with TestClient(app, raise_server_exceptions=False) as client:
        store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
        yield client, {scope: store.create(f"t-{scope}", (scope,))[1] for scope in SCOPES}


@pytest.fixture(autouse=True)
def quiet_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    monkeypatch.delenv("EDGECREW_LOG_FORMAT", raising=False)
    reset_settings()


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        assert line.startswith("{"), f"not a JSON log line: {line!r}"
        parsed.append(json.loads(line))
    return parsed


def test_every_line_is_json_with_time_level_logger_message_and_request_id(
    server_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(create_app()) as (client, keys):
        key_id = client.get("/runs", headers=auth(keys["read"])).status_code and _key_id(client, keys["read"])
        answer = client.get("/runs/nope", headers={**auth(keys["read"]), "X-Request-ID": "req-log-1"})
        assert answer.status_code == 404
        logging.getLogger("uvicorn.error").warning("a uvicorn line")
        logging.getLogger("edgecrew.engine").info("an engine line with %s", "args")
    lines = json_lines(capsys.readouterr().err)
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= line.keys(), line
        assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    (access,) = [x for x in lines if x["logger"] == "edgecrew.access" and x.get("request_id") == "req-log-1"]
    assert access["level"] == "info"
    assert access["message"] == "GET /runs/nope 404"
    assert access["method"] == "GET" and access["route"] == "/runs/{run_id}" and access["status"] == 404
    assert access["key_id"] == key_id and isinstance(access["duration_ms"], float)
    assert any(x["logger"] == "uvicorn.error" and x["message"] == "a uvicorn line" for x in lines)
    assert any(x["logger"] == "edgecrew.engine" and x["message"] == "an engine line with args" for x in lines)


def _key_id(client: TestClient, key: str) -> str:
    store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
    found = store.authenticate(key)
    assert found is not None
    return found.id


def test_logging_is_put_back_when_the_app_stops(server_project: Path) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("edgecrew").level)
    uvicorn_before = [(lg.handlers[:], lg.propagate) for lg in map(logging.getLogger, ("uvicorn", "uvicorn.access"))]
    with serve(create_app()):
        assert len(root.handlers) == len(before[0]) + 1
    assert (list(root.handlers), root.level, logging.getLogger("edgecrew").level) == before
    assert [(lg.handlers[:], lg.propagate) for lg in map(logging.getLogger, ("uvicorn", "uvicorn.access"))] == (
        uvicorn_before
    )


def test_log_format_off_leaves_logging_alone(server_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECREW_LOG_FORMAT", "off")
    reset_settings()
    handlers = list(logging.getLogger().handlers)
    with serve(create_app()) as (client, keys):
        assert logging.getLogger().handlers == handlers
        assert client.get("/runs", headers=auth(keys["read"])).status_code == 200


# -- redaction ------------------------------------------------------------------------------------------


def test_redactor_scrubs_secret_fields_key_shapes_tokens_and_known_values() -> None:
    key = "ec_" + secrets.token_urlsafe(32)
    redact = Redactor(["sk-provider-secret-123"])
    event = redact(
        None,
        "info",
        {
            "event": f"calling with {key} and Bearer abc.def-123456 to postgres://u:hunter22@db/x",
            "Authorization": "Bearer whatever",
            "x_api_key": "anything",
            "headers": [(b"authorization", b"Basic dXNlcjpwYXNz"), ("accept", "text/plain")],
            "nested": {"password": "p4ss", "client_secret": "s", "note": "the sk-provider-secret-123 key"},
            "prompt_tokens": 12,
            "max_tokens": 5,
            "token_count": 3,
            "empty_token": "",
        },
    )
    assert event["event"] == f"calling with ec_{REDACTED} and Bearer {REDACTED} to postgres://u:{REDACTED}@db/x"
    assert event["Authorization"] == REDACTED and event["x_api_key"] == REDACTED
    assert event["headers"] == [["authorization", REDACTED], ["accept", "text/plain"]]
    assert event["nested"] == {"password": REDACTED, "client_secret": REDACTED, "note": f"the {REDACTED} key"}
    assert (event["prompt_tokens"], event["max_tokens"], event["token_count"]) == (12, 5, 3)
    assert event["empty_token"] == ""


def test_redactor_leaves_ordinary_text_alone() -> None:
    text = "the bearer of news chose a basic spec_design; tokens: 12; ec_short"
    assert Redactor(["tiny"]).scrub_text(text) == text  # values under 6 characters are not scrubbed


def test_exception_text_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    key = "ec_" + secrets.token_urlsafe(32)
    setup = configure_logging(redactor=Redactor(["sk-env-secret-987"]))
    try:
        try:
            raise RuntimeError(f"failed with {key} and sk-env-secret-987")
        except RuntimeError:
            logging.getLogger("edgecrew.test").exception("boom %s", key)
    finally:
        setup.close()
    (line,) = [x for x in json_lines(capsys.readouterr().err) if x["logger"] == "edgecrew.test"]
    assert line["level"] == "error" and "RuntimeError" in line["exception"]
    assert key not in json.dumps(line) and "sk-env-secret-987" not in json.dumps(line)


# -- the canary -----------------------------------------------------------------------------------------


class Provider:
    """An OpenAI-compatible server that refuses every key and, like a careless provider, echoes it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                seen.append(key)
                body = json.dumps(
                    {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
                ).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    found = Provider()
    yield found
    found.close()


def test_a_canary_secret_is_found_nowhere(
    server_project: Path, provider: Provider, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("litellm") is None:  # not importorskip: edgecrew imports it (offline) itself
        pytest.skip("needs the litellm extra")
    canary = {
        "provider": "sk-canary-" + secrets.token_hex(16),  # a model's API key, from its api_key_env variable
        "bad_key": "ec_" + secrets.token_urlsafe(32),  # shaped like a key, but unknown
        "bearer": "canary-bearer-" + secrets.token_hex(12),  # some other token in Authorization
        "raw_auth": "canary-raw-" + secrets.token_hex(12),  # an Authorization header with no scheme
        "body": "canary-body-" + secrets.token_hex(12),  # secret fields of a request body
    }
    monkeypatch.setenv(PROVIDER_KEY_ENV, canary["provider"])
    remote = f"""
  remote:
    backend: litellm
    model: openai/gpt-canary
    api_base: {provider.url}
    api_key_env: {PROVIDER_KEY_ENV}
    max_retries: 0
    timeout_s: 20
"""
    extend_project(server_project, remote)
    write(
        server_project / "teams" / "remote.yaml",
        "name: remote\nagents:\n  caller: {model: remote, system: answer}\n"
        "graph: {start: caller, edges: [{from: caller, to: end}]}\n",
    )
    app = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"failed holding {canary['provider']}")

    answers = []
    with serve(app) as (client, keys):
        canary["key"] = keys["admin"]  # a valid key: used, but never written down
        answers += [
            client.get("/runs", headers=auth(canary["bad_key"])),
            client.get("/runs", headers={"X-API-Key": canary["bad_key"]}),
            client.get("/runs", headers=auth(canary["bearer"])),
            client.get("/runs", headers={"Authorization": canary["raw_auth"]}),
            client.post(
                "/runs", json={"team": "echo", "task": {"password": canary["body"]}}, headers=auth(keys["runs"])
            ),
            client.post("/runs", content=f'{{"team": "echo", "token": "{canary["body"]}', headers=auth(keys["runs"])),
            client.post(
                "/runs", json={"team": "nope", "task": "x", "api_key": canary["body"]}, headers=auth(keys["admin"])
            ),
            client.get("/boom", headers={"X-API-Key": keys["admin"]}),
            client.get("/metrics", headers={"X-API-Key": keys["admin"]}),
        ]
        ok = run_to_end(client, {"runs": keys["admin"], "read": keys["admin"]}, "echo", "say hi")
        failed = run_to_end(client, {"runs": keys["admin"], "read": keys["admin"]}, "remote", "call out")
        events = client.app.state.rt.store.events(limit=100_000)  # type: ignore[attr-defined]
        runs = client.app.state.rt.store.list_runs(limit=1000)  # type: ignore[attr-defined]
    err = capsys.readouterr()

    assert [a.status_code for a in answers] == [401, 401, 401, 401, 422, 422, 404, 500, 200]
    assert ok["status"] == "succeeded" and failed["status"] == "failed"
    assert provider.seen == [canary["provider"]]  # the key did reach the provider, once
    assert "the provider rejected the credentials" in failed["error"]  # its echo of the key, scrubbed

    logs = json_lines(err.err)
    assert any(x["logger"] == "edgecrew.api" and x["level"] == "error" and "exception" in x for x in logs)
    assert sum(x["logger"] == "edgecrew.access" for x in logs) >= len(answers)
    places = {
        "log output": err.err + err.out,
        "event rows": json.dumps([e.__dict__ for e in events], default=str),
        "run rows": json.dumps([r.__dict__ for r in runs], default=str),
        "error responses": "\n".join(a.text + json.dumps(dict(a.headers)) for a in answers if a.status_code >= 400),
    }
    for name, secret in canary.items():
        for place, text in places.items():
            assert secret not in text, f"the {name} canary leaked into the {place}"
