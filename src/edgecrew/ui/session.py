"""Sign-in for the UI: an API key buys an HttpOnly session cookie; forms carry a CSRF token.

Sessions live in the server's memory and, so that a restart keeps people signed in, in a file
under the home (``ui-sessions.json``, mode 0600) that holds each session's id only as its SHA-256:
reading the file does not give anyone a cookie. A session points at the key, not a copy of it: a
revoked key ends its sessions at the next request. Two servers on one home share the file: a save
merges this process's sign-ins and sign-outs since its last save into what the file holds, under a
lock (``ui-sessions.json.lock``), so neither drops the other's sessions nor brings back a closed one;
and a request reads the file again when it changed since this process last read or wrote it (one
``stat`` a request), so a sign-out in one server ends the session in the other at once, and a sign-in
there is known here.
The CSRF token is per session and must come back with every state-changing request, as a form
field or an ``X-CSRF-Token`` header (htmx sends it from the page's ``hx-headers``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecrew.api.auth import Principal
from edgecrew.store.keys import ApiKeyStore

COOKIE = "edgecrew_session"
LOGIN_COOKIE = "edgecrew_login"  # double-submit token of the sign-in form (no session exists yet)
MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    key_id: str | None  # None: keyless localhost
    name: str
    scopes: tuple[str, ...]
    expires_at: float

    def principal(self) -> Principal:
        return Principal(self.key_id, self.name, self.scopes)

    def allows(self, scope: str) -> bool:
        return self.principal().allows(scope)


class SessionStore:
    """The signed-in sessions, by the SHA-256 of their ids; kept in ``path`` too when one is given."""

    def __init__(self, keys: ApiKeyStore, path: Path | None = None) -> None:
        self.keys = keys
        self.path = path
        self._lock = threading.Lock()
        # The file as this process last read or wrote it (inode, mtime_ns, size): another one differs.
        self._seen: tuple[int, int, int] | None = None
        self._sessions: dict[str, Session] = self._load() or {}
        # Since the last save that reached the file: what opened here, and what closed here (a close
        # must stay one when the file still holds it).
        self._opened: dict[str, Session] = {}
        self._closed: set[str] = set()

    def open(self, principal: Principal) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(24),
            key_id=principal.key_id,
            name=principal.name,
            scopes=principal.scopes,
            expires_at=time.time() + MAX_AGE_S,
        )
        with self._lock:
            now = time.time()
            for digest in [digest for digest, old in self._sessions.items() if old.expires_at < now]:
                del self._sessions[digest]  # expired sessions go when new ones come: memory stays bounded
            digest = _digest(session.id)
            self._sessions[digest] = self._opened[digest] = session
            self._closed.discard(digest)
            self._save()
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value: unknown, expired or revoked-key sessions are None."""
        if not session_id:
            return None
        with self._lock:
            self._reload_if_changed()
            session = self._sessions.get(_digest(session_id))
        if session is None:
            return None
        if session.expires_at < time.time() or not self._key_active(session.key_id):
            self.close(session_id)
            return None
        return dataclasses.replace(session, id=session_id)  # one read back from the file knows no id

    def close(self, session_id: str) -> None:
        digest = _digest(session_id)
        with self._lock:
            self._reload_if_changed()  # a session another server opened closes here too
            if self._sessions.pop(digest, None) is not None:
                self._opened.pop(digest, None)
                self._closed.add(digest)
                self._save()

    def _reload_if_changed(self) -> None:
        """Read the file again (under ``self._lock``) when another process wrote it since this one last
        read or wrote it, merged as a save merges: what opened or closed here and is not saved yet wins."""
        if self.path is None:
            return
        try:
            if _signature(os.stat(self.path)) == self._seen:
                return
        except OSError:  # missing: the sessions in memory are all there are, as when a save finds none
            return
        held = self._load()
        if held is not None:
            self._merge(held)

    def _merge(self, held: dict[str, Session]) -> None:
        """The sessions the file holds, less what closed here, plus what opened here, since the last save."""
        now = time.time()
        merged = {d: s for d, s in held.items() if d not in self._closed} | self._opened
        self._sessions = {d: s for d, s in merged.items() if s.expires_at > now}

    def _load(self) -> dict[str, Session] | None:
        """The sessions the file holds that have not expired; None when it is missing or unreadable
        (its people sign in again: nothing else is lost). What it read is ``self._seen`` then, an
        unreadable file too (it is read again once it changes, not at every request)."""
        if self.path is None:
            return None
        try:
            with self.path.open(encoding="utf-8") as file:
                self._seen = _signature(os.fstat(file.fileno()))
                text = file.read()
        except (OSError, ValueError):  # ValueError: not UTF-8
            return None
        try:
            rows = json.loads(text)["sessions"]
            now = time.time()
            return {
                str(row["digest"]): Session(
                    id="",
                    csrf=str(row["csrf"]),
                    key_id=None if row["key_id"] is None else str(row["key_id"]),
                    name=str(row["name"]),
                    scopes=tuple(str(scope) for scope in row["scopes"]),
                    expires_at=float(row["expires_at"]),
                )
                for row in rows
                if float(row["expires_at"]) > now
            }
        except (ValueError, TypeError, KeyError):
            return None

    def _save(self) -> None:
        """The sessions into the file (under ``self._lock``): what the file holds now (another server's
        sign-ins and sign-outs included), less what closed here, plus what opened here, since the last
        save. Read and written under a file lock that other processes take too; written whole to a
        private file, then renamed over the old one, so a reader never sees half of it. A failure to
        write leaves sessions in memory, and the next save tries again."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _file_lock(self.path.with_name(self.path.name + ".lock")):
                held = self._load()
                if held is not None:  # a missing or unreadable file: this process's sessions are all there is
                    self._merge(held)
                self._write(self.path)
                self._opened, self._closed = {}, set()

    def _write(self, path: Path) -> None:
        rows: list[dict[str, Any]] = [
            {"digest": digest, **{k: v for k, v in dataclasses.asdict(s).items() if k != "id"}}
            for digest, s in self._sessions.items()
        ]
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"sessions": rows}, file)
            file.flush()
            written = _signature(os.fstat(file.fileno()))  # a rename keeps the inode, mtime and size
        os.chmod(temporary, 0o600)  # one left by an earlier try keeps the mode it had
        os.replace(temporary, path)
        self._seen = written

    def _key_active(self, key_id: str | None) -> bool:
        if key_id is None:
            return True
        try:
            return self.keys.get(key_id).active
        except Exception:  # a deleted key or an unreadable store: the session is over
            return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (made 0600 if missing), held by one process (and thread) at a time."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing it lets the lock go


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of the file from another: every save writes a new file, renamed into place."""
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Whether a token sent equals the one expected, in constant time; any text sent is only wrong
    (compared as bytes: ``compare_digest`` refuses non-ASCII strings)."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected).encode(), str(given).encode())
