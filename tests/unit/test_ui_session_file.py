"""Two servers on one home share ``ui-sessions.json``: each save merges with what the file holds, under a
file lock, so neither loses the other's sign-ins, and a sign-out stays one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edgecrew.api.auth import Principal
from edgecrew.store.keys import ApiKeyStore
from edgecrew.store.repo import open_store
from edgecrew.ui.session import SessionStore

LOCAL = Principal(None, "local", ("admin",))


def _keys(tmp_path: Path) -> ApiKeyStore:
    return ApiKeyStore(open_store(f"sqlite:///{tmp_path / 'store.db'}"))


def test_a_save_keeps_the_sessions_another_server_opened(tmp_path: Path) -> None:
    # Before: the last server to save wrote only what it held, so a session opened in the other server
    # was gone when that server restarted.
    keys, path = _keys(tmp_path), tmp_path / "ui-sessions.json"
    first, second = SessionStore(keys, path), SessionStore(keys, path)
    mine = first.open(LOCAL)
    theirs = second.open(LOCAL)  # second never read mine
    restarted = SessionStore(keys, path)
    assert restarted.get(mine.id) is not None and restarted.get(theirs.id) is not None


def test_a_sign_out_stays_one_when_another_server_saves(tmp_path: Path) -> None:
    keys, path = _keys(tmp_path), tmp_path / "ui-sessions.json"
    first = SessionStore(keys, path)
    gone, kept = first.open(LOCAL), first.open(LOCAL)
    second = SessionStore(keys, path)  # read both from the file
    first.close(gone.id)
    second.open(LOCAL)  # its save must not bring back what the first closed
    second.close(kept.id)
    first.open(LOCAL)  # nor this one, what the second closed
    restarted = SessionStore(keys, path)
    assert restarted.get(gone.id) is None and restarted.get(kept.id) is None
    assert len(restarted._sessions) == 2


def test_saves_of_two_servers_at_once_lose_nothing(tmp_path: Path) -> None:
    keys, path = _keys(tmp_path), tmp_path / "ui-sessions.json"
    stores = [SessionStore(keys, path), SessionStore(keys, path)]
    opened: list[str] = []

    def sign_ins(store: SessionStore) -> None:
        for _ in range(25):
            opened.append(store.open(LOCAL).id)

    threads = [threading.Thread(target=sign_ins, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    restarted = SessionStore(keys, path)
    assert [session_id for session_id in opened if restarted.get(session_id) is None] == []


def test_a_sign_out_in_one_server_ends_the_session_in_the_other(tmp_path: Path) -> None:
    # Before: the other server read the file only when it saved, so the session went on there until its
    # next sign-in or sign-out.
    keys, path = _keys(tmp_path), tmp_path / "ui-sessions.json"
    first = SessionStore(keys, path)
    session = first.open(LOCAL)
    second = SessionStore(keys, path)
    assert second.get(session.id) is not None
    first.close(session.id)
    assert second.get(session.id) is None


def test_a_sign_in_in_one_server_is_known_to_the_other_at_its_next_request(tmp_path: Path) -> None:
    keys, path = _keys(tmp_path), tmp_path / "ui-sessions.json"
    first, second = SessionStore(keys, path), SessionStore(keys, path)
    assert first.get(first.open(LOCAL).id) is not None
    theirs = second.open(LOCAL)
    assert first.get(theirs.id) is not None


def test_a_reload_keeps_what_this_server_has_not_saved_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A save that could not write leaves its sign-ins and sign-outs in memory: reading the file another
    # server wrote since must neither drop the one nor bring back the other.
    keys, path = _keys(tmp_path), tmp_path / "ui-sessions.json"
    first, second = SessionStore(keys, path), SessionStore(keys, path)
    closed_here = second.open(LOCAL)
    assert first.get(closed_here.id) is not None  # first has read the file with it

    def full_disk(_: Path) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(first, "_write", full_disk)
        opened_here = first.open(LOCAL)
        first.close(closed_here.id)
    theirs = second.open(LOCAL)  # the file changes under first, still with closed_here, without opened_here
    assert first.get(theirs.id) is not None
    assert first.get(opened_here.id) is not None and first.get(closed_here.id) is None
