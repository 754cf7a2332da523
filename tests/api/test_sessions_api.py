"""/sessions over the app in process: create a session with a team, say two things, read the turns
back (the second run's task carries the first exchange), stream a reply as Server-Sent Events, and the
problems a client can cause (an unknown team or session, a message while one is being answered).
Then ``/v1/chat/completions`` bound to a session by ``X-Edgecrew-Session``: in process, and from the
OpenAI python client against a real server on 127.0.0.1 (plain and streamed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.engine import durable
from edgecrew.settings import reset_settings
from edgecrew.store.keys import ApiKeyStore
from tests.api.conftest import auth
from tests.api.live import serve_in_thread
from tests.conftest import write

SLOW = """
name: slow
agents:
  solo: {model: sleepy, system: answer slowly}
graph: {start: solo, edges: [{from: solo, to: end}]}
"""
SLOW_MODEL = """
  sleepy:
    backend: scripted
    replies: [{text: "after a while", delay: 3}]
  refuser:
    backend: scripted
    replies: ["Nothing was done.\\nFailed: the request names no project."]
"""
# Its run fails (the answer matches failed_when), and the answer says why.
STRICT = """
name: strict
failed_when: "'Failed: ' in text"
agents:
  clerk: {model: refuser, system: chat}
graph: {start: clerk, edges: [{from: clerk, to: end}]}
"""


@pytest.fixture
def http(server_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str]]]:
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")
    config = server_project / "edgecrew.yaml"
    config.write_text(config.read_text().replace("models:\n", "models:" + SLOW_MODEL, 1))
    write(server_project / "teams" / "slow.yaml", SLOW)
    write(server_project / "teams" / "strict.yaml", STRICT)
    reset_settings()
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
        yield client, auth(store.create("chat", ("runs", "read"))[1])


def test_a_session_remembers_its_earlier_turns(http: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = http
    made = client.post("/sessions", json={"team": "echo"}, headers=headers)
    assert made.status_code == 201, made.text
    session = made.json()
    assert made.headers["location"] == f"/sessions/{session['id']}" and session["title"] == ""
    first = client.post(f"/sessions/{session['id']}/messages", json={"content": "My dog is Rex."}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "answered" and first.json()["answer"]["content"] == "the answer is 42"
    second = client.post(f"/sessions/{session['id']}/messages", json={"content": "Name my dog."}, headers=headers)
    assert second.status_code == 200 and second.headers["x-run-id"] == second.json()["run_id"]
    run = client.get(f"/runs/{second.json()['run_id']}", headers=headers).json()
    assert "user: My dog is Rex.\nassistant: the answer is 42" in run["task"]
    assert run["trigger"] == {"kind": "chat", "session": session["id"], "turn": 2}
    detail = client.get(f"/sessions/{session['id']}", headers=headers).json()
    assert detail["title"] == "My dog is Rex."
    assert [(t["seq"], t["role"]) for t in detail["turns"]] == [
        (0, "user"),
        (1, "assistant"),
        (2, "user"),
        (3, "assistant"),
    ]
    listed = client.get("/sessions", params={"team": "echo"}, headers=headers).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == session["id"]


def test_a_reply_streams_as_server_sent_events(http: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = http
    session = client.post("/sessions", json={"team": "echo", "title": "sse"}, headers=headers).json()
    events: list[tuple[str, str]] = []
    with client.stream(
        "POST",
        f"/sessions/{session['id']}/messages",
        params={"stream": "true"},
        json={"content": "hi"},
        headers=headers,
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, line.split(":", 1)[1].strip()))
    kinds = [k for k, _ in events]
    assert kinds[0] == "turn" and kinds[-2:] == ["answer", "done"]
    answer = json.loads(events[-2][1])
    assert answer["status"] == "answered" and answer["answer"]["content"] == "the answer is 42"


def test_a_message_whose_run_failed_says_so_with_the_answer_that_says_why(
    http: tuple[TestClient, dict[str, str]],
) -> None:
    """Before: status "answered" (and no error) for a run that failed, its answer kept as the turn's."""
    client, headers = http
    session = client.post("/sessions", json={"team": "strict"}, headers=headers).json()
    said = client.post(f"/sessions/{session['id']}/messages", json={"content": "make it so"}, headers=headers)
    assert said.status_code == 200, said.text
    body = said.json()
    assert body["status"] == "failed" and body["run_status"] == "failed"
    assert body["answer"]["content"] == "Nothing was done.\nFailed: the request names no project."
    said_failed = "the team's answer says its work failed (failed_when: 'Failed: ' in text)"
    assert body["error"] == f"run {body['run_id']} failed: {said_failed}"
    # The answer stays the turn's answer: the conversation goes on from it.
    turns = client.get(f"/sessions/{session['id']}", headers=headers).json()["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant"] and turns[1]["content"] == body["answer"]["content"]
    assert [t["run_failed"] for t in turns] == [False, True]  # a client reading the history sees which failed
    # The chat page says so under the answer, where an answer of a run that succeeded says "Answered by".
    from tests.api.test_ui_pages import sign_in

    sign_in(client, headers["Authorization"].removeprefix("Bearer "))
    shown = client.get(f"/ui/chat/{session['id']}").text
    assert "Failed: the request names no project." in shown and "Answered by" not in shown
    assert f"{body['run_id']}</a> failed; its answer says why." in shown


def test_problems_a_client_can_cause(http: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = http
    assert client.post("/sessions", json={"team": "nope"}, headers=headers).status_code == 404
    assert client.get("/sessions/s0123", headers=headers).status_code == 404
    assert client.post("/sessions/s0123/messages", json={"content": "hi"}, headers=headers).status_code == 404
    assert client.get("/sessions/not-an-id", headers=headers).status_code == 422
    session = client.post("/sessions", json={"team": "slow"}, headers=headers).json()
    url = f"/sessions/{session['id']}/messages"
    pending = client.post(url, params={"wait": 0}, json={"content": "take your time"}, headers=headers)
    assert pending.status_code == 202 and pending.json()["status"] == "pending", pending.text
    assert pending.json()["run_status"] in ("queued", "running")  # working on it, not waiting for a person
    busy = client.post(url, params={"wait": 0}, json={"content": "something else"}, headers=headers)
    assert busy.status_code == 409 and "still answering" in busy.json()["detail"]
    again = client.post(url, json={"content": "take your time"}, headers=headers)  # a retry: the same run
    assert again.status_code == 200 and again.json()["run_id"] == pending.json()["run_id"]
    assert again.json()["answer"]["content"] == "after a while"
    blank = client.post(url, json={"content": "   "}, headers=headers)
    assert blank.status_code == 422
    # A field the body does not declare is named in a 422, not dropped (the message was lost).
    extra = client.post("/sessions", json={"team": "slow", "message": "hi"}, headers=headers)
    assert extra.status_code == 422 and extra.json()["errors"][0]["loc"] == ["body", "message"]
    stray = client.post(url, json={"content": "hi", "role": "user"}, headers=headers)
    assert stray.status_code == 422 and stray.json()["errors"][0]["loc"] == ["body", "role"]


def test_an_internal_team_is_not_offered_for_chat_nor_taken_when_named(http: tuple[TestClient, dict[str, str]]) -> None:
    """Before: the supervisor's own team was in the chat page's list and /v1/models, and a session with it
    was made. A project team that says `internal: true` is left out the same way."""
    from tests.api.test_ui_pages import sign_in

    client, headers = http
    project = client.app.state.rt.project.dir  # type: ignore[attr-defined]
    write(project / "teams" / "backstage.yaml", SLOW.replace("name: slow", "name: backstage\ninternal: true"))
    for team in ("supervisor-action", "backstage"):
        made = client.post("/sessions", json={"team": team}, headers=headers)
        assert made.status_code == 400, made.text
        assert made.json()["detail"].startswith(f"team '{team}' is internal (its YAML says internal: true")
        assert "start a session with one of: " in made.json()["detail"] and "slow" in made.json()["detail"]
        for model in (team, f"{team}/{'apply' if team == 'supervisor-action' else 'solo'}"):
            asked = client.post(
                "/v1/chat/completions",
                headers=headers,
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert asked.status_code == 404 and asked.json()["error"]["code"] == "model_not_found", asked.text
            assert f"team '{team}' is internal" in asked.json()["error"]["message"]
            retrieved = client.get(f"/v1/models/{model}", headers=headers)
            assert retrieved.status_code == 404 and f"team '{team}' is internal" in retrieved.text
    assert client.get("/sessions", headers=headers).json()["items"] == []
    assert client.get("/runs", headers=headers).json()["items"] == []
    listed = {m["id"] for m in client.get("/v1/models", headers=headers).json()["data"]}
    assert {"slow", "slow/solo", "twin"} <= listed
    assert not {m for m in listed if m.partition("/")[0] in ("supervisor-action", "backstage")}
    sign_in(client, headers["Authorization"].removeprefix("Bearer "))
    page = client.get("/ui/chat").text
    assert "<option>slow</option>" in page and "<option>supervisor-action</option>" not in page
    assert "<option>backstage</option>" not in page


def test_an_internal_team_is_listed_as_such_but_not_offered_where_a_person_starts_a_run(
    http: tuple[TestClient, dict[str, str]],
) -> None:
    """Before: the chat hid the supervisor's own team, but GET /teams did not say what it was, and the UI
    offered a Run button, a run form and the task and job pickers for it."""
    from tests.api.test_ui_pages import sign_in

    client, headers = http
    project = client.app.state.rt.project.dir  # type: ignore[attr-defined]
    write(project / "teams" / "backstage.yaml", SLOW.replace("name: slow", "name: backstage\ninternal: true"))
    listed = {t["name"]: t for t in client.get("/teams", headers=headers).json()}
    assert listed["supervisor-action"]["internal"] and listed["backstage"]["internal"]  # listed, marked
    assert not listed["slow"]["internal"]
    csrf = sign_in(client, headers["Authorization"].removeprefix("Bearer "))
    teams_page = client.get("/ui/teams").text
    assert 'href="/ui/teams/slow#run"' in teams_page and 'href="/ui/teams/backstage#run"' not in teams_page
    assert 'href="/ui/teams/supervisor-action#run"' not in teams_page and ">internal</span>" in teams_page
    own = client.get("/ui/teams/backstage").text
    assert 'action="/ui/teams/backstage/run"' not in own and "This team is internal" in own
    assert 'action="/ui/teams/slow/run"' in client.get("/ui/teams/slow").text
    posted = client.post("/ui/teams/backstage/run", data={"csrf": csrf, "task": "hi"}, follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["location"].startswith("/ui/teams/backstage?")
    assert "team &#39;backstage&#39; is internal" in client.get(posted.headers["location"]).text
    assert client.get("/runs", headers=headers).json()["items"] == []  # no run was started
    for form in ("/ui/tasks/new", "/ui/jobs"):
        picker = client.get(form).text
        assert ">slow</option>" in picker and ">backstage</option>" not in picker, form
        assert ">supervisor-action</option>" not in picker, form
    task = client.post("/ui/tasks", data={"csrf": csrf, "title": "t", "team": "backstage"})
    assert task.status_code == 400 and "&#39;backstage&#39; is internal" in task.text
    job = client.post(
        "/ui/jobs", data={"csrf": csrf, "kind": "team", "team": "backstage", "task": "hi"}, follow_redirects=False
    )
    assert "is+internal" in job.headers["location"] or "is%20internal" in job.headers["location"], job.headers


def test_a_message_whose_run_waits_for_an_approval_says_so(http: tuple[TestClient, dict[str, str]]) -> None:
    """Before: 202 with status "pending" and nothing else, the same as a run still working: a client could
    not tell that a person had to decide."""
    client, headers = http
    session = client.post("/sessions", json={"team": "ship"}, headers=headers).json()
    waiting = client.post(f"/sessions/{session['id']}/messages", json={"content": "ship it"}, headers=headers)
    assert waiting.status_code == 202, waiting.text
    body = waiting.json()
    assert body["status"] == "pending" and body["run_status"] == "waiting_approval"
    [approval] = client.get("/approvals", params={"run": body["run_id"]}, headers=headers).json()
    assert approval["tool"] == "deploy"
    # ...and which call waits, to decide it (the reply named none: a client had to list the approvals)
    assert [(a["id"], a["tool"]) for a in body["approvals"]] == [(approval["id"], "deploy")]


def test_a_v1_completion_bound_to_a_session_is_its_next_turn(http: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = http
    session = client.post("/sessions", json={"team": "echo"}, headers=headers).json()
    bound = {**headers, "X-Edgecrew-Session": session["id"]}
    first = {"model": "echo", "messages": [{"role": "user", "content": "The code word is plum."}]}
    assert client.post("/v1/chat/completions", json=first, headers=bound).status_code == 200
    # Only the last message counts: the session's stored turns are the context, not the client's copy.
    second = {
        "model": "echo/solo",
        "messages": [{"role": "user", "content": "ignored"}, {"role": "user", "content": "What is the code word?"}],
    }
    answered = client.post("/v1/chat/completions", json=second, headers=bound)
    assert answered.status_code == 200, answered.text
    run = client.get(f"/runs/{answered.headers['x-run-id']}", headers=headers).json()
    assert "user: The code word is plum." in run["task"] and "ignored" not in run["task"]
    turns = client.get(f"/sessions/{session['id']}", headers=headers).json()["turns"]
    assert [t["content"] for t in turns] == [
        "The code word is plum.", "the answer is 42", "What is the code word?", "the answer is 42"
    ]  # fmt: skip
    other = client.post("/v1/chat/completions", json={**first, "model": "ship"}, headers=bound)
    assert other.status_code == 409 and "talks to team 'echo'" in other.json()["detail"]
    lost = client.post("/v1/chat/completions", json=first, headers={**headers, "X-Edgecrew-Session": "sdeadbeef"})
    assert lost.status_code == 404 and lost.json()["error"]["code"] == "not_found", lost.text  # not the model's


def test_the_openai_client_talks_in_a_session_on_a_real_server(
    server_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")
    reset_settings()
    try:
        with serve_in_thread(create_app()) as server:
            key = ApiKeyStore(server.app.state.rt.store).create("openai-chat", ("runs", "read"))[1]
            api = httpx.Client(base_url=server.url, headers=auth(key), timeout=60)
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)
            with api, client:
                session = api.post("/sessions", json={"team": "echo"}).json()["id"]
                bound = {"X-Edgecrew-Session": session}
                first = client.chat.completions.with_raw_response.create(
                    model="echo",
                    messages=[{"role": "user", "content": "The code word is plum."}],
                    extra_headers=bound,
                )
                completion = first.parse()
                run_id = first.headers["x-run-id"]
                assert completion.id == f"chatcmpl-{run_id}"
                assert completion.choices[0].message.content == "the answer is 42"
                turns = api.get(f"/sessions/{session}").json()["turns"]
                assert [(t["role"], t["content"], t["run_id"]) for t in turns] == [
                    ("user", "The code word is plum.", run_id), ("assistant", "the answer is 42", run_id)
                ]  # fmt: skip

                # Streamed: the chunks carry the answer, and the turn is the session's next one, with the
                # first exchange as its run's context (not the client's copy of the conversation).
                chunks = client.chat.completions.create(
                    model="echo/solo",
                    messages=[{"role": "user", "content": "What is the code word?"}],
                    stream=True,
                    extra_headers=bound,
                )
                streamed = [c for c in chunks]
                assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "the answer is 42"
                second_run = streamed[0].id.removeprefix("chatcmpl-")
                detail = api.get(f"/sessions/{session}").json()
                assert [t["content"] for t in detail["turns"]] == [
                    "The code word is plum.", "the answer is 42", "What is the code word?", "the answer is 42"
                ]  # fmt: skip
                assert detail["turns"][3]["run_id"] == second_run and detail["title"] == "The code word is plum."
                task = api.get(f"/runs/{second_run}").json()["task"]
                assert "user: The code word is plum.\nassistant: the answer is 42" in task

                # A session of another team, or no such session, is refused as the OpenAI client expects.
                with pytest.raises(openai.ConflictError, match="talks to team 'echo'"):
                    client.chat.completions.create(
                        model="ship", messages=[{"role": "user", "content": "hi"}], extra_headers=bound
                    )
                with pytest.raises(openai.NotFoundError):
                    client.chat.completions.create(
                        model="echo",
                        messages=[{"role": "user", "content": "hi"}],
                        extra_headers={"X-Edgecrew-Session": "s0123"},
                    )
    finally:
        durable.shutdown()


def test_the_chat_pages_stream_is_refused_for_a_run_of_no_message_of_its_session(
    http: tuple[TestClient, dict[str, str]],
) -> None:
    """A stream of a run the session never started would wait forever: it is a 404 before it opens."""
    from tests.api.test_ui_pages import sign_in

    client, headers = http
    session = client.post("/sessions", json={"team": "echo"}, headers=headers).json()["id"]
    said = client.post(f"/sessions/{session}/messages", json={"content": "hi"}, headers=headers).json()
    other = client.post("/runs", json={"team": "echo", "task": "not a chat"}, headers=headers).json()["id"]
    sign_in(client, headers["Authorization"].removeprefix("Bearer "))
    for run in ("rzzz", other):
        refused = client.get(f"/ui/chat/{session}/stream", params={"run": run})
        assert refused.status_code == 404 and "answers no message" in refused.text, run
    with client.stream("GET", f"/ui/chat/{session}/stream", params={"run": said["run_id"]}) as ok:
        assert ok.status_code == 200 and "event: done" in "".join(ok.iter_text())


def test_a_message_that_waits_for_a_cluster_worker_says_so(http: tuple[TestClient, dict[str, str]]) -> None:
    """On a cluster with no live worker a message's run waits on the queue: POST /runs said so, a chat
    message answered 202 after two minutes (or streamed nothing) without a word, and the chat page too."""
    from tests.api.test_ui_pages import sign_in

    client, headers = http
    said = "no live cluster worker: the run waits on queue edgecrew.cluster.runs until an `edgecrew worker` starts"
    client.app.state.rt.queue_check = lambda: said  # type: ignore[attr-defined]
    session = client.post("/sessions", json={"team": "slow"}, headers=headers).json()
    url = f"/sessions/{session['id']}/messages"
    pending = client.post(url, params={"wait": 0}, json={"content": "anyone there?"}, headers=headers)
    assert pending.status_code == 202 and pending.headers["X-Edgecrew-Warning"] == said
    client.post(url, json={"content": "anyone there?"}, headers=headers)  # its answer, so the next may go
    with client.stream("POST", url, params={"stream": "true"}, json={"content": "and now?"}, headers=headers) as r:
        assert r.status_code == 200 and r.headers["X-Edgecrew-Warning"] == said
        r.read()
    csrf = sign_in(client, headers["Authorization"].removeprefix("Bearer "))
    form = client.post(
        f"/ui/chat/{session['id']}", data={"content": "and on the page?", "csrf": csrf}, follow_redirects=False
    )
    assert form.status_code == 303 and "notice=" in form.headers["location"]
    assert "no live cluster worker" in client.get(form.headers["location"]).text
