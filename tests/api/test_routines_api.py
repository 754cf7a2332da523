"""The routines API: list with state and firings, pause and resume, run now, and clear 404s."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PROJECT, auth
from tests.conftest import write

ROUTINES = """
routines:
  nightly:
    team: echo
    task: what is the answer?
    cron: "30 2 * * *"
    timezone: Europe/Berlin
"""


@pytest.fixture
def with_routines(server_project: Path) -> Path:
    """The server project with a routine (asked for before ``client``, so the app reads it)."""
    return write(server_project / "edgecrew.yaml", PROJECT + ROUTINES)


def test_routines_are_listed_paused_resumed_and_run_now(
    with_routines: Path, client: TestClient, keys: dict[str, str]
) -> None:
    listed = client.get("/routines", headers=auth(keys["read"])).json()
    assert [(r["name"], r["team"], r["timezone"], r["status"]) for r in listed] == [
        ("nightly", "echo", "Europe/Berlin", "active")  # the server scheduled it at start-up
    ]
    assert listed[0]["next_firing"] is not None and listed[0]["last_run"] is None

    paused = client.post("/routines/nightly/pause", headers=auth(keys["runs"]))
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused" and paused.json()["next_firing"] is None
    assert client.post("/routines/nightly/resume", headers=auth(keys["runs"])).json()["status"] == "active"

    started = client.post("/routines/nightly/trigger", headers=auth(keys["runs"]))
    assert started.status_code == 201, started.text
    run = started.json()
    assert started.headers["location"] == f"/runs/{run['id']}"
    assert run["trigger"]["routine"] == "nightly" and run["trigger"]["manual"] is True
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if client.get(f"/runs/{run['id']}", headers=auth(keys["read"])).json()["status"] == "succeeded":
            break
        time.sleep(0.1)
    runs = client.get("/routines/nightly/runs", headers=auth(keys["read"])).json()
    assert [(r["id"], r["status"]) for r in runs] == [(run["id"], "succeeded")]
    assert client.get("/routines/nightly", headers=auth(keys["read"])).json()["last_run"]["id"] == run["id"]


@pytest.fixture
def with_broken_routine(server_project: Path) -> Path:
    """The server project with a routine naming no team (asked for before ``client``)."""
    broken = '\nroutines:\n  broken: {team: nosuchteam, task: x, cron: "0 5 * * *"}\n'
    return write(server_project / "edgecrew.yaml", PROJECT + broken)


def test_a_routine_whose_team_does_not_exist_is_paused_and_resumed_and_says_why_it_is_invalid(
    with_broken_routine: Path, client: TestClient, keys: dict[str, str]
) -> None:
    assert client.get("/routines/broken", headers=auth(keys["read"])).json()["status"] == "invalid"
    for action, schedule in (("pause", "paused"), ("resume", "active")):  # scheduled, firings skipped: was a 500
        answer = client.post(f"/routines/broken/{action}", headers=auth(keys["runs"]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "invalid"
        assert answer.json()["schedule"] == schedule  # what the pause did shows (status says only invalid)
        assert (
            "no team 'nosuchteam'" in answer.json()["problem"] and "skipped until it exists" in answer.json()["problem"]
        )


@pytest.fixture
def with_project_routine(server_project: Path) -> Path:
    """The server project with a routine that works in a project not created yet (as `edgecrew init`'s)."""
    routine = '\nroutines:\n  morning: {team: echo, task: x, cron: "30 7 * * 1-5", project: main}\n'
    return write(server_project / "edgecrew.yaml", PROJECT + routine)


def test_a_routine_says_which_project_it_works_in(
    with_project_routine: Path, client: TestClient, keys: dict[str, str]
) -> None:
    from tests.api.test_ui_pages import sign_in

    shown = client.get("/routines/morning", headers=auth(keys["read"])).json()
    assert (shown["project"], shown["status"]) == ("main", "invalid")
    assert "no project 'main'" in shown["problem"]
    assert [r["project"] for r in client.get("/routines", headers=auth(keys["read"])).json()] == ["main"]
    sign_in(client, keys["read"])
    page = client.get("/ui/routines").text
    assert 'in project <a href="/ui/projects/main">main</a>' in page


def test_an_unknown_routine_is_a_404_naming_the_known_ones(client: TestClient, keys: dict[str, str]) -> None:
    answer = client.post("/routines/nope/trigger", headers=auth(keys["runs"]))
    assert answer.status_code == 404
    assert "no routine 'nope' (known: none)" in answer.json()["detail"]
    assert client.get("/routines/Bad%20Name", headers=auth(keys["read"])).status_code == 422


def test_the_routines_page_shows_state_and_runs_a_routine_now(
    with_routines: Path, client: TestClient, keys: dict[str, str]
) -> None:
    from edgecrew.store.keys import ApiKeyStore
    from tests.api.test_ui_pages import sign_in

    operator = ApiKeyStore(client.app.state.rt.store).create("operator", ("read", "runs"))[1]  # type: ignore[attr-defined]
    csrf = sign_in(client, operator)
    page = client.get("/ui/routines")
    assert page.status_code == 200
    assert "nightly" in page.text and "30 2 * * *" in page.text and "Europe/Berlin" in page.text
    assert 'action="/ui/routines/nightly/pause"' in page.text and "Run now" in page.text
    paused = client.post("/ui/routines/nightly/pause", data={"csrf": csrf}, follow_redirects=False)
    assert paused.status_code == 303 and "paused" in paused.headers["location"]
    assert 'action="/ui/routines/nightly/resume"' in client.get("/ui/routines").text
    ran = client.post("/ui/routines/nightly/trigger", data={"csrf": csrf}, follow_redirects=False)
    assert ran.status_code == 303 and ran.headers["location"].startswith("/ui/runs/r")
    refused = client.post("/ui/routines/nightly/trigger", data={"csrf": "wrong"}, follow_redirects=False)
    assert refused.status_code == 403


def test_the_pilot_page_asks_edgepilot_and_shows_plan_facts_and_answer(
    client: TestClient, keys: dict[str, str]
) -> None:
    from edgecrew.models.scripted import ScriptedModel
    from edgecrew.store.keys import ApiKeyStore
    from tests.api.test_ui_pages import sign_in

    rt = client.app.state.rt  # type: ignore[attr-defined]
    replies = [
        {"json": {"kind": "how busy the machine is"}},
        {"json": {"actions": ["keep watching"], "confidence": "high"}},
    ]
    rt.models.register("local-gemma", ScriptedModel(replies))
    operator = ApiKeyStore(rt.store).create("operator", ("read", "runs"))[1]
    csrf = sign_in(client, operator)
    assert "No questions yet" in client.get("/ui/pilot").text
    asked = client.post("/ui/pilot", data={"csrf": csrf, "question": "How busy is this box?"}, follow_redirects=False)
    assert asked.status_code == 303 and asked.headers["location"].startswith("/ui/pilot/r"), asked.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = client.get(asked.headers["location"]).text
        if "working…" not in shown:
            break
        time.sleep(0.2)
    assert "how busy the machine is" in shown and "<code>report</code>" in shown
    assert "metrics.summary" in shown and "keep watching" in shown and "Confidence: high." in shown
    assert "How busy is this box?" in client.get("/ui/pilot").text  # listed among recent questions


def _pilot_page_until(client: TestClient, url: str, done: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = client.get(url).text
        if done in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{done!r} never shown on {url}:\n{shown}")


def test_the_pilot_page_offers_the_approval_a_proposed_job_waits_for(client: TestClient, keys: dict[str, str]) -> None:
    """Before: a run_task answer waiting for jobs.submit's approval showed 'waiting_approval · working…'
    and 'waiting for the facts…' beside its facts, with no word of the approval nor a way to give it."""
    from edgecrew.models.scripted import ScriptedModel
    from edgecrew.store.keys import ApiKeyStore
    from tests.api.test_ui_pages import sign_in

    rt = client.app.state.rt  # type: ignore[attr-defined]
    replies = [{"json": {"kind": "start a job"}}, {"json": {"actions": ["watch the job"], "confidence": "high"}}]
    rt.models.register("local-gemma", ScriptedModel(replies))
    operator = ApiKeyStore(rt.store).create("operator", ("read", "runs", "approve"))[1]
    csrf = sign_in(client, operator)
    asked = client.post("/ui/pilot", data={"csrf": csrf, "question": "Start `./backup.sh` (needs 1 GB)"},
                        follow_redirects=False)  # fmt: skip
    url = asked.headers["location"].split("?")[0]
    run_id = url.rsplit("/", 1)[1]
    shown = html.unescape(_pilot_page_until(client, url, "waiting_approval"))
    [approval] = _pending(rt, run_id)
    assert "working…" not in shown and "waiting for the facts" not in shown, shown
    assert "Waiting for your approval" in shown and "jobs.submit" in shown and '"./backup.sh"' in shown
    assert f'action="/ui/approvals/{approval.id}/approve"' in shown
    assert f'name="back_to" value="/ui/pilot/{run_id}"' in shown
    approved = client.post(f"/ui/approvals/{approval.id}/approve",
                           data={"csrf": csrf, "back_to": f"/ui/pilot/{run_id}"}, follow_redirects=False)  # fmt: skip
    assert approved.status_code == 303 and approved.headers["location"].startswith(f"/ui/pilot/{run_id}")
    answered = html.unescape(_pilot_page_until(client, url, "Confidence: high."))
    assert "Submitted job j" in answered and "Waiting for your approval" not in answered


def _pending(rt: Any, run_id: str) -> list[Any]:
    from edgecrew.engine.approvals import ApprovalService

    return list(ApprovalService(rt).list("pending", run_id=run_id))


def test_the_pilot_page_of_a_failed_run_says_what_was_not_reached(client: TestClient, keys: dict[str, str]) -> None:
    """Before: a run that failed at its planner kept 'planning…', 'gathering…' and 'waiting for the
    facts…' on its page for good, as if it were still working."""
    from edgecrew.models.scripted import ScriptedModel
    from edgecrew.store.keys import ApiKeyStore
    from tests.api.test_ui_pages import sign_in

    rt = client.app.state.rt  # type: ignore[attr-defined]
    rt.models.register("local-gemma", ScriptedModel([{"error": "auth"}], cycle=True))
    operator = ApiKeyStore(rt.store).create("operator", ("read", "runs"))[1]
    csrf = sign_in(client, operator)
    asked = client.post("/ui/pilot", data={"csrf": csrf, "question": "How busy is this box?"}, follow_redirects=False)
    url = asked.headers["location"].split("?")[0]
    shown = html.unescape(_pilot_page_until(client, url, "status-failed"))
    assert "planning…" not in shown and "gathering…" not in shown and "waiting for the facts" not in shown, shown
    assert shown.count("not reached: the run failed") == 3, shown


def test_a_trigger_retried_with_its_idempotency_key_starts_one_run(
    with_routines: Path, client: TestClient, keys: dict[str, str]
) -> None:
    """The key was ignored: a client retrying after a lost answer started the routine's team twice."""
    headers = {**auth(keys["runs"]), "Idempotency-Key": "retry-1"}
    first = client.post("/routines/nightly/trigger", headers=headers)
    again = client.post("/routines/nightly/trigger", headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and "location" not in again.headers
    other = client.post("/routines/nightly/trigger", headers={**auth(keys["runs"]), "Idempotency-Key": "retry-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert other.json()["trigger"]["routine"] == "nightly"


def test_the_routines_page_pauses_and_resumes_an_invalid_routine(
    with_broken_routine: Path, client: TestClient, keys: dict[str, str]
) -> None:
    """An invalid routine stays scheduled (each firing skipped): the page offers Pause and Resume as for any
    routine, and says it is paused (it showed only 'invalid', with no button)."""
    from edgecrew.store.keys import ApiKeyStore
    from tests.api.test_ui_pages import sign_in

    operator = ApiKeyStore(client.app.state.rt.store).create("operator", ("read", "runs"))[1]  # type: ignore[attr-defined]
    csrf = sign_in(client, operator)
    assert client.post("/routines/broken/resume", headers=auth(keys["runs"])).json()["schedule"] == "active"
    assert 'action="/ui/routines/broken/pause"' in client.get("/ui/routines").text
    paused = client.post("/ui/routines/broken/pause", data={"csrf": csrf}, follow_redirects=False)
    assert paused.status_code == 303
    page = client.get("/ui/routines").text
    assert 'action="/ui/routines/broken/resume"' in page and "invalid (paused)" in page
