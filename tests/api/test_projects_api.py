"""/projects and /graph through the real app in-process (TestClient, a real SQLite store, real API
keys): projects CRUD, members, the case file, artifacts with versions, lock (409 naming who and
when), unlock and publish, graph facts, neighbours and paths, scopes and clear request errors."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgecrew.api.routers import projects
from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from edgecrew.store import repo
from edgecrew.store.keys import SCOPES, ApiKeyStore
from edgecrew.ui.views import SHOWN_BYTES

REVISION = "0013"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    if repo.HEAD < REVISION:
        monkeypatch.setattr(repo, "HEAD", REVISION)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    app = create_app(start_engine=False)
    if not any(getattr(r, "path", "") == "/projects" for r in app.routes):  # until app.py includes it
        app.include_router(projects.router)
    with TestClient(app, raise_server_exceptions=False) as c:
        store: ApiKeyStore = c.app.state.rt.keys  # type: ignore[attr-defined]
        keys = {scope: store.create(f"test-{scope}", (scope,))[1] for scope in SCOPES}
        yield {"c": c, **{s: {"Authorization": f"Bearer {k}"} for s, k in keys.items()}}


def test_projects_members_and_case_file(api: dict[str, Any]) -> None:
    c, w, r = api["c"], api["runs"], api["read"]
    made = c.post("/projects", json={"name": "Launch", "description": "Ship.", "manager": "crew/strategist"}, headers=w)
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    assert made.headers["Location"] == f"/projects/{pid}" and made.json()["created_by"] == "test-runs"
    assert c.post("/projects", json={"name": "Launch"}, headers=w).status_code == 409
    page = c.get("/projects", headers=r).json()
    assert page["total"] == 1 and page["items"][0]["name"] == "Launch"
    member = c.post(
        f"/projects/{pid}/members", json={"kind": "ai", "name": "crew/planner", "behaviour": "scheduled"}, headers=w
    )
    assert member.status_code == 201 and member.json()["behaviour"] == "scheduled"
    c.post("/projects/Launch/members", json={"kind": "human", "name": "Ana", "role": "owner"}, headers=w)
    detail = c.get("/projects/Launch", headers=r).json()
    assert [m["name"] for m in detail["members"]] == ["crew/planner", "Ana"] and detail["case_file_version"] == 1
    assert c.delete(f"/projects/{pid}/members", params={"name": "crew/planner"}, headers=w).status_code == 204
    appended = c.post(f"/projects/{pid}/case-file/append", json={"text": "## Monday"}, headers=w).json()
    assert appended["version"] == 2 and appended["content"] == "# Launch\n\nShip.\n\n## Monday\n"
    put = c.put(f"/projects/{pid}/case-file", json={"content": "# New\n", "author": "ana"}, headers=w).json()
    assert put["version"] == 3 and put["author"] == "ana"
    assert (
        c.get(f"/projects/{pid}/case-file", params={"version": 2}, headers=r).json()["content"].endswith("## Monday\n")
    )
    assert [v["version"] for v in c.get(f"/projects/{pid}/case-file/versions", headers=r).json()] == [1, 2, 3]
    patched = c.patch(f"/projects/{pid}", json={"name": "Launch 2", "manager": ""}, headers=w).json()
    assert patched["name"] == "Launch 2" and patched["manager"] is None
    assert c.delete(f"/projects/{pid}", headers=w).status_code == 204
    gone = c.get(f"/projects/{pid}", headers=r)
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"


def test_artifacts_versions_lock_unlock_publish(api: dict[str, Any]) -> None:
    c, w, r, admin = api["c"], api["runs"], api["read"], api["admin"]
    pid = c.post("/projects", json={"name": "Launch"}, headers=w).json()["id"]
    made = c.post(f"/projects/{pid}/artifacts", json={"name": "okr", "kind": "cognitive", "content": "O1"}, headers=w)
    assert made.status_code == 201 and made.json()["latest"] == 1 and made.json()["owner"] == "test-runs"
    aid = made.json()["id"]
    v2 = c.post(f"/projects/{pid}/artifacts/okr/versions", json={"content": "O1, O2", "note": "O2"}, headers=w)
    assert v2.status_code == 201 and v2.json()["version"] == 2
    assert v2.headers["Location"] == f"/projects/{pid}/artifacts/{aid}/versions/2"
    assert c.get(f"/projects/{pid}/artifacts/{aid}/versions/1", headers=r).json()["content"] == "O1"
    assert [v["version"] for v in c.get(f"/projects/{pid}/artifacts/okr/versions", headers=r).json()] == [1, 2]
    locked = c.post(f"/projects/{pid}/artifacts/okr/lock", headers=w).json()
    assert locked["locked"] and locked["locked_by"] == "test-runs"
    refused = c.post(f"/projects/{pid}/artifacts/okr/versions", json={"content": "O3"}, headers=admin)
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert "cannot write to artifact 'okr': it is locked by test-runs since 20" in refused.json()["detail"]
    assert c.post(f"/projects/{pid}/artifacts/okr/lock", headers=admin).status_code == 409
    assert c.post(f"/projects/{pid}/artifacts/okr/unlock", headers=admin).status_code == 409
    assert c.delete(f"/projects/{pid}/artifacts/okr", headers=w).status_code == 409
    forced = c.post(f"/projects/{pid}/artifacts/okr/unlock", json={"force": True}, headers=admin)
    assert forced.status_code == 200 and not forced.json()["locked"]
    published = c.post(f"/projects/{pid}/artifacts/okr/publish", json={"version": 1}, headers=w).json()
    assert published["published_version"] == 1 and published["published_by"] == "test-runs"
    assert c.post(f"/projects/{pid}/artifacts/okr/publish", json={"version": 9}, headers=w).status_code == 404
    huge = c.post(f"/projects/{pid}/artifacts/okr/publish", json={"version": 10**23}, headers=w)
    assert huge.status_code == 422 and "version" in huge.text, huge.text  # not a 500 from the database
    listed = c.get(f"/projects/{pid}/artifacts", params={"kind": "cognitive"}, headers=r).json()
    assert [a["name"] for a in listed] == ["okr"]
    assert c.delete(f"/projects/{pid}/artifacts/{aid}", headers=w).status_code == 204


def test_graph_facts_neighbours_and_paths(api: dict[str, Any]) -> None:
    c, w, r = api["c"], api["runs"], api["read"]
    pid = c.post("/projects", json={"name": "Launch"}, headers=w).json()["id"]
    for s, rel, o in [("Ana", "works_on", "Launch"), ("Launch", "depends_on", "GPU"), ("Bo", "works_on", "Launch")]:
        added = c.post(f"/projects/{pid}/graph/facts", json={"subject": s, "relation": rel, "object": o}, headers=w)
        assert added.status_code == 201 and added.json()["new"], added.text
    fact = {"subject": "ana", "relation": "works on", "object": "launch"}
    again = c.post("/projects/Launch/graph/facts", json=fact, headers=w)
    assert again.status_code == 200 and not again.json()["new"] and again.json()["subject"] == "Ana"
    graph = c.get("/projects/Launch/graph", headers=r).json()
    assert graph["scope_id"] == pid and len(graph["nodes"]) == 4 and len(graph["facts"]) == 3
    near = c.get(f"/projects/{pid}/graph/neighbours", params={"node": "Ana", "depth": 2}, headers=r).json()
    assert [(n["name"], n["distance"]) for n in near["neighbours"]] == [("Launch", 1), ("Bo", 2), ("GPU", 2)]
    path = c.get(f"/projects/{pid}/graph/path", params={"from": "Bo", "to": "GPU"}, headers=r).json()
    assert path["found"] and [(s["subject"], s["object"]) for s in path["steps"]] == [
        ("Bo", "Launch"),
        ("Launch", "GPU"),
    ]
    directed = c.get(f"/projects/{pid}/graph/path", params={"from": "GPU", "to": "Bo", "directed": True}, headers=r)
    assert directed.json() == {"found": False, "hops": None, "steps": []}
    mine = {"agent": "crew/planner", "subject": "I", "relation": "like", "object": "tea"}
    assert c.post("/graph/facts", json=mine, headers=w).status_code == 201
    ws = {"subject": "Launch", "relation": "is", "object": "project"}
    assert c.post("/graph/facts", json=ws, headers=w).status_code == 201
    assert [f["object"] for f in c.get("/graph", headers=r).json()["facts"]] == ["project"]
    agent_graph = c.get("/graph/neighbours", params={"agent": "crew/planner", "node": "I"}, headers=r).json()
    assert [n["name"] for n in agent_graph["neighbours"]] == ["tea"]
    assert c.get("/graph/path", params={"from": "Launch", "to": "project"}, headers=r).json()["hops"] == 1
    fact_id = graph["facts"][0]["id"]
    assert c.delete(f"/projects/{pid}/graph/facts/{fact_id}", headers=w).status_code == 204
    assert c.delete(f"/projects/{pid}/graph/facts/{fact_id}", headers=w).status_code == 404


def test_request_errors_are_clear_problems(api: dict[str, Any]) -> None:
    c, w, r = api["c"], api["runs"], api["read"]
    pid = c.post("/projects", json={"name": "Launch"}, headers=w).json()["id"]
    cases = [
        (c.get(f"/projects/{pid}/graph/neighbours", params={"node": "Ana"}, headers=r), 404, "no node 'Ana'"),
        (c.get("/projects/nope", headers=r), 404, "no project 'nope'"),
        (c.get(f"/projects/{pid}/artifacts/none", headers=r), 404, "has no artifact 'none'"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]
    bad = c.post(f"/projects/{pid}/artifacts", json={"name": "x", "kind": "poem"}, headers=w)
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][-1] == "kind"
    deep = c.get(f"/projects/{pid}/graph/neighbours", params={"node": "a", "depth": 9}, headers=r)
    assert deep.status_code == 422 and deep.json()["errors"][0]["loc"] == ["query", "depth"]
    for body in ({"name": "x", "manager": "not an agent"}, {"name": "   "}):
        refused = c.post("/projects", json=body, headers=w)
        assert refused.status_code == 422, refused.text
    robot = c.post(f"/projects/{pid}/members", json={"kind": "ai", "name": "crew planner"}, headers=w)
    assert robot.status_code == 422
    person = {"kind": "human", "name": "Bo", "behaviour": "semi"}
    assert c.post(f"/projects/{pid}/members", json=person, headers=w).status_code == 422
    blank = c.post(f"/projects/{pid}/graph/facts", json={"subject": "a", "relation": " - ", "object": "b"}, headers=w)
    assert blank.status_code == 422 and blank.json()["errors"][0]["loc"][-1] == "relation"


def test_a_field_a_body_does_not_declare_is_refused_by_name(api: dict[str, Any]) -> None:
    """Before: a typo'd field ("objct") was dropped, and the fact stored without what it meant to say."""
    c, w = api["c"], api["runs"]
    pid = c.post("/projects", json={"name": "Launch"}, headers=w).json()["id"]
    fact = {"subject": "Ana", "relation": "works_on", "object": "GPU"}
    artifact = f"/projects/{pid}/artifacts/notes"
    sent = [
        (f"/projects/{pid}/graph/facts", {**fact, "subject_knd": "person"}, "subject_knd"),
        ("/graph/facts", {**fact, "agnet": "crew/planner"}, "agnet"),
        ("/projects", {"name": "Other", "descripton": "x"}, "descripton"),
        (f"/projects/{pid}/members", {"kind": "ai", "name": "crew/planner", "behavior": "semi"}, "behavior"),
        (f"/projects/{pid}/case-file/append", {"text": "a line", "notes": "x"}, "notes"),
        (f"/projects/{pid}/artifacts", {"name": "notes", "kind": "info", "contents": "x"}, "contents"),
    ]
    for url, body, field in sent:
        refused = c.post(url, json=body, headers=w)
        assert refused.status_code == 422, (url, refused.text)
        [error] = refused.json()["errors"]
        assert error["loc"][0] == "body" and error["loc"][-1] == field, (url, refused.text)  # a member: body.ai.field
        assert field in refused.json()["detail"], refused.text
    assert c.post(f"/projects/{pid}/artifacts", json={"name": "notes", "kind": "info"}, headers=w).status_code == 201
    others = [
        ("patch", f"/projects/{pid}", {"nmae": "Launch 2"}, "nmae"),
        ("put", f"/projects/{pid}/case-file", {"content": "x", "autor": "me"}, "autor"),
        ("post", f"{artifact}/versions", {"content": "x", "nte": ""}, "nte"),
        ("post", f"{artifact}/unlock", {"forced": True}, "forced"),
        ("post", f"{artifact}/publish", {"verison": 1}, "verison"),
    ]
    for method, url, body, field in others:
        refused = c.request(method, url, json=body, headers=w)
        assert refused.status_code == 422, (url, refused.text)
        assert [e["loc"] for e in refused.json()["errors"]] == [["body", field]], (url, refused.text)
    assert c.get(f"/projects/{pid}/graph", headers=api["read"]).json()["facts"] == []  # nothing half-stored


def test_a_graph_error_names_the_project_as_the_user_knows_it(api: dict[str, Any]) -> None:
    c, w, r = api["c"], api["runs"], api["read"]
    pid = c.post("/projects", json={"name": "Launch"}, headers=w).json()["id"]
    missing = c.get("/projects/Launch/graph/neighbours", params={"node": "Ana"}, headers=r)
    assert missing.status_code == 404
    assert f"no node 'Ana' in the graph of project 'Launch' ({pid}); " in missing.json()["detail"]
    gone = c.delete("/projects/Launch/graph/facts/7", headers=w)
    assert gone.status_code == 404 and f"no fact 7 in the graph of project 'Launch' ({pid})" in gone.json()["detail"]


def test_a_name_with_a_slash_is_refused_as_the_document_says(api: dict[str, Any]) -> None:
    """A project's or an artifact's name addresses it in URLs: the document's pattern says it has no '/'
    (the service refused it with 400 while the document allowed it)."""
    c, w = api["c"], api["runs"]
    refused = c.post("/projects", json={"name": "clients/acme"}, headers=w)
    assert refused.status_code == 422 and "body.name" in refused.json()["detail"], refused.text
    # in words, not the pattern ("String should match pattern '^[^/]*[^\\s\\x1c-\\x1f/][^/]*$'")
    assert "body.name: should be not blank, and without '/' (it names it in URLs)" in refused.json()["detail"]
    assert refused.json()["errors"][0]["msg"] == "should be not blank, and without '/' (it names it in URLs)"
    pid = c.post("/projects", json={"name": "clients-acme"}, headers=w).json()["id"]
    assert c.patch(f"/projects/{pid}", json={"name": "a/b"}, headers=w).status_code == 422
    art = c.post(f"/projects/{pid}/artifacts", json={"name": "notes/today", "kind": "info", "content": "x"}, headers=w)
    assert art.status_code == 422 and "body.name" in art.json()["detail"], art.text
    assert "/" in projects.ProjectIn.model_json_schema()["properties"]["name"]["description"]


def test_scopes_reads_need_read_and_writes_need_runs(api: dict[str, Any]) -> None:
    c = api["c"]
    assert c.get("/projects").status_code == 401
    assert c.get("/projects", headers=api["read"]).status_code == 200
    denied = c.post("/projects", json={"name": "x"}, headers=api["read"])
    assert denied.status_code == 403 and "runs" in denied.json()["detail"]
    assert (
        c.post(
            "/graph/facts",
            json={"scope": "workspace", "subject": "a", "relation": "b", "object": "c"},
            headers=api["read"],
        ).status_code
        == 403
    )


def test_the_project_pages_draw_the_graph_and_change_things(api: dict[str, Any]) -> None:
    from urllib.parse import unquote

    from edgecrew.ui import projects_pages
    from tests.api.test_ui_pages import sign_in

    c = api["c"]
    if not any(getattr(r, "path", "") == "/ui/projects" for r in c.app.routes):  # until app.py includes it
        c.app.include_router(projects_pages.router)
    key = c.app.state.rt.keys.create("ui-runs", ("read", "runs"))[1]
    csrf = sign_in(c, key)
    assert "No projects yet" in c.get("/ui/projects").text
    made = c.post(
        "/ui/projects", data={"csrf": csrf, "name": "Launch", "manager": "crew/strategist"}, follow_redirects=False
    )
    assert made.status_code == 303
    here = made.headers["location"]
    pid = here.rsplit("/", 1)[1]
    for s, r, o in [("Ana", "works_on", "Launch"), ("Launch", "depends_on", "GPU")]:
        c.post(f"{here}/facts", data={"csrf": csrf, "subject": s, "relation": r, "object": o})
    c.post(f"{here}/members", data={"csrf": csrf, "name": "crew/planner", "kind": "ai", "behaviour": "scheduled"})
    c.post(f"{here}/case-file", data={"csrf": csrf, "text": "## Monday"})
    c.post(f"{here}/artifacts", data={"csrf": csrf, "name": "okr", "kind": "cognitive", "content": "O1"})
    svc = projects_pages.ProjectService.of(c.app.state.rt)
    (svc.files(pid) / "okr.json").write_text("{}")
    aid = svc.artifact(pid, "okr").id
    locked = c.post(f"{here}/artifacts/{aid}/lock", data={"csrf": csrf}, follow_redirects=False)
    assert "okr: locked by ui-runs" in unquote(locked.headers["location"])
    refused = c.post(f"{here}/artifacts", data={"csrf": csrf, "name": "okr", "content": "O2"}, follow_redirects=False)
    assert "locked by ui-runs since" in unquote(refused.headers["location"])
    shown = c.get(here)
    assert shown.status_code == 200
    text = shown.text
    assert '<svg class="graph"' in text and 'data-node="Ana"' in text and "<title>depends_on</title>" in text
    assert "crew/planner" in text and "scheduled" in text and "## Monday" in text and "okr.json" in text
    assert "Launch" in c.get("/ui/projects").text
    without = c.post(f"{here}/facts", data={"subject": "a", "relation": "b", "object": "c"})
    assert without.status_code == 403  # no CSRF token


def test_the_project_folders_files_are_listed_and_downloaded_never_a_path_out_of_it(
    api: dict[str, Any], tmp_path: Any
) -> None:
    c, w, r = api["c"], api["runs"], api["read"]
    pid = c.post("/projects", json={"name": "Launch"}, headers=w).json()["id"]
    folder = projects.ProjectService.of(c.app.state.rt).files(pid)  # type: ignore[attr-defined]
    (folder / "daily").mkdir()
    (folder / "daily" / "2026-12-07 plan.md").write_text("# Plan\n- ship\n")
    (folder / "okr.json").write_bytes(b'{"o": 1}')
    secret = tmp_path / "secret.txt"
    secret.write_text("not the project's")
    (folder / "leak.txt").symlink_to(secret)  # a link out of the folder is neither listed nor read
    listed = c.get("/projects/Launch/files", headers=r)
    assert listed.status_code == 200, listed.text
    assert [(f["path"], f["size"]) for f in listed.json()] == [("daily/2026-12-07 plan.md", 14), ("okr.json", 8)]
    got = c.get(f"/projects/{pid}/files/daily/2026-12-07%20plan.md", headers=r)
    assert got.status_code == 200 and got.content == b"# Plan\n- ship\n"
    assert got.headers["content-type"] == "text/markdown; charset=utf-8"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert c.get("/projects/Launch/files/okr.json", headers=r).json() == {"o": 1}
    for path, status, said in [
        ("..%2F..%2F..%2Fedgecrew.db", 400, "is outside project 'Launch's files"),
        ("leak.txt", 400, "is outside project 'Launch's files"),
        ("daily", 400, "'daily' is a folder in project 'Launch's files"),
        ("nope.md", 404, "no file 'nope.md' in project 'Launch's files"),
        ("a%00b.md", 400, "path 'a\\x00b.md' has a NUL character; no file in project 'Launch's files has one"),
    ]:
        refused = c.get(f"/projects/{pid}/files/{path}", headers=r)
        assert refused.status_code == status and said in refused.json()["detail"], (path, refused.text)
    assert c.get("/projects/Nope/files", headers=r).status_code == 404
    assert c.get("/projects/Launch/files", params={"limit": 1}, headers=r).json()[0]["path"].startswith("daily/")
    assert c.get("/projects/Launch/files").status_code == 401


def test_a_project_file_has_a_page_of_its_own(api: dict[str, Any]) -> None:
    from edgecrew.ui import projects_pages
    from tests.api.test_ui_pages import sign_in

    c = api["c"]
    if not any(getattr(r, "path", "") == "/ui/projects" for r in c.app.routes):  # until app.py includes it
        c.app.include_router(projects_pages.router)
    sign_in(c, c.app.state.rt.keys.create("ui-read", ("read",))[1])
    svc = projects_pages.ProjectService.of(c.app.state.rt)
    pid = svc.create("Launch", "").id
    folder = svc.files(pid)
    (folder / "notes").mkdir()
    (folder / "notes" / "plan <b>.py").write_text("def ship():\n    return '<script>'\n")
    (folder / "blob.bin").write_bytes(b"\x00\x01\x02")
    (folder / "big.txt").write_text("x" * (SHOWN_BYTES + 10))
    project_page = c.get(f"/ui/projects/{pid}").text
    assert f'href="/ui/projects/{pid}/files/notes/plan%20%3Cb%3E.py"' in project_page
    shown = c.get(f"/ui/projects/{pid}/files/notes/plan%20%3Cb%3E.py")
    assert shown.status_code == 200, shown.text
    assert "return &#39;&lt;script&gt;&#39;" in shown.text and "'<script>'" not in shown.text  # the hidden copy
    assert 'class="highlight"' in shown.text and "project/notes/plan &lt;b&gt;.py" in shown.text
    assert 'data-copy="raw-file"' in shown.text and 'id="raw-file"' in shown.text
    assert "A binary file" in c.get(f"/ui/projects/{pid}/files/blob.bin").text
    big = c.get(f"/ui/projects/{pid}/files/big.txt").text
    assert "The first 256 KiB are shown" in big
    # A copy of a cut file would be a part taken for the whole (the code page offers none either).
    assert "data-copy" not in big and 'id="raw-file"' not in big
    # A character the cut splits is left out, not shown as U+FFFD (a byte that is no UTF-8 still is).
    (folder / "split.txt").write_bytes(b"\xff\n" + b"y" * (SHOWN_BYTES - 3) + "é".encode() + b"tailmark")
    split = html.unescape(c.get(f"/ui/projects/{pid}/files/split.txt").text)
    assert "The first 256 KiB are shown" in split and "y" * 50 in split and "é" not in split and "tailmark" not in split
    assert "\ufffd\n" in split  # the \xff at the top (in the highlighted file and in its copy)...
    assert re.search("y(<[^>]*>)*\ufffd", split) is None  # ...and none where the cut is
    raw = c.get(f"/ui/projects/{pid}/raw/blob.bin")
    assert raw.status_code == 200 and raw.content == b"\x00\x01\x02"
    assert "attachment" in raw.headers["content-disposition"]
    out = c.get(f"/ui/projects/{pid}/files/..%2F..%2Fedgecrew.db")
    assert out.status_code == 400 and "outside project" in out.text and "<html" in out.text.lower()
    nul = c.get(f"/ui/projects/{pid}/files/a%00b.md")  # was a 500
    assert nul.status_code == 400 and "has a NUL character" in nul.text and "<html" in nul.text.lower()
    missing = c.get(f"/ui/projects/{pid}/files/gone.md")
    assert missing.status_code == 404 and "no file" in missing.text


@pytest.fixture
def hashing_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")  # the e5 model has its own tests


def test_the_project_page_shows_its_newest_memories_read_only(hashing_memory: None, api: dict[str, Any]) -> None:
    from edgecrew.memory import MemoryService
    from edgecrew.ui import projects_pages
    from tests.api.test_ui_pages import sign_in

    c = api["c"]
    if not any(getattr(r, "path", "") == "/ui/projects" for r in c.app.routes):  # until app.py includes it
        c.app.include_router(projects_pages.router)
    sign_in(c, c.app.state.rt.keys.create("ui-read", ("read",))[1])
    svc = projects_pages.ProjectService.of(c.app.state.rt)
    launch, other = svc.create("Launch"), svc.create("Other")
    assert "No memories yet" in c.get(f"/ui/projects/{launch.id}").text
    memory = MemoryService.of(c.app.state.rt)
    memory.remember("the other project's secret budget", "project", other.id)
    first = memory.remember(
        "the first note <b>bold</b>\nsecond line " + "x" * 300, "project", launch.id, tags=["block"]
    )
    for i in range(24):
        memory.remember(f"launch note number {i:02d}", "project", launch.id, agent="crew/planner")
    text = c.get(f"/ui/projects/{launch.id}").text
    section = text.split('id="memories"', 1)[1].split("</section>", 1)[0]
    assert "the 20 newest of 25" in section
    assert "launch note number 23" in section and "launch note number 04" in section
    assert "launch note number 03" not in section and f"#{first} " not in section  # older than the 20 newest
    assert "secret budget" not in text and "crew/planner" in section
    for r in memory.store.find([("project", launch.id)])[1:-1]:  # keep the newest and the first
        memory.forget(r.id)
    section = c.get(f"/ui/projects/{launch.id}").text.split('id="memories"', 1)[1].split("</section>", 1)[0]
    assert "the 2 newest of 2" in section
    assert "the first note &lt;b&gt;bold&lt;/b&gt; second line xxx" in section and "…" in section  # one line, cut
    assert "x" * 300 not in section and "<b>bold" not in section
    assert "<form" not in section and "<button" not in section  # read-only
    assert len(memory.store.find([("project", launch.id)])) == 2  # showing changed nothing
