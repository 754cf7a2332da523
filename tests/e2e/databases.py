"""The database an acceptance test runs on, as a parameter: SQLite in the test's home, or a fresh
database of its own on a throwaway Postgres server (one server per test module, tests/pg.py).

A test asks for ``database`` (the environment to add: none, or ``EDGECREW_DATABASE_URL``) and reads
what the processes wrote with :func:`rows`, which speaks both.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests import pg
from tests.conftest import STORE_SQLITE

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.skipif(not pg.available(), reason="needs the postgresql binaries")),
]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with pg.postgres_server() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    server: str = request.getfixturevalue("pg_server")
    with pg.database(server, f"t{uuid.uuid4().hex[:12]}") as url:
        yield {"EDGECREW_DATABASE_URL": url}


def url_of(env: dict[str, str], home: Path) -> str:
    """The SQLAlchemy URL of the store the processes of ``env`` write."""
    url = env.get("EDGECREW_DATABASE_URL")
    return url.replace("postgresql://", "postgresql+psycopg://") if url else f"sqlite:///{home / 'edgecrew.db'}"


def rows(url: str, query: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of ``query`` (named ``:params``) as dicts; [] while the table does not exist yet."""
    # A SQLite store's file through the store's own library (tests/conftest.py: STORE_SQLITE says why).
    engine = sa.create_engine(url, **({"module": STORE_SQLITE} if url.startswith("sqlite") else {}))
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(query), params).mappings()]
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # not migrated yet
        return []
    finally:
        engine.dispose()


def as_json(value: Any) -> Any:
    """A JSON column's value: SQLite hands back text, Postgres the decoded value."""
    return json.loads(value) if isinstance(value, str) else value
