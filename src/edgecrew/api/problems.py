"""RFC 9457 problem details for every error the API returns, and nothing internal in them.

One handler per kind of failure: edgecrew's own errors map to a status by their class (a spec
error lists its issues, a conflict is 409), request validation lists the fields at fault without
echoing their values (they may hold secrets), and anything unexpected is a bare 500 that carries
the request id to look up in the server's log.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgecrew.context import request_id as current_request_id
from edgecrew.errors import ConflictError, NotFoundError, SpecError, UserError, pattern_words

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("edgecrew.api")


class Problem(BaseModel):
    """An RFC 9457 problem: what kind, a short title, the HTTP status and what happened this time."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None  # request validation: one entry per field at fault
    issues: list[dict[str, Any]] | None = None  # spec validation: file, line, message, hint


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body = Problem(
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        request_id=request_id or current_request_id.get(),
        **extra,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


_WHEN = {
    400: "The request is well formed but cannot be done as asked (the detail says why).",
    401: "No API key, or one that is unknown or revoked (see WWW-Authenticate).",
    403: "The API key lacks the scope this operation needs.",
    404: "What the path names does not exist.",
    409: "The resource is not in a state that allows this (a finished run, a decided approval).",
    413: "The request body is larger than the server's limit.",
    422: "A parameter or the body is invalid: `errors` names each field and why.",
    429: "The key's rate limit is reached; retry after Retry-After seconds.",
    500: "An unexpected failure; `request_id` finds it in the server's log.",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "How to authenticate: `Bearer`.", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until a request is let in again.", "schema": {"type": "integer"}}},
}


PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
"""A problem body in the OpenAPI document: :func:`install` puts the schema in its components once."""


def problem_response(status: int, when: str) -> dict[str, Any]:
    """A declared problem answer: ``when`` says in which case it comes (for a route's ``responses``).

    The body's schema is a reference, not a response ``model``: FastAPI builds a pydantic adapter for
    each model of each route's responses when the route is declared, and with nine problems on each of
    ~170 routes that was ~110 ms of `edgecrew serve`'s start, for a document nobody may ask for."""
    return {
        "description": when,
        "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        "headers": _HEADERS.get(status, {}),
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: problem_response(status, when) for status, when in _WHEN.items()
}
"""The problems any authenticated operation may answer, for a router's ``responses``."""


def status_of(exc: UserError) -> int:
    """The HTTP status of a user error: 404 for a missing thing, 409 for a wrong state, else 400."""
    return 404 if isinstance(exc, NotFoundError) else 409 if isinstance(exc, ConflictError) else 400


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into problem details."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrase = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # the router names only the first route matching the path
            allowed = allowed_methods(app, request.url.path)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        elif exc.status_code == 404 and detail is None and request.scope.get("endpoint") is None:
            # No route matched the path (a route's own 404 names what it did not find).
            detail = f"no operation {request.method} {request.url.path}; GET /openapi.json (or /docs) lists them"
        return problem(exc.status_code, detail, instance=request.url.path, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        refused = await _authorize_first(request)
        if refused is not None:
            return await http_error(request, refused)
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": pattern_words(e) or e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem(422, f"invalid request: {where}", instance=request.url.path, errors=errors)

    @app.exception_handler(SpecError)
    async def invalid_spec(request: Request, exc: SpecError) -> JSONResponse:
        issues = [{"file": i.file, "line": i.line, "message": i.message, "hint": i.hint} for i in exc.issues]
        return problem(422, str(exc), title="Invalid spec", instance=request.url.path, issues=issues)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return problem(status_of(exc), str(exc), instance=request.url.path)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        # This handler runs outside every middleware (Starlette's ServerErrorMiddleware): the
        # request id comes from the request's state, and the header is set here.
        rid = current_request_id.get() or getattr(request.state, "request_id", None)
        token = current_request_id.set(rid)
        try:
            log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        finally:
            current_request_id.reset(token)
        return problem(
            500,
            "an unexpected error; the server log has the details under this request id",
            instance=request.url.path,
            request_id=rid,
            headers={"X-Request-ID": rid} if rid else None,
        )

    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        from edgecrew.api.auth import document_security

        doc = document_security(problems_as_problem_json(plain_openapi()), iter_route_contexts(app.routes))
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in schemas:  # the routes refer to it (problem_response) without a model to collect
            schemas["Problem"] = Problem.model_json_schema(mode="serialization")
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


async def _authorize_first(request: Request) -> StarletteHTTPException | None:
    """FastAPI parses a JSON or form body before it runs the route's dependencies, so a body that
    does not parse is refused before the key is checked. A caller without a valid key (or the
    scope) hears about that first, not about the body: the 401/403 it would have had, if any."""
    from edgecrew.api.auth import authorize, required_scope

    if getattr(request.state, "principal", None) is not None:
        return None
    scope = required_scope(request.scope.get("route"))
    if scope is None:
        return None
    try:
        await authorize(request, scope)
    except StarletteHTTPException as refused:
        return refused
    return None


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods of the resource at ``path``, for the Allow header of a 405.

    The router names only the first route whose path matches; this looks at them all and keeps
    the most specific ones (fewest parameters), so /teams/validate is the validate operation, not
    a team called "validate".
    """
    by_params: dict[int, set[str]] = {}
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and route.path and regex.match(path):
            by_params.setdefault(route.path.count("{"), set()).update(route.methods)
    return sorted(by_params[min(by_params)]) if by_params else []


def problems_as_problem_json(doc: dict[str, Any]) -> dict[str, Any]:
    """Move each error response's schema from application/json (where FastAPI puts a response
    model) to application/problem+json, the type these answers really have. Idempotent."""
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[0] in "45" and PROBLEM_JSON in content and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
    return doc
