"""A server's periodic loops (the supervisor's scan, alerts, the sampler) through a database outage: one
line when a loop loses the database (with the driver's error) and one when it is back, as a cluster
worker's heartbeat says it, instead of a traceback each tick; any other failure keeps its traceback.
The outage is real: the SQLite file's folder is moved away, so each new connection fails to open it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from edgecrew.bootstrap import bootstrap
from edgecrew.ops import Ops
from edgecrew.ops import supervisor as module
from edgecrew.ops.incidents import Finding
from edgecrew.ops.periodic import Periodic
from edgecrew.ops.supervisor import Supervisor


class Outage:
    """A SQLite database whose folder can be moved away (out of reach) and back."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder, self.away = tmp_path / "db", tmp_path / "away"
        self.folder.mkdir()
        self.engine = sa.create_engine(f"sqlite:///{self.folder / 'x.db'}", poolclass=NullPool)  # each look opens it

    def read(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT 1")).scalar_one())

    def begin(self) -> None:
        self.folder.rename(self.away)

    def end(self) -> None:
        self.away.rename(self.folder)


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    out = Outage(tmp_path)
    yield out
    out.engine.dispose()


def _said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("edgecrew")]


async def test_a_loop_says_once_that_it_lost_the_database_and_once_that_it_is_back(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ticks: list[int] = []

    async def tick() -> None:
        ticks.append(outage.read())

    loop = Periodic("test-loop", tick, "the test loop failed", "the test loop")
    loop.start(0.02)
    await asyncio.sleep(0.1)
    outage.begin()
    await asyncio.sleep(0.3)
    outage.end()
    await asyncio.sleep(0.1)
    await loop.stop()
    said = _said(caplog)
    assert [r.exc_info for r in said] == [None] * len(said)  # no traceback, not one a tick
    lost = [r.getMessage() for r in said if "lost the database" in r.getMessage()]
    back = [r.getMessage() for r in said if "reached the database again" in r.getMessage()]
    # The folder moved away between two ticks, or under one's open connection (SQLite's "disk I/O error").
    assert len(lost) == 1 and re.fullmatch(
        r"the test loop lost the database \((unable to open database file|disk I/O error)\); it tries again "
        r"every 0.02s and says when it is back",
        lost[0],
    ), lost
    assert len(back) == 1 and back[0].startswith("the test loop reached the database again after ")
    assert len(said) == 2 and len(ticks) > 2


async def test_any_other_failure_of_a_tick_keeps_its_traceback_each_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def tick() -> None:
        raise ValueError("a bug")

    loop = Periodic("test-loop", tick, "the test loop failed", "the test loop")
    loop.start(0.02)
    await asyncio.sleep(0.1)
    await loop.stop()
    said = _said(caplog)
    assert len(said) > 1 and {r.getMessage() for r in said} == {"the test loop failed"}
    assert all(r.exc_info is not None and "a bug" in str(r.exc_info[1]) for r in said)


@pytest.fixture
def sup(project_dir: Path, edgecrew_home: Path) -> Supervisor:
    return Ops.of(bootstrap()).supervisor


async def test_the_supervisors_scan_says_an_outage_once_instead_of_a_traceback_per_watcher(
    sup: Supervisor, outage: Outage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each scan logged "supervisor watcher ... failed" with a traceback for each of its six watchers
    (30 of each in a 16 s outage at a 0.5 s interval). A watcher that cannot reach the database now
    fails the scan with that error (after the others ran), which the scan's loop says once."""
    caplog.set_level(logging.INFO)
    looked: list[str] = []

    def database_watcher(_sup: Supervisor, since: float, now: float) -> list[Finding]:
        outage.read()
        looked.append("database")
        return []

    def broken_watcher(_sup: Supervisor, since: float, now: float) -> list[Finding]:
        looked.append("broken")
        raise ValueError("a broken watcher")

    monkeypatch.setitem(module._WATCHERS, "database", database_watcher)
    monkeypatch.setitem(module._WATCHERS, "broken", broken_watcher)
    now = time.time()
    assert sup.detect(now - 60, now) == [] and looked == ["database", "broken"]
    outage.begin()
    with pytest.raises(sa.exc.OperationalError, match="unable to open database file"):  # no connection open
        sup.detect(now - 60, now)
    assert looked[2:] == ["broken"]  # the other watchers still ran
    broken = [r for r in _said(caplog) if r.getMessage() == "supervisor watcher broken failed"]
    assert len(broken) == 2 and all(r.exc_info is not None for r in broken)  # a bug keeps its traceback
    caplog.clear()
    loop = Periodic("test-supervisor", sup.scan, "the supervisor's scan failed", "the supervisor")
    loop.start(0.02)
    await asyncio.sleep(0.2)
    outage.end()
    await asyncio.sleep(0.1)
    await loop.stop()
    said = [r.getMessage() for r in _said(caplog) if r.getMessage() != "supervisor watcher broken failed"]
    assert re.match(r"the supervisor lost the database \((unable to open database file|disk I/O error)\)", said[0])
    assert said[1].startswith("the supervisor reached the database again after ") and len(said) == 2
