"""API-key authentication, per-route scopes and a per-key rate limit.

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Each route depends on
``require(scope)``; a key with ``admin`` has every scope. Without a key a request is refused (401)
unless ``EDGECREW_ALLOW_KEYLESS_LOCALHOST`` is set and it comes from 127.0.0.1 or ::1. The rate
limit is a token bucket per key (per client address for keyless requests and for requests with a
key that is unknown or revoked) and answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from edgecrew.store.keys import SCOPES, ApiKey, ApiKeyStore

bearer = HTTPBearer(auto_error=False, description="An edgecrew API key (`edgecrew keys create`).")
key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key in a header of its own.")
SCHEMES = (bearer, key_header)
"""How a key comes, for the OpenAPI document (:func:`document_security`; :func:`secret_of` reads them)."""
LOCALHOST = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_BUCKETS = 10_000  # rate-limit buckets kept before idle ones are dropped
TOUCH_EVERY_S = 60.0  # last_used_at is written at most this often per key (a write per request is costly)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key, or a keyless local caller when that is enabled."""

    key_id: str | None
    name: str
    scopes: tuple[str, ...]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class RateLimiter:
    """Token buckets: ``per_minute`` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, who: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > MAX_BUCKETS:  # forget callers whose bucket has filled up again
                idle = (self.capacity - 1) / self.rate
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < idle}
            tokens, last = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[who] = (tokens - 1, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1 - tokens) / self.rate


class Authenticator:
    """Resolves a request's key to a Principal, enforcing revocation and the rate limit."""

    def __init__(self, keys: ApiKeyStore, *, keyless_localhost: bool, per_minute: int) -> None:
        self.keys = keys
        self.keyless_localhost = keyless_localhost
        self.limiter = RateLimiter(per_minute)
        self._touched: dict[str, float] = {}

    def identify(self, request: Request, secret: str | None) -> Principal:
        client = request.client.host if request.client else ""
        if not secret:
            if self.keyless_localhost and local_and_same_site(request):
                principal = Principal(None, "localhost", SCOPES)
                self._limit(f"addr:{client}")
                return principal
            raise _unauthorized("an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
        key = self.keys.authenticate(secret)
        if key is None or not key.active:
            self._limit(f"addr:{client}")  # guessing keys spends the caller's address's budget
            raise _unauthorized("the API key is not valid" if key is None else f"the API key {key.prefix}… was revoked")
        self._limit(f"key:{key.id}")
        self._touch(key)
        return Principal(key.id, key.name, key.scopes)

    def _limit(self, who: str) -> None:
        wait = self.limiter.hit(who)
        if wait > 0:
            raise HTTPException(
                429,
                f"rate limit of {int(self.limiter.capacity)} requests a minute reached; retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    def _touch(self, key: ApiKey) -> None:
        now = time.monotonic()
        if now - self._touched.get(key.id, -TOUCH_EVERY_S) >= TOUCH_EVERY_S:
            self._touched[key.id] = now
            self.keys.touch(key.id)


def local_and_same_site(request: Request) -> bool:
    """A keyless request counts as local only when it comes from this machine, names this machine
    in ``Host`` (a DNS-rebinding page names its own domain) and, from a browser, comes from a page
    of this server (``Origin`` / ``Sec-Fetch-Site``): any website a local browser visits could
    otherwise drive the server."""
    client = request.client.host if request.client else ""
    if client not in LOCALHOST:
        return False
    if _hostname(request.headers.get("host", "")) not in LOCALHOST:
        return False
    origin = request.headers.get("origin")
    if origin is not None and _hostname(origin.split("://", 1)[-1]) not in LOCALHOST:
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def _hostname(host: str) -> str:
    """``127.0.0.1:8765`` → ``127.0.0.1``; ``[::1]:8765`` → ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="edgecrew"'})


def secret_of(request: Request) -> str | None:
    """The key a request carries, from either header (the UI's session cookie is checked elsewhere)."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def authorize(request: Request, scope: str) -> Principal:
    """The caller of ``request`` if it holds ``scope``; 401 without a valid key, 403 without the scope."""
    auth: Authenticator = request.app.state.auth
    principal = await asyncio.to_thread(auth.identify, request, secret_of(request))
    request.state.principal = principal  # before the scope check: the access log names the key of a 403 too
    if not principal.allows(scope):
        raise HTTPException(403, f"this API key lacks the '{scope}' scope (it has: {', '.join(principal.scopes)})")
    return principal


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers holding ``scope`` (401 without a valid key, 403 without the scope)."""

    async def dependency(request: Request) -> Principal:
        return await authorize(request, scope)

    dependency.__name__ = f"require_{scope}"
    _SCOPE_OF[dependency] = scope
    return dependency


_SCOPE_OF: dict[Callable[..., Awaitable[Principal]], str] = {}


def document_security(doc: dict[str, Any], routes: Iterable[object]) -> dict[str, Any]:
    """State in an OpenAPI document how each route that requires a scope takes its key (either header).

    Written into the document instead of declared on each route as ``Security`` parameters of
    :func:`require` (which reads the headers itself): FastAPI analyses a route's dependencies when
    the route is declared, two more for each of ~170 routes at `edgecrew serve`'s start."""
    schemes = {
        scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True) for scheme in SCHEMES
    }
    secured = False
    for route in routes:
        # ``path_format``: the path as the document writes it ('{path}' for a route's '{path:path}')
        path, methods = (
            getattr(route, "path_format", getattr(route, "path", None)),
            getattr(route, "methods", None) or (),
        )
        item = doc.get("paths", {}).get(path)
        if item is None or required_scope(route) is None:
            continue
        for method in methods:
            if (operation := item.get(method.lower())) is not None:
                operation["security"] = [{name: []} for name in schemes]
                secured = True
    if secured:
        doc.setdefault("components", {})["securitySchemes"] = schemes
    return doc


def required_scope(route: object) -> str | None:
    """The scope a route's dependencies require (None for an open route or one that is not FastAPI's)."""
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        call = getattr(dependant, "call", None)
        if call in _SCOPE_OF:
            return _SCOPE_OF[call]
        stack.extend(dependant.dependencies)
    return None
