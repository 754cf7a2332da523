"""The server project of the observability tests: the conftest's teams plus one that calls a tool and
one whose model fails, and a helper that runs a team through the API to its end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import PROJECT, TOOLS, auth
from tests.conftest import write

EXTRA_MODELS = """
  tooly:
    backend: scripted
    replies: [{tool: lookup, args: {q: weather}, text: "let me look"}, "it is sunny"]
  broken:
    backend: scripted
    replies: [{error: unavailable}]
"""

EXTRA_TOOLS = '''

@tool
def lookup(q: str) -> str:
    """Look something up."""
    return "sunny"
'''

LOOKUP = """
name: lookup
agents:
  finder: {model: tooly, system: look it up, tools: [lookup]}
graph: {start: finder, edges: [{from: finder, to: end}]}
"""

BROKEN = """
name: broken
agents:
  solo: {model: broken, system: answer, temperature: 0.3}  # the request sets it: its spans say so
graph: {start: solo, edges: [{from: solo, to: end}]}
"""

WAIT_S = 60.0


def extend_project(project: Path, extra_models: str = "") -> Path:
    """Add the ``lookup`` and ``broken`` teams (and ``extra_models``) to the conftest's project."""
    head, rest = PROJECT.split("models:\n", 1)
    write(project / "edgecrew.yaml", head + "models:\n" + EXTRA_MODELS.lstrip("\n") + extra_models + rest)
    write(project / "tools.py", TOOLS + EXTRA_TOOLS)
    write(project / "teams" / "lookup.yaml", LOOKUP)
    write(project / "teams" / "broken.yaml", BROKEN)
    return project


def run_to_end(client: TestClient, keys: dict[str, str], team: str, task: str = "go", **headers: str) -> dict[str, Any]:
    """Start ``team`` over the API and wait for its ``run_finished`` event; returns the run."""
    started = client.post("/runs", json={"team": team, "task": task}, headers={**auth(keys["runs"]), **headers})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        events = client.get(f"/runs/{run_id}/events", headers=auth(keys["read"])).json()
        if any(e["type"] == "run_finished" for e in events):
            run: dict[str, Any] = client.get(f"/runs/{run_id}", headers=auth(keys["read"])).json()
            return run
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} of {team} did not finish within {WAIT_S:.0f} s")
