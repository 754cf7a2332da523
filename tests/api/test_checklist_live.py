"""The checklist updates live: a run on the scripted model (replies with delays) is followed on the UI's
run stream by a real HTTP client against a real uvicorn server, and the ``checklist`` fragments that
arrive while the run is still going show an agent go from running to done and a plan's sub-task and a
ReAct agent's tool call become done, before the run ends."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgecrew.app import create_app
from edgecrew.store.keys import ApiKeyStore
from tests.api.conftest import auth
from tests.api.live import ThreadServer, iter_sse, serve_in_thread, server_settings
from tests.conftest import write
from tests.teams import PLANNER

# The planner's first step names the tool the worker calls (it is done once the call is); the second
# names neither an agent nor a tool, so it is in progress until the run succeeds.
PLAN = ["call note to save the fact", "answer with what was saved"]
PROJECT = f"""
models:
  fake:
    backend: scripted
    replies_by_agent:
      planner: [{{json: {{steps: {PLAN}}}, delay: 3.0}}]
      op: [{{tool: note, args: {{text: the sky is blue}}, delay: 1.0}}, {{text: "saved it", delay: 3.0}}]
plugins: [tools.py]
"""
TOOLS = '''
from edgecrew import tool

@tool
def note(text: str) -> str:
    """Save a short note."""
    return "saved: " + text
'''
TEAM = (
    "name: plan-work\nagents:\n"
    + PLANNER
    + """\
  op: {model: fake, system: do the plan, tools: [note]}
graph: {start: planner, edges: [{from: planner, to: op}, {from: op, to: end}]}
"""
)
ITEM = re.compile(r'<li class="cl-(\w+)"><span class="box"[^>]*>[^<]*</span> ([^<]+)')


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ThreadServer, httpx.Client]]:
    project = tmp_path / "project"
    write(project / "edgecrew.yaml", PROJECT)
    write(project / "tools.py", TOOLS)
    write(project / "teams" / "plan-work.yaml", TEAM)
    with serve_in_thread(create_app(server_settings(tmp_path))) as server:
        key = ApiKeyStore(server.app.state.rt.store).create("live", ("admin",))[1]
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(60.0)) as http:
            sign_in(http, key)
            http.headers.update(auth(key))
            yield server, http


def sign_in(http: httpx.Client, key: str) -> None:
    form = http.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token, form.text
    r = http.post("/ui/login", data={"key": key, "login_token": token.group(1), "next": "/"})
    assert r.status_code in (200, 303), r.text


def states(fragment: str) -> dict[str, str]:
    """Each checklist line's text (agent label, sub-task, `tool`) and its state."""
    return {text.strip(): state for state, text in ITEM.findall(fragment)}


def test_the_checklist_changes_on_the_ui_stream_while_the_run_goes(live: tuple[ThreadServer, httpx.Client]) -> None:
    _, http = live
    started = http.post("/runs", json={"team": "plan-work", "task": "remember the sky's colour"})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    seen: list[tuple[dict[str, str], str]] = []  # each checklist, and the run's status when it arrived
    begun = time.monotonic()
    with http.stream("GET", f"/ui/runs/{run_id}/stream", headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200, response.read()
        for event in iter_sse(response):
            if event.event == "checklist":
                seen.append((states(event.data), http.get(f"/runs/{run_id}").json()["status"]))
            if event.event == "done" or time.monotonic() - begun > 60:
                break
    live_ones = [s for s, status in seen if status in ("queued", "running")]
    assert live_ones, seen

    def first(predicate: object) -> int:
        return next(i for i, (s, status) in enumerate(seen) if status == "running" and predicate(s))  # type: ignore[operator]

    planner_running = first(lambda s: s.get("planner") == "running")
    planner_done = first(lambda s: s.get("planner") == "done" and s.get("op") == "running")
    tool_done = first(lambda s: s.get("`note`") == "done" and s.get(PLAN[0]) == "done" and s.get("op") == "running")
    assert planner_running < planner_done <= tool_done  # all while the run was still going
    during = seen[planner_done][0]
    assert during[PLAN[1]] == "running" and during.get(PLAN[0]) in ("running", "done")
    assert seen[tool_done][0][PLAN[1]] == "running"  # no per-step signal: not done before the run is

    final = seen[-1][0]  # sent with run_finished (the run's row may be marked a moment later)
    for _ in range(100):
        if http.get(f"/runs/{run_id}").json()["status"] == "succeeded":
            break
        time.sleep(0.05)
    assert http.get(f"/runs/{run_id}").json()["status"] == "succeeded"
    assert {k: final[k] for k in ("planner", "op", PLAN[0], PLAN[1], "`note`")} == dict.fromkeys(
        ("planner", "op", PLAN[0], PLAN[1], "`note`"), "done"
    )
