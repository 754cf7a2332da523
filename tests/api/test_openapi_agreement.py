"""Where the OpenAPI document and the server disagreed (found by schemathesis, tests/api/test_schema.py),
pinned here with plain requests: the rule the document states for a value is the one the server
applies, and every refusal it answers with is a problem the operation declares.

- a log file name: the document allowed 255 characters where the store takes 200 (and no "..");
- a reused Idempotency-Key on POST /runs: a valid body answered with an undeclared 422, now a 409;
- uploads and results: an empty multipart ``author`` or ``filename``, an undeclared form field, and
  ``true`` or ``"0.5"`` where the document says number were accepted.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from edgecrew.api.problems import PROBLEM_JSON
from edgecrew.api.routers.task_schemas import LOG_FILENAME_MAX
from edgecrew.engine.service import TASK_PATTERN
from tests.api.conftest import auth


@pytest.fixture
def rw(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["runs"])


def _operation(client: TestClient, method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = client.get("/openapi.json").json()["paths"][path][method]
    return op


def _declared_problem(op: dict[str, Any], status: int) -> None:
    declared = op["responses"].get(str(status))
    assert declared and PROBLEM_JSON in declared["content"], f"{status} is not declared as a problem"


def _problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = resp.json()
    return body


def _task(client: TestClient, rw: dict[str, str]) -> str:
    resp = client.post("/tasks", json={"title": "t"}, headers=rw)
    assert resp.status_code == 201, resp.text
    task_id: str = resp.json()["id"]
    return task_id


# -- (a) a log file's name ------------------------------------------------------------------------

LOG_NAMES = [
    "result-1.log",
    "a",
    "a.",
    "A-b_c.d.txt",
    "x" * 200,
    "x" * 201,  # the store's limit is 200: this was schema-valid and answered 400
    "x" * 255,
    "a..b",
    ".hidden",
    "-dash",
    "a b",
]


def test_a_log_name_is_refused_exactly_when_the_document_says_it_is_invalid(
    client: TestClient, rw: dict[str, str], keys: dict[str, str]
) -> None:
    task_id = _task(client, rw)
    op = _operation(client, "get", "/tasks/{task_id}/logs/{filename}")
    schema = next(p["schema"] for p in op["parameters"] if p["name"] == "filename")
    valid = jsonschema.Draft202012Validator(schema)
    _declared_problem(op, 400)
    for name in LOG_NAMES:
        resp = client.get(f"/tasks/{task_id}/logs/{name}", headers=auth(keys["read"]))
        if valid.is_valid(name):
            assert resp.status_code == 404, (name[:20], len(name), resp.text)  # allowed, just not there
        else:
            detail = _problem(resp, 400)["detail"]
            said = "a log file name has at most" if len(name) > LOG_FILENAME_MAX else "plain file name"
            assert said in detail, (name[:20], len(name), detail)


# -- (b) a reused Idempotency-Key -----------------------------------------------------------------


def test_a_reused_idempotency_key_is_a_declared_conflict(client: TestClient, rw: dict[str, str]) -> None:
    op = _operation(client, "post", "/runs")
    _declared_problem(op, 409)
    assert "Idempotency-Key" in op["responses"]["409"]["description"]
    key = {**rw, "Idempotency-Key": "k-conflict"}
    first = client.post("/runs", json={"team": "echo", "task": "one"}, headers=key)
    assert first.status_code == 201, first.text
    other = client.post("/runs", json={"team": "echo", "task": "another"}, headers=key)
    body = _problem(other, 409)
    assert first.json()["id"] in body["detail"] and "Idempotency-Key" in body["detail"]
    chat = {"model": "echo", "messages": [{"role": "user", "content": "yet another"}]}
    v1 = _problem(client.post("/v1/chat/completions", json=chat, headers=key), 409)  # the same key, the same answer
    assert v1["error"]["code"] == "conflict" and v1["run_id"] == first.json()["id"]


def test_a_run_body_may_carry_properties_the_document_does_not_name(client: TestClient, rw: dict[str, str]) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["StartRun"]
    assert schema.get("additionalProperties", True) is not False  # the document allows extras...
    resp = client.post("/runs", json={"team": "echo", "task": "hi", "priority": 3}, headers=rw)
    assert resp.status_code == 201, resp.text  # ...and the server accepts (and ignores) them


# -- (c) requests the document forbids ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"author": ""}, "author"),
        ({"filename": ""}, "filename"),
        ({"note": "x"}, "note"),
    ],
    ids=["empty author", "empty filename", "undeclared field"],
)
def test_a_multipart_upload_the_document_forbids_is_refused(
    client: TestClient, rw: dict[str, str], keys: dict[str, str], data: dict[str, str], field: str
) -> None:
    task_id = _task(client, rw)
    body = client.get("/openapi.json").json()["paths"]["/tasks/{task_id}/code"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]["schema"]
    assert not jsonschema.Draft202012Validator(form).is_valid({"file": "x = 1", **data})
    resp = client.post(f"/tasks/{task_id}/code", files={"file": ("a.py", b"x = 1")}, data=data, headers=rw)
    assert _problem(resp, 422)["errors"][0]["loc"] == ["body", field]
    assert client.get(f"/tasks/{task_id}/code", headers=auth(keys["read"])).json() == []


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("results", {"metrics": {"A": False}}, ["body", "metrics", "A"]),
        ("results", {"accuracy": "0.5"}, ["body", "accuracy"]),
        ("results", {"accuracy": True}, ["body", "accuracy"]),
        ("results", {"version": "1"}, ["body", "version"]),
        ("feedback", {"verdict": "accepted", "score": True}, ["body", "score"]),
        ("feedback", {"verdict": "accepted", "version": True}, ["body", "version"]),
    ],
)
def test_a_number_the_document_requires_is_not_taken_from_a_string_or_a_boolean(
    client: TestClient, rw: dict[str, str], path: str, body: dict[str, Any], loc: list[str]
) -> None:
    task_id = _task(client, rw)
    resp = client.post(f"/tasks/{task_id}/{path}", json=body, headers=rw)
    assert _problem(resp, 422)["errors"][0]["loc"][: len(loc)] == loc


@pytest.mark.parametrize("value", [0, 1, 1.0, 2.5, 2**31, "1", True, None], ids=repr)
def test_a_version_is_refused_exactly_when_the_document_says_it_is_invalid(
    client: TestClient, rw: dict[str, str], value: Any
) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ResultIn"]["properties"]["version"]
    task_id = _task(client, rw)
    resp = client.post(f"/tasks/{task_id}/results", json={"version": value, "accuracy": 1}, headers=rw)
    if jsonschema.Draft202012Validator(schema).is_valid(value):
        assert resp.status_code in (201, 404), resp.text  # 404: the task has no such version yet
    else:
        assert _problem(resp, 422)["errors"][0]["loc"] == ["body", "version"]


def test_whole_numbers_still_count_as_numbers(client: TestClient, rw: dict[str, str]) -> None:
    """JSON Schema calls 1 a number and 1.0 an integer: so does the server."""
    task_id = _task(client, rw)
    assert client.post(f"/tasks/{task_id}/code", files={"file": ("a.py", b"x = 1")}, headers=rw).status_code == 201
    body = {"version": 1.0, "accuracy": 1, "runtime_s": 2, "metrics": {"f1": 0}}
    ok = client.post(f"/tasks/{task_id}/results", json=body, headers=rw)
    assert ok.status_code == 201, ok.text
    assert (ok.json()["version"], ok.json()["accuracy"], ok.json()["metrics"]) == (1, 1.0, {"f1": 0.0})


@pytest.mark.parametrize("task", [" \t", "\u001d", "\u0085", "\ufeff", "\u3000\n"])
def test_a_task_without_a_visible_character_is_refused_by_the_document_too(
    client: TestClient, rw: dict[str, str], task: str
) -> None:
    """The schema says what the run use case says (whitespace differs between Python, Unicode and
    ECMAScript regexes, so the pattern names control characters too)."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["StartRun"]["properties"]["task"]
    assert schema["pattern"] == TASK_PATTERN
    jsonschema.validate("do it", schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(task, schema)
    refused = client.post("/runs", json={"team": "echo", "task": task}, headers=rw)
    assert refused.status_code == 422, refused.text
