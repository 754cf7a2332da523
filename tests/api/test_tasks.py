"""The task workspace over HTTP: tasks, code versions on disk, results with log files, messages,
feedback, log downloads that never leave the workspace, and /stats."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import edgecrew.store.taskfiles as taskfiles
from tests.api.conftest import auth

CODE = b"import sys\n\nprint('hello', sys.argv)\n"


@pytest.fixture
def rw(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["runs"])


@pytest.fixture
def ro(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


def new_task(client: TestClient, rw: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = client.post("/tasks", json={"title": "sort numbers", "description": "fast", **body}, headers=rw)
    assert resp.status_code == 201, resp.text
    task: dict[str, Any] = resp.json()
    return task


def upload(client: TestClient, rw: dict[str, str], task_id: str, data: bytes = CODE, name: str = "main.py") -> Any:
    return client.post(f"/tasks/{task_id}/code", files={"file": (name, data, "text/x-python")}, headers=rw)


def problem_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    return body


def test_task_lifecycle_with_code_results_messages_and_feedback(
    client: TestClient, rw: dict[str, str], ro: dict[str, str], edgecrew_home: Path
) -> None:
    task = new_task(client, rw, team="echo")
    tid = task["id"]
    assert (task["status"], task["team"], task["title"]) == ("open", "echo", "sort numbers")
    assert client.get(f"/tasks/{tid}", headers=ro).json() == task

    # generator → coder: two versions, numbered 1 and 2, with metadata and the file on disk
    first = upload(client, rw, tid)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"/tasks/{tid}/code/1"
    v1 = first.json()
    assert v1["version"] == 1
    assert (v1["filename"], v1["size"], v1["language"]) == ("main.py", len(CODE), "python")
    assert v1["sha256"] == hashlib.sha256(CODE).hexdigest()
    assert v1["author"] == "test-runs"  # the key's name when no author is given
    assert (edgecrew_home / "tasks" / tid / "code" / "1" / "main.py").read_bytes() == CODE
    second = client.post(
        f"/tasks/{tid}/code", json={"filename": "sort.js", "content": "console.log(1)\n", "author": "coder"}, headers=rw
    )
    assert second.status_code == 201, second.text
    assert (second.json()["version"], second.json()["language"], second.json()["author"]) == (2, "javascript", "coder")
    listed = client.get(f"/tasks/{tid}/code", headers=ro).json()
    assert [v["version"] for v in listed] == [1, 2]
    assert client.get(f"/tasks/{tid}/code/1", headers=ro).json() == v1

    raw = client.get(f"/tasks/{tid}/code/1/file", headers=ro)
    assert raw.status_code == 200 and raw.content == CODE
    assert raw.headers["content-type"] == "text/x-python; charset=utf-8"
    assert raw.headers["content-disposition"] == 'attachment; filename="main.py"'
    assert raw.headers["etag"] == f'"{v1["sha256"]}"'

    # runner → evaluator: results with logs, feedback, messages
    status = client.patch(f"/tasks/{tid}", json={"status": "in_progress"}, headers=rw)
    assert status.status_code == 200 and status.json()["status"] == "in_progress"
    logs = "".join(f"epoch {i} loss {1 / (i + 1):.3f}\n" for i in range(80))
    r1 = client.post(
        f"/tasks/{tid}/results",
        json={"version": 1, "accuracy": 0.5, "loss": 0.9, "runtime_s": 10, "metrics": {"f1": 0.4}, "logs": logs},
        headers=rw,
    )
    assert r1.status_code == 201, r1.text
    assert r1.json()["log_file"] == f"result-{r1.json()['id']}.log"
    r2 = client.post(f"/tasks/{tid}/results", json={"version": 2, "accuracy": 0.9, "runtime_s": 20}, headers=rw)
    assert r2.status_code == 201 and r2.json()["log_file"] is None
    assert [r["id"] for r in client.get(f"/tasks/{tid}/results", headers=ro).json()] == [
        r1.json()["id"],
        r2.json()["id"],
    ]
    assert [r["version"] for r in client.get(f"/tasks/{tid}/results?version=1", headers=ro).json()] == [1]
    assert client.get(f"/tasks/{tid}/results/latest", headers=ro).json() == r2.json()

    for sender, role, content in [("gen", "generator", "write a sort"), ("cod", "coder", "v2 is up")]:
        sent = client.post(
            f"/tasks/{tid}/messages", json={"sender": sender, "role": role, "content": content}, headers=rw
        )
        assert sent.status_code == 201, sent.text
    timeline = client.get(f"/tasks/{tid}/messages", headers=ro).json()
    assert [(m["sender"], m["content"]) for m in timeline] == [("gen", "write a sort"), ("cod", "v2 is up")]
    newer = client.get(f"/tasks/{tid}/messages?after={timeline[0]['id']}", headers=ro).json()
    assert [m["content"] for m in newer] == ["v2 is up"]

    fb = client.post(
        f"/tasks/{tid}/feedback",
        json={"verdict": "needs_changes", "version": 1, "score": 0.5, "notes": "too slow", "author": "eval"},
        headers=rw,
    )
    assert fb.status_code == 201, fb.text
    client.post(f"/tasks/{tid}/feedback", json={"verdict": "accepted", "version": 2}, headers=rw)
    feedback = client.get(f"/tasks/{tid}/feedback", headers=ro).json()
    assert [(f["verdict"], f["version"], f["author"]) for f in feedback] == [
        ("needs_changes", 1, "eval"),
        ("accepted", 2, "test-runs"),
    ]
    assert [f["verdict"] for f in client.get(f"/tasks/{tid}/feedback?version=2", headers=ro).json()] == ["accepted"]

    # log files: listed with a 50-line preview, downloaded whole
    (entry,) = client.get(f"/tasks/{tid}/logs", headers=ro).json()
    assert (entry["filename"], entry["size"], entry["truncated"]) == (r1.json()["log_file"], len(logs), True)
    assert entry["preview"].splitlines() == logs.splitlines()[:50]
    got = client.get(entry["download"], headers=ro)
    assert got.status_code == 200 and got.text == logs
    assert got.headers["content-disposition"].startswith("attachment")

    # deleting a version removes its row and file; its number is not reused; the task no longer names it best
    assert client.patch(f"/tasks/{tid}", json={"best_version": 1}, headers=rw).json()["best_version"] == 1
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    busy = tasks.create_execution(tid, 1)  # queued: the version is not deleted under it
    assert "being executed" in problem_of(client.delete(f"/tasks/{tid}/code/1", headers=rw), 409)["detail"]
    tasks.update_execution(busy.id, status="killed")
    assert client.delete(f"/tasks/{tid}/code/1", headers=rw).status_code == 204
    assert client.get(f"/tasks/{tid}", headers=ro).json()["best_version"] is None
    assert not (edgecrew_home / "tasks" / tid / "code" / "1").exists()
    problem_of(client.get(f"/tasks/{tid}/code/1", headers=ro), 404)
    problem_of(client.get(f"/tasks/{tid}/code/1/file", headers=ro), 404)
    problem_of(client.delete(f"/tasks/{tid}/code/1", headers=rw), 404)
    assert upload(client, rw, tid).json()["version"] == 3
    assert client.get(f"/tasks/{tid}/results?version=1", headers=ro).json()[0]["version"] == 1  # history kept

    done = client.patch(f"/tasks/{tid}", json={"status": "done", "title": "sorted"}, headers=rw).json()
    assert (done["status"], done["title"], done["team"]) == ("done", "sorted", "echo")
    assert done["best_version"] == 2  # finished by a person naming none: the accepted version, as the finish tool
    cleared = client.patch(f"/tasks/{tid}", json={"team": None}, headers=rw).json()
    assert cleared["team"] is None and cleared["status"] == "done"

    # Reopened, the task drops the best version of its last finish: finishing it again named the
    # version rejected since, not the one accepted after it.
    reopened = client.patch(f"/tasks/{tid}", json={"status": "in_progress"}, headers=rw).json()
    assert (reopened["status"], reopened["best_version"]) == ("in_progress", None)
    for verdict, version in (("rejected", 2), ("accepted", 3)):
        assert client.post(
            f"/tasks/{tid}/feedback", json={"verdict": verdict, "version": version}, headers=rw
        ).is_success
    assert client.patch(f"/tasks/{tid}", json={"status": "done"}, headers=rw).json()["best_version"] == 3


def test_uploads_by_multipart_and_text_sanitize_names_and_keep_bytes(
    client: TestClient, rw: dict[str, str], ro: dict[str, str], edgecrew_home: Path
) -> None:
    tid = new_task(client, rw)["id"]
    blob = bytes(range(256)) * 3  # not UTF-8: served as bytes
    binary = upload(client, rw, tid, blob, "../../outside/model weights (1).bin")
    assert binary.status_code == 201, binary.text
    assert (binary.json()["filename"], binary.json()["language"]) == ("model_weights_1_.bin", None)
    assert binary.json()["media_type"] == "application/octet-stream"
    assert not (edgecrew_home / "tasks" / "outside").exists()
    got = client.get(f"/tasks/{tid}/code/1/file", headers=ro)
    assert got.content == blob and got.headers["content-type"] == "application/octet-stream"

    renamed = client.post(
        f"/tasks/{tid}/code",
        files={"file": ("blob", b"SELECT 1;\n")},
        data={"filename": "q.sql", "author": "coder"},
        headers=rw,
    )
    assert (renamed.json()["filename"], renamed.json()["language"], renamed.json()["author"]) == (
        "q.sql",
        "sql",
        "coder",
    )

    page = "<script>alert(1)</script>\n"
    html = client.post(f"/tasks/{tid}/code", json={"filename": "index.html", "content": page}, headers=rw).json()
    served = client.get(html["download"], headers=ro)
    assert served.text == page
    assert served.headers["content-type"] == "text/plain; charset=utf-8"  # never rendered by a browser
    assert served.headers["x-content-type-options"] == "nosniff"

    text = "print('héllo')\n"
    unicode = client.post(f"/tasks/{tid}/code", json={"filename": "hi.py", "content": text}, headers=rw).json()
    assert unicode["size"] == len(text.encode()) and unicode["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert client.get(unicode["download"], headers=ro).content == text.encode()
    assert [v["version"] for v in client.get(f"/tasks/{tid}/code", headers=ro).json()] == [1, 2, 3, 4]

    # names keep what they can: a leading underscore, plain letters for accented ones, the extension
    kept = {"__init__.py": "__init__.py", "über.py": "uber.py", "日本.py": "file.py", "-x.py": "x.py"}
    kept["....py"] = "file.py"  # it was "py": no extension, so not runnable
    for given, stored in kept.items():
        made = client.post(f"/tasks/{tid}/code", json={"filename": given, "content": "x = 1\n"}, headers=rw).json()
        assert (made["filename"], made["language"]) == (stored, "python"), given


def test_an_upload_moves_an_open_task_to_in_progress_as_the_cli_and_the_tool_do(
    client: TestClient, rw: dict[str, str], ro: dict[str, str]
) -> None:
    def status() -> str:
        return str(client.get(f"/tasks/{tid}", headers=ro).json()["status"])

    tid = new_task(client, rw)["id"]
    problem_of(upload(client, rw, tid, b""), 400)
    assert status() == "open"  # a refused upload changes nothing
    assert upload(client, rw, tid).status_code == 201
    assert status() == "in_progress"
    client.patch(f"/tasks/{tid}", json={"status": "done"}, headers=rw)
    as_json = client.post(f"/tasks/{tid}/code", json={"filename": "b.py", "content": "x = 2\n"}, headers=rw)
    assert as_json.status_code == 201 and status() == "done"  # only an open task moves


def test_a_failed_upload_leaves_earlier_versions_intact_and_uses_no_number(
    client: TestClient, rw: dict[str, str], ro: dict[str, str], edgecrew_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = new_task(client, rw)["id"]
    assert upload(client, rw, tid).status_code == 201
    code_dir = edgecrew_home / "tasks" / tid / "code"

    assert "empty" in problem_of(upload(client, rw, tid, b""), 400)["detail"]
    assert "filename" in problem_of(upload(client, rw, tid, CODE, "..."), 400)["detail"]
    empty_text = client.post(f"/tasks/{tid}/code", json={"filename": "a.py", "content": ""}, headers=rw)
    assert problem_of(empty_text, 422)["errors"][0]["loc"] == ["body", "content"]
    for bad in ("dir/:", "..."):  # nothing would be left of the name
        as_json = client.post(f"/tasks/{tid}/code", json={"filename": bad, "content": "x"}, headers=rw)
        as_form = client.post(f"/tasks/{tid}/code", files={"file": ("a.py", b"x")}, data={"filename": bad}, headers=rw)
        for resp in (as_json, as_form):
            assert problem_of(resp, 422)["errors"][0]["loc"] == ["body", "filename"]
    no_name = client.post(f"/tasks/{tid}/code", json={"content": "x = 1"}, headers=rw)
    assert problem_of(no_name, 422)["errors"][0]["loc"] == ["body", "filename"]
    not_json = client.post(
        f"/tasks/{tid}/code", content=b"{not json", headers={**rw, "Content-Type": "application/json"}
    )
    problem_of(not_json, 422)
    no_file = client.post(f"/tasks/{tid}/code", data={"filename": "a.py"}, files={"other": ("a", b"x")}, headers=rw)
    assert problem_of(no_file, 422)["errors"][0]["loc"] == ["body", "file"]
    plain = client.post(f"/tasks/{tid}/code", content=b"x = 1", headers={**rw, "Content-Type": "text/plain"})
    assert "multipart" in problem_of(plain, 415)["detail"]
    too_big = upload(client, rw, tid, b"x" * (8 * 1024 * 1024 + 1))
    problem_of(too_big, 413)

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(taskfiles, "_replace", full_disk)
    crashed = upload(client, rw, tid, b"print(2)\n", "two.py")
    assert problem_of(crashed, 500)["detail"].startswith("an unexpected error")
    monkeypatch.undo()

    assert [v["version"] for v in client.get(f"/tasks/{tid}/code", headers=ro).json()] == [1]
    assert client.get(f"/tasks/{tid}/code/1/file", headers=ro).content == CODE
    assert sorted(p.relative_to(code_dir).as_posix() for p in code_dir.rglob("*")) == ["1", "1/main.py"]
    assert upload(client, rw, tid, b"print(2)\n", "two.py").json()["version"] == 2


def test_log_downloads_refuse_traversal_and_never_read_outside(
    client: TestClient, rw: dict[str, str], ro: dict[str, str], edgecrew_home: Path
) -> None:
    tid = new_task(client, rw)["id"]
    client.post(f"/tasks/{tid}/results", json={"accuracy": 1, "logs": "ok\n"}, headers=rw)
    logs_dir = edgecrew_home / "tasks" / tid / "logs"
    secret = b"CANARY-SECRET-7f3a"
    (edgecrew_home / "tasks" / tid / "secret.log").write_bytes(secret)
    (edgecrew_home / "secret.log").write_bytes(secret)
    (logs_dir / "link.log").symlink_to(edgecrew_home / "secret.log")
    (logs_dir / "sub").mkdir()

    attempts = [
        "..%2Fsecret.log",
        "..%2F..%2F..%2Fsecret.log",
        "%2E%2E",
        "%2E%2E%2Fsecret.log",
        "..%5Csecret.log",
        "%2Fetc%2Fpasswd",
        ".hidden",
        "link.log",
        "sub",
        "nope.log",
        "a%00b",
    ]
    for attempt in attempts:
        resp = client.get(f"/tasks/{tid}/logs/{attempt}", headers=ro)
        assert resp.status_code in (400, 404), (attempt, resp.status_code)
        assert resp.headers["content-type"].startswith("application/problem+json"), attempt
        assert secret not in resp.content
    names = [f["filename"] for f in client.get(f"/tasks/{tid}/logs", headers=ro).json()]
    assert names == ["result-1.log"]  # the link and the folder are not listed
    assert "plain file name" in problem_of(client.get(f"/tasks/{tid}/logs/..%5Csecret.log", headers=ro), 400)["detail"]


def test_unknown_things_are_404_problems(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    tid = new_task(client, rw)["id"]
    for path in ["/tasks/tnope", "/tasks/tnope/code", "/tasks/tnope/results", "/tasks/tnope/messages"]:
        assert "tnope" in problem_of(client.get(path, headers=ro), 404)["detail"]
    for path in [
        "/tasks/tnope/feedback",
        "/tasks/tnope/logs",
        "/tasks/tnope/logs/a.log",
        "/tasks/tnope/results/latest",
    ]:
        problem_of(client.get(path, headers=ro), 404)
    problem_of(client.get(f"/tasks/{tid}/code/9", headers=ro), 404)
    problem_of(client.get(f"/tasks/{tid}/code/9/file", headers=ro), 404)
    assert "no results" in problem_of(client.get(f"/tasks/{tid}/results/latest", headers=ro), 404)["detail"]
    problem_of(client.patch("/tasks/tnope", json={"status": "done"}, headers=rw), 404)
    problem_of(upload(client, rw, "tnope"), 404)
    problem_of(client.post("/tasks/tnope/messages", json={"sender": "a", "content": "b"}, headers=rw), 404)
    problem_of(client.post("/tasks/tnope/feedback", json={"verdict": "accepted"}, headers=rw), 404)
    problem_of(client.post("/tasks/tnope/results", json={"accuracy": 1}, headers=rw), 404)
    assert client.get(f"/tasks/{tid}/logs", headers=ro).json() == []


def test_bad_values_name_their_field(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    tid = new_task(client, rw)["id"]
    bad_status = problem_of(client.patch(f"/tasks/{tid}", json={"status": "finished"}, headers=rw), 422)
    assert bad_status["errors"][0]["loc"] == ["body", "status"]
    assert problem_of(client.get("/tasks?status=finished", headers=ro), 422)["errors"][0]["loc"] == ["query", "status"]
    assert "at least one" in problem_of(client.patch(f"/tasks/{tid}", json={}, headers=rw), 422)["detail"]
    assert (
        "cannot be null" in problem_of(client.patch(f"/tasks/{tid}", json={"title": None}, headers=rw), 422)["detail"]
    )
    problem_of(client.post("/tasks", json={"title": ""}, headers=rw), 422)
    assert "team" in problem_of(client.post("/tasks", json={"title": "x", "team": "ghost"}, headers=rw), 404)["detail"]
    assert "team" in problem_of(client.patch(f"/tasks/{tid}", json={"team": "ghost"}, headers=rw), 404)["detail"]
    nan_body = b'{"accuracy": NaN}'  # Python's JSON parser accepts NaN; the field must not
    nan = client.post(f"/tasks/{tid}/results", content=nan_body, headers={**rw, "Content-Type": "application/json"})
    assert problem_of(nan, 422)["errors"][0]["loc"] == ["body", "accuracy"]
    problem_of(client.post(f"/tasks/{tid}/results", json={"runtime_s": -1}, headers=rw), 422)
    percent = problem_of(client.post(f"/tasks/{tid}/results", json={"accuracy": 97}, headers=rw), 422)
    assert percent["errors"][0]["loc"] == ["body", "accuracy"]  # a fraction: averaged with 0.97 otherwise
    problem_of(client.post(f"/tasks/{tid}/results", json={"metrics": {"bad name": 1}}, headers=rw), 422)
    for empty in ({}, {"author": "x"}, {"accuracy": None, "metrics": {}, "logs": ""}):  # nothing to keep
        said = problem_of(client.post(f"/tasks/{tid}/results", json=empty, headers=rw), 422)["detail"]
        assert "a result holds at least one of accuracy, loss, runtime_s, metrics or logs" in said, said
    missing = client.post(f"/tasks/{tid}/results", json={"version": 4, "accuracy": 1}, headers=rw)
    assert "no code version 4" in problem_of(missing, 404)["detail"]
    problem_of(client.post(f"/tasks/{tid}/feedback", json={"verdict": "meh"}, headers=rw), 422)
    problem_of(client.post(f"/tasks/{tid}/feedback", json={"verdict": "accepted", "version": 2}, headers=rw), 404)
    bad_role = client.post(
        f"/tasks/{tid}/messages", json={"sender": "a", "role": "Bad Role", "content": "x"}, headers=rw
    )
    assert problem_of(bad_role, 422)["errors"][0]["loc"] == ["body", "role"]
    problem_of(client.get(f"/tasks/{tid}/code/0", headers=ro), 422)
    assert client.get(f"/tasks/{tid}", headers=ro).json()["status"] == "open"  # nothing changed
    assert client.get(f"/tasks/{tid}/results", headers=ro).json() == []


@pytest.mark.parametrize("checks", [{}, {"io": []}, {"test": " \n"}, {"io": [], "test": ""}])
def test_checks_that_hold_no_check_are_refused_not_kept_as_none(
    client: TestClient, rw: dict[str, str], ro: dict[str, str], checks: dict[str, Any]
) -> None:
    """They were stored as "no checks" without a word: a client that sent them meant some, or none (left out)."""
    said = problem_of(client.post("/tasks", json={"title": "x", "checks": checks}, headers=rw), 422)
    assert said["errors"][0]["loc"] == ["body", "checks"], said
    assert (
        "checks is empty: give at least one io case {input, expected} or a test, or leave checks out"
        in (said["detail"])
    )
    assert client.get("/tasks", headers=ro).json()["items"] == []  # nothing kept
    kept = {"io": [{"input": "1", "expected": "1"}]}
    tid = new_task(client, rw, checks=kept)["id"]
    patched = problem_of(client.patch(f"/tasks/{tid}", json={"checks": checks}, headers=rw), 422)
    assert "checks is empty" in patched["detail"] and "null removes a task's checks" in patched["detail"]
    assert client.get(f"/tasks/{tid}", headers=ro).json()["checks"]["io"] == kept["io"]  # unchanged
    assert client.patch(f"/tasks/{tid}", json={"checks": None}, headers=rw).json()["checks"] is None
    with_test = {"io": [], "test": "assert True is not False"}  # an empty table beside a test: a check
    assert new_task(client, rw, checks=with_test)["checks"]["test"] == with_test["test"]


def test_a_field_a_body_does_not_declare_is_refused_not_dropped(
    client: TestClient, rw: dict[str, str], ro: dict[str, str]
) -> None:
    tid = new_task(client, rw)["id"]
    client.post(f"/tasks/{tid}/code", json={"filename": "a.py", "content": "print(1)"}, headers=rw)
    # Each was accepted (201) and the named field silently lost: the spec, the metric, the notes.
    for path, body, extra in [
        ("/tasks", {"title": "adder", "spec": "add two numbers"}, "spec"),
        (f"/tasks/{tid}/results", {"version": 1, "accuracy": 0.5, "f1": 0.3}, "f1"),
        (f"/tasks/{tid}/feedback", {"verdict": "rejected", "version": 1, "comment": "wrong sum"}, "comment"),
        (f"/tasks/{tid}/messages", {"sender": "coder", "content": "v1 up", "to": "evaluator"}, "to"),
        (f"/tasks/{tid}/code", {"filename": "b.py", "content": "print(2)", "language": "python"}, "language"),
    ]:
        refused = problem_of(client.post(path, json=body, headers=rw), 422)
        assert refused["errors"][0]["loc"] == ["body", extra], (path, refused)
    patched = problem_of(client.patch(f"/tasks/{tid}", json={"spec": "new"}, headers=rw), 422)
    assert patched["errors"][0]["loc"] == ["body", "spec"]
    assert client.get(f"/tasks/{tid}/results", headers=ro).json() == []
    assert [v["version"] for v in client.get(f"/tasks/{tid}/code", headers=ro).json()] == [1]


def test_scopes_reads_need_read_and_writes_need_runs(client: TestClient, keys: dict[str, str]) -> None:
    tid = new_task(client, auth(keys["runs"]))["id"]
    assert client.get("/tasks").status_code == 401
    assert client.get("/stats", headers=auth(keys["approve"])).status_code == 403
    assert client.post("/tasks", json={"title": "x"}, headers=auth(keys["read"])).status_code == 403
    assert upload(client, auth(keys["read"]), tid).status_code == 403
    assert client.delete(f"/tasks/{tid}/code/1", headers=auth(keys["read"])).status_code == 403
    assert client.get(f"/tasks/{tid}", headers=auth(keys["admin"])).status_code == 200


def test_paging_and_filters(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    ids = [new_task(client, rw, title=f"task {i}", team="echo" if i % 2 else None)["id"] for i in range(5)]
    client.patch(f"/tasks/{ids[0]}", json={"status": "failed"}, headers=rw)
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get(f"/tasks?limit=2&offset={offset}", headers=ro).json()
        assert page["total"] == 5 and page["limit"] == 2 and len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        offset = page["next_offset"]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert client.get("/tasks?offset=5", headers=ro).json() == {
        "items": [],
        "total": 5,
        "limit": 50,
        "offset": 5,
        "next_offset": None,
    }
    failed = client.get("/tasks?status=failed", headers=ro).json()
    assert [t["id"] for t in failed["items"]] == [ids[0]] and failed["total"] == 1
    assert client.get("/tasks?team=echo", headers=ro).json()["total"] == 2
    assert client.get("/tasks?status=open&team=echo", headers=ro).json()["total"] == 2
    problem_of(client.get("/tasks?limit=0", headers=ro), 422)
    problem_of(client.get("/tasks?offset=-1", headers=ro), 422)


def test_stats_counts_and_averages(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    empty = client.get("/stats", headers=ro).json()
    assert empty["tasks"] == 0 and empty["avg_accuracy"] is None and empty["avg_runtime_s"] is None
    assert empty["tasks_by_status"] == {"open": 0, "in_progress": 0, "done": 0, "failed": 0, "cancelled": 0}

    a, b, c = (new_task(client, rw, team="echo" if i else None)["id"] for i in range(3))
    client.patch(f"/tasks/{b}", json={"status": "done"}, headers=rw)
    client.patch(f"/tasks/{c}", json={"status": "cancelled"}, headers=rw)
    upload(client, rw, a)
    upload(client, rw, a)
    upload(client, rw, b)
    client.delete(f"/tasks/{a}/code/2", headers=rw)
    client.post(f"/tasks/{a}/results", json={"accuracy": 0.5, "runtime_s": 3}, headers=rw)
    client.post(f"/tasks/{a}/results", json={"accuracy": 1.0, "runtime_s": 5, "logs": "x\n"}, headers=rw)
    client.post(f"/tasks/{b}/results", json={"loss": 0.1}, headers=rw)  # no accuracy: not in the average
    client.post(f"/tasks/{a}/messages", json={"sender": "gen", "content": "go"}, headers=rw)
    client.post(f"/tasks/{b}/feedback", json={"verdict": "rejected"}, headers=rw)
    client.app.state.rt.store.create_run("rqueued", "echo", "later", {}, "/nowhere")  # type: ignore[attr-defined]

    stats = client.get("/stats", headers=ro).json()
    assert stats == {
        "tasks": 3,
        "tasks_by_status": {"open": 0, "in_progress": 1, "done": 1, "failed": 0, "cancelled": 1},  # a has code
        "code_versions": 2,
        "results": 3,
        "messages": 1,
        "feedback": 1,
        "avg_accuracy": pytest.approx(0.75),
        "avg_runtime_s": pytest.approx(4.0),
        "runs_by_status": {"queued": 1},
        "executions_by_status": dict.fromkeys(("queued", "running", "succeeded", "failed", "killed", "interrupted"), 0),
        "executions_running": 0,
        "teams": [  # the scoreboard: b (done with one version) and c (cancelled) were echo's; a had no team
            {
                "team": "echo",
                "tasks": 2,
                "done": 1,
                "failed": 0,
                "versions_per_done": 1.0,
                "seconds_per_task": pytest.approx(0.0, abs=30),
            }
        ],
    }
    for _ in range(2):  # their sum is past the largest float: SQL's average is infinity, shown as null
        client.post(f"/tasks/{b}/results", json={"runtime_s": 1e308}, headers=rw)
    huge = client.get("/stats", headers=ro).json()  # (an accuracy is a fraction: at most 1)
    assert huge["avg_accuracy"] == pytest.approx(0.75) and huge["avg_runtime_s"] == pytest.approx(5e307)


def test_a_log_name_too_long_is_said_to_be_too_long(client: TestClient, rw: dict[str, str], ro: dict[str, str]) -> None:
    # It was called "not a plain file name (letters, digits, '.', '_', '-')", which it was.
    tid = new_task(client, rw)["id"]
    detail = problem_of(client.get(f"/tasks/{tid}/logs/{'a' * 300}.log", headers=ro), 400)["detail"]
    assert "is 304 characters long; a log file name has at most 200" in detail and "plain file name" not in detail
    assert "no log file" in problem_of(client.get(f"/tasks/{tid}/logs/{'a' * 196}.log", headers=ro), 404)["detail"]


def test_logs_with_a_character_utf8_cannot_hold_are_a_422_naming_them(
    client: TestClient, rw: dict[str, str], ro: dict[str, str]
) -> None:
    # A lone surrogate (JSON "\ud800") in a result's logs was a 500: the log file could not be written.
    tid = new_task(client, rw)["id"]
    body = b'{"accuracy": 0.5, "logs": "epoch 1 \\ud800 done"}'
    refused = client.post(f"/tasks/{tid}/results", content=body, headers={**rw, "Content-Type": "application/json"})
    problem = problem_of(refused, 422)
    assert problem["errors"][0]["loc"] == ["body", "logs"]
    assert "U+D800" in problem["detail"] and "UTF-8" in problem["detail"]
    assert client.get(f"/tasks/{tid}/results", headers=ro).json() == []  # nothing kept
    kept = client.post(f"/tasks/{tid}/results", json={"logs": "epoch 1 \U0001f600 done"}, headers=rw)
    assert kept.status_code == 201, kept.text  # a pair (an emoji) is one character, and fine
