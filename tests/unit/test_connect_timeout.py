"""Postgres connections give up after ``EDGECREW_DATABASE_CONNECT_TIMEOUT_S``: the store's engine (the
workers table's too) and DBOS's. A database cut off by the network is played, without the network, by a
socket on 127.0.0.1 that listens and never answers: the TCP handshake completes (the kernel does it), the
Postgres handshake never does. psycopg waited 130 s for it, DBOS's engine 10 s."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from edgecrew.engine import durable
from edgecrew.errors import UserError
from edgecrew.settings import Settings
from edgecrew.store.repo import connect_args, open_store
from tests import pg


@pytest.fixture
def silent_url() -> Iterator[str]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # connections complete and wait in the backlog: nobody accepts, nobody answers
        yield f"postgresql://edgecrew@127.0.0.1:{listener.getsockname()[1]}/edgecrew"


def test_the_store_gives_up_on_a_database_that_never_answers(
    silent_url: str, edgecrew_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGECREW_DATABASE_CONNECT_TIMEOUT_S", "2")
    failed: list[BaseException] = []

    def open_it() -> None:
        try:
            open_store(silent_url)
        except BaseException as exc:
            failed.append(exc)

    started = time.monotonic()
    opening = threading.Thread(target=open_it, daemon=True)  # without a timeout it would hang for minutes
    opening.start()
    opening.join(30)
    assert not opening.is_alive(), "opening the store on a silent database did not give up in 30 s"
    assert failed and "timeout expired" in str(failed[0]), failed
    assert time.monotonic() - started < 30


def test_postgres_gets_a_connect_timeout_and_keepalives_the_urls_own_settings_win_and_sqlite_gets_none() -> None:
    assert connect_args("postgresql://u@h/db", 5) == {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": 10000,
    }
    assert connect_args("postgresql+psycopg://u@h/db", 7)["keepalives_interval"] == 3
    assert connect_args("postgresql+psycopg://u@h/db", 2)["keepalives_interval"] == 1
    own = connect_args("postgresql://u@h/db?connect_timeout=30&keepalives_idle=60", 5)
    assert "connect_timeout" not in own and "keepalives_idle" not in own
    assert own["tcp_user_timeout"] == 10000
    assert connect_args("sqlite:////tmp/x.db", 5) == {}


def _tcp_options(fileno: int) -> tuple[int, int, int, int, int]:
    sock = socket.socket(fileno=os.dup(fileno))
    try:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )
    finally:
        sock.detach()


@pytest.mark.skipif(not pg.available(), reason="PostgreSQL server binaries are missing (make test installs them)")
@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")
def test_open_connections_of_the_store_and_of_dbos_find_a_cut_network_within_seconds(
    edgecrew_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection already open when the network is cut is only found dead by TCP: the sockets of a real
    Postgres connection (the store's engine and DBOS's) carry the keepalives and user timeout asked for (the
    OS's defaults are keepalives off and retransmissions for ~15 minutes)."""
    monkeypatch.setenv("EDGECREW_DATABASE_CONNECT_TIMEOUT_S", "4")
    with pg.postgres_server() as url:
        store = open_store(url)
        try:
            with store.engine.connect() as conn:
                fileno = conn.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
                assert _tcp_options(fileno) == (1, 4, 2, 2, 8000)
        finally:
            store.engine.dispose()
        runtime = SimpleNamespace(settings=Settings(database_url=url, database_connect_timeout_s=4), project_key="p")
        durable.launch(runtime)  # type: ignore[arg-type]
        try:
            from dbos._dbos import _get_dbos_instance

            with _get_dbos_instance()._sys_db.engine.connect() as conn:
                fileno = conn.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
                assert _tcp_options(fileno) == (1, 4, 2, 2, 8000)
        finally:
            durable.shutdown()


def test_a_connect_timeout_under_libpqs_minimum_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgecrew.settings import get_settings

    monkeypatch.setenv("EDGECREW_DATABASE_CONNECT_TIMEOUT_S", "1")
    with pytest.raises(UserError, match="EDGECREW_DATABASE_CONNECT_TIMEOUT_S='1'"):
        get_settings()


def test_dboss_engine_gives_up_after_the_same_timeout(silent_url: str) -> None:
    """DBOS's own engine takes the setting through its config (``db_engine_kwargs``): launching on a silent
    database fails after a few seconds (4 s here with 2 s), not after DBOS's 10 s default (20 s here)."""
    runtime = SimpleNamespace(settings=Settings(database_url=silent_url, database_connect_timeout_s=2), project_key="p")
    started = time.monotonic()
    with pytest.raises(UserError, match="connection timeout expired"):
        durable.launch(runtime)  # type: ignore[arg-type]
    assert time.monotonic() - started < 9
