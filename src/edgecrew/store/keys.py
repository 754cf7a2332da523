"""API keys: created once (the secret is shown then and never again), stored as SHA-256, revocable.

A key is ``ec_`` + 32 random URL-safe bytes; the store keeps its hash and a short display prefix
(``ec_AbCd1234``) so lists can tell keys apart without holding anything that opens the API.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from edgecrew.errors import ConflictError, NotFoundError, UserError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

SCOPES = ("read", "runs", "approve", "admin")
SCOPE_HELP = {
    "read": "read runs, events, teams, models, approvals, tasks and metrics",
    "runs": "start, cancel and resume runs; chat completions; write tasks",
    "approve": "approve, deny or edit pending tool calls",
    "admin": "everything",
}
KEY_PREFIX = "ec_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise UserError(
            f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}"
            if unknown
            else f"give at least one scope: {', '.join(SCOPES)}"
        )
    return scopes


class ApiKeyStore:
    """Create, find, list and revoke API keys."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def create(self, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]:
        """A new key; returns it with its secret (the only time the secret exists outside the caller)."""
        if not name.strip():
            raise UserError("give the key a name, e.g. `edgecrew keys create ci-bot --scopes read`")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "k" + secrets.token_hex(6)
        with self.store.transaction() as conn:
            conn.execute(
                t.api_keys.insert().values(
                    id=key_id,
                    name=name.strip(),
                    prefix=secret[: len(KEY_PREFIX) + 8],
                    hash=hash_key(secret),
                    scopes=list(parse_scopes(scopes)),
                    created_at=time.time(),
                )
            )
        return self.get(key_id), secret

    def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (revoked ones included: the caller says why it is refused)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.hash == hash_key(secret))).mappings().first()
        return _key(row) if row is not None else None

    def touch(self, key_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(last_used_at=time.time()))

    def get(self, key_id: str) -> ApiKey:
        """A key by id or display prefix."""
        query = sa.select(t.api_keys).where(sa.or_(t.api_keys.c.id == key_id, t.api_keys.c.prefix == key_id))
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        if not rows:
            raise NotFoundError(f"no API key '{key_id}'; see `edgecrew keys list`")
        if len(rows) > 1:
            raise UserError(f"'{key_id}' matches {len(rows)} keys; give the key id")
        return _key(rows[0])

    def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        query = sa.select(t.api_keys).order_by(t.api_keys.c.created_at)
        if not include_revoked:
            query = query.where(t.api_keys.c.revoked_at.is_(None))
        with self.store.engine.connect() as conn:
            return [_key(r) for r in conn.execute(query).mappings()]

    def revoke(self, key_id: str) -> ApiKey:
        key = self.get(key_id)
        if not key.active:
            raise ConflictError(f"API key {key.id} ({key.name}) is already revoked")
        with self.store.transaction() as conn:
            conn.execute(t.api_keys.update().where(t.api_keys.c.id == key.id).values(revoked_at=time.time()))
        return self.get(key.id)


def _key(row: sa.RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
