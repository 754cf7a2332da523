"""Mission control on a phone (390x844) and a wide screen, in Debian's Chromium driven by Playwright.

Every page, with content in it (a run waiting for an approval, a finished run, a task with checks and
code), is checked for what hurts on a phone: something wider than the screen, or a control smaller
than a fingertip (44x44 px, WCAG 2.5.5). A link inside a sentence is exempt, as WCAG 2.5.8 exempts
inline links; a link that stands alone (in a table cell, a list, the navigation) is not. The menu
folds the navigation on a phone and opens to show it; on a wide screen the navigation is one bar.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecrew.app import create_app
from edgecrew.projects import ProjectService
from edgecrew.settings import reset_settings
from edgecrew.store.keys import ApiKeyStore
from edgecrew.store.tasks import TaskStore
from tests.api.conftest import TOOLS
from tests.api.live import serve_in_thread
from tests.conftest import write
from tests.e2e.browser import chromium, needs_chromium
from tests.e2e.test_ui import CODE, RELEASE

pytestmark = needs_chromium

PROJECT = """
models:
  fake:
    backend: scripted
    replies_by_agent:
      planner: [{json: {steps: [check the build, ship it]}}]
      op: [{tool: deploy, args: {target: prod}, text: "the fix must ship"}, {text: "shipped"}]
      critic: [{json: {verdict: approve, notes: looks right}}]
  quick:
    backend: scripted
    cycle: true
    replies: ["Release notes: the login bug is fixed."]
plugins: [tools.py]
"""
ECHO = """
name: echo
agents:
  writer: {model: quick, system: write it}
graph: {start: writer, edges: [{from: writer, to: end}]}
"""
PHONE = {"width": 390, "height": 844}
TARGET_PX = 44

# Visible controls under 44 px either way, as "tag 'text' WxH"; a checkbox or radio counts its label.
SMALL_TARGETS_JS = """
() => {
  const inSentence = (el) => {
    const block = el.closest("p, li, dd, blockquote, small");
    if (!block) return false;
    const copy = block.cloneNode(true);
    copy.querySelectorAll("a, button, code, time, .badge").forEach((n) => n.remove());
    return /[A-Za-z]{2,}/.test(copy.textContent);
  };
  const small = [];
  for (const el of document.querySelectorAll("a[href], button, input:not([type=hidden]), select, textarea, summary")) {
    if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
    const own = el.getBoundingClientRect();
    if (!own.width || !own.height || own.right <= 0 || own.bottom <= 0) continue;  // off-screen: the skip link
    if (el.tagName === "A" && inSentence(el)) continue;
    const label = (el.type === "checkbox" || el.type === "radio") ? el.closest("label") : null;
    const box = label ? label.getBoundingClientRect() : own;
    if (box.width < TARGET - 0.5 || box.height < TARGET - 0.5) {
      const text = (el.innerText || el.value || el.getAttribute("aria-label") || el.name || "").trim().slice(0, 40);
      small.push(`${el.tagName.toLowerCase()} '${text}' ${Math.round(box.width)}x${Math.round(box.height)}`);
    }
  }
  return small;
}
""".replace("TARGET", str(TARGET_PX))


@pytest.fixture
def site(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A live server with a run waiting for approval, a finished run, and a task with checks and code."""
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "release.yaml", RELEASE)
    write(project_dir / "teams" / "echo.yaml", ECHO)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    app = create_app()
    with serve_in_thread(app) as server:
        rt = app.state.rt
        key = ApiKeyStore(rt.store).create("phone", ("admin",))[1]
        tasks = TaskStore(rt.store, rt.settings.home / "tasks")
        checks = {"io": [{"input": "2 3", "expected": "5"}], "test": "assert True\n"}
        task = tasks.create("Add two numbers", "Read two integers, print their sum.", team="echo", checks=checks)
        tasks.add_code(task.id, "add.py", CODE.encode(), author="coder")
        tasks.add_result(task.id, version=1, accuracy=0.91, loss=0.3, runtime_s=12.0, logs="epoch 1\n")
        projects = ProjectService.of(rt)
        launch = projects.create("Launch", "Ship the box.").id
        (projects.files(launch) / "priorities.md").write_text("# Today\n\n" + "- a long priority line " * 20 + "\n")
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            finished = _start(api, "echo", "Plan the release notes")
            waiting = _start(api, "release", "Ship the hotfix")
            _wait(api, finished, lambda run: run["status"] == "succeeded")
            _wait(api, waiting, lambda run: run["status"] == "waiting_approval")
        yield {"url": server.url, "key": key, "task": task.id, "run": waiting, "finished": finished, "project": launch}


def _start(api: httpx.Client, team: str, task: str) -> str:
    started = api.post("/runs", json={"team": team, "task": task})
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]
    return run_id


def _wait(api: httpx.Client, run_id: str, done: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if done(api.get(f"/runs/{run_id}").json()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} did not reach the expected state: {api.get(f'/runs/{run_id}').text}")


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


def signed_in(browser: Any, site: dict[str, str], viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(site["url"] + "/ui/login")
    page.fill("#key", site["key"])
    page.click("button[type=submit]")
    page.wait_for_selector("details.menu")
    return page


def misfits(page: Any, path: str) -> list[str]:
    """What does not fit a phone on the page now: its overflow and its small touch targets."""
    problems = []
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        problems.append(f"{path} is {overflow}px wider than the screen")
    small = page.evaluate(SMALL_TARGETS_JS)
    if small:
        problems.append(f"{path}: touch targets under {TARGET_PX}x{TARGET_PX}px: {small}")
    return problems


def check_fits(page: Any, path: str) -> None:
    problems = misfits(page, path)
    assert not problems, problems


def test_every_page_fits_a_phone_with_finger_sized_targets(browser: Any, site: dict[str, str]) -> None:
    page = signed_in(browser, site, PHONE)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    paths = [
        "/",
        "/ui/runs",
        "/ui/approvals",
        "/ui/teams",
        "/ui/teams/release",
        "/ui/tasks",
        "/ui/tasks/new",
        f"/ui/tasks/{site['task']}",
        f"/ui/tasks/{site['task']}/code/1",
        "/ui/models",
        "/ui/metrics",
        "/ui/routines",
        "/ui/jobs",
        "/ui/alerts",
        "/ui/projects",
        f"/ui/projects/{site['project']}",
        f"/ui/projects/{site['project']}/files/priorities.md",
        "/ui/pilot",
        "/ui/chat",
        "/ui/cluster",
        "/ui/incidents",
        f"/ui/runs/{site['finished']}",
        f"/ui/runs/{site['run']}",
    ]
    paths += [f"/ui/compare?a={site['finished']}&b={site['run']}"]
    # Error pages are pages too: an unknown address, a run that does not exist, compare without runs.
    statuses = {"/ui/nothing/here": 404, "/ui/runs/rnope": 404, "/ui/compare": 400}
    problems = []  # every page's, so one failure lists them all
    for path in [*paths, *statuses]:
        response = page.goto(site["url"] + path)
        assert response.status == statuses.get(path, 200), (path, response.status)
        problems += misfits(page, path)
    # The team's folded YAML editor, opened, fits too.
    page.goto(site["url"] + "/ui/teams/release")
    page.click("#spec > summary")
    page.wait_for_selector("#yaml", state="visible")
    problems += misfits(page, "/ui/teams/release (spec open)")
    assert not problems, "\n".join(problems)
    # An error page's own status is the one console error it may log.
    own_status = tuple(f"{site['url']}{p}: Failed to load resource" for p in statuses)
    errors = [e for e in errors if not e.startswith(own_status)]
    assert not errors, errors


def test_the_menu_folds_the_navigation_on_a_phone(browser: Any, site: dict[str, str]) -> None:
    page = signed_in(browser, site, PHONE)
    page.goto(site["url"] + "/ui/runs")
    header = page.locator("header.top").bounding_box()
    assert header["height"] <= 64, f"the header is {header['height']}px high on a phone: it should be one row"
    assert not page.locator("nav a", has_text="Approvals").is_visible()
    page.click("details.menu > summary")
    links = page.locator("nav[aria-label=main] a")
    assert links.count() == 15
    for i in range(links.count()):
        link = links.nth(i)
        assert link.is_visible(), link.inner_text()
        box = link.bounding_box()
        assert box["height"] >= TARGET_PX and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1
    assert page.locator("nav a[aria-current=page]").inner_text() == "Runs"
    check_fits(page, "/ui/runs (menu open)")
    page.keyboard.press("Escape")
    assert not page.locator("nav a", has_text="Approvals").is_visible()
    page.click("details.menu > summary")
    page.click("nav a:has-text('Approvals')")
    page.wait_for_url("**/ui/approvals")


def test_the_navigation_is_one_bar_on_a_wide_screen(browser: Any, site: dict[str, str]) -> None:
    page = signed_in(browser, site, {"width": 1440, "height": 900})
    assert not page.locator("details.menu > summary").is_visible()
    tops = {round(page.locator("nav a").nth(i).bounding_box()["y"]) for i in range(page.locator("nav a").count())}
    assert len(tops) == 1, f"the navigation wraps to {len(tops)} rows at 1440px"
    assert page.locator("header.top").bounding_box()["height"] <= 64


def test_a_wide_table_shows_that_it_scrolls(browser: Any, site: dict[str, str]) -> None:
    page = signed_in(browser, site, PHONE)
    page.goto(site["url"] + "/ui/runs")
    table = page.locator(".scroll").first
    assert table.evaluate("el => el.scrollWidth > el.clientWidth"), "the runs table fits a phone: nothing to check"
    assert "overflows" in (table.get_attribute("class") or "")
    hint = table.evaluate("el => getComputedStyle(el, '::before').content")
    assert "scroll" in hint
    shadows = table.evaluate("el => getComputedStyle(el).backgroundImage")
    assert shadows.count("gradient") == 4


def test_the_run_graph_shows_that_it_scrolls(browser: Any, site: dict[str, str]) -> None:
    """A phone draws the team graph at full size (readable labels), so it scrolls, and says so."""
    page = signed_in(browser, site, PHONE)
    page.goto(f"{site['url']}/ui/runs/{site['run']}")
    graph = page.locator("#graph")
    assert graph.evaluate("el => el.scrollWidth > el.clientWidth"), "the graph fits a phone: nothing to check"
    page.wait_for_function("() => document.querySelector('#graph').classList.contains('overflows')")
    assert "scroll sideways" in graph.evaluate("el => getComputedStyle(el, '::before').content")
    graph.evaluate("el => { el.scrollLeft = el.scrollWidth; el.dispatchEvent(new Event('scroll')); }")
    assert "scroll back" in graph.evaluate("el => getComputedStyle(el, '::before').content")


def test_metrics_chart_run_outcomes_per_day(browser: Any, site: dict[str, str]) -> None:
    page = signed_in(browser, site, PHONE)
    page.goto(site["url"] + "/ui/metrics")
    chart = page.locator("svg.chart.stacked")
    assert chart.count() == 1
    assert page.locator("svg.chart.stacked rect.seg-succeeded").count() >= 1
    assert "succeeded 1" in page.inner_text("ul.legend")
    box = chart.bounding_box()
    assert box["width"] <= PHONE["width"]
    # Day labels stay readable on a phone (the team graph's were 7 px high).
    label = chart.locator("text.day").last.bounding_box()
    assert label["height"] >= 9, label


def test_new_task_form_in_the_browser(browser: Any, site: dict[str, str]) -> None:
    page = signed_in(browser, site, PHONE)
    page.goto(site["url"] + "/ui/tasks")
    page.click("h1 a.button:has-text('New task')")
    page.fill("#title", "Reverse a string")
    page.fill("#description", "Print the input reversed.")
    page.fill("#checks", "io: [{input: abc}]")
    page.click("button:has-text('Create task')")
    page.wait_for_selector("#problems")
    assert "'expected' is missing" in page.inner_text("#problems")
    assert page.input_value("#title") == "Reverse a string"
    check_fits(page, "/ui/tasks (form with problems)")
    page.fill("#checks", "io: [{input: abc, expected: cba}]")
    page.select_option("#team", "echo")
    page.click("button:has-text('Create task')")
    page.wait_for_url("**/ui/tasks/t*")
    assert "Reverse a string" in page.inner_text("h1")
