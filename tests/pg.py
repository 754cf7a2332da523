"""A throwaway PostgreSQL server on 127.0.0.1 for tests that claim Postgres support.

Uses the Debian `postgresql` package's binaries (installed by `make test`); runs as the `postgres`
user when the tests run as root, since the server refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return _bin("initdb") is not None and _bin("pg_ctl") is not None


class PostgresServer:
    """A running throwaway server: its URL, and an outage on demand (``stop`` then ``start`` again, same
    port and data: what a database restart or a network cut looks like to the processes using it)."""

    def __init__(self, data: Path, log: Path, port: int, prefix: list[str], options: str) -> None:
        self.data, self.log, self.port, self.prefix, self.options = data, log, port, prefix, options
        self.url = f"postgresql://edgecrew@127.0.0.1:{port}/postgres"

    def start(self) -> None:
        pg_ctl = _bin("pg_ctl")
        assert pg_ctl
        start = [*self.prefix, pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-o", self.options, "start"]
        subprocess.run(start, check=True, capture_output=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop it at once (``-m immediate``: open connections break, new ones are refused)."""
        pg_ctl = _bin("pg_ctl")
        assert pg_ctl
        subprocess.run([*self.prefix, pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a fresh cluster; yields a postgresql:// URL to an empty database."""
    with pausable_postgres_server() as server:
        yield server.url


@contextmanager
def pausable_postgres_server() -> Iterator[PostgresServer]:
    """Start a fresh cluster; yields it (its ``url`` is to an empty database; ``stop``/``start`` make an outage)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    assert initdb and pg_ctl, "PostgreSQL server binaries are missing: run `make test` (it installs postgresql)"
    root = Path(tempfile.mkdtemp(prefix="edgecrew-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_postgres = os.geteuid() == 0
    if as_postgres:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []
    port = _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "edgecrew", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    server = PostgresServer(data, root / "log", port, prefix, options)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def database(server_url: str, name: str) -> Iterator[str]:
    """A new empty database ``name`` on the server at ``server_url`` (a URL of :func:`postgres_server`),
    dropped at the end: tests that share one server each get a store and a DBOS system database of their own."""
    import sqlalchemy as sa

    admin = sa.create_engine(server_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
