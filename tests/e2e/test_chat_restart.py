"""Acceptance: a chat session survives a server restart and remembers the earlier turns, on SQLite (a
temp home) and on a real Postgres (a fresh database on a throwaway server).

The real `edgecrew serve` process over HTTP only: a session with a team on a scripted model, two turns,
a kill -9 of the server, a new server on the same home, and a third turn that needs the first turn's
fact: the third run's task (its context) carries it, and the session's turns are all there, in order.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.live import ServerProcess, cli_env, create_key
from tests.conftest import write
from tests.e2e.databases import database, pg_server, rows, url_of

__all__ = ["database", "pg_server"]  # fixtures

PROJECT = """
models:
  pal-model:
    backend: scripted
    record: calls.jsonl
    replies: ["noted"]
"""
PAL = """
name: pal
agents:
  buddy: {model: pal-model, system: chat with the user}
graph: {start: buddy, edges: [{from: buddy, to: end}]}
"""


def _say(http: httpx.Client, session: str, text: str) -> dict[str, str]:
    said = http.post(f"/sessions/{session}/messages", json={"content": text})
    assert said.status_code == 200, said.text
    body: dict[str, str] = said.json()
    assert body["status"] == "answered", body
    return body


def test_a_chat_session_survives_a_server_restart(
    project_dir: Path, edgecrew_home: Path, database: dict[str, str]
) -> None:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "teams" / "pal.yaml", PAL)
    env = cli_env(project_dir, edgecrew_home, EDGECREW_MEMORY_EMBEDDER="hashing", **database)
    headers = {"Authorization": f"Bearer {create_key(env, 'chat', 'admin')}"}

    server = ServerProcess(project_dir, env).start()
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            if "/sessions" not in http.get("/openapi.json").json()["paths"]:
                pytest.fail("the server has no /sessions routes: app.py must include api.routers.sessions")
            made = http.post("/sessions", json={"team": "pal", "title": "restart"})
            assert made.status_code == 201, made.text
            session = made.json()["id"]
            _say(http, session, "My locker number is 4417.")
            _say(http, session, "I also like tea.")
    finally:
        server.kill()  # kill -9: no shutdown of any kind

    again = ServerProcess(project_dir, env).start()
    try:
        with httpx.Client(base_url=again.url, headers=headers, timeout=60) as http:
            third = _say(http, session, "What is my locker number?")
            task = http.get(f"/runs/{third['run_id']}").json()["task"]
            assert "user: My locker number is 4417." in task and "user: I also like tea." in task
            assert task.endswith("Reply to the user's latest message: What is my locker number?")
            turns = http.get(f"/sessions/{session}").json()["turns"]
            assert [(t["seq"], t["role"], t["content"]) for t in turns] == [
                (0, "user", "My locker number is 4417."),
                (1, "assistant", "noted"),
                (2, "user", "I also like tea."),
                (3, "assistant", "noted"),
                (4, "user", "What is my locker number?"),
                (5, "assistant", "noted"),
            ]
            listed = http.get("/sessions").json()
            assert listed["items"][0]["id"] == session and listed["items"][0]["title"] == "restart"
        stored = rows(
            url_of(env, edgecrew_home), "SELECT COUNT(*) AS n FROM chat_turns WHERE session_id = :s", s=session
        )
        assert stored == [{"n": 6}]  # in the database the parameter named (Postgres: not a file in the home)
    finally:
        again.stop()
