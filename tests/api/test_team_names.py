"""Network callers name teams; they can never make the server read a YAML file of their choosing."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import ECHO, auth
from tests.conftest import write


def test_a_path_is_not_a_team_name(client: TestClient, keys: dict[str, str], tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere" / "evil.yaml", ECHO.replace("name: echo", "name: evil"))
    for team in (str(outside), "../elsewhere/evil.yaml", "teams/echo.yaml"):
        r = client.post("/runs", json={"team": team, "task": "hi"}, headers=auth(keys["runs"]))
        assert r.status_code == 404, (team, r.text)
        assert "no team" in r.json()["detail"]
    assert client.app.state.rt.store.count_runs() == 0  # type: ignore[attr-defined]
    r = client.get("/agents/teams%2Fecho.yaml/solo", headers=auth(keys["read"]))
    assert r.status_code == 404
    ok = client.post("/runs", json={"team": "echo", "task": "hi"}, headers=auth(keys["runs"]))
    assert ok.status_code == 201


def test_a_team_file_written_after_the_server_started_is_run_and_listed(
    client: TestClient, keys: dict[str, str], server_project: Path
) -> None:
    """The project's teams and agent library are read again when their files change (they were read once,
    at the start: POST /runs answered 404 for a team `edgecrew teams list` showed)."""
    headers = auth(keys["admin"])
    write(server_project / "agents" / "brief.yaml", "name: brief\nmodel: fake\nsystem: answer in one line\n")
    later = ECHO.replace("name: echo", "name: later").replace("{model: fake, system: answer briefly}", "{use: brief}")
    write(server_project / "teams" / "later.yaml", later)
    assert "later" in [t["name"] for t in client.get("/teams", headers=headers).json()]
    r = client.post("/runs", json={"team": "later", "task": "hi"}, headers=headers)
    assert r.status_code == 201, r.text
    # a team file removed is gone; a broken edgecrew.yaml leaves what was read (validate says what is wrong)
    (server_project / "teams" / "later.yaml").unlink()
    assert client.post("/runs", json={"team": "later", "task": "hi"}, headers=headers).status_code == 404
    (server_project / "edgecrew.yaml").write_text("models: [broken\n")
    assert client.post("/runs", json={"team": "echo", "task": "hi"}, headers=headers).status_code == 201
