"""Real servers for client tests: the app under uvicorn in a thread, or `edgecrew serve` as a process.

Both bind 127.0.0.1. The thread form hands uvicorn a socket it already bound (no race for the
port); the process form needs a port number, so it picks a free one and, should another process
take it first, the server exits and ``ServerProcess.start`` says so with the server's output.
Also here: a small Server-Sent Events reader, since the tests parse the stream themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from edgecrew.api.problems import PROBLEM_JSON
from edgecrew.settings import Settings
from tests.api import conftest as fixtures
from tests.conftest import write

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0


def write_project(project: Path) -> Path:
    """The project of tests/api/conftest.py (teams ``echo`` and ``ship`` on scripted models) in ``project``."""
    write(project / "edgecrew.yaml", fixtures.PROJECT)
    write(project / "tools.py", fixtures.TOOLS)
    write(project / "teams" / "echo.yaml", fixtures.ECHO)
    write(project / "teams" / "ship.yaml", fixtures.SHIP)
    return project


def server_settings(root: Path, **overrides: Any) -> Settings:
    """Settings for a server over ``root``/project with its home in ``root``/home, whatever the
    environment says (module-scoped servers outlive the per-test EDGECREW_HOME)."""
    values: dict[str, Any] = {
        "home": root / "home",
        "project": root / "project",
        "rate_limit_per_minute": 1_000_000,
        "allow_keyless_localhost": False,
        "cors_origins": "",
        "failpoints": "",
        "database_url": None,
    }
    return Settings(**(values | overrides))


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, *, timeout: float = START_TIMEOUT_S, alive: Any = None) -> None:
    """Poll ``url``/health until it answers 200; ``alive()`` returning False stops the wait early."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the server at {url} exited before it answered /health")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url}/health did not answer within {timeout:.0f} s (last error: {last!r})")


@dataclass
class ThreadServer:
    """An ASGI app served by uvicorn on a background thread of this process."""

    app: FastAPI
    url: str
    server: uvicorn.Server
    thread: threading.Thread


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, *, graceful_s: int = 5) -> Iterator[ThreadServer]:
    """Serve ``app`` on a free port until the block ends (the app's lifespan runs in the thread)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=graceful_s,
        proxy_headers=False,  # as `edgecrew serve` runs it: the peer address is the client
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start on {url} within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        yield ThreadServer(app=app, url=url, server=server, thread=thread)
    finally:
        server.should_exit = True
        thread.join(timeout=graceful_s + 30)
        sock.close()
        if thread.is_alive():  # it would shut its engine down and restore logging during later tests
            raise RuntimeError(f"uvicorn on {url} did not stop within {graceful_s + 30:.0f} s")


@dataclass
class ServerProcess:
    """`python -m edgecrew serve` in a child process, with its own environment."""

    project: Path
    env: dict[str, str]
    port: int = 0  # 0: a free one, picked here (and picked again once if another process takes it first)
    proc: subprocess.Popen[str] | None = None
    log: Path | None = None
    picked: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not self.port:
            self.port, self.picked = free_port(), True

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ServerProcess:
        self.log = self.log or self.project / f"server-{self.port}.log"
        out = self.log.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecrew", "serve", "--port", str(self.port), "-p", str(self.project)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out.close()
        try:
            wait_healthy(self.url, alive=lambda: self.proc is not None and self.proc.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            self.kill()
            if self.picked and "address already in use" in self.output().lower():
                # The port was free when picked; something else bound it before the server did.
                self.port, self.log, self.picked = free_port(), None, False
                return self.start()
            raise RuntimeError(f"{exc}\n--- server output ---\n{self.output()}") from None
        return self

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log and self.log.exists() else ""

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code (raises when it does not exit in ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the server ignored SIGTERM for {timeout} s\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def cli_env(project: Path, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a child edgecrew process: this one's, with its own home and project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECREW_")}
    return {**env, "EDGECREW_HOME": str(home), "EDGECREW_PROJECT": str(project), **extra}


def create_key(env: dict[str, str], name: str, scopes: str = "admin") -> str:
    """Create a key with the real CLI and return the secret it prints (its last line)."""
    done = subprocess.run(
        [sys.executable, "-m", "edgecrew", "keys", "create", name, "--scopes", scopes],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1].strip()


@dataclass
class SseEvent:
    """One Server-Sent Event as the wire carried it."""

    id: str | None
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def iter_sse(response: httpx.Response) -> Iterator[SseEvent]:
    """The events of a streamed ``text/event-stream`` response (comments and pings are skipped).

    Follows the WHATWG parsing rules that matter here: fields ``id``, ``event`` and ``data`` (several
    data lines join with newlines), one optional space after the colon, a blank line ends an event.
    """
    event_id: str | None = None
    event_type = ""
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseEvent(event_id, event_type or "message", "\n".join(data))
            event_type, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id":
            event_id = value


def assert_problem(response: httpx.Response, status: int, op: str, label: str) -> dict[str, Any]:
    assert response.status_code == status, f"{op} with {label}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith(PROBLEM_JSON), f"{op} with {label}"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body.get("detail"), body
    return body
