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
