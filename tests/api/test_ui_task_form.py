"""The "New task" form without a browser: it creates a task and goes to its page, or shows every
problem with what was typed kept; it needs the runs scope and the form's CSRF token."""

from __future__ import annotations

import html

from fastapi.testclient import TestClient

from edgecrew.store.keys import ApiKeyStore
from tests.api.test_ui_pages import sign_in


def operator(client: TestClient) -> str:
    """A key that may read and start work (what POST /tasks asks for), without admin."""
    return ApiKeyStore(client.app.state.rt.store).create("operator", ("read", "runs"))[1]  # type: ignore[attr-defined]


def test_the_form_creates_a_task_and_goes_to_its_page(client: TestClient) -> None:
    csrf = sign_in(client, operator(client))
    form = client.get("/ui/tasks/new?team=echo")
    assert form.status_code == 200
    assert 'action="/ui/tasks"' in form.text and '<option value="echo" selected>' in form.text
    assert "New task" in client.get("/ui/tasks").text  # the list offers the form
    checks = "io:\n  - {input: '2 3', expected: '5'}\ntest: |\n  assert 1 + 1 == 2\n"
    r = client.post(
        "/ui/tasks",
        data={
            "csrf": csrf,
            "title": "Add two numbers",
            "description": "Print the sum.",
            "checks": checks,
            "team": "echo",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/ui/tasks/t") and "notice=task%20created" in location
    task_id = location.split("?")[0].rsplit("/", 1)[1]
    task = client.app.state.rt.tasks.get(task_id)  # type: ignore[attr-defined]
    assert (task.title, task.description, task.team, task.created_by) == (
        "Add two numbers",
        "Print the sum.",
        "echo",
        "operator",
    )
    assert task.checks == {"io": [{"input": "2 3", "expected": "5"}], "test": "assert 1 + 1 == 2\n"}
    page = client.get(location)
    assert page.status_code == 200 and "Add two numbers" in page.text


def test_json_checks_and_no_team_are_fine(client: TestClient) -> None:
    csrf = sign_in(client, operator(client))
    r = client.post(
        "/ui/tasks",
        data={"csrf": csrf, "title": "JSON", "checks": '{"io": [{"input": "a", "expected": "a"}]}'},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    task_id = r.headers["location"].split("?")[0].rsplit("/", 1)[1]
    task = client.app.state.rt.tasks.get(task_id)  # type: ignore[attr-defined]
    assert task.team is None and task.checks == {"io": [{"input": "a", "expected": "a"}]}


def test_bad_input_reshows_the_form_with_every_problem_and_the_typed_values(client: TestClient) -> None:
    csrf = sign_in(client, operator(client))
    typed = {"title": "Reverse <it>", "description": "Print it reversed.", "checks": "io: [{input: abc}]\nspeed: 3"}
    r = client.post("/ui/tasks", data={"csrf": csrf, **typed, "team": "nope"})
    assert r.status_code == 400
    text = html.unescape(r.text)
    assert "The task was not created" in text
    assert "'expected' is missing" in text and "unknown field 'speed'" in text
    assert "no team named 'nope'" in text
    assert 'value="Reverse &lt;it&gt;"' in r.text  # kept, and escaped
    assert "Print it reversed.</textarea>" in r.text and "io: [{input: abc}]\nspeed: 3</textarea>" in text
    assert "<nav" in r.text  # inside the site's frame
    assert client.app.state.rt.tasks.list_tasks() == []  # type: ignore[attr-defined]


def test_yaml_syntax_errors_and_a_blank_title_are_reported(client: TestClient) -> None:
    csrf = sign_in(client, operator(client))
    r = client.post("/ui/tasks", data={"csrf": csrf, "title": "  ", "checks": "io: [unclosed"})
    assert r.status_code == 400
    text = html.unescape(r.text)
    assert "title: give the task a short title" in text
    assert "acceptance checks: line 1: YAML syntax error" in text


def test_checks_that_hold_no_check_are_reported_not_dropped(client: TestClient) -> None:
    csrf = sign_in(client, operator(client))
    r = client.post("/ui/tasks", data={"csrf": csrf, "title": "t", "checks": "io: []"})
    assert r.status_code == 400
    assert "acceptance checks: checks is empty: give at least one io case" in html.unescape(r.text)
    assert client.app.state.rt.tasks.list_tasks() == []  # type: ignore[attr-defined]


def test_the_form_needs_the_runs_scope_and_the_csrf_token(client: TestClient, keys: dict[str, str]) -> None:
    csrf = sign_in(client, keys["read"])
    assert 'href="/ui/tasks/new"' not in client.get("/ui/tasks").text  # not offered to a read-only key
    refused = client.post("/ui/tasks", data={"csrf": csrf, "title": "x"})
    assert refused.status_code == 403 and "runs" in refused.text
    csrf = sign_in(client, operator(client))
    forged = client.post("/ui/tasks", data={"csrf": "not-the-token", "title": "x"})
    assert forged.status_code == 403
    assert client.app.state.rt.tasks.list_tasks() == []  # type: ignore[attr-defined]


def test_the_task_page_shows_the_end_of_a_long_timeline(client: TestClient) -> None:
    # The page showed the first 500 messages: a newer one (an agent's last word) never appeared.
    sign_in(client, operator(client))
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    task = tasks.create("chatty", "")
    for i in range(501):
        tasks.add_message(task.id, "coder", "agent", f"note {i}")
    page = client.get(f"/ui/tasks/{task.id}").text
    assert "note 500" in page and "note 0<" not in page


def test_a_failed_tasks_best_version_is_not_shown_as_a_success(client: TestClient) -> None:
    # Its best attempt wore the green badge of a succeeded run, as a done task's does.
    sign_in(client, operator(client))
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    for status in ("done", "failed"):
        task = tasks.create(f"ended {status}", "")
        tasks.add_code(task.id, "solution.py", b"print(1)\n")
        tasks.update(task.id, status=status)
        page = client.get(f"/ui/tasks/{task.id}").text
        badge = next(line for line in page.splitlines() if "best: v1" in line)
        assert ("status-succeeded" in badge) == (status == "done"), badge


def test_an_unknown_status_in_the_tasks_address_is_said(client: TestClient) -> None:
    # It listed "No bogus tasks", as though the status existed and had none.
    sign_in(client, operator(client))
    client.app.state.rt.tasks.create("kept", "")  # type: ignore[attr-defined]
    page = html.unescape(client.get("/ui/tasks?status=bogus").text)
    assert "no task status 'bogus'; one of open, in_progress, done, failed, cancelled" in page
    assert "kept" in page and "No bogus tasks" not in page


def test_the_tasks_page_pages_through_every_task(client: TestClient) -> None:
    # It listed the newest 200 with no way to the older ones.
    sign_in(client, operator(client))
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    for i in range(55):
        tasks.create(f"task number {i}", "")
    first = client.get("/ui/tasks").text
    assert "55 task(s)." in first and 'href="?offset=50">Older</a>' in first and "Newer" not in first
    assert first.count('href="/ui/tasks/t') == 50
    older = client.get("/ui/tasks?offset=50").text
    assert older.count('href="/ui/tasks/t') == 5 and 'href="?offset=0">Newer</a>' in older and "Older" not in older
    done = client.get("/ui/tasks?status=open&offset=50").text
    assert 'href="?status=open&amp;offset=0">Newer</a>' in done


def test_a_description_within_the_browsers_maxlength_is_taken_whole(client: TestClient) -> None:
    """A browser counts a line break as one character against maxlength and sends two (CRLF): a
    description of many lines under the limit was refused with a bare error page and the text lost."""
    from edgecrew.ui.task_form import MAX_DESCRIPTION_CHARS

    csrf = sign_in(client, operator(client))
    lines = "step\r\n" * (MAX_DESCRIPTION_CHARS // 5)  # 6 characters sent, 5 counted, per line
    assert len(lines) > MAX_DESCRIPTION_CHARS >= len(lines.replace("\r\n", "\n"))
    made = client.post("/ui/tasks", data={"csrf": csrf, "title": "Long", "description": lines}, follow_redirects=False)
    assert made.status_code == 303, made.text[:500]
    task_id = made.headers["location"].split("?")[0].rsplit("/", 1)[1]
    assert client.app.state.rt.tasks.get(task_id).description == lines.replace("\r\n", "\n")  # type: ignore[attr-defined]
    over = "x" * (MAX_DESCRIPTION_CHARS + 1)
    refused = client.post("/ui/tasks", data={"csrf": csrf, "title": "Longer", "description": over})
    assert refused.status_code == 400
    assert (
        f"description: at most {MAX_DESCRIPTION_CHARS} characters ({MAX_DESCRIPTION_CHARS + 1} given)" in refused.text
    )
    assert over in refused.text  # the typed text is kept in the form


def test_counts_among_the_metrics_read_as_counts(client: TestClient) -> None:
    # The results table showed checks_passed=2.0 (stored metrics are floats, counts among them).
    sign_in(client, operator(client))
    tasks = client.app.state.rt.tasks  # type: ignore[attr-defined]
    task = tasks.create("counted", "")
    tasks.add_code(task.id, "solution.py", b"print(1)\n")
    tasks.add_result(task.id, version=1, metrics={"checks_passed": 2.0, "checks_total": 3.0, "ratio": 0.25})
    page = html.unescape(client.get(f"/ui/tasks/{task.id}").text)
    assert "checks_passed=2 checks_total=3 ratio=0.25" in page and "=2.0" not in page
    execution = tasks.create_execution(task.id, 1)
    tasks.update_execution(execution.id, status="succeeded", metrics={"items": 7.0, "accuracy": 0.5})
    shown = client.get(f"/ui/executions/{execution.id}").text
    assert "<td>7</td>" in shown and "<td>0.5</td>" in shown and "7.0" not in shown
