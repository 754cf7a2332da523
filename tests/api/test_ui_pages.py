"""Mission control without a browser: sign-in, sessions, CSRF, scopes, and every page's empty and error states."""

from __future__ import annotations

import html
import json
import re
import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.domain.events import EventRecord, RouteTaken, StepFinished, StepStarted
from edgecrew.domain.runs import Outcome, RunStatus
from edgecrew.engine.service import TASK_MAX_CHARS, RunService
from edgecrew.specs.loader import load_team_text
from edgecrew.store.keys import ApiKeyStore
from edgecrew.ui.pages import _safe_next
from edgecrew.ui.session import COOKIE
from edgecrew.ui.views import graph_state, graph_svg
from tests.api.conftest import auth
from tests.conftest import write
from tests.teams import TRIO

PAGES = [
    "/",
    "/ui/runs",
    "/ui/approvals",
    "/ui/teams",
    "/ui/teams/echo",
    "/ui/tasks",
    "/ui/routines",
    "/ui/projects",
    "/ui/jobs",
    "/ui/alerts",
    "/ui/pilot",
    "/ui/models",
    "/ui/metrics",
]


def sign_in(client: TestClient, key: str, next_: str = "/") -> str:
    """Sign in through the form; returns the session's CSRF token."""
    form = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token, form.text
    r = client.post(
        "/ui/login", data={"key": key, "login_token": token.group(1), "next": next_}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == next_, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie, cookie
    assert key not in cookie
    page = client.get("/")
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert csrf, page.text
    return csrf.group(1)


def test_pages_need_sign_in_and_redirect_back(client: TestClient) -> None:
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=")
    htmx = client.get("/ui/runs", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/ui/login")


def test_every_page_renders_its_empty_state(client: TestClient, keys: dict[str, str]) -> None:
    sign_in(client, keys["read"])
    expected = {
        "/": "Nothing is waiting for you",
        "/ui/runs": "No runs yet",
        "/ui/approvals": "Nothing is waiting for you",
        "/ui/tasks": "No tasks yet",
        "/ui/routines": "No routines",
        "/ui/jobs": "No jobs yet",
        "/ui/projects": "No projects yet",
        "/ui/alerts": "No alert rules",
        "/ui/pilot": "No questions yet",
        "/ui/metrics": "No data yet",
    }
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[-500:])
        assert "<nav" in r.text
        if path in expected:
            assert expected[path] in r.text, path


def test_a_teams_run_form_shows_the_example_its_yaml_gives(client: TestClient, keys: dict[str, str]) -> None:
    """The crew's form said "Summarise why last night's build failed", which runs its morning block."""
    sign_in(client, keys["admin"])
    crew = html.unescape(client.get("/ui/teams/crew").text)
    assert "For example: <i>Daily Alignment Review</i>" in crew and 'placeholder="e.g. Daily Alignment Review"' in crew
    assert "last night's build" not in crew
    assert "last night's build failed" in html.unescape(client.get("/ui/teams/echo").text)  # none given: the default


def test_task_fields_hold_the_runs_use_case_limit(client: TestClient, keys: dict[str, str]) -> None:
    """A task typed into a form is held to the one limit the runs use case enforces."""
    sign_in(client, keys["admin"])
    assert f'name="task" rows="4" required maxlength="{TASK_MAX_CHARS}"' in client.get("/ui/teams/echo").text
    assert f'name="task" rows="2" maxlength="{TASK_MAX_CHARS}"' in client.get("/ui/jobs").text


def test_the_jobs_forms_errors_name_its_fields_not_the_clis_flags(client: TestClient, keys: dict[str, str]) -> None:
    """The Submit a job form answered `deadline_min=1e300` with 'deadline: 6e+301 is not a time before the
    year 9999 (epoch seconds)' and an unknown kind with '... give argv (`edgecrew jobs submit -- CMD ARGS`)
    or a team and a task (`--team T --task "..."`)': the CLI's words, naming no field of the form."""
    csrf = sign_in(client, keys["admin"])
    sandboxed = {"kind": "command", "command": "true", "sandbox": "1"}
    cases = [
        ({**sandboxed, "deadline_min": "1e300"}, "Must start within (minutes): 1e+300 minutes is after the year 9999"),
        ({**sandboxed, "deadline_min": "inf"}, "Must start within (minutes): inf minutes is after the year 9999"),
        ({"kind": "bogus", "command": "true"}, "What it runs: 'bogus' is neither a command nor a team run"),
        ({"kind": "team", "team": "", "task": "hi"}, "Team: choose the team that runs the job"),
        ({"kind": "team", "team": "nope", "task": "hi"}, "Team: there is no team 'nope' (known: "),
        ({"kind": "team", "team": "echo", "task": " "}, "Task: say what the team should do"),
        ({"kind": "command", "command": "  "}, "Command: it is empty; write the command to run, e.g. python train.py"),
        ({"kind": "command", "command": "'open", "sandbox": "1"}, "Command: No closing quotation"),
    ]
    for form, expected in cases:
        r = client.post("/ui/jobs", data={"csrf": csrf, **form}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/jobs?notice="), (form, r.status_code)
        shown = html.unescape(client.get(r.headers["location"]).text)
        notice = re.search(r'role="status"[^>]*>(.*?)<', shown, re.S)
        text = notice.group(1).strip() if notice else shown
        assert expected in text and "--" not in text and "edgecrew " not in text and "epoch" not in text, (form, text)
    assert client.get("/jobs", headers=auth(keys["read"])).json()["items"] == []  # none was submitted


def test_unknown_things_are_html_error_pages_not_json(client: TestClient, keys: dict[str, str]) -> None:
    sign_in(client, keys["read"])
    for path in ["/ui/runs/rnope", "/ui/teams/nope", "/ui/tasks/tnope", "/ui/tasks/tnope/code/1", "/ui/nothing/here"]:
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html")
        assert "Not found" in r.text
        assert '<nav aria-label="main">' in r.text, path  # inside the site's frame, with a way back
    # A missing run is worded for the site, not for the CLI (whose message names `edgecrew runs list`).
    for path in ["/ui/runs/rnope", "/ui/compare?a=rnope&b=rnope", "/ui/pilot/rnope"]:
        page = html.unescape(client.get(path).text)
        assert "There is no run 'rnope'" in page and "runs list" in page and "edgecrew runs" not in page, path
    page = html.unescape(client.get("/ui/teams/nope").text)
    assert "There is no team 'nope'" in page and "Teams page" in page and "edgecrew teams" not in page
    api = client.get("/runs/rnope", headers={"Authorization": f"Bearer {keys['read']}"})
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/problem+json")
    assert "edgecrew runs list" in api.text  # the API and the CLI keep the store's hint
    unknown = client.get("/nothing/here", headers={"Authorization": f"Bearer {keys['read']}"})
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")


def test_the_pilot_page_of_another_teams_run_sends_to_the_runs_own_page(
    client: TestClient, keys: dict[str, str]
) -> None:
    """Before: /ui/pilot/<a platform-copilot run> showed it as an EdgePilot answer ("Kind of answer:
    python-service", facts "gathering…" for a run that had ended)."""
    sign_in(client, keys["read"])
    started = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"]))
    run_id = started.json()["id"]
    shown = client.get(f"/ui/pilot/{run_id[:8]}", follow_redirects=False)
    assert shown.status_code == 303 and shown.headers["location"] == f"/ui/runs/{run_id}"


def test_a_step_the_run_does_not_have_is_said_not_replaced_silently(client: TestClient, keys: dict[str, str]) -> None:
    """Before: /ui/runs/RUN?step=nope (where /ui/runs/RUN/steps/nope sends a browser) opened the inspector
    on the last step without a word, as if it were the one asked for."""
    sign_in(client, keys["read"])
    run_id = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"])).json()["id"]
    followed = client.get(f"/ui/runs/{run_id}/steps/v9.nope")
    assert followed.status_code == 200
    assert f"run {run_id} has no step 'v9.nope'; the inspector shows the last one" in html.unescape(followed.text)
    plain = html.unescape(client.get(f"/ui/runs/{run_id}").text)
    assert "has no step" not in plain
    assert "<b>x</b>" not in client.get(f"/ui/runs/{run_id}", params={"step": "<b>x</b>"}).text  # shown as text


def test_a_bug_behind_a_page_is_an_html_page_with_its_request_id(
    client: TestClient, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sign_in(client, keys["read"])
    store = type(client.app.state.rt.store)  # type: ignore[attr-defined]

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(store, "list_runs", broken)
    r = client.get("/ui/runs")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html"), r.text
    rid = r.headers["X-Request-ID"]
    assert "Something went wrong" in r.text and rid in r.text and '<nav aria-label="main">' in r.text
    assert any(rec.exc_info and "a bug" in str(rec.exc_info[1]) for rec in caplog.records)  # logged, with its cause
    api = client.get("/runs", headers={"Authorization": f"Bearer {keys['read']}"})
    assert api.status_code == 500 and api.headers["content-type"].startswith("application/problem+json")


def test_a_wrong_key_is_refused_without_detail(client: TestClient) -> None:
    form = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    r = client.post("/ui/login", data={"key": "ec_wrong", "login_token": token, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303 and "error=1" in r.headers["location"]
    assert COOKIE not in r.headers.get("set-cookie", "")
    assert "That key was not accepted" in client.get(r.headers["location"]).text


def test_sign_in_form_without_its_token_is_refused(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post("/ui/login", data={"key": keys["admin"], "login_token": "forged"}, follow_redirects=False)
    assert r.status_code == 303 and COOKIE not in r.headers.get("set-cookie", "")


def test_forms_need_the_csrf_token(client: TestClient, keys: dict[str, str]) -> None:
    csrf = sign_in(client, keys["admin"])
    missing = client.post("/ui/teams/echo/run", data={"task": "hi"}, follow_redirects=False)
    assert missing.status_code == 403 and "expired or came from another site" in missing.text
    wrong = client.post("/ui/teams/echo/run", data={"task": "hi", "csrf": "x" * 32}, follow_redirects=False)
    assert wrong.status_code == 403
    accented = client.post("/ui/teams/echo/run", data={"task": "hi", "csrf": "é" * 32}, follow_redirects=False)
    assert accented.status_code == 403  # any text is only wrong (it was a 500)
    assert client.app.state.rt.store.count_runs() == 0  # type: ignore[attr-defined]
    ok = client.post("/ui/teams/echo/run", data={"task": "hi", "csrf": csrf}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].startswith("/ui/runs/r")
    header = client.post("/ui/teams/echo/run", data={"task": "again"}, headers={"X-CSRF-Token": csrf})
    assert header.status_code == 200  # followed the redirect to the new run's page


def test_a_run_started_on_a_team_page_may_work_in_a_project(client: TestClient, keys: dict[str, str]) -> None:
    from edgecrew.projects import ProjectService

    projects = ProjectService.of(client.app.state.rt)  # type: ignore[attr-defined]
    launch = projects.create("launch")
    csrf = sign_in(client, keys["admin"])
    team_page = client.get("/ui/teams/echo").text
    assert f'<option value="{launch.id}">launch</option>' in team_page
    ok = client.post("/ui/teams/echo/run", data={"task": "hi", "csrf": csrf, "project": launch.id})
    assert ok.status_code == 200, ok.text
    [run_id] = projects.runs(launch.id)
    assert f"/ui/runs/{run_id}" in str(ok.url)
    unknown = client.post(
        "/ui/teams/echo/run", data={"task": "hi", "csrf": csrf, "project": "nope"}, follow_redirects=False
    )
    assert unknown.status_code == 303 and unknown.headers["location"].startswith("/ui/teams/echo?notice=")
    assert "no project 'nope'" in client.get(unknown.headers["location"]).text.replace("&#39;", "'")
    assert projects.runs(launch.id) == [run_id]


def test_a_team_that_needs_a_project_asks_for_one_on_its_page(client: TestClient, keys: dict[str, str]) -> None:
    """The crew's page offered 'Project (optional)' with 'none' chosen: a run started so was refused."""
    from edgecrew.projects import ProjectService

    sign_in(client, keys["admin"])
    empty = client.get("/ui/teams/crew").text
    assert "Project (required: this team works in one)" in empty
    assert 'There is no project yet: create one on the <a href="/ui/projects">Projects</a> page first.' in empty
    assert '<option value="">none</option>' not in empty
    launch = ProjectService.of(client.app.state.rt).create("launch")  # type: ignore[attr-defined]
    page = client.get("/ui/teams/crew").text
    assert '<select id="project" name="project" required' in page
    assert f'<option value="{launch.id}">launch</option>' in page and "There is no project yet" not in page
    echo = client.get("/ui/teams/echo").text  # a team that needs none: still optional
    assert "Project (optional)" in echo and '<option value="">none</option>' in echo


def test_run_again_on_a_project_runs_page_starts_the_new_run_in_that_project(
    client: TestClient, keys: dict[str, str]
) -> None:
    from edgecrew.projects import ProjectService

    projects = ProjectService.of(client.app.state.rt)  # type: ignore[attr-defined]
    launch = projects.create("launch day")
    csrf = sign_in(client, keys["admin"])
    client.post("/ui/teams/echo/run", data={"task": "hi", "csrf": csrf, "project": launch.id})
    [first] = projects.runs(launch.id)
    page = client.get(f"/ui/runs/{first}").text
    assert 'in project <a href="/ui/projects/launch%20day">launch day</a>' in page
    # The page's Run again form, as a browser sends it: every field it has, the task edited.
    form = page[page.index('<details class="rerun">') :]
    form = form[: form.index("</form>")]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    assert fields.get("project") == launch.id
    again = client.post("/ui/teams/echo/run", data={**fields, "task": "once more"}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/ui/runs/r")
    second = again.headers["location"].removeprefix("/ui/runs/").split("?")[0]
    assert projects.runs(launch.id) == [second, first]


def test_actions_need_their_scope(client: TestClient, keys: dict[str, str]) -> None:
    csrf = sign_in(client, keys["read"])
    r = client.post("/ui/teams/echo/run", data={"task": "hi", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403 and "lacks the 'runs' scope" in html.unescape(r.text)
    r = client.post("/ui/approvals/anything/approve", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403 and "lacks the 'approve' scope" in html.unescape(r.text)


def test_revoking_the_key_ends_its_sessions(client: TestClient, keys: dict[str, str]) -> None:
    sign_in(client, keys["read"])
    assert client.get("/ui/runs", follow_redirects=False).status_code == 200
    store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
    key = store.authenticate(keys["read"])
    assert key is not None
    store.revoke(key.id)
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303


def test_sign_out_forgets_the_session(client: TestClient, keys: dict[str, str]) -> None:
    csrf = sign_in(client, keys["read"])
    r = client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_restart_keeps_people_signed_in_and_signed_out(client: TestClient, keys: dict[str, str]) -> None:
    # Sessions lived in the server's memory only: a restart signed everyone out.
    csrf = sign_in(client, keys["read"])
    cookie = client.cookies[COOKIE]
    home = client.app.state.rt.settings.home  # type: ignore[attr-defined]
    kept = home / "ui-sessions.json"
    assert kept.stat().st_mode & 0o777 == 0o600 and cookie not in kept.read_text()  # only the id's digest
    with TestClient(create_app(), raise_server_exceptions=False) as restarted:
        restarted.cookies.set(COOKIE, cookie)
        page = restarted.get("/ui/runs", follow_redirects=False)
        assert page.status_code == 200 and f'"X-CSRF-Token": "{csrf}"' in page.text  # the same session
        assert restarted.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    with TestClient(create_app(), raise_server_exceptions=False) as again:
        again.cookies.set(COOKIE, cookie)
        assert again.get("/ui/runs", follow_redirects=False).status_code == 303  # signed out stays signed out
    kept.write_text("{not json")  # a file that cannot be read: its people sign in again, the server starts
    with TestClient(create_app(), raise_server_exceptions=False) as damaged:
        damaged.cookies.set(COOKIE, cookie)
        assert damaged.get("/ui/runs", follow_redirects=False).status_code == 303
        sign_in(damaged, keys["read"])
        assert damaged.get("/ui/runs", follow_redirects=False).status_code == 200
    assert kept.stat().st_mode & 0o777 == 0o600 and json.loads(kept.read_text())["sessions"]


def test_run_page_approve_and_edit_through_forms(client: TestClient, keys: dict[str, str]) -> None:
    csrf = sign_in(client, keys["admin"])
    r = client.post("/ui/teams/ship/run", data={"task": "ship", "csrf": csrf}, follow_redirects=False)
    run_url = r.headers["location"]
    pending = []
    for _ in range(100):
        pending = client.app.state.approvals.list("pending")  # type: ignore[attr-defined]
        if pending:
            break
        time.sleep(0.05)
    assert pending, "no approval was requested"
    approval = pending[0]
    page = client.get(run_url).text
    assert "wants to call" in page and f"/ui/approvals/{approval.id}/approve" in page
    bad = client.post(f"/ui/approvals/{approval.id}/edit", data={"csrf": csrf, "arguments": "{not json"})
    assert "arguments are not valid JSON" in bad.text
    wrong = client.post(f"/ui/approvals/{approval.id}/edit", data={"csrf": csrf, "arguments": '{"target": 5}'})
    assert "invalid arguments for deploy" in html.unescape(wrong.text)
    edited = client.post(f"/ui/approvals/{approval.id}/edit", data={"csrf": csrf, "arguments": '{"target": "staging"}'})
    assert "arguments changed" in edited.text
    done = client.post(
        f"/ui/approvals/{approval.id}/approve", data={"csrf": csrf, "back_to": run_url}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"].startswith(run_url)
    for _ in range(100):
        if "status-succeeded" in client.get(run_url).text:
            break
        time.sleep(0.05)
    final = client.get(run_url).text
    assert "status-succeeded" in final and "deployed staging" in final


def test_live_stream_sends_rendered_fragments_and_closes(client: TestClient, keys: dict[str, str]) -> None:
    sign_in(client, keys["read"])
    started = client.post("/runs", json={"team": "echo", "task": "hi"}, headers={"X-API-Key": keys["runs"]})
    run_id = started.json()["id"]
    with client.stream("GET", f"/ui/runs/{run_id}/stream") as stream:
        body = "".join(stream.iter_text())
    assert "event: timeline" in body and "event: graph" in body and "event: status" in body
    assert body.rstrip().endswith("data: done")
    assert "<svg" in body and "ev-run_finished" in body


def test_the_live_status_keeps_its_clock(client: TestClient, keys: dict[str, str]) -> None:
    """The status fragment a live run's stream swaps in shows the clock's seconds (it showed " s" until
    the page's script ticked again)."""
    sign_in(client, keys["read"])
    started = client.post("/runs", json={"team": "ship", "task": "ship"}, headers={"X-API-Key": keys["runs"]})
    run_id = started.json()["id"]
    for _ in range(100):
        if client.app.state.approvals.list("pending"):  # type: ignore[attr-defined]
            break
        time.sleep(0.05)
    status = ""
    with client.stream("GET", f"/ui/runs/{run_id}/stream?after=0") as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line == "event: status":
                status = next(lines)
                break
    assert "status-waiting_approval" in status, status
    assert re.search(r'class="clock live"[^>]*>\d+ s</span>', status), status


def test_a_loop_edge_shows_the_loops_left() -> None:
    """Its label counts the loops left in a run (the route_taken events over it), its maximum on the team page."""
    spec = load_team_text(TRIO, "trio.yaml")
    (back,) = [e for e in spec.graph.edges if e.max_loops]
    revise = RouteTaken(from_="critic", to=("writer",), edge=back.label())
    events: list[EventRecord] = []

    def visit(index: int, agent: str, *route: RouteTaken) -> None:
        key = f"v{index:03d}.{agent}"
        for event in (StepStarted(visit=index), StepFinished(outcome=Outcome.FINAL), *route):
            n = len(events) + 1
            events.append(EventRecord(n, "r1", f"k{n}", event.kind.value, key, agent, event.to_data(), float(n)))

    def label() -> str:
        return html.unescape(str(graph_svg(spec, graph_state(events))))

    assert "verdict == 'revise' · at most 2×" in html.unescape(str(graph_svg(spec)))  # the team page: no run
    assert "verdict == 'revise' · 2 of 2 left" in label()  # a run that has not looped yet
    visit(0, "planner")
    visit(1, "writer")
    visit(2, "critic", revise)
    assert "1 of 2 left" in label()
    visit(3, "writer")
    visit(4, "critic", revise)
    assert "0 of 2 left" in label() and "taken 2 of at most 2 times so far" in label()


@pytest.mark.parametrize(
    ("target", "safe"),
    [("/ui/runs", "/ui/runs"), ("//evil.example", "/"), ("https://evil.example", "/"), ("/\\evil", "/")],
)
def test_sign_in_never_redirects_off_site(target: str, safe: str) -> None:
    assert _safe_next(target) == safe


def test_keyless_localhost_when_enabled(server_project: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecrew.app import create_app
    from edgecrew.settings import reset_settings
    from tests.api.live import serve_in_thread

    monkeypatch.setenv("EDGECREW_ALLOW_KEYLESS_LOCALHOST", "1")
    reset_settings()
    import httpx

    with serve_in_thread(create_app()) as server:
        r = httpx.get(server.url + "/ui/teams")
        assert r.status_code == 200 and "localhost" in r.text


def test_a_finished_run_takes_feedback_and_a_running_one_offers_no_resume(
    client: TestClient, keys: dict[str, str]
) -> None:
    from tests.api.telemetry_project import run_to_end

    run = run_to_end(client, keys, "echo", "what is the answer?")
    csrf = sign_in(client, keys["admin"])
    page = client.get(f"/ui/runs/{run['id']}")
    assert "Good answer" in page.text and ">Resume<" not in page.text and ">Cancel<" not in page.text
    r = client.post(
        f"/ui/runs/{run['id']}/feedback",
        data={"rating": "down", "comment": "too short", "correction": "42", "csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get(f"/ui/runs/{run['id']}")
    assert "too short" in page.text and "gave a corrected answer" in page.text
    listed = client.get(f"/runs/{run['id']}/feedback", headers={"Authorization": f"Bearer {keys['read']}"}).json()
    assert [(f["rating"], f["via"], f["correction"], f["author"]) for f in listed] == [
        ("down", "ui", "42", "test-admin")
    ]
    bad = client.post(f"/ui/runs/{run['id']}/feedback", data={"rating": "meh", "csrf": csrf}, follow_redirects=False)
    assert bad.status_code in (400, 422)


def test_the_checklist_is_sent_live_on_the_runs_stream(client: TestClient, keys: dict[str, str]) -> None:
    from tests.api.telemetry_project import run_to_end

    run = run_to_end(client, keys, "echo", "say something")
    sign_in(client, keys["read"])
    page = client.get(f"/ui/runs/{run['id']}")
    assert 'id="checklist"' in page.text and "☑" in page.text
    with client.stream("GET", f"/ui/runs/{run['id']}/stream?after=0") as stream:
        text = "".join(stream.iter_text())
    assert "event: checklist" in text and "solo" in text.split("event: checklist", 1)[1]


def test_an_empty_filter_says_what_it_filtered(client: TestClient, keys: dict[str, str]) -> None:
    from tests.api.telemetry_project import run_to_end

    run_to_end(client, keys, "echo")
    sign_in(client, keys["read"])
    page = client.get("/ui/runs?status=failed")
    assert (
        "No failed runs match these filters." in page.text
        and "No runs yet." not in page.text
        and 'href="/ui/runs"' in page.text
    )


def test_runs_are_filtered_by_status_team_and_text_with_the_filters_in_the_url(
    client: TestClient, keys: dict[str, str]
) -> None:
    from edgecrew.engine.service import RunService

    rt = client.app.state.rt  # type: ignore[attr-defined]
    sign_in(client, keys["read"])
    svc = RunService(rt)
    for i, task in enumerate(("find the answer", "count the sheep")):
        run_id = f"rfilter{i}"
        rt.store.create_run(run_id, "echo", task, {}, "/tmp", project=None)
        rt.store.set_status(run_id, RunStatus.RUNNING)
        rt.store.set_status(run_id, RunStatus.SUCCEEDED, output={"text": f"done: {task.upper()}"})
    page = client.get("/ui/runs?q=SHEEP&team=echo&status=succeeded")
    assert page.status_code == 200
    assert "count the sheep" in page.text and "find the answer" not in page.text
    assert 'value="SHEEP"' in page.text and '<option value="echo" selected>' in page.text  # the URL's filters shown
    assert "1 run(s) match" in page.text
    none = client.get("/ui/runs?status=failed")
    assert "No failed runs match these filters" in none.text and 'href="/ui/runs"' in none.text
    assert len(svc.list_runs(text="done: find")) == 1  # the output is searched too


def test_a_long_tool_result_shows_as_a_preview_that_says_where_it_is_whole(
    client: TestClient, keys: dict[str, str]
) -> None:
    from edgecrew.domain.events import ToolCalled
    from tests.api.telemetry_project import run_to_end

    rt = client.app.state.rt  # type: ignore[attr-defined]
    sign_in(client, keys["read"])
    run_id = run_to_end(client, keys, "echo")["id"]
    [started] = [e for e in rt.store.events(run_id) if e.type == "step_started"]
    whole = json.dumps({"files": [{"path": f"src/f{i}.py", "text": "x" * 300} for i in range(8)], "total": 8})
    called = ToolCalled.of_result(whole, tool="files.list")
    rt.store.emit(run_id, f"{started.step_key}.m0.t0.tool", called, step_key=started.step_key, agent=started.agent)
    page = html.unescape(client.get(f"/ui/runs/{run_id}").text)
    assert '"path": "src/f0.py"' in page and "x" * 301 not in page
    link = f'<a href="/ui/runs/{run_id}/steps/{started.step_key}">the step\'s conversation</a>'
    assert f"a preview of a result of {len(whole)} characters: whole in {link}" in page
    step = html.unescape(client.get(f"/ui/runs/{run_id}/steps/{started.step_key}").text)
    assert f"a preview of a result of {len(whole)} characters: whole in the conversation below" in step
    # A model's long reply too: the row says it holds a preview (it said "raw reply (500 characters)").
    from edgecrew.domain.events import ModelCalled, previewed

    reply = ModelCalled(alias="local", **previewed("word " * 300, "content"))
    rt.store.emit(run_id, f"{started.step_key}.m9", reply, step_key=started.step_key, agent=started.agent)
    shown = client.get(f"/ui/runs/{run_id}").text
    assert "raw reply (a preview of 1500 characters)" in shown
    assert "None s" not in shown  # no latency recorded: none shown


def test_a_tool_call_row_shows_its_duration_only_when_it_has_one(client: TestClient, keys: dict[str, str]) -> None:
    # The row said "· None s" for an event without duration_s.
    from edgecrew.domain.events import ToolCalled
    from tests.api.telemetry_project import run_to_end

    rt = client.app.state.rt  # type: ignore[attr-defined]
    sign_in(client, keys["read"])
    run_id = run_to_end(client, keys, "echo")["id"]
    [started] = [e for e in rt.store.events(run_id) if e.type == "step_started"]
    for n, called in enumerate((ToolCalled(tool="files.list"), ToolCalled(tool="files.read", duration_s=0.25))):
        key = f"{started.step_key}.m0.t{n}.tool"
        rt.store.emit(run_id, key, called, step_key=started.step_key, agent=started.agent)
    page = html.unescape(client.get(f"/ui/runs/{run_id}").text)
    rows = {m.group(1): m.group(0) for m in re.finditer(r"tool <code>(files\.\w+)</code>\(\{\}\)[^<]*</span>", page)}
    assert rows == {
        "files.list": "tool <code>files.list</code>({})</span>",
        "files.read": "tool <code>files.read</code>({}) · 0.25 s</span>",
    }


def test_a_finished_run_offers_to_run_again_with_its_task(client: TestClient, keys: dict[str, str]) -> None:
    from edgecrew.store.keys import ApiKeyStore
    from tests.api.telemetry_project import run_to_end

    run_id = run_to_end(client, keys, "echo")["id"]
    operator = ApiKeyStore(client.app.state.rt.store).create("operator", ("read", "runs"))[1]  # type: ignore[attr-defined]
    csrf = sign_in(client, operator)
    page = client.get(f"/ui/runs/{run_id}").text
    assert "Run again" in page and 'action="/ui/teams/echo/run"' in page
    again = client.post("/ui/teams/echo/run", data={"csrf": csrf, "task": "once more"}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/ui/runs/r")
    assert "A tool marked risky" in client.get("/ui/approvals").text


def test_a_run_that_failed_with_an_empty_answer_shows_its_error_not_an_empty_result(
    client: TestClient, keys: dict[str, str]
) -> None:
    from tests.api.telemetry_project import run_to_end

    rt = client.app.state.rt  # type: ignore[attr-defined]
    run_id = run_to_end(client, keys, "echo")["id"]
    import sqlalchemy as sa

    from edgecrew.store import tables as t

    with rt.store.engine.begin() as conn:  # as a run whose last agent failed ends: {} and its error
        conn.execute(
            sa.update(t.runs)
            .where(t.runs.c.id == run_id)
            .values(status="failed", output={}, error="agent 'echo' failed: boom")
        )
    sign_in(client, keys["read"])
    page = html.unescape(client.get(f"/ui/runs/{run_id}").text)
    assert "<h2>Error</h2>" in page and "agent 'echo' failed: boom" in page and "<h2>Result</h2>" not in page


def test_an_interrupted_run_offers_resume_and_resume_finishes_it(client: TestClient, keys: dict[str, str]) -> None:
    """A run left unfinished by a process that is gone (a crash, a restart) offers Resume beside Cancel."""
    from tests.api.telemetry_project import run_to_end

    rt = client.app.state.rt  # type: ignore[attr-defined]
    spec = RunService(rt).get(run_to_end(client, keys, "echo")["id"]).spec
    gone = f"{socket.gethostname()}:999999999:0"  # no such process on this host
    rt.store.create_run("rcrashed", "echo", "what is the answer?", spec, "/tmp", executor=gone)
    rt.store.set_status("rcrashed", RunStatus.RUNNING)
    csrf = sign_in(client, keys["admin"])
    page = client.get("/ui/runs/rcrashed").text
    assert ">Resume<" in page and ">Cancel<" in page
    resumed = client.post("/ui/runs/rcrashed/resume", data={"csrf": csrf}, follow_redirects=False)
    assert resumed.status_code == 303 and "notice=resumed" in resumed.headers["location"], resumed.text
    for _ in range(200):
        if RunService(rt).get("rcrashed").status.terminal:
            break
        time.sleep(0.05)
    assert RunService(rt).get("rcrashed").status == RunStatus.SUCCEEDED
    assert ">Resume<" not in client.get("/ui/runs/rcrashed").text


def test_a_run_a_live_process_took_over_offers_no_resume(client: TestClient, keys: dict[str, str]) -> None:
    """The page judged a run by the process that recorded it: a run whose recording process died and
    that this server adopted (or a cluster worker runs) offered Resume while it ran on."""
    rt = client.app.state.rt  # type: ignore[attr-defined]
    started = client.post("/runs", json={"team": "ship", "task": "ship it"}, headers=auth(keys["runs"]))
    run_id = started.json()["id"]
    for _ in range(200):  # it waits for a person's approval, its workflow held by this server
        if RunService(rt).get(run_id).status == RunStatus.WAITING_APPROVAL:
            break
        time.sleep(0.05)
    gone = f"{socket.gethostname()}:999999999:0"
    with rt.store.engine.begin() as conn:  # as if another process had recorded it, then died
        conn.exec_driver_sql("UPDATE runs SET executor = ? WHERE id = ?", (gone, run_id))
    sign_in(client, keys["admin"])
    page = client.get(f"/ui/runs/{run_id}").text
    assert ">Cancel<" in page and ">Resume<" not in page


@pytest.fixture
def strict_team(server_project: Path) -> None:
    """A team whose agent wants JSON from a model that answers in prose: its step fails."""
    write(
        server_project / "teams" / "strict.yaml",
        """
        name: strict
        agents:
          judge:
            model: fake
            system: judge
            output_schema: {type: object, properties: {verdict: {type: string}}, required: [verdict]}
        graph: {start: judge, edges: [{from: judge, to: end}]}
        """,
    )


def test_a_failed_step_is_drawn_failed_in_the_graph(
    strict_team: None, client: TestClient, keys: dict[str, str]
) -> None:
    from tests.api.telemetry_project import run_to_end

    run = run_to_end(client, keys, "strict")
    assert run["status"] == "failed", run
    sign_in(client, keys["read"])
    page = client.get(f"/ui/runs/{run['id']}").text
    assert 'class="node state-failed" data-node="judge"' in page
    assert 'class="node end unreached"' in page  # not drawn as the run's end


def test_a_run_that_would_wait_says_so_on_every_way_in(client: TestClient, keys: dict[str, str]) -> None:
    """The runs use case asks the runtime's queue check (a cluster with no live worker) before it queues
    a run, and each way in shows the answer: the UI's run page, the API's header; a retry with the same
    key is the first run again, with nothing to say."""
    from tests.api.conftest import auth

    rt = client.app.state.rt  # type: ignore[attr-defined]
    asked: list[str] = []
    said = "no live cluster worker: the run waits on queue edgecrew_runs until an `edgecrew worker` starts"

    def no_worker() -> str:
        asked.append("asked")
        return said

    rt.queue_check = no_worker
    csrf = sign_in(client, keys["admin"])
    form = client.post("/ui/teams/echo/run", data={"task": "hi", "csrf": csrf}, follow_redirects=False)
    assert form.status_code == 303 and "notice=" in form.headers["location"]
    assert "no live cluster worker" in client.get(form.headers["location"]).text
    # a notice is this server's word: the same text in a link someone else wrote is not shown
    forged = form.headers["location"].split("&ns=")[0]
    assert "no live cluster worker" not in client.get(forged).text
    assert "sign in again at" not in client.get("/ui/teams/echo?notice=Your+key+expired%2C+sign+in+again+at+x").text
    assert client.get("/ui/teams/echo?notice=x&ns=%C3%A9").status_code == 200  # any signature text is only wrong
    headers = {**auth(keys["runs"]), "Idempotency-Key": "k-wait"}
    first = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=headers)
    assert first.status_code == 201 and first.headers["X-Edgecrew-Warning"] == said
    again = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=headers)
    assert again.status_code == 200 and "X-Edgecrew-Warning" not in again.headers
    rt.queue_check = None  # a machine off any cluster: nothing asked, nothing said
    plain = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"]))
    assert plain.status_code == 201 and "X-Edgecrew-Warning" not in plain.headers
    assert len(asked) == 3  # the UI's run and the API's first two (a retry is asked too, before its key is read)


def test_a_run_page_says_what_started_a_run_no_person_did(client: TestClient, keys: dict[str, str]) -> None:
    """An automatic retry by the supervisor says so (with its incident), and so do a routine's and a job's runs."""
    from tests.api.telemetry_project import run_to_end

    rt = client.app.state.rt  # type: ignore[attr-defined]
    spec = RunService(rt).get(run_to_end(client, keys, "echo")["id"]).spec
    triggers = {
        "rretry": {"kind": "supervisor", "incident": "i0123"},
        "rfired": {"kind": "routine", "routine": "nightly", "firing": "2026-12-07T02:00:00+00:00"},
    }
    for run_id, trigger in triggers.items():
        rt.store.create_run(run_id, "echo", "again", spec, "/tmp", trigger=trigger)
    sign_in(client, keys["admin"])
    retry = client.get("/ui/runs/rretry").text
    assert "Started by the supervisor, automatically, for incident i0123: retry" in retry
    assert 'href="/ui/incidents/i0123"' in retry
    assert "Started by routine nightly (2026-12-07T02:00:00+00:00)" in client.get("/ui/runs/rfired").text


def test_home_alerts_count_the_runs_that_failed_in_the_last_day_only() -> None:
    """A failure days ago no longer keeps Home's alert up (it counted every failed run ever)."""
    from types import SimpleNamespace

    import sqlalchemy as sa

    from edgecrew.bootstrap import bootstrap
    from edgecrew.store import tables as t
    from edgecrew.ui.pages import _alerts

    rt = bootstrap()
    for run_id in ("r-old", "r-new"):
        rt.store.create_run(run_id, "crew", "x", {}, str(rt.project.dir))
        rt.store.set_status(run_id, RunStatus.FAILED, error="boom")
    with rt.store.engine.begin() as conn:
        conn.execute(sa.update(t.runs).where(t.runs.c.id == "r-old").values(created_at=time.time() - 3 * 86400))
    alerts = _alerts(rt, SimpleNamespace(queue_depth=0, load_failures=0))
    assert [a for a in alerts if "failed" in a] == ["1 run(s) failed in the last 24 h; see the runs list"]


def test_a_failure_edge_is_drawn_apart_and_says_so() -> None:
    from tests.unit.test_engine_logic import STRICT_WRITER

    drawn = html.unescape(str(graph_svg(load_team_text(STRICT_WRITER))))
    assert drawn.count('class="edge failure"') == 1 and ">on failure</text>" in drawn
    assert "<title>on failure</title>" in drawn


def test_the_incidents_page_refuses_an_unknown_state_and_names_an_empty_filter(
    client: TestClient, keys: dict[str, str]
) -> None:
    """`?state=bogus` answered 200 with "No incidents in state bogus: the supervisor has seen no failure"."""
    sign_in(client, keys["read"])
    bogus = client.get("/ui/incidents?state=bogus")
    assert bogus.status_code == 400 and "no incident state 'bogus'" in html.unescape(bogus.text)
    healed = client.get("/ui/incidents?state=healed")
    assert healed.status_code == 200 and "No incidents in state healed." in healed.text
    assert "No incidents: the supervisor has seen no failure." in client.get("/ui/incidents").text


def test_a_large_code_version_shows_its_beginning_and_offers_the_download(
    client: TestClient, keys: dict[str, str]
) -> None:
    # A 4 MB version took 25 s to highlight and came as a 34 MB page, the whole file in it twice.
    from edgecrew.ui.views import SHOWN_BYTES

    sign_in(client, keys["read"])
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    task = tasks.create("big", "")
    line = "x = [1, 'abc', {'k': 2}]  # a comment\n"
    big = (line * (3 * SHOWN_BYTES // len(line))).encode()
    tasks.add_code(task.id, "big.py", big)
    tasks.add_code(task.id, "small.py", line.encode())
    page = client.get(f"/ui/tasks/{task.id}/code/1")
    assert page.status_code == 200
    assert len(page.content) < 12 * SHOWN_BYTES  # the highlighted beginning, not the whole file
    assert f"the first {SHOWN_BYTES // 1024} KiB of {len(big):,} bytes" in page.text
    assert f'href="/ui/tasks/{task.id}/code/1/raw">Download</a>' in page.text
    assert 'data-copy="raw-code"' not in page.text  # a copy of part of a file is not offered as the file
    small = client.get(f"/ui/tasks/{task.id}/code/2")
    assert 'data-copy="raw-code"' in small.text and "KiB of" not in small.text
    assert client.get(f"/ui/tasks/{task.id}/code/1/raw").content == big  # the download is whole


def test_a_long_code_version_is_cut_at_a_character_not_into_one(client: TestClient, keys: dict[str, str]) -> None:
    """The code page cut a long file at SHOWN_BYTES and decoded it with errors='ignore': the character
    split by the cut was dropped (good), but so was every byte that is no UTF-8 anywhere before it,
    which an uncut file shows as U+FFFD. The project file page did the other thing: one helper now."""
    from edgecrew.ui.views import SHOWN_BYTES

    sign_in(client, keys["read"])
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    task = tasks.create("split", "")
    for n, head in enumerate((1, 2, 3), start=1):  # the cut falls 1, 2 or 3 bytes into a 4-byte character
        top = b"# \xff bad\n"
        data = top + b"x" * (SHOWN_BYTES - head - len(top)) + "😀".encode() + b"tailmark\n" * 10
        tasks.add_code(task.id, "split.py", data)
        page = html.unescape(client.get(f"/ui/tasks/{task.id}/code/{n}").text)
        assert "This is the first 256 KiB" in page and "😀" not in page and "tailmark" not in page, head
        assert page.count("\ufffd") == 1, head  # the bad byte at the top, and no mark where the cut is
        assert re.search("x(<[^>]*>)*\ufffd", page) is None, head
        assert "x" * 50 in page


def test_a_task_pages_log_beyond_its_preview_can_be_read_whole(client: TestClient, keys: dict[str, str]) -> None:
    # The page showed a log's first 50 lines and "…", with no way to the rest: the API's download needs
    # a key, which the browser does not hold.
    sign_in(client, keys["read"])
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    task = tasks.create("logs", "")
    raw = "".join(f"epoch {n}: loss 0.{n:03d}\n" for n in range(200))
    result = tasks.add_result(task.id, logs=raw, accuracy=0.5)
    page = client.get(f"/ui/tasks/{task.id}")
    link = f'href="/ui/tasks/{task.id}/logs/{result.log_file}"'
    assert link in page.text and "epoch 199" not in page.text  # the preview, and where the rest is
    whole = client.get(f"/ui/tasks/{task.id}/logs/{result.log_file}")
    assert whole.status_code == 200 and whole.text == raw
    assert whole.headers["content-type"].startswith("text/plain")
    assert whole.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/ui/tasks/{task.id}/logs/nope.log").status_code == 404
    assert client.get(f"/ui/tasks/{task.id}/logs/..%2F..%2Fsecret").status_code == 404
    assert client.get(f"/ui/tasks/{task.id}/logs/.hidden").status_code == 400


def test_a_tasks_page_past_the_last_task_says_so_not_no_tasks_yet(client: TestClient, keys: dict[str, str]) -> None:
    # An old "Older" link, or a hand-edited offset, read "No tasks yet" while tasks were there.
    sign_in(client, keys["read"])
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    for n in range(3):
        tasks.create(f"task {n}", "")
    past = client.get("/ui/tasks?offset=50")
    assert past.status_code == 200 and "No tasks yet" not in past.text
    assert "No tasks past the first 50; there are 3: see" in past.text
    assert 'href="/ui/tasks">the newest</a>' in past.text
    done = client.get("/ui/tasks?status=done&offset=50")
    assert "No done tasks" in done.text  # none has that status: said as before


def test_a_task_page_says_when_it_shows_only_the_latest_executions(client: TestClient, keys: dict[str, str]) -> None:
    # It showed the latest 50 of 53 as if they were all.
    sign_in(client, keys["read"])
    rt = client.app.state.rt  # type: ignore[attr-defined]
    task = rt.tasks.create("many runs", "")
    rt.tasks.add_code(task.id, "solution.py", b"print(1)\n")
    for _ in range(53):
        ended = rt.tasks.create_execution(task.id, 1, executor=rt.executions.executor)
        rt.tasks.update_execution(ended.id, status="succeeded", finished_at=time.time())
    page = client.get(f"/ui/tasks/{task.id}").text
    assert "The latest 50 of 53 executions" in page and f"GET /tasks/{task.id}/executions" in page
    assert f'href="/ui/executions/{ended.id}"' in page and f'href="/ui/executions/{ended.id - 50}"' not in page
    few = rt.tasks.create("few runs", "")
    assert "The latest" not in client.get(f"/ui/tasks/{few.id}").text
