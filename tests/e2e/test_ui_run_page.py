"""The run page as a trace, in a real browser (Debian's Chromium through Playwright, the real server).

A writer streams a long reply word by word (the scripted model's ``delay`` spreads it): its text must
grow on the page between two looks while the run goes. The critic sends the writer back once, so the
graph has a loop edge, which must lie inside the picture with its condition as a label. A running run
offers Cancel (with a confirmation) and no Resume; a cancelled one says so and its graph shows the
cancelled agent and an unreached end. The waterfall opens a step in the inspector (its prompt, model
calls and output), and "Run from here" starts a run that copies the outputs before the step and runs
only from it. Screenshots of the run page at 1440 and 390 px go to $EDGECREW_UI_SCREENSHOTS (the
README's docs/ui/ pictures come from there).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from edgecrew.store.keys import ApiKeyStore
from tests.api.live import serve_in_thread
from tests.conftest import write
from tests.e2e.browser import chromium_page, needs_chromium
from tests.e2e.test_ui import SCREENSHOTS, shot
from tests.teams import TRIO

pytestmark = needs_chromium

LONG = " ".join(f"word{i}" for i in range(60))

PROJECT = f"""
models:
  fake:
    backend: scripted
    record: {{record}}
    replies_by_agent:
      planner: [{{json: {{steps: [draft it, check it]}}, delay: 0.3}}]
      writer: [{{text: "{LONG}", delay: 9.0}}, {{text: "the second draft", delay: 0.3}}]
      critic: [{{json: {{verdict: revise, notes: too long}}, delay: 0.3}}, {{json: {{verdict: approve}}, delay: 0.3}}]
"""

SLOW = """
name: slow
agents:
  first: {model: fake, system: first}
  second: {model: fake, system: second}
graph:
  start: first
  edges:
    - {from: first, to: second}
    - {from: second, to: end}
"""


@pytest.fixture
def live(project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, Path]]:
    record = tmp_path / "calls.jsonl"
    project = PROJECT.replace("{record}", str(record))
    project = project.replace("replies_by_agent:\n", "replies_by_agent:\n      first: [{text: done, delay: 12.0}]\n")
    write(project_dir / "edgecrew.yaml", project)
    write(project_dir / "teams" / "trio.yaml", TRIO)
    write(project_dir / "teams" / "slow.yaml", SLOW)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    app = create_app()
    with serve_in_thread(app) as server:
        key = ApiKeyStore(app.state.rt.store).create("browser", ("admin",))[1]
        yield server.url, key, record


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with chromium_page(1440, 900) as tab:
        yield tab


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(url + "/ui/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$|.*/ui/.*"))


def start(page: Any, url: str, team: str, task: str) -> str:
    page.goto(f"{url}/ui/teams/{team}")
    page.fill("#task", task)
    page.click("form[action$='/run'] button")
    page.wait_for_url(re.compile(r".*/ui/runs/r[0-9a-f]+$"))
    return str(page.url).rsplit("/", 1)[1]


def calls_by_agent(record: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in record.read_text().splitlines():
        row = json.loads(line)
        if row["phase"] == "end":
            counts[row["agent"]] = counts.get(row["agent"], 0) + 1
    return counts


def assert_axis_over_bars(page: Any) -> None:
    """The waterfall's time axis spans the same x-range as the bars' track (within 2 px)."""
    axis, bars = page.evaluate(
        """() => ['.wf-axis .wf-track', '.wf-row .wf-track'].map(sel => {
          const r = document.querySelector(sel).getBoundingClientRect();
          return [r.left, r.right];
        })"""
    )
    assert abs(axis[0] - bars[0]) <= 2 and abs(axis[1] - bars[1]) <= 2, (axis, bars)


def assert_folds_show_their_marker(page: Any) -> None:
    """Folded sections (a visit in the timeline, a raw reply, Run again) show ▸ or ▾, at every width."""
    markers = page.evaluate(
        """() => [...document.querySelectorAll('#timeline summary, details.rerun > summary')]
          .map(el => getComputedStyle(el, '::before').content)"""
    )
    assert markers and all(m in ('"▸"', '"▾"') for m in markers), markers


def test_the_run_page_is_a_live_trace(live: tuple[str, str, Path], page: Any, tmp_path: Path) -> None:
    url, key, record = live
    out = SCREENSHOTS if SCREENSHOTS else tmp_path / "screenshots"
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, url, key)
    page.goto(f"{url}/ui/teams/trio")
    assert "verdict == 'revise' · at most 2×" in page.text_content("svg.graph")  # no run: the loop's maximum
    run_id = start(page, url, "trio", "Write a short note")

    # The writer's reply streams in: the text on the page grows between two looks, with a busy marker.
    live_text = page.locator("#live-text .live-text")
    page.wait_for_function(
        "() => { const el = document.querySelector('#live-text .live-text'); return el && el.textContent.length > 20 }"
    )
    first = live_text.inner_text()
    shot(page, out, "run-live-1440-a")
    page.wait_for_timeout(1500)
    second = live_text.inner_text()
    shot(page, out, "run-live-1440-b")
    assert len(second) > len(first) and second.startswith(first[:20]), (first, second)
    assert page.locator("#live .spinner").count() >= 1
    # A running run: Cancel, no Resume; the graph's running node is marked.
    assert page.locator("form[action$='/resume']").count() == 0
    assert page.locator("form[action$='/cancel'] button").count() == 1
    page.wait_for_selector("#graph g.node.current[data-node='writer']")

    # The run ends (the page reloads once); the loop edge and its label lie inside the SVG.
    page.wait_for_selector("#run-status.status-succeeded", timeout=40_000)
    outside = page.evaluate(
        """() => {
          const svg = document.querySelector('#graph svg.graph');
          const [, , w, h] = svg.getAttribute('viewBox').split(' ').map(Number);
          const bad = [];
          svg.querySelectorAll('path.edge, text.edge-label').forEach(el => {
            const b = el.getBBox();
            const out = b.x < -1 || b.y < -1 || b.x + b.width > w + 1 || b.y + b.height > h + 1;
            if (out) bad.push(el.outerHTML.slice(0, 80));
          });
          return bad;
        }"""
    )
    assert outside == [], outside
    assert "verdict == 'revise'" in page.inner_text("#graph")
    assert "1 of 2 left" in page.inner_text("#graph")  # the critic sent the writer back once

    # The summary and the waterfall: a row per step and per call; a row opens its step in the inspector.
    assert_axis_over_bars(page)
    summary = page.inner_text("#summary")
    assert "model calls" in summary and "fake" in summary
    assert page.locator(".wf-row.kind-step").count() == 5
    assert page.locator(".wf-row.kind-model").count() == 5
    page.locator(".wf-row.kind-step[data-step='v000.planner']").click()
    page.wait_for_selector("#inspector .inspector[data-step='v000.planner']")
    selected = page.locator(".wf-row.selected")  # the highlight follows the click
    assert selected.count() == 1 and selected.get_attribute("data-step") == "v000.planner"
    inspector = page.inner_text("#inspector")
    assert "Prompt and conversation" in inspector and "plan" in inspector and "draft it" in inspector
    assert "Model calls" in inspector
    shot(page, out, "run-finished-1440")

    # The timeline folds each visit: five step groups, no output shown twice in a row.
    assert page.locator("#timeline > li.step-group").count() == 5
    assert page.locator("#timeline details.raw").count() == 5  # raw replies are folded
    assert "visit 2" in page.inner_text("#tlh-v003-writer")  # the writer's second visit, not the run's 4th step
    assert_folds_show_their_marker(page)

    # Run from here: from the critic's first visit, the planner and writer outputs are copied.
    before = calls_by_agent(record)
    page.goto(f"{url}/ui/runs/{run_id}?step=v002.critic")
    page.click("#inspector details.from-here summary")
    page.click("#inspector details.from-here button")
    page.wait_for_url(re.compile(r".*/ui/runs/r[0-9a-f]+$"))
    again = str(page.url).rsplit("/", 1)[1]
    assert again != run_id
    page.wait_for_selector("#run-status.status-succeeded, #run-status.status-failed", timeout=40_000)
    assert f"Runs on from v002.critic of {run_id}" in page.inner_text("main")
    assert page.locator("text=the agent did not run again").count() == 2
    after = calls_by_agent(record)
    assert after.get("planner") == before.get("planner")  # copied, not asked again
    assert after.get("critic", 0) > before.get("critic", 0)  # the critic ran in the new run

    # Phone width: the finished run page fits the screen, the trace stacks under the graph.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/ui/runs/{run_id}")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the run page is {overflow}px wider than a phone screen"
    assert_axis_over_bars(page)
    assert_folds_show_their_marker(page)
    shot(page, out, "run-finished-390")
    # Tapping a step in the waterfall brings the inspector (below the trace on a phone) into view:
    # its top in the upper half of the screen, not a strip at the bottom.
    page.locator(".wf-row.kind-step[data-step='v002.critic']").click()
    page.wait_for_selector("#inspector .inspector[data-step='v002.critic']")
    page.wait_for_function(
        "() => { const r = document.querySelector('#inspector').getBoundingClientRect();"
        " return r.top >= 0 && r.top < window.innerHeight / 2 }",
        timeout=5_000,
    )
    assert not errors, errors


def test_cancel_asks_first_and_a_cancelled_run_looks_cancelled(
    live: tuple[str, str, Path], page: Any, tmp_path: Path
) -> None:
    url, key, _record = live
    out = SCREENSHOTS if SCREENSHOTS else tmp_path / "screenshots"
    sign_in(page, url, key)
    run_id = start(page, url, "slow", "Take your time")
    page.wait_for_selector("#graph g.node.current[data-node='first']")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, out, "run-live-390")
    page.set_viewport_size({"width": 1440, "height": 900})

    # Dismissing the confirmation keeps the run going.
    page.once("dialog", lambda d: d.dismiss())
    page.click("form[action$='/cancel'] button")
    page.wait_for_timeout(300)
    assert page.locator("#run-status.status-running").count() == 1

    page.once("dialog", lambda d: d.accept())
    page.click("form[action$='/cancel'] button")
    page.wait_for_selector("#run-status.status-cancelled", timeout=30_000)
    page.goto(f"{url}/ui/runs/{run_id}")
    assert page.locator("section.cancelled h2").inner_text() == "Cancelled"
    assert page.locator("section .err").count() == 0  # no red error card for a cancel
    # The graph: the agent that was running is cancelled, the one after it and the end were not reached.
    page.wait_for_selector("#graph g.node.state-cancelled[data-node='first']")
    page.wait_for_selector("#graph g.node.unreached[data-node='second']")
    page.wait_for_selector("#graph g.node.end.unreached")
    assert page.locator("#graph g.node.visited[data-node='first']").count() == 0
    assert page.locator("form[action$='/resume']").count() == 0
    assert page.locator("#feedback button").count() == 0  # no answer to rate
    shot(page, out, "run-cancelled-1440")
