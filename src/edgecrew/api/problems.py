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
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgecrew.context import request_id as current_request_id
from edgecrew.errors import ConflictError, NotFoundError, SpecError, UserError

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
    **extra: Any,
) -> JSONResponse:
    body = Problem(
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        request_id=current_request_id.get(),
        **extra,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "description": "Problem details (RFC 9457)", "content": {PROBLEM_JSON: {}}},
}


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into problem details."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrase = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
        return problem(exc.status_code, detail, instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
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
        status = 404 if isinstance(exc, NotFoundError) else 409 if isinstance(exc, ConflictError) else 400
        return problem(status, str(exc), instance=request.url.path)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(
            500, "an unexpected error; the server log has the details under this request id", instance=request.url.path
        )
