"""A real webhook receiver on 127.0.0.1 for the alert tests: records each JSON POST, and answers the
first ``fail_first`` of them with HTTP 500 so that retries are exercised."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    status_after: int = 200
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every POST, failed ones included
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The payloads answered with 2xx, in order."""
        with self.lock:
            return [a["body"] for a in self.attempts if 200 <= a["status"] < 300]


@contextmanager
def webhook_receiver(fail_first: int = 0, status_after: int = 200) -> Iterator[Receiver]:
    receiver = Receiver("", fail_first, status_after)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
            with receiver.lock:
                status = 500 if len(receiver.attempts) < receiver.fail_first else receiver.status_after
                receiver.attempts.append({"path": self.path, "body": body, "status": status})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
