"""The chat page in a real browser: Debian's Chromium driven by Playwright against the real server.

Signs in, starts a chat with a team on a scripted model whose replies come word by word across a
few seconds, sends a message and watches the reply grow on the page while it is written (the text
travels from the model through the engine's LiveText and the page's SSE stream), then sees the stored
turn once the run ends. A second message's run carries the first exchange in its task; a reload shows
both turns. On a phone (390 px) nothing is wider than the screen and every control is finger sized.
No page logs a console error.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from edgecrew.store.keys import ApiKeyStore
from tests.api.conftest import SHIP, TOOLS
from tests.api.live import serve_in_thread
from tests.conftest import write
from tests.e2e.browser import chromium_page, needs_chromium
from tests.e2e.test_ui_phone import PHONE, misfits

pytestmark = needs_chromium
SCREENSHOTS = Path(os.environ["EDGECREW_UI_SCREENSHOTS"]) if os.environ.get("EDGECREW_UI_SCREENSHOTS") else None

REPLY = "Rex is a good dog who likes long walks in the park and naps in the sun all afternoon"
# The reply comes word by word across its delay (ScriptedModel.stream), so the page sees it grow. Every
# run gets the same one: the scripted model picks replies by step, and each message is a run of its own.
PROJECT = f"""
models:
  chatty:
    backend: scripted
    replies: [{{text: "{REPLY}", delay: 6}}]
  gated:
    backend: scripted
    replies: [{{tool: deploy, args: {{target: prod}}, text: "the fix must ship"}}, "shipped"]
plugins: [tools.py]
"""
PAL = """
name: pal
agents:
  buddy: {model: chatty, system: chat with the user}
graph: {start: buddy, edges: [{from: buddy, to: end}]}
"""


@pytest.fixture
def site(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "pal.yaml", PAL)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "ship.yaml", SHIP)
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")
    reset_settings()
    app = create_app()
    with serve_in_thread(app) as server:
        key = ApiKeyStore(app.state.rt.store).create("chat-browser", ("admin",))[1]
        yield {"url": server.url, "key": key}


@pytest.fixture
def page(site: dict[str, str]) -> Iterator[Any]:
    with chromium_page() as tab:
        yield tab


def _sign_in(page: Any, site: dict[str, str], path: str) -> None:
    page.goto(site["url"] + path)
    assert "/ui/login" in page.url
    page.fill("#key", site["key"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(".*" + re.escape(path) + "$"))


def _send(page: Any, text: str) -> str:
    """Send ``text`` from the session's page; returns the id of the run that answers it."""
    page.fill("#content", text)
    page.click("form.chat-form button")
    page.wait_for_selector("li.turn.pending")
    href: str | None = page.get_attribute("li.turn.pending a[href^='/ui/runs/']", "href")
    assert href is not None
    return href.rsplit("/", 1)[1]


def _watch_it_grow(page: Any) -> None:
    """The reply shows while it is written, and is longer a moment later."""
    page.wait_for_selector("#reply .writing")
    before = page.inner_text("#reply")
    page.wait_for_timeout(600)
    after = page.inner_text("#reply")
    assert len(after) > len(before) and after.startswith(before.rstrip()), (before, after)


def _stored_answers(page: Any) -> list[str]:
    answers: list[str] = page.locator("li.turn.assistant:not(.pending) .content").all_inner_texts()
    return [a.strip() for a in answers]


def test_a_chat_in_the_browser_streams_its_reply_and_keeps_its_turns(site: dict[str, str], page: Any) -> None:
    url = site["url"]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)

    _sign_in(page, site, "/ui/chat")
    assert "No chats yet" in page.inner_text("main")

    # Start a session with the team: its page opens, empty, with the message form.
    page.select_option("select[name=team]", "pal")
    page.click("form[action='/ui/chat'] button")
    page.wait_for_url(re.compile(r".*/ui/chat/s[0-9a-f]+$"))
    session_id = page.url.rsplit("/", 1)[1]
    assert "pal" in page.inner_text("h1")

    # The first message: the reply grows on the page, then the stored turn replaces it.
    first_run = _send(page, "My dog is Rex.")
    _watch_it_grow(page)
    page.wait_for_selector("li.turn.assistant:not(.pending)", timeout=30_000)
    assert _stored_answers(page) == [REPLY]
    assert page.locator("li.turn.pending").count() == 0
    assert page.is_enabled("#content")

    # The second message: the first turn stays on the page, and the run's task carries it.
    second_run = _send(page, "What is my dog called?")
    assert second_run != first_run
    assert page.locator("li.turn.user .content").all_inner_texts()[0].strip() == "My dog is Rex."
    _watch_it_grow(page)
    page.wait_for_function("document.querySelectorAll('li.turn.assistant:not(.pending)').length == 2", timeout=30_000)
    assert _stored_answers(page) == [REPLY, REPLY]

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {site['key']}"}, timeout=30) as api:
        run = api.get(f"/runs/{second_run}").json()
        assert f"user: My dog is Rex.\nassistant: {REPLY}" in run["task"], run["task"]
        assert run["trigger"] == {"kind": "chat", "session": session_id, "turn": 2}
        turns = api.get(f"/sessions/{session_id}").json()["turns"]
        assert [t["content"] for t in turns] == ["My dog is Rex.", REPLY, "What is my dog called?", REPLY]
        assert [t["run_id"] for t in turns] == [first_run, first_run, second_run, second_run]

    # A reload shows both turns, in order, and the session in the list.
    page.reload()
    assert [t.strip() for t in page.locator("li.turn .content").all_inner_texts()] == [
        "My dog is Rex.", REPLY, "What is my dog called?", REPLY
    ]  # fmt: skip
    page.goto(url + "/ui/chat")
    assert page.locator(f"a[href='/ui/chat/{session_id}']").count() == 1
    assert "My dog is Rex." in page.inner_text("main")

    # A phone: the list and the session fit the screen with finger-sized targets.
    page.set_viewport_size(PHONE)
    problems: list[str] = []
    for path in ("/ui/chat", f"/ui/chat/{session_id}"):
        response = page.goto(url + path)
        assert response is not None and response.status == 200, path
        problems += misfits(page, path)
    # A long message with a link and several lines, sent on the phone: it wraps, while the reply is
    # written and once it is stored, and its lines stay lines.
    long = "See https://example.com/" + "a-very-long-path-segment/" * 8 + "\nand then\nthe second line."
    _send(page, long)
    page.wait_for_selector("#reply .writing")
    problems += misfits(page, f"/ui/chat/{session_id} (a reply being written)")
    page.wait_for_function("document.querySelectorAll('li.turn.assistant:not(.pending)').length == 3", timeout=30_000)
    problems += misfits(page, f"/ui/chat/{session_id} (three turns)")
    assert not problems, "\n".join(problems)
    shown = page.locator("li.turn.user .content").last
    assert shown.inner_text() == long
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {site['key']}"}, timeout=30) as api:
        stored = api.get(f"/sessions/{session_id}").json()["turns"][-2]["content"]
        assert stored == long, "a form posts its lines with CRLF: the turn is stored as the API would store it"
    assert shown.bounding_box()["height"] > 3 * 16, "the message's lines ran into one"
    if SCREENSHOTS is not None:
        page.screenshot(path=str(SCREENSHOTS / "chat-phone.png"), full_page=True)
    assert not errors, errors


def test_a_chat_waiting_for_an_approval_says_so_and_stays_put(site: dict[str, str], page: Any) -> None:
    """The answer's run waits for an approval: the page says where to give it, without reloading itself."""
    with httpx.Client(base_url=site["url"], headers={"Authorization": f"Bearer {site['key']}"}, timeout=30) as api:
        session_id = api.post("/sessions", json={"team": "ship"}).json()["id"]
        said = api.post(f"/sessions/{session_id}/messages", params={"wait": 0}, json={"content": "Ship the fix."})
        assert said.status_code == 202, said.text
        run_id = said.json()["run_id"]
        deadline = time.monotonic() + 30
        while api.get(f"/runs/{run_id}").json()["status"] != "waiting_approval":
            assert time.monotonic() < deadline, "the run never asked for its approval"
            time.sleep(0.1)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
    _sign_in(page, site, f"/ui/chat/{session_id}")
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    page.wait_for_timeout(2500)
    assert loads == [], f"the page reloaded itself {len(loads)} times while the run waited for an approval"
    text = page.inner_text("li.turn.assistant")
    assert "approval" in text, text
    assert page.locator("li.turn.assistant a[href='/ui/approvals']").count() == 1
    assert page.is_disabled("#content")
    page.set_viewport_size(PHONE)
    problems = misfits(page, f"/ui/chat/{session_id} (waiting for an approval)")
    assert not problems, problems
    if SCREENSHOTS is not None:
        page.screenshot(path=str(SCREENSHOTS / "chat-approval-phone.png"), full_page=True)
    assert not errors, errors
