"""Smoke tests of the benchmarks (the engine's of issue 19, executions of issue 15): each one's ``--quick
--json`` run ends well and says what it measured. Figures are never asserted (speed targets live in
bench/README.md); these only keep the scripts from rotting. Each starts DBOS or sandboxes in child
processes, so they are slow-marked, and integration-marked: the fast tier starts no DBOS at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import pg

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _quick(script: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_concurrency_quick_runs_both_engines_without_failures() -> None:
    got = _quick("concurrency.py")
    assert [r["concurrent"] for r in got["results"]] == [1, 5]
    for row in got["results"]:
        for engine in ("edgecrew", "langgraph"):
            assert row[engine]["failed"] == 0
            assert row[engine]["steps"] == 3 * row[engine]["runs"]
        assert row["ratio"]["runs_per_s"] > 0


def test_footprint_quick_reads_the_cli_the_server_and_the_anchors() -> None:
    got = _quick("footprint.py")["results"]
    assert got["edgecrew_cli_scripted_peak_mib"] > got["bare_python_mib"] > 0
    assert got["serve"]["idle"]["VmRSS"] > 0 and got["fastapi_idle"]["stages"]["idle"]["VmRSS"] > 0
    assert got["langgraph_plain"]["peak_mib"] > 0


@pytest.mark.real_model
def test_startup_quick_reaches_the_first_token_and_ready() -> None:
    got = _quick("startup.py")["results"]
    assert 0 < got["run"]["run_created"] < got["run"]["first token"] < got["run"]["exit"]
    assert got["serve"]["/ready"] >= got["serve"]["/health"] > 0
    assert "durable.launch (DBOS)" in got["split"]


def test_executions_quick_runs_versions_in_the_sandbox_and_the_anchor() -> None:
    got = _quick("executions.py")
    assert got["rounds"] == 2 and got["tier"] in ("bwrap", "landlock", "rlimits")
    assert got["startup"]["sandboxed_ms"] > 0 and got["startup"]["plain_ms"] > 0
    assert set(got["executions"]) == {
        f"{name}_per_min{kind}" for name in ("edgecrew", "plain") for kind in ("", "_parallel")
    }
    assert all(rate > 0 for rate in got["executions"].values())


@pytest.mark.skipif(not pg.available(), reason="needs the Debian postgresql server binaries")
def test_cluster_quick_measures_runs_per_minute_and_the_failover() -> None:
    got = _quick("cluster.py")
    assert got["repeats"] == 1 and got["ratio_to_1"]["1"] == 1.0
    for n in ("1", "2", "3"):
        assert got["runs_per_minute"][n] > 0 and len(got["runs_per_minute_rounds"][n]) == 1
    assert got["kill_to_resume_s"] > 0 and got["kill_to_resume_rounds"] == [got["kill_to_resume_s"]]
