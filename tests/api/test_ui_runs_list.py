"""The runs list's filters (agent, model, date, search into events) and the comparison of two runs.

Runs are written straight into the store (runs, steps, events) so each filter meets rows that only it
tells apart; the same filters run once on a real PostgreSQL server, since they read JSON columns.
"""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgecrew.domain.events import ModelCalled, StepFinished, ToolCalled
from edgecrew.domain.runs import Outcome, RunStatus
from edgecrew.engine.service import RunService
from edgecrew.store import open_store
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore
from edgecrew.ui.runs_pages import align
from tests import pg
from tests.api.test_ui_pages import sign_in

DAY = 86_400.0
JAN_10 = datetime(2025, 1, 10, 12, tzinfo=UTC).timestamp()


def add_run(
    store: RunStore,
    run_id: str,
    *,
    team: str = "echo",
    task: str = "a task",
    steps: tuple[tuple[str, str, object, int], ...] = (),
    model: str = "fake",
    tool_result: str = "",
    output: object = None,
    created_at: float | None = None,
) -> None:
    """A finished run with ``steps`` as (agent, outcome, output, tokens), each calling ``model``."""
    store.create_run(run_id, team, task, {}, "/tmp")
    store.set_status(run_id, RunStatus.RUNNING)
    for visit, (agent, outcome, out, tokens) in enumerate(steps, 1):
        key = f"v{visit}.{agent}"
        store.upsert_step(run_id, key, agent=agent, visit=visit, status="running")
        call = ModelCalled(alias=model, requested=model, prompt_tokens=tokens, completion_tokens=tokens // 2)
        store.emit(run_id, f"{key}.m0", call, step_key=key, agent=agent)
        if tool_result:
            store.emit(run_id, f"{key}.t0", ToolCalled(tool="fetch", result=tool_result), step_key=key, agent=agent)
        finished = StepFinished(
            outcome=Outcome(outcome), output=out, model_calls=1, prompt_tokens=tokens, completion_tokens=tokens // 2
        )
        store.upsert_step(
            run_id, key, agent=agent, visit=visit, status="finished", finished_at=time.time(), **finished.to_data()
        )
    store.set_status(run_id, RunStatus.SUCCEEDED, output=output if output is not None else {"text": "done"})
    if created_at is not None:
        with store.engine.begin() as conn:
            conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(created_at=created_at))


def rows(page: str) -> list[str]:
    """The run ids listed in a runs page, in order."""
    return re.findall(r'<a href="/ui/runs/([^"]+)"><code>', page)


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    store = client.app.state.rt.store  # type: ignore[attr-defined]
    ok = Outcome.FINAL.value
    add_run(store, "rplan", task="plan a trip", steps=(("planner", ok, {"plan": ["go"]}, 10),), created_at=JAN_10)
    add_run(
        store,
        "rwrite",
        team="ship",
        task="write a poem",
        steps=(("writer", ok, "roses", 20),),
        model="gated",
        tool_result="the weather is ZEPHYRLIKE today",
        created_at=JAN_10 + 5 * DAY,
    )
    add_run(store, "rboth", task="plan and write", steps=(("planner", ok, {"plan": []}, 5), ("writer", ok, "x", 5)))
    return client


def test_agent_model_date_and_event_search_filters_are_kept_in_the_url(
    seeded: TestClient, keys: dict[str, str]
) -> None:
    client = seeded
    sign_in(client, keys["read"])
    every = client.get("/ui/runs").text
    assert rows(every) == ["rboth", "rwrite", "rplan"]
    # the filter form offers what the store has seen
    assert '<option value="planner">' in every and '<option value="writer">' in every
    assert '<option value="fake">' in every and '<option value="gated">' in every
    assert 'type="date"' in every

    by_agent = client.get("/ui/runs?agent=planner").text
    assert rows(by_agent) == ["rboth", "rplan"] and '<option value="planner" selected>' in by_agent
    assert rows(client.get("/ui/runs?model=gated").text) == ["rwrite"]
    assert rows(client.get("/ui/runs?agent=writer&model=fake").text) == ["rboth"]

    # dates are whole UTC days, both ends included
    assert rows(client.get("/ui/runs?from=2025-01-10&to=2025-01-10").text) == ["rplan"]
    assert rows(client.get("/ui/runs?from=2025-01-11&to=2025-01-15").text) == ["rwrite"]
    ranged = client.get("/ui/runs?to=2025-01-20").text
    assert rows(ranged) == ["rwrite", "rplan"] and 'value="2025-01-20"' in ranged
    assert rows(client.get("/ui/runs?from=2025-01-16").text) == ["rboth"]

    # search reaches into event data: the text is only in a tool's result
    found = client.get("/ui/runs?q=zephyrlike").text
    assert rows(found) == ["rwrite"] and "1 run(s) match" in found
    assert rows(client.get("/ui/runs?q=zephyrlike&team=echo").text) == []

    svc = RunService(client.app.state.rt)  # type: ignore[attr-defined]
    assert svc.count_runs(agent="planner", since=JAN_10 - DAY, until=JAN_10 + DAY) == 1


def test_home_shows_each_runs_tokens_as_the_runs_list_does(seeded: TestClient, keys: dict[str, str]) -> None:
    sign_in(seeded, keys["read"])
    for path in ("/", "/ui/runs"):
        page = seeded.get(path).text
        row = page[page.index('<a href="/ui/runs/rboth">') :]
        assert "<td>14</td>" in row[: row.index("</tr>")], path  # (5+2) + (5+2): prompt and completion


def test_times_read_as_dates_without_javascript(seeded: TestClient, keys: dict[str, str]) -> None:
    """The page's script shows each time in the reader's zone; without it they were epoch seconds."""
    sign_in(seeded, keys["read"])
    page = seeded.get("/ui/runs").text
    shown = re.findall(r'<time data-ts="[0-9.]+">([^<]*)</time>', page)
    assert shown and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in shown), shown


def test_filters_to_nothing_offer_to_clear_and_bad_dates_are_a_page(seeded: TestClient, keys: dict[str, str]) -> None:
    client = seeded
    sign_in(client, keys["read"])
    none = client.get("/ui/runs?agent=nobody&from=2030-01-01")
    assert none.status_code == 200 and "No runs match these filters" in none.text
    assert '<a href="/ui/runs">Show every run</a>' in none.text
    assert '<option value="nobody" selected>' in none.text  # a chosen value stays shown
    bad = client.get("/ui/runs?from=yesterday")
    assert bad.status_code == 400 and "<html" in bad.text and "2025-01-31" in bad.text
    backwards = client.get("/ui/runs?from=2025-02-01&to=2025-01-01")
    assert backwards.status_code == 400 and "before it starts" in backwards.text
    unknown = client.get("/ui/runs?status=bogus")  # it listed "no runs", as though the status existed
    assert unknown.status_code == 400 and "no run status &#39;bogus&#39;; one of queued, running" in unknown.text
    # an empty date (a cleared date input) filters nothing
    assert rows(client.get("/ui/runs?from=&to=&agent=").text) == ["rboth", "rwrite", "rplan"]
    # past the last run (an old Older link, an edited offset) is no "No runs yet" while there are runs
    past = client.get("/ui/runs?offset=99999").text
    assert "No runs yet" not in past and 'No runs past the first 3. <a href="?">Show the newest</a>.' in past
    filtered = client.get("/ui/runs?agent=writer&offset=500").text
    assert 'No runs past the first 2. <a href="?agent=writer">Show the newest</a>.' in filtered


def test_the_list_picks_two_runs_to_compare(seeded: TestClient, keys: dict[str, str]) -> None:
    client = seeded
    sign_in(client, keys["read"])
    listed = client.get("/ui/runs").text
    assert '<form id="compare" method="get" action="/ui/compare"' in listed
    assert listed.count('form="compare" name="run"') == 3
    picked = client.get("/ui/compare?run=rplan&run=rboth", follow_redirects=False)
    assert picked.status_code == 303 and picked.headers["location"] == "/ui/compare?a=rplan&b=rboth"
    one = client.get("/ui/compare?run=rplan")
    assert one.status_code == 400 and "pick two runs" in one.text and "<html" in one.text


def test_compare_shows_both_runs_and_marks_the_steps_that_differ(seeded: TestClient, keys: dict[str, str]) -> None:
    client = seeded
    sign_in(client, keys["read"])
    page = client.get("/ui/compare?a=rplan&b=rboth")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "rplan" in text and "rboth" in text
    assert "plan a trip" in text and "plan and write" in text
    assert "15 (10 / 5)" in text and "14 (10 / 4)" in text  # tokens, prompt / completion
    marked = {key: cls for cls, key in re.findall(r'<tr class="(differs|same)" data-step="([^"]+)"', page.text)}
    assert marked == {"v1.planner": "differs", "v2.writer": "differs"}  # another plan; only B wrote
    assert "only B" in text and "missing" in text
    # what changed in the planner's output, line by line: A planned to go, B planned nothing
    spans = re.findall(r"<span class=\"(add|del)\">([^<]*)</span>", page.text)
    changed = [(kind, html.unescape(line)) for kind, line in spans]
    assert ("del", '-  "plan": [') in changed and ("del", '-    "go"') in changed
    assert ("add", '+  "plan": []') in changed

    same = client.get("/ui/compare?a=rplan&b=rplan")
    assert '<tr class="same" data-step="v1.planner"' in same.text and "the same" in same.text

    # runs of different teams still compare; unknown ids are the site's 404 page
    other = client.get("/ui/compare?a=rwrite&b=rplan")
    assert other.status_code == 200 and "ship" in other.text and "echo" in other.text
    missing = client.get("/ui/compare?a=rplan&b=nothing-here")
    assert missing.status_code == 404 and "<html" in missing.text and "nothing-here" in html.unescape(missing.text)


def test_steps_align_by_key_with_extra_turns_in_place(seeded: TestClient) -> None:
    svc = RunService(seeded.app.state.rt)  # type: ignore[attr-defined]
    a, b = svc.steps("rplan"), svc.steps("rboth")
    assert [(p.key, p.a is not None, p.b is not None) for p in align(b, a)] == [
        ("v1.planner", True, True),
        ("v2.writer", True, False),
    ]
    assert [p.key for p in align(svc.steps("rwrite"), b)] == ["v1.planner", "v2.writer", "v1.writer"]


@pytest.mark.skipif(not pg.available(), reason="PostgreSQL server binaries are missing (make test installs them)")
def test_the_filters_run_on_postgres(tmp_path: Path) -> None:
    with pg.postgres_server() as url:
        store = open_store(url)
        try:
            ok = Outcome.FINAL.value
            add_run(store, "pa", steps=(("planner", ok, "p", 1),), tool_result="Needle in a tool", created_at=JAN_10)
            add_run(store, "pb", steps=(("writer", ok, "w", 1),), model="other")
            assert [r.id for r in store.list_runs(text="needle")] == ["pa"]
            assert [r.id for r in store.list_runs(agent="writer")] == ["pb"]
            assert [r.id for r in store.list_runs(model="other")] == ["pb"]
            assert store.count_runs(since=JAN_10 - 1, until=JAN_10 + 1) == 1
            assert store.count_runs(text="%") == 0  # LIKE's wildcards are escaped
            assert store.run_filter_choices() == (["planner", "writer"], ["fake", "other"])
        finally:
            store.engine.dispose()


def test_a_step_diff_reads_replies_as_text_and_stops_at_its_limit() -> None:
    from types import SimpleNamespace

    from edgecrew.ui.runs_pages import MAX_DIFF_LINES, StepPair

    def pair(a: object, b: object) -> StepPair:
        return StepPair("v1.w", SimpleNamespace(output=a), SimpleNamespace(output=b))  # type: ignore[arg-type]

    reply = pair({"text": "one\ntwo\nthree"}, {"text": "one\n2\nthree"})
    assert reply.diff == [
        ("hunk", "@@ -1,3 +1,3 @@"),
        ("ctx", " one"),
        ("del", "-two"),
        ("add", "+2"),
        ("ctx", " three"),
    ]
    assert pair({"text": "same"}, {"text": "same"}).diff == []
    long = pair("\n".join(f"a{i}" for i in range(400)), "\n".join(f"b{i}" for i in range(400))).diff
    assert len(long) == MAX_DIFF_LINES + 1 and long[-1] == ("hunk", f"… {801 - MAX_DIFF_LINES} more lines")
