"""Knowledge graphs in the store: facts per scope, neighbours by depth, direction and relation, and
shortest paths (with the arrows or across them), on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecrew.errors import NotFoundError, UserError
from edgecrew.projects import ProjectService
from edgecrew.store import repo
from edgecrew.store.repo import open_store

REVISION = "0013"
FACTS = [
    ("Ana", "works on", "Launch"),
    ("Bo", "works_on", "Launch"),
    ("Launch", "depends_on", "GPU"),
    ("GPU", "made_by", "Nvidia"),
    ("Cara", "mentors", "Bo"),
]


@pytest.fixture(autouse=True)
def _head_at_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    if repo.HEAD < REVISION:
        monkeypatch.setattr(repo, "HEAD", REVISION)


@pytest.fixture
def service(tmp_path: Path) -> ProjectService:
    return ProjectService(open_store(f"sqlite:///{tmp_path / 'e.db'}"), tmp_path / "home")


@pytest.fixture
def graph(service: ProjectService) -> tuple[ProjectService, str]:
    p = service.create("Launch")
    for s, r, o in FACTS:
        service.graph.add_fact("project", p.id, s, r, o, added_by="test")
    return service, p.id


def names(nodes: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(n.name, n.distance) for n in nodes]


def test_neighbours_by_depth_nearest_first(graph: tuple[ProjectService, str]) -> None:
    service, pid = graph
    start, near, facts = service.graph.neighbours("project", pid, "ana", depth=1)
    assert start.name == "Ana" and names(near) == [("Launch", 1)]
    assert [str(f) for f in facts] == ["Ana --works_on--> Launch"]
    _, near, _ = service.graph.neighbours("project", pid, "Ana", depth=2)
    assert names(near) == [("Launch", 1), ("Bo", 2), ("GPU", 2)]
    _, near, facts = service.graph.neighbours("project", pid, "Ana", depth=3)
    assert names(near) == [("Launch", 1), ("Bo", 2), ("GPU", 2), ("Cara", 3), ("Nvidia", 3)]
    assert len(facts) == 5


def test_neighbours_by_direction_and_relation(graph: tuple[ProjectService, str]) -> None:
    service, pid = graph
    _, near, _ = service.graph.neighbours("project", pid, "Ana", depth=3, direction="out")
    assert names(near) == [("Launch", 1), ("GPU", 2), ("Nvidia", 3)]
    _, near, _ = service.graph.neighbours("project", pid, "Launch", depth=1, direction="in")
    assert names(near) == [("Ana", 1), ("Bo", 1)]
    _, near, _ = service.graph.neighbours("project", pid, "Launch", depth=2, relation="Works On")
    assert names(near) == [("Ana", 1), ("Bo", 1)]


def test_shortest_paths(graph: tuple[ProjectService, str]) -> None:
    service, pid = graph
    steps = service.graph.path("project", pid, "Ana", "Nvidia")
    assert [str(s) for s in steps or []] == [
        "Ana --works_on--> Launch",
        "Launch --depends_on--> GPU",
        "GPU --made_by--> Nvidia",
    ]
    across = service.graph.path("project", pid, "Ana", "Cara")  # against the arrows: Bo <- Cara
    assert [str(s) for s in across or []] == [
        "Ana --works_on--> Launch",
        "Bo --works_on--> Launch",
        "Cara --mentors--> Bo",
    ]
    assert service.graph.path("project", pid, "Ana", "Cara", directed=True) is None
    assert service.graph.path("project", pid, "Ana", "Nvidia", max_depth=2) is None
    assert service.graph.path("project", pid, "ana", "ANA") == []
    service.graph.add_fact("project", pid, "Ana", "uses", "GPU", added_by="test")  # a shortcut
    assert [str(s) for s in service.graph.path("project", pid, "Ana", "Nvidia") or []] == [
        "Ana --uses--> GPU",
        "GPU --made_by--> Nvidia",
    ]


def test_graphs_are_kept_apart_by_scope(graph: tuple[ProjectService, str]) -> None:
    service, pid = graph
    other = service.create("Other")
    service.graph.add_fact("project", other.id, "Ana", "likes", "Tea", added_by="t")
    service.graph.add_fact("agent", "crew/planner", "Ana", "prefers", "mornings", added_by="t")
    service.graph.add_fact("workspace", "", "Ana", "member_of", "Launch", added_by="t")
    _, near, _ = service.graph.neighbours("project", other.id, "Ana", depth=3)
    assert names(near) == [("Tea", 1)]
    _, near, _ = service.graph.neighbours("agent", "crew/planner", "Ana")
    assert names(near) == [("mornings", 1)]
    assert service.graph.counts("project", pid) == (6, 5)
    assert service.graph.counts("workspace", "") == (2, 1)
    assert service.scope("project", "Other") == ("project", other.id)
    assert service.scope("workspace", "ignored") == ("workspace", "")


def test_facts_are_recorded_once_and_nodes_matched_in_any_case(graph: tuple[ProjectService, str]) -> None:
    service, pid = graph
    fact, new = service.graph.add_fact("project", pid, " ana ", "Works-On", "LAUNCH", added_by="t")
    assert not new and str(fact) == "Ana --works_on--> Launch"
    assert service.graph.counts("project", pid) == (6, 5)
    service.graph.remove_fact("project", pid, fact.id)
    assert service.graph.counts("project", pid) == (6, 4)
    with pytest.raises(NotFoundError, match="no fact"):
        service.graph.remove_fact("project", pid, fact.id)


def test_query_errors_are_clear(graph: tuple[ProjectService, str]) -> None:
    service, pid = graph
    with pytest.raises(NotFoundError, match=r"no node 'Anna' in the graph of project .*did you mean 'Ana'"):
        service.graph.neighbours("project", pid, "Anna")
    with pytest.raises(UserError, match="depth 9: give 1 to 6 hops"):
        service.graph.neighbours("project", pid, "Ana", depth=9)
    with pytest.raises(UserError, match="scope 'team': use one of project, agent, workspace"):
        service.scope("team", "x")
    with pytest.raises(UserError, match="scope agent needs a scope_id"):
        service.scope("agent", None)
    with pytest.raises(NotFoundError):
        service.scope("project", "no-such-project")
    with pytest.raises(UserError, match="relation"):
        service.graph.add_fact("project", pid, "a", " - ", "b", added_by="t")
