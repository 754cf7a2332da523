"""The runs list in a real browser: filters chosen in the form land in the URL and survive a reload;
two runs ticked in the list open side by side on the compare page.

Debian's Chromium driven by Playwright against the real server; the runs are real runs of two teams
on scripted models, started over the API.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from edgecrew.store.keys import ApiKeyStore
from tests.api.live import serve_in_thread
from tests.conftest import write
from tests.e2e.browser import chromium_page, needs_chromium

pytestmark = needs_chromium

PROJECT = """
models:
  fake:
    backend: scripted
    replies: ["the answer is 42", "seven sheep counted"]
  bard:
    backend: scripted
    replies: ["roses are red"]
"""
ECHO = """
name: echo
agents:
  solo: {model: fake, system: answer briefly}
graph: {start: solo, edges: [{from: solo, to: end}]}
"""
POET = """
name: poet
agents:
  writer: {model: bard, system: write verse}
graph: {start: writer, edges: [{from: writer, to: end}]}
"""


def finish(http: httpx.Client, team: str, task: str) -> str:
    """Start a run over the API and wait for it to succeed; returns its id."""
    started = http.post("/runs", json={"team": team, "task": task})
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = http.get(f"/runs/{run_id}").json()["status"]
        if status == "succeeded":
            return run_id
        assert status in ("queued", "running"), status
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} of {team} did not finish")


@pytest.fixture
def live(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, dict[str, str]]]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "echo.yaml", ECHO)
    write(project_dir / "teams" / "poet.yaml", POET)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    app = create_app()
    with serve_in_thread(app) as server:
        key = ApiKeyStore(app.state.rt.store).create("browser", ("admin",))[1]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            runs = {
                "answer": finish(http, "echo", "find the answer"),
                "sheep": finish(http, "echo", "count the sheep"),
                "poem": finish(http, "poet", "write a poem"),
            }
        yield server.url, key, runs


@pytest.fixture
def browser_page() -> Iterator[object]:
    with chromium_page() as page:
        yield page


def listed(page: object) -> list[str]:
    """The run ids in the runs table, top to bottom."""
    return [text.strip() for text in page.locator("table.runs td a code").all_inner_texts()]  # type: ignore[attr-defined]


def test_filters_survive_a_reload_and_compare_shows_both_runs(
    live: tuple[str, str, dict[str, str]], browser_page: object, tmp_path: Path
) -> None:
    url, key, runs = live
    page = browser_page
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]

    page.goto(url + "/ui/runs")  # type: ignore[attr-defined]
    page.fill("#key", key)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/runs$"))  # type: ignore[attr-defined]
    assert sorted(listed(page)) == sorted(runs.values())

    # Filter in the form: text, then team and status (each select submits the form as it changes).
    page.fill("#q", "sheep")  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.select_option("#team", "echo")  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.select_option("#status", "succeeded")  # type: ignore[attr-defined]
    query = parse_qs(urlsplit(page.url).query)  # type: ignore[attr-defined]
    assert query == {"q": ["sheep"], "team": ["echo"], "status": ["succeeded"]}, page.url  # type: ignore[attr-defined]
    assert listed(page) == [runs["sheep"]]

    # The filtered URL reloads to the same list, the form still showing the filters.
    page.reload()  # type: ignore[attr-defined]
    assert listed(page) == [runs["sheep"]]
    assert page.input_value("#q") == "sheep" and page.input_value("#team") == "echo"  # type: ignore[attr-defined]
    assert page.input_value("#status") == "succeeded"  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path / "runs-filtered.png"), full_page=True)  # type: ignore[attr-defined]

    # Clear the filters, tick two runs of different teams and compare them.
    page.click("form.run-filters >> text=Clear")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/runs$"))  # type: ignore[attr-defined]
    page.check(f"input[name=run][value='{runs['answer']}']")  # type: ignore[attr-defined]
    page.check(f"input[name=run][value='{runs['poem']}']")  # type: ignore[attr-defined]
    page.click("#compare button")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/compare\?a=.+&b=.+"))  # type: ignore[attr-defined]
    body = page.inner_text("main")  # type: ignore[attr-defined]
    assert runs["answer"] in body and runs["poem"] in body
    assert "the answer is 42" in body and "roses are red" in body
    assert "find the answer" in body and "write a poem" in body
    # Different teams: each one's step is there, missing on the other side.
    assert page.locator("table.compare-steps tr.differs").count() == 2  # type: ignore[attr-defined]
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)  # type: ignore[attr-defined]

    # On a phone both pages fit the screen's width (wide tables scroll inside their box).
    page.set_viewport_size({"width": 390, "height": 844})  # type: ignore[attr-defined]
    for path in (page.url, f"{url}/ui/runs"):  # type: ignore[attr-defined]
        page.goto(path)  # type: ignore[attr-defined]
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # type: ignore[attr-defined]
        assert overflow <= 1, f"{path} is {overflow}px wider than a phone"
    assert console_errors == []
