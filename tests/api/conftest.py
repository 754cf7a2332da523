"""The app in-process (FastAPI TestClient) over a project whose team runs on the scripted model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgecrew.app import create_app
from edgecrew.settings import reset_settings
from edgecrew.store.keys import SCOPES, ApiKeyStore
from tests.conftest import write

PROJECT = """
models:
  fake:
    backend: scripted
    replies: ["the answer is 42"]
  gated:
    backend: scripted
    replies: [{tool: deploy, args: {target: prod}, text: "the fix must ship"}, "shipped"]
plugins: [tools.py]
"""

TOOLS = """
from edgecrew import tool

@tool(risk="risky")
def deploy(target: str) -> str:
    \"\"\"Deploy to a target.\"\"\"
    return "deployed " + target
"""

ECHO = """
name: echo
agents:
  solo: {model: fake, system: answer briefly}
graph: {start: solo, edges: [{from: solo, to: end}]}
"""

SHIP = """
name: ship
agents:
  op: {model: gated, system: ship it, tools: [deploy]}
graph: {start: op, edges: [{from: op, to: end}]}
"""


@pytest.fixture
def server_project(project_dir: Path) -> Path:
    write(project_dir / "edgecrew.yaml", PROJECT)
    write(project_dir / "tools.py", TOOLS)
    write(project_dir / "teams" / "echo.yaml", ECHO)
    write(project_dir / "teams" / "ship.yaml", SHIP)
    return project_dir


@pytest.fixture
def client(server_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("EDGECREW_RATE_LIMIT_PER_MINUTE", "100000")
    reset_settings()
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def keys(client: TestClient) -> dict[str, str]:
    """One key per scope, by scope name (``admin`` has all)."""
    store = ApiKeyStore(client.app.state.rt.store)  # type: ignore[attr-defined]
    return {scope: store.create(f"test-{scope}", (scope,))[1] for scope in SCOPES}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
