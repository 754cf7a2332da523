"""ProjectService: projects with their manager agent, members, case file, artifacts and knowledge
graphs, and the runs that work in a project (whose workspaces see its files at ``project/``).

Rows live in the store's database (tables of migration 0013); the service is the only code that
reads or writes them, and every entry point reaches it through :meth:`ProjectService.of` on the
runtime, never through the store. The one design decision: every write that a state may forbid (a
locked artifact, a lock someone else holds) is a conditional update checked in the same transaction,
so two writers racing cannot both pass the check; the loser gets a ConflictError saying who holds
the lock and since when.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from edgecrew.errors import ConflictError, NotFoundError, UserError, worded
from edgecrew.projects.files import (
    MOUNT,
    ProjectFile,
    file_in,
    files_in,
    link_project_files,
    project_dir,
    project_files,
)
from edgecrew.projects.graph import KnowledgeGraph, check_scope
from edgecrew.projects.records import (
    ARTIFACT_KINDS,
    BEHAVIOURS,
    MEMBER_KINDS,
    Artifact,
    ArtifactVersion,
    CaseFileVersion,
    Member,
    Project,
    when,
)
from edgecrew.settings import Settings
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

__all__ = [
    "ADDRESS_PATTERN",
    "AGENT_PATTERN",
    "NAME_PATTERN",
    "RELATION_PATTERN",
    "HasStore",
    "ProjectService",
    "check_agent_ref",
]

# The rules as patterns too, so the API's document states exactly what the service accepts.
AGENT_PATTERN = worded(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,79})?$",
    "an agent: 'team/agent' or a library agent's name (letters, digits, '_', '.', '-'; 80 at most each)",
)
# at least one character that is not white space (Python's or Unicode's)
NAME_PATTERN = worded(r"[^\s\x1c-\x1f]", "not blank")
# A project's or an artifact's name addresses it in URLs (``_addressable``): the same, with no '/' anywhere.
ADDRESS_PATTERN = worded(r"^[^/]*[^\s\x1c-\x1f/][^/]*$", "not blank, and without '/' (it names it in URLs)")
RELATION_PATTERN = worded(r"[^\s\x1c-\x1f_-]", "not blank, and not only '_' and '-'")
AGENT_REF = re.compile(AGENT_PATTERN)
MAX_TEXT = 1_000_000  # characters of one case file or artifact version
T = TypeVar("T")


class HasStore(Protocol):
    """What :meth:`ProjectService.of` needs of a runtime."""

    @property
    def store(self) -> RunStore: ...
    @property
    def settings(self) -> Settings: ...
    def extension(self, cls: type[T], make: Callable[[Self], T]) -> T: ...


def check_agent_ref(ref: str, what: str) -> str:
    """An agent as projects name it: ``team/agent`` or a library agent's name."""
    ref = ref.strip()
    if not AGENT_REF.fullmatch(ref):
        raise UserError(
            f"{what} {ref[:120]!r}: name an agent as 'team/agent' (e.g. 'crew/planner') or a library agent's "
            "name (letters, digits, '.', '_', '-')"
        )
    return ref


def _text(value: str, what: str, *, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise UserError(f"{what} has {len(value)} characters; at most {limit} are kept")
    return value


PROJECT_ID = re.compile(r"p[0-9a-f]{11}")  # "p" and 11 hex digits (ProjectService.create)


def _name(value: str, what: str) -> str:
    clean = " ".join(value.split())
    if not clean or len(clean) > 200:
        raise UserError(f"{what} {value[:120]!r}: give 1 to 200 characters (not only spaces)")
    if PROJECT_ID.fullmatch(clean):  # a project is found by id or name: the two must not be confused
        raise UserError(f"{what} {clean!r} has the shape of a project id ('p' and 11 hex digits); pick another name")
    return clean


def _addressable(name: str, what: str) -> str:
    """A project's or an artifact's name, which addresses it in the API and the pages (``/projects/NAME``):
    a '/' there would make it another address, found by nothing."""
    if "/" in name:
        raise UserError(f"{what} {name[:120]!r} has a '/': it addresses the {what.split()[0]} in URLs; use '-' or ' '")
    return name


def _versioned(write: Callable[[], T]) -> T:
    """Run a write that takes the next version number, again if a concurrent writer took it first."""
    for attempt in range(5):
        try:
            return write()
        except sa.exc.IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


class ProjectService:
    """Projects, members, case files, artifacts, knowledge graphs and project runs of one store."""

    def __init__(self, store: RunStore, home: Path) -> None:
        self.engine = store.engine
        self._store = store
        self.home = Path(home)
        self.graph = KnowledgeGraph(self.engine)
        # Forgets a project's long-term memories when it is deleted, as the composition root wires it (the
        # memory capability); None: nothing to forget.
        self.forget_memories: Callable[[str], object] | None = None
        # run id -> its project's id: a run's project is recorded before its workflow starts and never
        # changes, so every tool call of a project's run (its mounts, its memory scope) reads it once.
        self._run_project: dict[str, str] = {}

    @classmethod
    def of(cls, rt: HasStore) -> ProjectService:
        """The runtime's service (one per runtime: its extension)."""
        return rt.extension(cls, lambda rt: cls(rt.store, rt.settings.home))

    # -- projects --------------------------------------------------------------------------------------
    def create(
        self, name: str, description: str = "", *, manager: str | None = None, created_by: str | None = None
    ) -> Project:
        """A new project, with version 1 of its case file and its (empty) files folder."""
        name = _addressable(_name(name, "project name"), "project name")
        description = _text(description, "the description", limit=20_000)
        manager = check_agent_ref(manager, "manager") if manager else None
        project_id = "p" + uuid.uuid4().hex[:11]
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.projects.insert().values(
                        id=project_id,
                        name=name,
                        description=description,
                        manager=manager,
                        created_by=created_by,
                        created_at=now,
                        updated_at=now,
                    )
                )
                heading = f"# {name}\n\n{description}\n" if description else f"# {name}\n"
                conn.execute(
                    t.case_file_versions.insert().values(
                        project_id=project_id,
                        version=1,
                        content=heading,
                        author=created_by or "edgecrew",
                        note="created",
                        created_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise ConflictError(f"a project named {name!r} already exists; pick another name") from None
        project_files(self.home, project_id)
        return self.get(project_id)

    def get(self, ref: str) -> Project:
        """A project by id, name, or a unique prefix of its id."""
        with self.engine.connect() as conn:
            row = _project_row(conn, ref)
        if row is None:
            row = self._store.row_by_id(t.projects, ref, "project", "edgecrew projects list")
        return Project(**dict(row))

    def list_projects(self, *, limit: int = 100, offset: int = 0) -> list[Project]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.projects)
                .order_by(t.projects.c.created_at.desc(), t.projects.c.id)
                .limit(limit)
                .offset(offset)
            ).mappings()
            return [Project(**dict(r)) for r in rows]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.projects)).scalar_one())

    def update(
        self, ref: str, *, name: str | None = None, description: str | None = None, manager: str | None = None
    ) -> Project:
        """Change a project's name, description or manager (``manager=""`` removes it)."""
        project = self.get(ref)
        values: dict[str, Any] = {"updated_at": time.time()}
        if name is not None:
            values["name"] = _addressable(_name(name, "project name"), "project name")
        if description is not None:
            values["description"] = _text(description, "the description", limit=20_000)
        if manager is not None:
            values["manager"] = check_agent_ref(manager, "manager") if manager.strip() else None
        try:
            with self.engine.begin() as conn:
                conn.execute(t.projects.update().where(t.projects.c.id == project.id).values(**values))
        except sa.exc.IntegrityError:
            raise ConflictError(f"a project named {values.get('name')!r} already exists; pick another name") from None
        return self.get(project.id)

    def delete(self, ref: str) -> Project:
        """Remove a project: its rows, its knowledge graph, its long-term memories and its files folder."""
        project = self.get(ref)
        with self.engine.begin() as conn:
            conn.execute(t.projects.delete().where(t.projects.c.id == project.id))
        self.graph.delete_scope("project", project.id)
        if self.forget_memories is not None:  # they were left behind, found by no project again
            self.forget_memories(project.id)
        shutil.rmtree(project_dir(self.home, project.id), ignore_errors=True)
        self._run_project = {run: p for run, p in self._run_project.items() if p != project.id}
        return project

    # -- members ---------------------------------------------------------------------------------------
    def add_member(self, ref: str, kind: str, name: str, *, behaviour: str | None = None, role: str = "") -> Member:
        """Add a person (kind human) or an agent (kind ai, with a behaviour; reactive when not given)."""
        project = self.get(ref)
        if kind not in MEMBER_KINDS:
            raise UserError(f"member kind {kind!r}: use one of {', '.join(MEMBER_KINDS)}")
        if kind == "ai":
            name = check_agent_ref(name, "ai member")
            behaviour = behaviour or "reactive"
            if behaviour not in BEHAVIOURS:
                raise UserError(f"behaviour {behaviour!r}: use one of {', '.join(BEHAVIOURS)}")
        else:
            name = _name(name, "member name")
            if behaviour:
                raise UserError(f"behaviour is for ai members ({', '.join(BEHAVIOURS)}); {name!r} is human")
        role = _name(role, "role") if role.strip() else ""
        values = {"project_id": project.id, "kind": kind, "name": name, "behaviour": behaviour or "", "role": role}
        try:
            with self.engine.begin() as conn:
                conn.execute(t.project_members.insert().values(created_at=time.time(), **values))
        except sa.exc.IntegrityError:
            raise ConflictError(f"{name!r} is already a member of project {project.name!r}") from None
        return next(m for m in self.members(project.id) if m.name == name)

    def members(self, ref: str) -> list[Member]:
        project = self.get(ref)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.project_members)
                .where(t.project_members.c.project_id == project.id)
                .order_by(t.project_members.c.id)
            ).mappings()
            return [Member(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    def remove_member(self, ref: str, name: str) -> None:
        project = self.get(ref)
        with self.engine.begin() as conn:
            gone = conn.execute(
                t.project_members.delete().where(
                    t.project_members.c.project_id == project.id, t.project_members.c.name == name.strip()
                )
            ).rowcount
        if not gone:
            raise NotFoundError(f"{name[:120]!r} is not a member of project {project.name!r}")

    # -- case file -------------------------------------------------------------------------------------
    def case_file(self, ref: str, version: int | None = None) -> CaseFileVersion:
        """The case file as it is now, or one of its versions."""
        project = self.get(ref)
        query = sa.select(t.case_file_versions).where(t.case_file_versions.c.project_id == project.id)
        query = query.where(t.case_file_versions.c.version == version) if version is not None else query
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(t.case_file_versions.c.version.desc()).limit(1)).mappings().first()
        if row is None:
            raise NotFoundError(f"project {project.name!r} has no case file version {version}")
        return CaseFileVersion(**{k: v for k, v in row.items() if k != "id"})

    def case_file_history(self, ref: str) -> list[CaseFileVersion]:
        """Every version, oldest first (content included)."""
        project = self.get(ref)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.case_file_versions)
                .where(t.case_file_versions.c.project_id == project.id)
                .order_by(t.case_file_versions.c.version)
            ).mappings()
            return [CaseFileVersion(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    def write_case_file(self, ref: str, content: str, *, author: str, note: str = "") -> CaseFileVersion:
        """A new version of the case file with this content."""
        return self._case_file_version(ref, lambda _: _text(content, "the case file"), author, note or "rewritten")

    def append_case_file(self, ref: str, text: str, *, author: str, note: str = "") -> CaseFileVersion:
        """A new version of the case file: the current one with ``text`` added as a new paragraph."""
        if not text.strip():
            raise UserError("nothing to append: the text is empty")

        def joined(current: str) -> str:
            return _text(current.rstrip("\n") + "\n\n" + text.strip("\n") + "\n", "the case file")

        return self._case_file_version(ref, joined, author, note or "appended")

    def _case_file_version(self, ref: str, content: Callable[[str], str], author: str, note: str) -> CaseFileVersion:
        project = self.get(ref)
        cf = t.case_file_versions

        def write() -> CaseFileVersion:
            with self.engine.begin() as conn:
                last = conn.execute(
                    sa.select(cf.c.version, cf.c.content)
                    .where(cf.c.project_id == project.id)
                    .order_by(cf.c.version.desc())
                    .limit(1)
                ).first()
                version = (last.version if last else 0) + 1
                values: dict[str, Any] = {
                    "project_id": project.id,
                    "version": version,
                    "content": content(last.content if last else ""),
                    "author": author[:200] or "anonymous",
                    "note": note[:2000],
                    "created_at": time.time(),
                }
                conn.execute(cf.insert().values(**values))
                conn.execute(t.projects.update().where(t.projects.c.id == project.id).values(updated_at=time.time()))
            return CaseFileVersion(**values)

        return _versioned(write)

    # -- artifacts -------------------------------------------------------------------------------------
    def create_artifact(
        self, ref: str, name: str, kind: str, *, owner: str, content: str | None = None, note: str = ""
    ) -> Artifact:
        """A new artifact of the project (and its version 1 when ``content`` is given)."""
        project = self.get(ref)
        name = _addressable(_name(name, "artifact name"), "artifact name")
        if kind not in ARTIFACT_KINDS:
            raise UserError(
                f"artifact kind {kind!r}: use one of {', '.join(ARTIFACT_KINDS)} (cognitive: notes, lists, forms; "
                "intellectual: reports, plans, code; info: an intellectual artifact that passed QA)"
            )
        artifact_id = "a" + uuid.uuid4().hex[:11]
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.artifacts.insert().values(
                        id=artifact_id,
                        project_id=project.id,
                        name=name,
                        kind=kind,
                        owner=_name(owner, "owner"),
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise ConflictError(f"project {project.name!r} already has an artifact named {name!r}") from None
        if content is not None:
            self.write_artifact(project.id, artifact_id, content, author=owner, note=note or "created")
        return self.artifact(project.id, artifact_id)

    def artifact(self, ref: str, artifact: str) -> Artifact:
        """An artifact of the project by id or name."""
        project = self.get(ref)
        a = t.artifacts
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(a).where(
                        a.c.project_id == project.id, (a.c.id == artifact) | (a.c.name == artifact.strip())
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                names = conn.execute(sa.select(a.c.name).where(a.c.project_id == project.id).limit(20)).scalars().all()
                known = ", ".join(repr(n) for n in names) or "none yet"
                raise NotFoundError(
                    f"project {project.name!r} has no artifact {artifact[:120]!r}; its artifacts: {known}"
                )
            return _artifact(conn, row)

    def artifacts(self, ref: str, *, kind: str | None = None) -> list[Artifact]:
        project = self.get(ref)
        a = t.artifacts
        query = sa.select(a).where(a.c.project_id == project.id).order_by(a.c.name)
        if kind is not None:
            query = query.where(a.c.kind == kind)
        with self.engine.connect() as conn:
            return [_artifact(conn, r) for r in conn.execute(query).mappings().all()]

    def write_artifact(self, ref: str, artifact: str, content: str, *, author: str, note: str = "") -> ArtifactVersion:
        """A new version of the artifact; refused (ConflictError) while it is locked."""
        found = self.artifact(ref, artifact)
        content = _text(content, f"artifact {found.name!r}")
        av = t.artifact_versions

        def write() -> ArtifactVersion:
            now = time.time()
            with self.engine.begin() as conn:
                # The lock check and the write are one transaction: a lock taken meanwhile wins.
                free = conn.execute(
                    t.artifacts.update()
                    .where(t.artifacts.c.id == found.id, t.artifacts.c.locked_by.is_(None))
                    .values(updated_at=now)
                ).rowcount
                if not free:
                    raise _locked(conn, found, "write to")
                last = conn.execute(sa.select(sa.func.max(av.c.version)).where(av.c.artifact_id == found.id)).scalar()
                values: dict[str, Any] = {
                    "artifact_id": found.id,
                    "version": (last or 0) + 1,
                    "content": content,
                    "author": author[:200] or "anonymous",
                    "note": note[:2000],
                    "created_at": now,
                }
                conn.execute(av.insert().values(**values))
            return ArtifactVersion(**values)

        return _versioned(write)

    def artifact_versions(self, ref: str, artifact: str) -> list[ArtifactVersion]:
        found = self.artifact(ref, artifact)
        av = t.artifact_versions
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(av).where(av.c.artifact_id == found.id).order_by(av.c.version)).mappings()
            return [ArtifactVersion(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    def artifact_version(self, ref: str, artifact: str, version: int | None = None) -> ArtifactVersion:
        """One version of the artifact (the newest when ``version`` is None)."""
        found = self.artifact(ref, artifact)
        av = t.artifact_versions
        query = sa.select(av).where(av.c.artifact_id == found.id)
        query = query.where(av.c.version == version) if version is not None else query
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(av.c.version.desc()).limit(1)).mappings().first()
        if row is None:
            if version is None:
                raise NotFoundError(f"artifact {found.name!r} has no version yet; write one first")
            raise NotFoundError(f"artifact {found.name!r} has no version {version}; its latest is {found.latest}")
        return ArtifactVersion(**{k: v for k, v in row.items() if k != "id"})

    def lock_artifact(self, ref: str, artifact: str, *, by: str) -> Artifact:
        """Lock the artifact against writes (again by the same holder: no change)."""
        found = self.artifact(ref, artifact)
        by = _name(by, "who locks it")
        with self.engine.begin() as conn:
            taken = conn.execute(
                t.artifacts.update()
                .where(t.artifacts.c.id == found.id, t.artifacts.c.locked_by.is_(None))
                .values(locked_by=by, locked_at=time.time())
            ).rowcount
            if not taken:
                holder = conn.execute(sa.select(t.artifacts.c.locked_by).where(t.artifacts.c.id == found.id)).scalar()
                if holder != by:
                    raise _locked(conn, found, "lock")
        return self.artifact(ref, found.id)

    def unlock_artifact(self, ref: str, artifact: str, *, by: str, force: bool = False) -> Artifact:
        """Unlock the artifact: only its holder may, unless ``force`` (a project owner's override)."""
        found = self.artifact(ref, artifact)
        by = _name(by, "who unlocks it")
        a = t.artifacts
        with self.engine.begin() as conn:
            query = a.update().where(a.c.id == found.id)
            if not force:
                query = query.where(a.c.locked_by.is_(None) | (a.c.locked_by == by))
            done = conn.execute(query.values(locked_by=None, locked_at=None)).rowcount
            if not done:
                row = conn.execute(sa.select(a.c.locked_by, a.c.locked_at).where(a.c.id == found.id)).first()
                raise ConflictError(
                    f"artifact {found.name!r} is locked by {row.locked_by if row else '?'} since "
                    f"{when(row.locked_at if row else None)}; only they may unlock it (or force the unlock)"
                )
        return self.artifact(ref, found.id)

    def publish_artifact(self, ref: str, artifact: str, *, by: str, version: int | None = None) -> Artifact:
        """Mark a version (the newest by default) as the published one."""
        chosen = self.artifact_version(ref, artifact, version)
        with self.engine.begin() as conn:
            conn.execute(
                t.artifacts.update()
                .where(t.artifacts.c.id == chosen.artifact_id)
                .values(published_version=chosen.version, published_by=_name(by, "publisher"), published_at=time.time())
            )
        return self.artifact(ref, chosen.artifact_id)

    def delete_artifact(self, ref: str, artifact: str) -> None:
        found = self.artifact(ref, artifact)
        if found.locked:
            raise ConflictError(f"artifact {found.name!r} is {found.lock_note()}; unlock it before deleting it")
        with self.engine.begin() as conn:
            conn.execute(t.artifacts.delete().where(t.artifacts.c.id == found.id))

    # -- knowledge graph scopes ------------------------------------------------------------------------
    def scope(self, scope: str, scope_id: str | None) -> tuple[str, str]:
        """A graph's scope as stored: a project given by name or id becomes its id; an agent is
        ``team/agent`` or a library name; the workspace has no id."""
        scope, given = check_scope(scope, scope_id)
        if scope == "project":
            return scope, self.get(given).id
        if scope == "agent":
            return scope, check_agent_ref(given, "scope_id of an agent graph")
        return scope, given

    # -- runs and files --------------------------------------------------------------------------------
    def files(self, ref: str) -> Path:
        """The project's persistent files folder."""
        return project_files(self.home, self.get(ref).id)

    def list_files(self, ref: str, *, limit: int = 500) -> list[ProjectFile]:
        """The files in the project's folder (what its runs wrote at ``project/``), by path, at most ``limit``."""
        return files_in(self.files(ref), limit)

    def file(self, ref: str, path: str) -> tuple[ProjectFile, Path]:
        """One file of the project's folder and where it is on disk; a path out of the folder, a folder or a
        missing file is refused naming the project."""
        project = self.get(ref)
        return file_in(project_files(self.home, project.id), path, f"project '{project.name}'s files")

    def attach_run(self, run_id: str, ref: str, workspace: Path) -> Project:
        """Make a run work in the project: record it and link ``workspace/project`` to the files folder.

        Idempotent for the same project (a resumed run attaches again); another project is refused.
        """
        project = self.get(ref)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.project_runs.insert().values(run_id=run_id, project_id=project.id, created_at=time.time())
                )
        except sa.exc.IntegrityError:
            earlier = self.project_of_run(run_id)
            if earlier is None or earlier.id != project.id:
                raise ConflictError(
                    f"run {run_id} already works in project {earlier.name if earlier else '?'!r}"
                ) from None
        link_project_files(workspace, self.home, project.id)
        return project

    def agent_of_run(self, run_id: str, agent: str) -> str:
        """The agent as projects name it (``team/agent``) from a run and the agent's name in its team."""
        try:
            team = self._store.get_run(run_id).team
        except NotFoundError:  # a call outside a run (a tool called by hand)
            return agent
        return team if "/" in team else f"{team}/{agent}"

    def project_of_run(self, run_id: str) -> Project | None:
        found = self.project_id_of_run(run_id)
        return self.get(found) if found else None

    def project_id_of_run(self, run_id: str) -> str | None:
        """The id of the project a run works in (None: none), read once per run."""
        found = self._run_project.get(run_id)
        if found is None:
            with self.engine.connect() as conn:
                found = conn.execute(
                    sa.select(t.project_runs.c.project_id).where(t.project_runs.c.run_id == run_id)
                ).scalar()
            if found:
                self._run_project[run_id] = found
        return found or None

    def runs(self, ref: str, *, limit: int = 50) -> list[str]:
        """The ids of the project's runs, newest first."""
        project = self.get(ref)
        pr = t.project_runs
        with self.engine.connect() as conn:
            query = sa.select(pr.c.run_id).where(pr.c.project_id == project.id)
            return list(conn.execute(query.order_by(pr.c.created_at.desc()).limit(limit)).scalars())

    def mounts(self, run_id: str) -> tuple[tuple[str, Path], ...]:
        """What a run's file tools see outside its workspace: ``(("project", files folder),)`` for a
        run of a project, ``()`` otherwise (``ToolContext.mounts``)."""
        project_id = self.project_id_of_run(run_id)
        return ((MOUNT, project_files(self.home, project_id)),) if project_id is not None else ()


def _project_row(conn: Connection, ref: str) -> Any:
    p = t.projects
    given = ref.strip()
    query = sa.select(p).where((p.c.id == given) | (p.c.name == " ".join(given.split())))
    return conn.execute(query.order_by((p.c.id == given).desc())).mappings().first()  # the id first


def _artifact(conn: Connection, row: Any) -> Artifact:
    av = t.artifact_versions
    latest = conn.execute(sa.select(sa.func.max(av.c.version)).where(av.c.artifact_id == row["id"])).scalar()
    return Artifact(**dict(row), latest=int(latest or 0))


def _locked(conn: Connection, artifact: Artifact, action: str) -> ConflictError:
    row = conn.execute(
        sa.select(t.artifacts.c.locked_by, t.artifacts.c.locked_at).where(t.artifacts.c.id == artifact.id)
    ).first()
    if row is None:
        return ConflictError(f"artifact {artifact.name!r} was deleted meanwhile")
    return ConflictError(
        f"cannot {action} artifact {artifact.name!r}: it is locked by {row.locked_by} since {when(row.locked_at)}; "
        f"ask {row.locked_by} to unlock it"
    )
