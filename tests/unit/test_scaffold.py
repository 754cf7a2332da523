"""`edgecrew init`'s example team on the engine's fakes with the real file tools: it must succeed on a model
that never calls a tool itself, as the embedded 135M model often fails to (it looped on files.write)."""

from __future__ import annotations

from pathlib import Path

from edgecrew.cli.scaffold import create_project
from edgecrew.engine.fakes import FakeTurnIO, FakeTurnRunner
from edgecrew.specs.loader import load_team
from edgecrew.tools.builtins import builtin_registry


async def test_the_example_team_saves_the_summary_without_a_model_tool_call(tmp_path: Path) -> None:
    create_project(tmp_path / "project")
    team = load_team(tmp_path / "project" / "teams" / "example.yaml")
    summary = "Edge AI keeps data local and answers without a network."
    replies = {"researcher": [{"json": {"points": ["Data stays local."]}}], "summarizer": [summary]}
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    runner = FakeTurnRunner(team, FakeTurnIO(replies, builtin_registry(), workspace=workspace))
    result = await runner.run("Summarize why edge AI matters")
    assert result.ok, result.error
    assert runner.path == ["researcher", "summarizer", "save"]
    assert result.output == {"text": summary}  # the run's answer is the summary, not the tool's receipt
    assert (workspace / "notes.md").read_text(encoding="utf-8") == summary
    assert [m.agent for m in runner.io.model_calls] == ["researcher", "summarizer"]  # saving took no model call


def test_the_routines_say_which_timezone_their_cron_times_are_in(tmp_path: Path) -> None:
    """Before: "30 7 * * 1-5" with no word that it meant 7:30 UTC, which is not 7:30 on most people's clocks."""
    import yaml

    from edgecrew.specs.project import load_project

    create_project(tmp_path / "project")
    text = (tmp_path / "project" / "edgecrew.yaml").read_text(encoding="utf-8")
    written = yaml.safe_load(text)["routines"]
    assert len(written) == 5 and all(r["timezone"] == "UTC" for r in written.values()), written
    assert "# Cron times are read in each routine's `timezone`" in text and "e.g. Europe/Berlin" in text
    routines = load_project(tmp_path / "project").routines
    assert sorted(routines) == sorted(written) and {r.timezone for r in routines.values()} == {"UTC"}
    assert routines["crew-morning"].cron == "30 7 * * 1-5" and not routines["crew-morning"].enabled
