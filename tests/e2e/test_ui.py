"""Mission control in a real browser: Debian's Chromium driven by Playwright against the real server.

Signs in with an API key, starts a run of a three-agent team on the scripted model from the Teams
page, watches the timeline and graph move live over SSE, approves the risky tool call when it
comes, sees the run finish; edits a team spec into an invalid one and sees the problem in place;
opens a code version. Every page is screenshotted under the test's output folder, and each
screenshot is checked to be a real rendering (a PNG of the page's size, not one flat colour).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from edgecrew.store.keys import ApiKeyStore
from edgecrew.store.tasks import TaskStore
from tests.api.conftest import TOOLS
from tests.api.live import serve_in_thread
from tests.conftest import write
from tests.e2e.browser import chromium_page, needs_chromium
from tests.teams import CRITIC, PLANNER

pytestmark = needs_chromium

PROJECT = """
models:
  fake:
    backend: scripted
    replies_by_agent:
      planner: [{json: {steps: [check the build, ship it]}, delay: 1.0}]
      op: [{tool: deploy, args: {target: prod}, text: "the fix must ship", delay: 0.5}, {text: "shipped", delay: 0.5}]
      critic: [{json: {verdict: approve, notes: looks right}, delay: 1.0}]
plugins: [tools.py]
"""


RELEASE = (
    "name: release\nagents:\n"
    + PLANNER
    + "  op: {model: fake, system: ship it, tools: [deploy]}\n"
    + CRITIC
    + """\
graph:
  start: planner
  edges:
    - {from: planner, to: op}
    - {from: op, to: critic}
    - {from: critic, to: end}
"""
)

# Screenshots go to $EDGECREW_UI_SCREENSHOTS when set (CI keeps them), else to the test's tmp dir.
SCREENSHOTS = Path(os.environ["EDGECREW_UI_SCREENSHOTS"]) if os.environ.get("EDGECREW_UI_SCREENSHOTS") else None
CODE = 'def train(epochs: int = 3) -> float:\n    """Train and return the accuracy."""\n    return 0.91\n'


@pytest.fixture
def live(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "release.yaml", RELEASE)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    app = create_app()
    with serve_in_thread(app) as server:
        rt = app.state.rt
        key = ApiKeyStore(rt.store).create("browser", ("admin",))[1]
        tasks = TaskStore(rt.store, rt.settings.home / "tasks")
        task = tasks.create("Train a classifier", "Reach 0.9 accuracy", team="release")
        tasks.add_code(task.id, "train.py", CODE.encode(), author="coder")
        tasks.add_code(task.id, "train.py", CODE.replace("0.91", "0.93").encode(), author="coder")
        tasks.add_result(task.id, version=1, accuracy=0.91, loss=0.3, runtime_s=12.0, logs="epoch 1\nepoch 2\n")
        tasks.add_result(task.id, version=2, accuracy=0.93, loss=0.2, runtime_s=11.0, logs="epoch 1\n")
        yield server.url, key, task.id


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    with chromium_page() as page:
        yield page


def shot(page: object, folder: Path, name: str) -> Path:
    """Screenshot the whole page and check it is a real rendering."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)  # type: ignore[attr-defined]
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{target} is not a PNG"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 300 and height >= 200, f"{target} is {width}x{height}"
    assert len(data) > 8_000, f"{target} is only {len(data)} bytes: a blank page?"
    return target


def test_mission_control_end_to_end(live: tuple[str, str, str], browser_page: object, tmp_path: Path) -> None:
    url, key, task_id = live
    page = browser_page
    out = SCREENSHOTS if SCREENSHOTS else tmp_path / "screenshots"
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]

    # Signing in: a page asks for the key, a wrong key is refused, the right one opens the home page.
    page.goto(url + "/ui/teams")  # type: ignore[attr-defined]
    assert "/ui/login" in page.url  # type: ignore[attr-defined]
    shot(page, out, "01-login")
    page.fill("#key", "ec_not-a-real-key")  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("text=That key was not accepted")  # type: ignore[attr-defined]
    page.fill("#key", key)  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/teams$"))  # type: ignore[attr-defined]
    cookies = {c["name"]: c for c in page.context.cookies()}  # type: ignore[attr-defined]
    assert cookies["edgecrew_session"]["httpOnly"] is True
    assert key not in str(cookies)
    shot(page, out, "02-teams")

    # Start a run from the team's page and watch it move live.
    page.click("text=release")  # type: ignore[attr-defined]
    page.wait_for_selector("svg.graph")  # type: ignore[attr-defined]
    shot(page, out, "03-team")
    page.fill("#task", "Ship the hotfix")  # type: ignore[attr-defined]
    page.click("form[action$='/run'] button")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/ui/runs/r[0-9a-f]+$"))  # type: ignore[attr-defined]
    run_id = page.url.rsplit("/", 1)[1]  # type: ignore[attr-defined]
    # The planner's structured output arrives over SSE, shown readably with its raw JSON beside it.
    page.wait_for_selector("#timeline .ev-step_finished dl.obj")  # type: ignore[attr-defined]
    assert "check the build" in page.inner_text("#timeline")  # type: ignore[attr-defined]
    # The op agent asks for approval: the run waits, the graph highlights op as the current node.
    page.wait_for_selector("#timeline .ev-approval_requested button.ok")  # type: ignore[attr-defined]
    page.wait_for_selector("#graph g.node.current[data-node='op']")  # type: ignore[attr-defined]
    shot(page, out, "04-run-waiting")

    # The approvals inbox lists it with the agent's reason; approve it there.
    page.click("nav >> text=Approvals")  # type: ignore[attr-defined]
    page.wait_for_selector("text=the fix must ship")  # type: ignore[attr-defined]
    shot(page, out, "05-approvals")
    page.click(".approval button.ok")  # type: ignore[attr-defined]
    page.wait_for_selector("text=deploy approved")  # type: ignore[attr-defined]

    # Back on the run page: it finishes live, the critic's verdict shows as a badge, the graph's end
    # node is marked succeeded.
    page.goto(f"{url}/ui/runs/{run_id}")  # type: ignore[attr-defined]
    page.wait_for_selector("#run-status.status-succeeded", timeout=30_000)  # type: ignore[attr-defined]
    page.wait_for_selector("#graph g.node.end.ended-succeeded")  # type: ignore[attr-defined]
    page.wait_for_selector(".badge.verdict-approve")  # type: ignore[attr-defined]
    assert "deployed prod" in page.inner_text("#timeline")  # type: ignore[attr-defined]
    shot(page, out, "06-run-finished")

    # Edit a team spec into an invalid one: the problem shows in place with its line marked.
    page.goto(f"{url}/ui/teams/release")  # type: ignore[attr-defined]
    page.click("#spec > summary")  # type: ignore[attr-defined]  # the YAML editor is folded
    text = page.input_value("#yaml")  # type: ignore[attr-defined]
    page.fill("#yaml", text.replace("op: {model: fake", "op: {model: missing-model"))  # type: ignore[attr-defined]
    page.click("text=Validate")  # type: ignore[attr-defined]
    page.wait_for_selector("#validation .issues li")  # type: ignore[attr-defined]
    assert "unknown model 'missing-model'" in page.inner_text("#validation")  # type: ignore[attr-defined]
    assert page.locator("pre.numbered span.bad").count() == 1  # type: ignore[attr-defined]
    shot(page, out, "07-team-invalid")

    # A task: results charted over versions; open a code version (highlighted, with a copy button).
    page.goto(f"{url}/ui/tasks/{task_id}")  # type: ignore[attr-defined]
    assert page.locator("svg.chart").count() >= 3  # type: ignore[attr-defined]
    shot(page, out, "08-task")
    page.click("text=v2 · train.py")  # type: ignore[attr-defined]
    page.wait_for_selector(".highlight")  # type: ignore[attr-defined]
    assert "0.93" in page.inner_text(".highlight")  # type: ignore[attr-defined]
    page.click("button[data-copy]")  # type: ignore[attr-defined]
    page.wait_for_selector("button[data-copy]:has-text('Copied')")  # type: ignore[attr-defined]
    shot(page, out, "09-code")

    for name, path in (("10-home", "/"), ("11-models", "/ui/models"), ("12-metrics", "/ui/metrics")):
        page.goto(url + path)  # type: ignore[attr-defined]
        shot(page, out, name)
    assert page.locator("svg.chart").count() >= 1  # type: ignore[attr-defined]

    # Phone width: no page is wider than the screen (the navigation wraps, tables scroll in place).
    page.set_viewport_size({"width": 390, "height": 844})  # type: ignore[attr-defined]
    phone_pages = [
        "/",
        "/ui/runs",
        "/ui/approvals",
        "/ui/teams",
        "/ui/teams/release",
        "/ui/tasks",
        f"/ui/tasks/{task_id}",
        f"/ui/tasks/{task_id}/code/2",
        "/ui/models",
        "/ui/metrics",
    ]
    for path in [*phone_pages, f"/ui/runs/{run_id}"]:
        page.goto(url + path)  # type: ignore[attr-defined]
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # type: ignore[attr-defined]
        assert overflow <= 1, f"{path} is {overflow}px wider than a phone screen"
    shot(page, out, "13-run-phone")

    # Keyboard: Tab reaches the skip link first, then the navigation.
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.className") == "skip"  # type: ignore[attr-defined]

    assert not console_errors, console_errors
    saved = sorted(p.name for p in out.glob("*.png"))
    assert len(saved) == 13, saved
