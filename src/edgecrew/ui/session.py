"""Sign-in for the UI: an API key buys an HttpOnly session cookie; forms carry a CSRF token.

Sessions live in the server's memory (a restart signs everyone out, which is fine for a box on a
desk) and point at the key, not a copy of it: a revoked key ends its sessions at the next request.
The CSRF token is per session and must come back with every state-changing request, as a form
field or an ``X-CSRF-Token`` header (htmx sends it from the page's ``hx-headers``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

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
    def __init__(self, keys: ApiKeyStore) -> None:
        self.keys = keys
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

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
            for sid in [sid for sid, old in self._sessions.items() if old.expires_at < now]:
                del self._sessions[sid]  # expired sessions go when new ones come: memory stays bounded
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value: unknown, expired or revoked-key sessions are None."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at < time.time() or not self._key_active(session.key_id):
            self.close(session_id)
            return None
        return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _key_active(self, key_id: str | None) -> bool:
        if key_id is None:
            return True
        try:
            return self.keys.get(key_id).active
        except Exception:  # a deleted key or an unreadable store: the session is over
            return False


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Whether a token sent equals the one expected, in constant time; any text sent is only wrong
    (compared as bytes: ``compare_digest`` refuses non-ASCII strings)."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected).encode(), str(given).encode())
