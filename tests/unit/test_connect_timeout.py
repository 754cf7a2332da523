"""Postgres connections give up after ``EDGECREW_DATABASE_CONNECT_TIMEOUT_S``: the store's engine (the
workers table's too) and DBOS's. A database cut off by the network is played, without the network, by a
socket on 127.0.0.1 that listens and never answers: the TCP handshake completes (the kernel does it), the
Postgres handshake never does. psycopg waited 130 s for it, DBOS's engine 10 s."""

from __future__ import annotations

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


def test_the_urls_own_connect_timeout_wins_and_sqlite_gets_none() -> None:
    assert connect_args("postgresql://u@h/db", 5) == {"connect_timeout": 5}
    assert connect_args("postgresql+psycopg://u@h/db", 7) == {"connect_timeout": 7}
    assert connect_args("postgresql://u@h/db?connect_timeout=30", 5) == {}
    assert connect_args("sqlite:////tmp/x.db", 5) == {}


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
