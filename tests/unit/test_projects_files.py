"""A project's files persist across runs and restarts: okr.json written by Monday's run (through the
run workspace's project/ link) is read by Tuesday's run in a new runtime, while each run's other
files stay its own. Also: the migration adds the projects' tables and keeps every existing row."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from edgecrew.bootstrap import bootstrap
from edgecrew.errors import ConflictError, ToolError, UserError
from edgecrew.projects import ProjectService, link_project_files, project_files
from edgecrew.settings import Settings
from edgecrew.store import repo
from edgecrew.tools.base import ToolContext
from edgecrew.tools.filepolicy import FilePolicy

REVISION = "0013"


@pytest.fixture(autouse=True)
def _head_at_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    if repo.HEAD < REVISION:
        monkeypatch.setattr(repo, "HEAD", REVISION)


def test_project_files_survive_runs_and_a_restart(edgecrew_home: Path) -> None:
    monday = bootstrap(Settings())
    projects = ProjectService.of(monday)
    assert ProjectService.of(monday) is projects  # one per runtime
    launch = projects.create("Launch")
    monday.store.create_run("r-mon", "crew", "align", {}, str(monday.workspace("r-mon")))
    projects.attach_run("r-mon", "Launch", monday.workspace("r-mon"))
    (monday.workspace("r-mon") / "project" / "okr.json").write_text('{"objective": "ship"}')
    (monday.workspace("r-mon") / "scratch.md").write_text("monday's own notes")
    monday.store.engine.dispose()

    tuesday = bootstrap(Settings())  # a new process: a new runtime, store engine and service
    again = ProjectService.of(tuesday)
    assert again is not projects
    again.attach_run("r-tue", launch.id, tuesday.workspace("r-tue"))
    seen = tuesday.workspace("r-tue") / "project" / "okr.json"
    assert seen.read_text() == '{"objective": "ship"}'
    assert not (tuesday.workspace("r-tue") / "scratch.md").exists()  # a run's scratch space is private
    assert (
        again.files("Launch")
        == project_files(edgecrew_home, launch.id)
        == edgecrew_home / "projects" / launch.id / "files"
    )
    assert again.mounts("r-tue") == (("project", again.files(launch.id)),)
    assert again.mounts("r-other") == ()
    assert again.project_of_run("r-mon") == launch and again.runs(launch.id) == ["r-tue", "r-mon"]
    assert again.agent_of_run("r-mon", "planner") == "crew/planner"


def test_attaching_is_idempotent_and_never_replaces_a_workspace_file(tmp_path: Path) -> None:
    rt = bootstrap(Settings())
    projects = ProjectService.of(rt)
    a, b = projects.create("A"), projects.create("B")
    ws = tmp_path / "ws"
    projects.attach_run("r1", a.id, ws)
    projects.attach_run("r1", "A", ws)  # a resumed run attaches again
    with pytest.raises(ConflictError, match="already works in project 'A'"):
        projects.attach_run("r1", b.id, ws)
    taken = tmp_path / "taken"
    (taken / "project").mkdir(parents=True)
    with pytest.raises(ConflictError, match="already exists in the run's workspace"):
        link_project_files(taken, rt.settings.home, b.id)
    with pytest.raises(ConflictError, match="already links to"):
        link_project_files(ws, rt.settings.home, b.id)
    with pytest.raises(UserError, match="not a project id"):
        project_files(rt.settings.home, "../../etc")


def test_the_migration_adds_the_tables_and_keeps_every_row(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    sa.event.listen(engine, "connect", repo._sqlite_pragmas)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(repo.__file__).parent / "migrations"))
    before = ScriptDirectory.from_config(cfg).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, before)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (id, team, task, status, spec, created_at, updated_at) "
            "VALUES ('r1', 't', 'x', 'succeeded', '{}', 1, 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO events (run_id, key, type, data, created_at) VALUES ('r1', 'k', 'run_created', '{}', 1)"
        )
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, name, kind, needs, priority, tags, state, created_at, updated_at, sandbox) "
            "VALUES ('j1', 'n', 'command', '{}', 50, '[]', 'queued', 1, 1, 0)"
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, REVISION)
    with engine.connect() as conn:
        counts = [conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in ("runs", "events", "jobs")]
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == REVISION
    assert counts == [1, 1, 1]
    store = repo.RunStore(engine)
    assert store.get_run("r1").status.value == "succeeded"
    service = ProjectService(store, tmp_path / "home")
    p = service.create("Kept")
    service.graph.add_fact("project", p.id, "a", "is", "b", added_by="t")
    with engine.begin() as conn:  # and back down: the projects' tables go, the rest stays
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, before)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 1
    assert "projects" not in tables and "kg_edges" not in tables and "runs" in tables


WIRED = "mounts" in ToolContext.__dataclass_fields__


@pytest.mark.skipif(not WIRED, reason="ToolContext.mounts and the files tools' mount support are not wired yet")
async def test_file_tools_reach_the_project_folder_under_the_agents_policy(tmp_path: Path) -> None:
    from edgecrew.tools.builtins import builtin_registry

    rt = bootstrap(Settings())
    projects = ProjectService.of(rt)
    p = projects.create("Launch")
    workspace = rt.workspace("r1")
    projects.attach_run("r1", p.id, workspace)
    tools = builtin_registry()
    policy = FilePolicy(read=("**",), write=("project/okr.json", "notes/*"))
    ctx = ToolContext(run_id="r1", agent="planner", workspace=workspace, files=policy, mounts=projects.mounts("r1"))

    async def call(tool: str, **arguments: Any) -> Any:
        return await tools.get(tool).call(arguments, ctx)

    await call("files.write", path="project/okr.json", content='{"objective": "ship"}')
    await call("files.write", path="notes/today.md", content="scratch")
    assert (projects.files(p.id) / "okr.json").read_text() == '{"objective": "ship"}'
    assert await call("files.read", path="./project/okr.json") == '{"objective": "ship"}'
    assert await call("files.list") == ["notes/today.md", "project/okr.json"]
    assert await call("files.list", path="project") == ["project/okr.json"]
    with pytest.raises(ToolError, match=r"may not write 'project/plan\.md'; allowed to write: project/okr\.json"):
        await call("files.write", path="project/plan.md", content="x")
    notes_only = replace(ctx, files=FilePolicy(read=("notes/*",), write=()))
    with pytest.raises(ToolError, match=r"may not read 'project/okr\.json'"):
        await tools.get("files.read").call({"path": "project/okr.json"}, notes_only)
    for escape in ("project/../../x", "project/../../../etc/passwd", "/etc/passwd"):
        with pytest.raises(ToolError, match="outside the workspace"):
            await call("files.read", path=escape)
    bare = ToolContext(run_id="r2", agent="planner", workspace=workspace)  # a run of no project: the link is refused
    with pytest.raises(ToolError, match="outside the workspace"):
        await tools.get("files.read").call({"path": "project/okr.json"}, bare)
