"""The projects capability: projects with a manager agent, human and AI members, a case file with its
versions, artifacts (cognitive, intellectual, info) with versions, locks and publishing, knowledge
graphs in the store (per project, agent or workspace), and a files folder per project that persists
across runs (a run of a project sees it at ``project/`` in its workspace).

It sits beside ``tasks`` and ``platform``, above the store and the tools and below the engine: the
engine attaches a run to its project (:meth:`ProjectService.attach_run`) and lends the run's file tools
the project's folder (:meth:`ProjectService.mounts`); entry points reach the service through
``ProjectService.of(rt)``, never through the store.
"""

from edgecrew.projects.files import MOUNT, ProjectFile, link_project_files, project_dir, project_files
from edgecrew.projects.graph import MAX_DEPTH, KnowledgeGraph
from edgecrew.projects.records import (
    ARTIFACT_KINDS,
    BEHAVIOURS,
    MEMBER_KINDS,
    SCOPES,
    Artifact,
    ArtifactVersion,
    CaseFileVersion,
    Fact,
    Member,
    Node,
    Project,
)
from edgecrew.projects.service import ProjectService
from edgecrew.projects.tools import PROJECT_TOOLS, register_project_tools

__all__ = [
    "ARTIFACT_KINDS",
    "BEHAVIOURS",
    "MAX_DEPTH",
    "MEMBER_KINDS",
    "MOUNT",
    "PROJECT_TOOLS",
    "SCOPES",
    "Artifact",
    "ArtifactVersion",
    "CaseFileVersion",
    "Fact",
    "KnowledgeGraph",
    "Member",
    "Node",
    "Project",
    "ProjectFile",
    "ProjectService",
    "link_project_files",
    "project_dir",
    "project_files",
    "register_project_tools",
]
