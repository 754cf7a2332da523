"""The task page's forms without a browser: a message, a verdict and a code version (a file or pasted
code) are written as the API writes them, with the key's name as author; a problem re-shows the page
(400) naming it, with what was typed kept; the forms need the runs scope and the CSRF token."""

from __future__ import annotations

import html

from fastapi.testclient import TestClient

from edgecrew.store.tasks import TaskStore
from tests.api.test_ui_pages import sign_in
from tests.api.test_ui_task_form import operator


def store(client: TestClient) -> TaskStore:
    tasks: TaskStore = client.app.state.rt.tasks  # type: ignore[attr-defined]
    return tasks


def test_the_task_page_posts_a_message_a_verdict_and_a_code_version(client: TestClient) -> None:
    csrf = sign_in(client, operator(client))
    task = store(client).create("add", "print the sum")
    page = client.get(f"/ui/tasks/{task.id}").text
    for form in ("messages", "feedback", "code"):
        assert f'action="/ui/tasks/{task.id}/{form}"' in page

    pasted = client.post(
        f"/ui/tasks/{task.id}/code",
        data={"csrf": csrf, "filename": "add.py", "content": "a, b = 2, 3\r\nprint(a + b)\r\n"},
        follow_redirects=False,
    )
    assert pasted.status_code == 303 and "version%201%20added" in pasted.headers["location"], pasted.text
    uploaded = client.post(
        f"/ui/tasks/{task.id}/code",
        data={"csrf": csrf, "filename": ""},
        files={"file": ("sum.py", b"print(5)\n", "text/x-python")},
        follow_redirects=False,
    )
    assert uploaded.status_code == 303, uploaded.text
    versions = store(client).code_versions(task.id)
    assert [(v.version, v.filename, v.author) for v in versions] == [
        (1, "add.py", "operator"),
        (2, "sum.py", "operator"),
    ]
    assert store(client).code_bytes(versions[0]) == b"a, b = 2, 3\nprint(a + b)\n"  # the browser's CRLF folded
    assert store(client).get(task.id).status == "in_progress"  # as the API's upload moves an open task

    verdict = client.post(
        f"/ui/tasks/{task.id}/feedback",
        data={"csrf": csrf, "verdict": "needs_changes", "version": "2", "score": "0.5", "notes": "print a + b"},
        follow_redirects=False,
    )
    assert verdict.status_code == 303, verdict.text
    [given] = store(client).feedback(task.id)
    assert (given.verdict, given.version, given.score, given.notes, given.author) == (
        "needs_changes",
        2,
        0.5,
        "print a + b",
        "operator",
    )
    said = client.post(f"/ui/tasks/{task.id}/messages", data={"csrf": csrf, "content": "try again"})
    assert said.status_code == 200  # followed to the task's page
    [message] = store(client).messages(task.id)
    assert (message.sender, message.role, message.content) == ("operator", "person", "try again")
    assert "try again" in said.text and "print a + b" in said.text


def test_a_problem_reshows_the_page_naming_it_with_what_was_typed(client: TestClient) -> None:
    csrf = sign_in(client, operator(client))
    task = store(client).create("add", "")
    bad = client.post(
        f"/ui/tasks/{task.id}/feedback",
        data={"csrf": csrf, "verdict": "great", "version": "7", "score": "lots", "notes": "kept notes"},
    )
    text = html.unescape(bad.text)
    assert bad.status_code == 400 and "score: a number, not 'lots'" in text and "verdict: Input should be" in text
    assert "kept notes</textarea>" in text
    unknown = client.post(f"/ui/tasks/{task.id}/feedback", data={"csrf": csrf, "verdict": "accepted", "version": "7"})
    assert unknown.status_code == 400 and "version 7" in html.unescape(unknown.text)
    nothing = client.post(f"/ui/tasks/{task.id}/code", data={"csrf": csrf, "filename": "a.py"})
    assert nothing.status_code == 400 and "give a file, or paste the code and its file name" in nothing.text
    unnamed = client.post(f"/ui/tasks/{task.id}/code", data={"csrf": csrf, "content": "print(1)"})
    assert unnamed.status_code == 400 and "filename:" in unnamed.text and "print(1)</textarea>" in unnamed.text
    blank = client.post(f"/ui/tasks/{task.id}/messages", data={"csrf": csrf, "content": ""})
    assert blank.status_code == 400 and "content:" in blank.text
    tasks = store(client)
    assert (tasks.feedback(task.id), tasks.code_versions(task.id), tasks.messages(task.id)) == ([], [], [])
    gone = client.post("/ui/tasks/tnope/messages", data={"csrf": csrf, "content": "hello"})
    assert gone.status_code == 404 and "no task" in gone.text


def test_the_forms_need_the_runs_scope_and_the_csrf_token(client: TestClient, keys: dict[str, str]) -> None:
    task = store(client).create("add", "")
    csrf = sign_in(client, keys["read"])
    assert f'action="/ui/tasks/{task.id}/messages"' not in client.get(f"/ui/tasks/{task.id}").text
    refused = client.post(f"/ui/tasks/{task.id}/messages", data={"csrf": csrf, "content": "hi"})
    assert refused.status_code == 403 and "runs" in refused.text
    sign_in(client, operator(client))
    forged = client.post(f"/ui/tasks/{task.id}/feedback", data={"csrf": "not-the-token", "verdict": "accepted"})
    assert forged.status_code == 403
    assert store(client).messages(task.id) == [] and store(client).feedback(task.id) == []
