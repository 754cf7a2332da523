"""Projects, members, the case file and artifacts (versions, lock, unlock, publish) on a real SQLite
store: a locked artifact refuses writes with an error that names who locked it and when."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edgecrew.errors import ConflictError, NotFoundError, UserError
from edgecrew.projects import ProjectService, project_files
from edgecrew.store import repo
from edgecrew.store.repo import open_store

REVISION = "0013"


@pytest.fixture(autouse=True)
def _head_at_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    # Until the migrations' HEAD names 0013 (the lead sets it), open_store would stop at the older head.
    if repo.HEAD < REVISION:
        monkeypatch.setattr(repo, "HEAD", REVISION)


@pytest.fixture
def service(tmp_path: Path) -> ProjectService:
    return ProjectService(open_store(f"sqlite:///{tmp_path / 'e.db'}"), tmp_path / "home")


def test_a_project_has_a_case_file_and_a_files_folder(service: ProjectService, tmp_path: Path) -> None:
    p = service.create("Launch", "Ship the edge box.", manager="crew/strategist", created_by="ana")
    assert p.id.startswith("p") and p.manager == "crew/strategist"
    assert service.get("Launch") == service.get(p.id) == service.get(p.id[:6]) == p
    assert service.case_file(p.id).content == "# Launch\n\nShip the edge box.\n"
    assert project_files(tmp_path / "home", p.id).is_dir()
    assert [x.name for x in service.list_projects()] == ["Launch"]
    renamed = service.update(p.id, name="Launch v2", manager="")
    assert renamed.name == "Launch v2" and renamed.manager is None


def test_project_errors_say_what_to_change(service: ProjectService) -> None:
    service.create("Launch")
    with pytest.raises(ConflictError, match="already exists"):
        service.create(" Launch ")
    with pytest.raises(UserError, match="1 to 200 characters"):
        service.create("   ")
    with pytest.raises(UserError, match="'team/agent'"):
        service.create("Other", manager="crew planner")
    with pytest.raises(NotFoundError, match="edgecrew projects list"):
        service.get("nope")


def test_a_name_with_a_slash_is_refused_as_it_would_be_another_address(service: ProjectService) -> None:
    """GET /projects/clients%2Facme is GET /projects/clients/acme: no route; the same for an artifact."""
    with pytest.raises(UserError, match="project name 'clients/acme' has a '/': it addresses the project in URLs"):
        service.create("clients/acme")
    kept = service.create("acme")
    with pytest.raises(UserError, match="has a '/'"):
        service.update("acme", name="clients/acme")
    with pytest.raises(UserError, match="artifact name 'notes/today' has a '/'"):
        service.create_artifact("acme", "notes/today", "cognitive", owner="ana")
    assert service.get(kept.id).name == "acme" and service.artifacts(kept.id) == []
    assert service.create("clients - acme").name == "clients - acme"


def test_a_name_never_hides_another_projects_id(service: ProjectService) -> None:
    """Projects are found by id or name: a name shaped like an id is refused, on create and on rename."""
    victim = service.create("victim")
    with pytest.raises(UserError, match="shape of a project id"):
        service.create(victim.id)
    with pytest.raises(UserError, match="shape of a project id"):
        service.update("victim", name="p0123456789a")
    assert service.get(victim.id).name == "victim"
    assert service.create("p0123-not-an-id").name == "p0123-not-an-id"  # only the exact shape is taken


def test_members_are_humans_or_agents_with_a_behaviour(service: ProjectService) -> None:
    p = service.create("Launch")
    service.add_member(p.id, "human", "Ana", role="owner")
    bot = service.add_member(p.id, "ai", "crew/planner", behaviour="scheduled")
    lib = service.add_member(p.id, "ai", "summarizer")
    assert (bot.behaviour, lib.behaviour) == ("scheduled", "reactive")
    assert [(m.kind, m.name) for m in service.members(p.id)] == [
        ("human", "Ana"),
        ("ai", "crew/planner"),
        ("ai", "summarizer"),
    ]
    with pytest.raises(UserError, match="autonomous, semi, reactive, scheduled"):
        service.add_member(p.id, "ai", "crew/critic", behaviour="lazy")
    with pytest.raises(UserError, match="behaviour is for ai members"):
        service.add_member(p.id, "human", "Bo", behaviour="autonomous")
    with pytest.raises(UserError, match="human, ai"):
        service.add_member(p.id, "robot", "R2")
    with pytest.raises(ConflictError, match="already a member"):
        service.add_member(p.id, "ai", "crew/planner")
    service.remove_member(p.id, "Ana")
    with pytest.raises(NotFoundError):
        service.remove_member(p.id, "Ana")


def test_the_case_file_keeps_every_version(service: ProjectService) -> None:
    p = service.create("Launch", "Goal.")
    service.append_case_file(p.id, "## Monday\nOKRs set.", author="crew/planner")
    service.write_case_file(p.id, "# Launch\n\nRewritten.\n", author="ana", note="cleanup")
    history = service.case_file_history(p.id)
    assert [v.version for v in history] == [1, 2, 3]
    assert history[1].content == "# Launch\n\nGoal.\n\n## Monday\nOKRs set.\n"
    assert service.case_file(p.id).note == "cleanup"
    assert service.case_file(p.id, version=2).author == "crew/planner"
    with pytest.raises(UserError, match="empty"):
        service.append_case_file(p.id, "  ", author="ana")


def test_artifacts_keep_versions_and_publish_one(service: ProjectService) -> None:
    p = service.create("Launch")
    a = service.create_artifact(p.id, "okr", "cognitive", owner="ana", content="O1")
    service.write_artifact(p.id, "okr", "O1, O2", author="crew/planner")
    assert service.artifact(p.id, a.id).latest == 2
    assert [v.content for v in service.artifact_versions(p.id, "okr")] == ["O1", "O1, O2"]
    assert service.artifact_version(p.id, "okr", 1).content == "O1"
    published = service.publish_artifact(p.id, "okr", by="ana", version=1)
    assert (published.published_version, published.published_by) == (1, "ana")
    assert service.publish_artifact(p.id, "okr", by="ana").published_version == 2
    with pytest.raises(NotFoundError, match="no version 7; its latest is 2"):
        service.artifact_version(p.id, "okr", 7)
    with pytest.raises(UserError, match="cognitive, intellectual, info"):
        service.create_artifact(p.id, "plan", "poem", owner="ana")
    with pytest.raises(ConflictError, match="already has an artifact named 'okr'"):
        service.create_artifact(p.id, "okr", "info", owner="ana")
    with pytest.raises(NotFoundError, match="its artifacts: 'okr'"):
        service.artifact(p.id, "okrs")


def test_a_locked_artifact_refuses_writes_naming_who_locked_it_and_when(service: ProjectService) -> None:
    p = service.create("Launch")
    service.create_artifact(p.id, "plan", "intellectual", owner="ana", content="v1")
    locked = service.lock_artifact(p.id, "plan", by="ana")
    assert locked.locked and locked.locked_by == "ana" and locked.locked_at
    for writer in ("crew/builder", "ana"):  # a lock freezes the artifact, for its holder too
        with pytest.raises(ConflictError) as refused:
            service.write_artifact(p.id, "plan", "v2", author=writer)
        message = str(refused.value)
        assert "cannot write to artifact 'plan': it is locked by ana since 20" in message and "UTC" in message
    assert service.artifact(p.id, "plan").latest == 1  # nothing was written
    assert service.lock_artifact(p.id, "plan", by="ana").locked_at == locked.locked_at  # again: no change
    with pytest.raises(ConflictError, match="locked by ana"):
        service.lock_artifact(p.id, "plan", by="bo")
    with pytest.raises(ConflictError, match="only they may unlock it"):
        service.unlock_artifact(p.id, "plan", by="bo")
    with pytest.raises(ConflictError, match="unlock it before deleting"):
        service.delete_artifact(p.id, "plan")
    assert not service.unlock_artifact(p.id, "plan", by="ana").locked
    assert service.write_artifact(p.id, "plan", "v2", author="crew/builder").version == 2
    service.lock_artifact(p.id, "plan", by="bo")
    assert not service.unlock_artifact(p.id, "plan", by="ana", force=True).locked


def test_racing_writers_never_share_a_version_and_a_lock_stops_them(service: ProjectService) -> None:
    p = service.create("Launch")
    service.create_artifact(p.id, "log", "cognitive", owner="ana")
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(5):
                service.write_artifact(p.id, "log", f"{i}.{j}", author=f"w{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert [v.version for v in service.artifact_versions(p.id, "log")] == list(range(1, 21))


def test_deleting_a_project_removes_its_rows_graph_and_files(service: ProjectService, tmp_path: Path) -> None:
    p = service.create("Launch")
    service.create_artifact(p.id, "okr", "cognitive", owner="ana", content="x")
    service.graph.add_fact("project", p.id, "a", "b", "c", added_by="t")
    (project_files(tmp_path / "home", p.id) / "okr.json").write_text("{}")
    service.delete(p.id)
    with pytest.raises(NotFoundError):
        service.get(p.id)
    assert service.graph.counts("project", p.id) == (0, 0)
    assert not (tmp_path / "home" / "projects" / p.id).exists()


def test_deleting_a_project_forgets_its_long_term_memories_and_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    # The crew remembers every block in its project's memory: a deleted project's memories stayed in the
    # database, found by no project again.
    from edgecrew.bootstrap import bootstrap
    from edgecrew.memory import MemoryService

    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")  # the e5 model has its own tests
    from edgecrew.settings import reset_settings

    reset_settings()
    rt = bootstrap()
    projects, memory = ProjectService.of(rt), MemoryService.of(rt)
    gone, kept = projects.create("Launch"), projects.create("Other")
    memory.remember("the launch slipped a week", "project", gone.id)
    memory.remember("a note of the launch's agent", "agent", "crew/planner")
    other = memory.remember("the other project's note", "project", kept.id)
    projects.delete(gone.id)
    assert memory.store.find([("project", gone.id)]) == []
    assert [r.id for r in memory.store.find([("project", kept.id)])] == [other]
    assert len(memory.store.find([("agent", "crew/planner")])) == 1
