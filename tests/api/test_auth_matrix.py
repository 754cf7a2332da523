"""The auth matrix on every route of the app, and the ways a key may (or may not) be presented.

Every operation of the app's OpenAPI document, except the open ones (``PUBLIC``), must appear in
``ROUTE_SCOPES`` with the scope it needs: a route added without an entry fails here, so each new
route declares its scope. For each: no key, a malformed key, an unknown key (as Bearer and as
X-API-Key) and a revoked key get 401 with WWW-Authenticate and a problem; each key lacking the
scope gets 403; a key with exactly that scope, and an admin key, get past authentication. Routes
outside the document (docs, the UI's pages) must be listed in ``OUTSIDE_API``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.store.keys import SCOPES, ApiKeyStore
from tests.api.live import assert_problem, server_settings, write_project

ROUTE_SCOPES: dict[str, str] = {
    "POST /projects": "runs",
    "GET /projects": "read",
    "GET /projects/{project}": "read",
    "PATCH /projects/{project}": "runs",
    "DELETE /projects/{project}": "runs",
    "GET /projects/{project}/members": "read",
    "POST /projects/{project}/members": "runs",
    "DELETE /projects/{project}/members": "runs",
    "GET /projects/{project}/case-file": "read",
    "PUT /projects/{project}/case-file": "runs",
    "GET /projects/{project}/case-file/versions": "read",
    "POST /projects/{project}/case-file/append": "runs",
    "GET /projects/{project}/artifacts": "read",
    "POST /projects/{project}/artifacts": "runs",
    "GET /projects/{project}/artifacts/{artifact}": "read",
    "DELETE /projects/{project}/artifacts/{artifact}": "runs",
    "GET /projects/{project}/artifacts/{artifact}/versions": "read",
    "POST /projects/{project}/artifacts/{artifact}/versions": "runs",
    "GET /projects/{project}/artifacts/{artifact}/versions/{version}": "read",
    "POST /projects/{project}/artifacts/{artifact}/lock": "runs",
    "POST /projects/{project}/artifacts/{artifact}/unlock": "runs",
    "POST /projects/{project}/artifacts/{artifact}/publish": "runs",
    "GET /projects/{project}/files": "read",
    "GET /projects/{project}/files/{path}": "read",
    "GET /projects/{project}/graph": "read",
    "POST /projects/{project}/graph/facts": "runs",
    "DELETE /projects/{project}/graph/facts/{fact_id}": "runs",
    "GET /projects/{project}/graph/neighbours": "read",
    "GET /projects/{project}/graph/path": "read",
    "GET /graph": "read",
    "POST /graph/facts": "runs",
    "DELETE /graph/facts/{fact_id}": "runs",
    "GET /graph/neighbours": "read",
    "GET /graph/path": "read",
    "GET /routines": "read",
    "GET /cluster": "read",
    "GET /routines/{name}": "read",
    "GET /routines/{name}/runs": "read",
    "POST /routines/{name}/pause": "runs",
    "POST /routines/{name}/resume": "runs",
    "POST /routines/{name}/trigger": "runs",
    "GET /teams": "read",
    "GET /teams/{name}": "read",
    "POST /teams/validate": "read",
    "GET /agents": "read",
    "GET /agents/{team}/{agent}": "read",
    "POST /runs": "runs",
    "GET /runs": "read",
    "GET /runs/{run_id}": "read",
    "POST /runs/{run_id}/cancel": "runs",
    "POST /runs/{run_id}/feedback": "runs",
    "GET /runs/{run_id}/feedback": "read",
    "GET /runs/{run_id}/checklist": "read",
    "GET /feedback/export": "read",
    "POST /runs/{run_id}/resume": "runs",
    "GET /runs/{run_id}/events": "read",
    "GET /approvals": "read",
    "GET /approvals/{approval_id}": "read",
    "POST /approvals/{approval_id}/approve": "approve",
    "POST /approvals/{approval_id}/deny": "approve",
    "POST /approvals/{approval_id}/edit": "approve",
    "GET /models": "read",
    "GET /models/pool": "read",
    "GET /models/{alias}": "read",
    "POST /tasks": "runs",
    "GET /tasks": "read",
    "GET /tasks/{task_id}": "read",
    "PATCH /tasks/{task_id}": "runs",
    "POST /tasks/{task_id}/code": "runs",
    "GET /tasks/{task_id}/code": "read",
    "GET /tasks/{task_id}/code/{version}": "read",
    "GET /tasks/{task_id}/code/{version}/file": "read",
    "DELETE /tasks/{task_id}/code/{version}": "runs",
    "POST /tasks/{task_id}/results": "runs",
    "GET /tasks/{task_id}/results": "read",
    "GET /tasks/{task_id}/results/latest": "read",
    "POST /tasks/{task_id}/messages": "runs",
    "GET /tasks/{task_id}/messages": "read",
    "POST /tasks/{task_id}/feedback": "runs",
    "GET /tasks/{task_id}/feedback": "read",
    "GET /tasks/{task_id}/logs": "read",
    "GET /tasks/{task_id}/logs/{filename}": "read",
    "POST /tasks/{task_id}/versions/{version}/executions": "runs",
    "GET /tasks/{task_id}/executions": "read",
    "GET /executions/{execution_id}": "read",
    "GET /executions/{execution_id}/logs": "read",
    "GET /executions/{execution_id}/events": "read",
    "POST /executions/{execution_id}/cancel": "runs",
    "GET /stats": "read",
    "GET /alerts": "read",
    "GET /alerts/history": "read",
    "GET /incidents": "read",
    "GET /incidents/{incident_id}": "read",
    "GET /metrics": "read",
    "POST /jobs": "runs",
    "GET /jobs": "read",
    "GET /jobs/{job_id}": "read",
    "POST /jobs/{job_id}/cancel": "runs",
    "GET /policies": "read",
    "GET /policies/{name}/versions": "read",
    "GET /v1/models": "runs",
    "GET /v1/models/{team}": "runs",
    "GET /v1/models/{team}/{agent}": "runs",
    "POST /v1/chat/completions": "runs",
    "POST /sessions": "runs",
    "GET /sessions": "read",
    "GET /sessions/{session_id}": "read",
    "POST /sessions/{session_id}/messages": "runs",
    "POST /v1/feedback": "runs",
    "POST /v1/audio/transcriptions": "runs",
    "POST /v1/audio/speech": "runs",
}
PUBLIC = {"GET /health", "GET /ready"}
# Routes that are not part of the API document: FastAPI's docs, and the UI's pages (session
# cookies, tested with the UI). A pattern per family; anything else outside the document fails.
OUTSIDE_API = re.compile(r"^(/openapi\.json|/docs(/oauth2-redirect)?|/redoc|/|/ui(/.*)?|/a2a(/.*)?)$")

DOCUMENT = create_app(start_engine=False).openapi()
OPERATIONS = sorted(f"{m.upper()} {p}" for p, item in DOCUMENT["paths"].items() for m in item)
PROTECTED = [op for op in OPERATIONS if op not in PUBLIC]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app for the module, with a key per scope, an unknown and a revoked key."""
    root = tmp_path_factory.mktemp("auth")
    write_project(root / "project")
    with TestClient(create_app(server_settings(root)), raise_server_exceptions=False) as client:
        store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
        keys = {scope: store.create(f"matrix-{scope}", (scope,))[1] for scope in SCOPES}
        revoked, keys["revoked"] = store.create("matrix-revoked", ("admin",))
        store.revoke(revoked.id)
        yield client, keys


def _url(op: str) -> tuple[str, str]:
    """Method and a concrete path: integer parameters get 1, the others a name nothing has."""
    method, path = op.split(" ", 1)
    params = DOCUMENT["paths"][path][method.lower()].get("parameters", [])
    types = {p["name"]: p.get("schema", {}).get("type") for p in params if p["in"] == "path"}
    concrete = re.sub(r"\{(\w+)\}", lambda m: "1" if types.get(m.group(1)) == "integer" else "nothing-here", path)
    return method, concrete


def _call(client: TestClient, op: str, headers: dict[str, str]) -> httpx.Response:
    method, path = _url(op)
    body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.request(method, path, headers=headers, **body)


def test_every_route_declares_its_scope() -> None:
    undeclared = [op for op in PROTECTED if op not in ROUTE_SCOPES]
    assert not undeclared, f"add these routes to ROUTE_SCOPES with the scope they need: {undeclared}"
    stale = sorted(set(ROUTE_SCOPES) - set(PROTECTED))
    assert not stale, f"ROUTE_SCOPES names routes the app no longer has: {stale}"
    assert set(ROUTE_SCOPES.values()) <= set(SCOPES)


def test_every_route_outside_the_document_is_known() -> None:
    documented = {path for path in DOCUMENT["paths"]}
    app = create_app(start_engine=False)
    stray = [
        route.path
        for route in iter_route_contexts(app.routes)
        if route.path and route.path_format not in documented and not OUTSIDE_API.match(route.path)
    ]
    assert not stray, f"routes missing from the OpenAPI document (declare them or list them in OUTSIDE_API): {stray}"


@pytest.mark.parametrize("op", PROTECTED)
def test_route_refuses_without_a_valid_key(op: str, app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app_client
    attempts = {
        "no key": {},
        "an empty bearer": {"Authorization": "Bearer "},
        "a malformed key": {"Authorization": "Bearer not a key"},
        "another scheme": {"Authorization": f"Basic {keys['admin']}"},
        "an unknown key": {"Authorization": "Bearer ec_" + "A" * 43},
        "an unknown X-API-Key": {"X-API-Key": "ec_" + "B" * 43},
        "a revoked key": {"Authorization": f"Bearer {keys['revoked']}"},
        "a revoked X-API-Key": {"X-API-Key": keys["revoked"]},
    }
    for label, headers in attempts.items():
        response = _call(client, op, headers)
        body = assert_problem(response, 401, op, label)
        assert response.headers["www-authenticate"].startswith("Bearer"), f"{op} with {label}"
        assert keys["revoked"] not in response.text and keys["admin"] not in response.text  # no secret echoed
        if "revoked" in label:
            assert "revoked" in body["detail"]
    if op.split(" ")[0] in ("POST", "PUT", "PATCH"):
        # a body that does not parse is checked before the route's dependencies run: the key still comes first
        method, path = _url(op)
        garbled = {"Content-Type": "application/json"}
        response = client.request(method, path, content=b'{"not": json', headers=garbled)
        assert_problem(response, 401, op, "no key and a garbled body")


@pytest.mark.parametrize("op", PROTECTED)
def test_route_needs_its_scope(op: str, app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app_client
    needed = ROUTE_SCOPES.get(op)
    assert needed, f"{op} is not in ROUTE_SCOPES"
    for scope in SCOPES:
        for header in ({"Authorization": f"Bearer {keys[scope]}"}, {"X-API-Key": keys[scope]}):
            response = _call(client, op, header)
            if scope in (needed, "admin"):
                assert response.status_code not in (401, 403), f"{op} with a '{scope}' key: {response.text[:300]}"
            else:
                body = assert_problem(response, 403, op, f"a '{scope}' key")
                assert needed in body["detail"]
                if op.split(" ")[0] in ("POST", "PUT", "PATCH"):
                    method, path = _url(op)
                    garbled = {**header, "Content-Type": "application/json"}
                    response = client.request(method, path, content=b"{", headers=garbled)
                    assert_problem(response, 403, op, f"a '{scope}' key and a garbled body")


@pytest.mark.parametrize("op", sorted(PUBLIC))
def test_public_routes_need_no_key(op: str, app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, _keys = app_client
    method, path = _url(op)
    assert client.request(method, path).status_code == 200
    assert not DOCUMENT["paths"][path][method.lower()].get("security")


def test_protected_routes_show_their_security_in_the_document() -> None:
    for op in PROTECTED:
        method, path = op.split(" ", 1)
        security = DOCUMENT["paths"][path][method.lower()].get("security")
        assert security == [{"HTTPBearer": []}, {"APIKeyHeader": []}], op


def test_x_api_key_and_bearer_are_the_same_key(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app_client
    by_bearer = client.get("/runs", headers={"Authorization": f"bearer {keys['read']}"})  # the scheme is case-blind
    by_header = client.get("/runs", headers={"X-API-Key": keys["read"]})
    assert by_bearer.status_code == by_header.status_code == 200
    assert by_bearer.json() == by_header.json()
