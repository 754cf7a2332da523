"""What the projects capability keeps, as frozen records: projects, members, case file versions,
artifacts and their versions, knowledge graph nodes and facts, and the words each field allows.

The allowed words are tuples here (one source for the service's checks, the tools' schemas and the
API's shapes), so a new member behaviour or artifact kind is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "ARTIFACT_KINDS",
    "BEHAVIOURS",
    "MEMBER_KINDS",
    "SCOPES",
    "Artifact",
    "ArtifactKind",
    "ArtifactVersion",
    "Behaviour",
    "CaseFileVersion",
    "Fact",
    "Member",
    "MemberKind",
    "Node",
    "Project",
    "Scope",
    "when",
]

MemberKind = Literal["human", "ai"]
Behaviour = Literal["autonomous", "semi", "reactive", "scheduled"]
ArtifactKind = Literal["cognitive", "intellectual", "info"]
Scope = Literal["project", "agent", "workspace"]
MEMBER_KINDS: tuple[MemberKind, ...] = ("human", "ai")
BEHAVIOURS: tuple[Behaviour, ...] = ("autonomous", "semi", "reactive", "scheduled")
ARTIFACT_KINDS: tuple[ArtifactKind, ...] = ("cognitive", "intellectual", "info")
SCOPES: tuple[Scope, ...] = ("project", "agent", "workspace")


def when(ts: float | None) -> str:
    """A time as people read it in messages (UTC, to the second)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


@dataclass(frozen=True)
class Project:
    """A project: a manager agent, members, artifacts, a case file and a persistent files folder."""

    id: str
    name: str
    description: str
    manager: str | None
    created_by: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Member:
    """A person (human) or an agent (ai: ``team/agent`` or a library agent's name) in a project."""

    project_id: str
    kind: str
    name: str
    behaviour: str
    role: str
    created_at: float


@dataclass(frozen=True)
class CaseFileVersion:
    """One version of a project's case file (markdown)."""

    project_id: str
    version: int
    content: str
    author: str
    note: str
    created_at: float


@dataclass(frozen=True)
class Artifact:
    """An artifact of a project; ``latest`` is its newest version number (0: none written yet)."""

    id: str
    project_id: str
    name: str
    kind: str
    owner: str
    locked_by: str | None
    locked_at: float | None
    published_version: int | None
    published_by: str | None
    published_at: float | None
    created_at: float
    updated_at: float
    latest: int = 0

    @property
    def locked(self) -> bool:
        return self.locked_by is not None

    def lock_note(self) -> str:
        return f"locked by {self.locked_by} since {when(self.locked_at)}" if self.locked else "unlocked"


@dataclass(frozen=True)
class ArtifactVersion:
    artifact_id: str
    version: int
    content: str
    author: str
    note: str
    created_at: float


@dataclass(frozen=True)
class Node:
    """A node of a knowledge graph; ``distance``: hops from the node a query started at."""

    id: int
    scope: str
    scope_id: str
    name: str
    kind: str | None
    distance: int = 0


@dataclass(frozen=True)
class Fact:
    """A typed edge: ``subject --relation--> object``."""

    id: int
    subject: str
    relation: str
    object: str
    added_by: str
    created_at: float

    def __str__(self) -> str:
        return f"{self.subject} --{self.relation}--> {self.object}"
