"""docs.search and docs.generate: the platform's guidelines searched by meaning (BM25 when no
embedding model is available), and a project's README written from its own files.

Guidelines are markdown files; each ``##`` section is one searchable passage, so an answer points at
"Deploying to Kubernetes › Images" rather than at a whole file. With an embedder (the runtime's memory
model, handed in by the composition root: this package may not import :mod:`edgecrew.memory`), the
sections are ranked by cosine similarity to the query, so "which version label for the container" finds
"Images"; the sections' vectors are cached per file (path, mtime, size), so only a changed file is
embedded again. Without one, or when the model cannot load, ranking is the deterministic BM25 of
:mod:`edgecrew.tools.retrieval`; the answer's ``method`` says which ranked it. ``docs.generate`` uses
no model: it reads pyproject.toml, the modules' docstrings (with :mod:`ast`, never importing the
project), the tests, the pipelines, the manifests and the branch policy, in sorted order, so the same
files always give the same page.
"""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgecrew.errors import ToolError
from edgecrew.platform.project import POLICY_FILE, project_facts
from edgecrew.platform.workspace import Workspace, read_pyproject
from edgecrew.tools.retrieval import rank

if TYPE_CHECKING:
    import numpy as np  # imported where used: a run that never searches docs never loads it

__all__ = ["GuidelineIndex", "PassageEmbedder", "Section", "generate_docs", "search_guidelines", "sections"]

SHOWN_CHARS = 1500


@dataclass(frozen=True)
class Section:
    """One ``##`` section of a guideline file (the text before the first one is the intro)."""

    file: str
    document: str
    title: str
    text: str


def sections(folder: Path) -> list[Section]:
    files = sorted(folder.rglob("*.md")) if folder.is_dir() else []
    if not files:  # nothing to search: say why, rather than answer "no results" as if nothing matched
        why = (
            "has no *.md file"
            if folder.is_dir()
            else "is a file, not a folder"
            if folder.exists()
            else "does not exist"
        )
        raise ToolError(f"the guidelines folder {folder} {why}; set EDGECREW_PLATFORM_GUIDELINES to a folder of *.md")
    found: list[Section] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        heading = re.search(r"^# (.+)$", text, re.MULTILINE)
        document = heading.group(1).strip() if heading else path.stem
        for i, part in enumerate(re.split(r"^## ", text, flags=re.MULTILINE)):
            title, _, body = part.partition("\n") if i else ("", "", part)
            body = re.sub(r"^# .+$", "", body, count=1, flags=re.MULTILINE).strip()
            if body:
                found.append(Section(path.relative_to(folder).as_posix(), document, title.strip() or document, body))
    return found


def _shown(section: Section, score: float) -> dict[str, Any]:
    return {
        "file": section.file,
        "document": section.document,
        "section": section.title,
        "score": round(score, 3),
        "text": section.text[:SHOWN_CHARS],
    }


def search_guidelines(folder: Path, query: str, k: int) -> dict[str, Any]:
    """The ``k`` guideline sections that best match ``query`` by BM25, best first (none when no word matches)."""
    passages = sections(folder)
    ranked = [
        r for r in rank(query, passages, k, lambda s: f"{s.document} {s.title} {s.title} {s.text}") if r.score > 0
    ]
    out: dict[str, Any] = {"query": query, "method": "bm25", "results": [_shown(r.item, r.score) for r in ranked]}
    if not ranked:
        files = sorted({s.file for s in passages})
        out["note"] = f"no guideline matches these words; the guidelines are {', '.join(files)}"
    return out


class PassageEmbedder(Protocol):
    """What docs.search needs of an embedder (edgecrew.memory's ``Embedder`` has this shape)."""

    @property
    def model_id(self) -> str: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


FileKey = tuple[str, str, int, int]  # model, resolved path, mtime in ns, size


class GuidelineIndex:
    """Searches guidelines by embedding similarity, BM25 when there is no embedder or it fails to load.

    One per registration (so per runtime); the vectors of each file's sections are kept in memory under
    (model, path, mtime, size), so a search embeds only files that are new or changed since the last one.
    """

    def __init__(self, embedder: PassageEmbedder | None = None) -> None:
        self.embedder = embedder
        self.unavailable: str | None = None  # why the embedder could not be used (then BM25 from now on)
        self.embedded = 0  # passages embedded so far: a search served from the cache adds none
        self._vectors: dict[FileKey, np.ndarray] = {}
        self._lock = threading.Lock()  # tools run in worker threads; the cache is filled once per file

    def search(self, folder: Path, query: str, k: int) -> dict[str, Any]:
        """The ``k`` sections closest in meaning to ``query`` (``method`` says how they were ranked)."""
        import numpy as np

        if self.embedder is None:
            return search_guidelines(folder, query, k)
        if self.unavailable is None:
            passages = sections(folder)
            try:
                with self._lock:
                    vectors = self._passage_vectors(self.embedder, folder, passages)
                q = np.asarray(self.embedder.embed_query(query.strip()), dtype=np.float32).reshape(-1)
            except Exception as exc:  # any failure of an optional model (not installed, no load) means BM25
                self.unavailable = f"{type(exc).__name__}: {exc}"
            else:
                scores = vectors @ q if len(passages) else np.zeros(0, dtype=np.float32)
                best = np.argsort(-scores, kind="stable")[:k]
                return {
                    "query": query,
                    "method": "embeddings",
                    "embedder": self.embedder.model_id,
                    "results": [_shown(passages[i], float(scores[i])) for i in best],
                }
        out = search_guidelines(folder, query, k)
        out["note"] = " ".join(
            filter(None, [out.get("note"), f"ranked by BM25: the embedding model is unavailable ({self.unavailable})"])
        )
        return out

    def _passage_vectors(self, embedder: PassageEmbedder, folder: Path, passages: list[Section]) -> np.ndarray:
        import numpy as np

        by_file: dict[str, list[Section]] = {}
        for s in passages:
            by_file.setdefault(s.file, []).append(s)
        parts = []
        for file, group in by_file.items():
            path = (folder / file).resolve()
            stat = path.stat()
            key = (embedder.model_id, str(path), stat.st_mtime_ns, stat.st_size)
            if key not in self._vectors:
                texts = [f"{s.document} › {s.title}\n{s.text}" for s in group]
                vectors = np.asarray(embedder.embed_passages(texts), dtype=np.float32).reshape(len(texts), -1)
                self.embedded += len(texts)
                # a changed file's old vectors go, so the cache holds one version of each file
                for old in [o for o in self._vectors if o[:2] == key[:2]]:
                    del self._vectors[old]
                self._vectors[key] = vectors
            parts.append(self._vectors[key])
        return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    names = [
        a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs) if a.arg not in ("self", "cls")
    ]
    return f"{node.name}({', '.join(names)})"


def _module_lines(project: Path, file: Path, root: Path) -> list[str]:
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except (SyntaxError, UnicodeDecodeError) as exc:
        return [f"### `{file.relative_to(project).as_posix()}`", "", f"Does not parse: {exc}.", ""]
    dotted = ".".join(file.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    lines = [f"### `{dotted}`", ""]
    if summary := _first_paragraph(ast.get_docstring(tree)):
        lines += [summary, ""]
    public = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            public.append(
                f"- `{_signature(node)}`" + (f": {s}" if (s := _first_paragraph(ast.get_docstring(node))) else "")
            )
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            public.append(
                f"- class `{node.name}`" + (f": {s}" if (s := _first_paragraph(ast.get_docstring(node))) else "")
            )
    return lines + public + ([""] if public else [])


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return [d for d in YAML().load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    except (YAMLError, UnicodeDecodeError):
        return []


def _overview(project: Path) -> list[str]:
    facts = project_facts(project)
    meta = read_pyproject(project).get("project", {})
    scripts = meta.get("scripts", {})
    table = [
        ("Version", str(meta.get("version", "unversioned"))),
        ("Type", facts.kind or "not recorded"),
        ("Python", str(meta.get("requires-python", "any"))),
        ("Dependencies", ", ".join(f"`{d}`" for d in meta.get("dependencies", [])) or "none"),
        ("Commands", ", ".join(f"`{k}` → `{v}`" for k, v in sorted(scripts.items())) or "none"),
    ]
    intro = [facts.description, ""] if facts.description else []
    return [f"# {facts.name}", "", *intro, "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in table), ""]


def _modules(project: Path) -> list[str]:
    src = project / "src"
    modules = sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts) if src.is_dir() else []
    return ["## Modules", "", *(line for m in modules for line in _module_lines(project, m, src))] if modules else []


def _tests(project: Path) -> list[str]:
    tests = sorted((project / "tests").rglob("test_*.py")) if (project / "tests").is_dir() else []
    if not tests:
        return []
    count = sum(len(re.findall(r"^(?:async )?def test_", t.read_text(encoding="utf-8"), re.MULTILINE)) for t in tests)
    listed = ", ".join(f"`{t.relative_to(project).as_posix()}`" for t in tests)
    return ["## Tests", "", f"{count} tests in {len(tests)} file(s): {listed}. Run them with `pytest`.", ""]


def _pipelines(project: Path) -> list[str]:
    gitlab = project / ".gitlab-ci.yml"
    paths = sorted((project / ".github" / "workflows").glob("*.y*ml")) + ([gitlab] if gitlab.is_file() else [])
    lines = []
    for path in paths:
        doc = next(iter(_yaml_docs(path)), {})
        if path == gitlab:
            provider, jobs = "GitLab CI", [k for k, v in doc.items() if isinstance(v, dict) and "script" in v]
        else:
            provider, jobs = "GitHub Actions", list(doc.get("jobs") or {})
        lines.append(f"- `{path.relative_to(project).as_posix()}` ({provider}): jobs {', '.join(jobs) or 'none'}")
    return ["## Continuous integration", "", *lines, ""] if lines else []


def _deployment(project: Path) -> list[str]:
    deploy = project / "deploy"
    paths = sorted(p for p in deploy.rglob("*.y*ml") if p.is_file()) if deploy.is_dir() else []
    lines = []
    for path in paths:
        for doc in _yaml_docs(path):
            meta = doc.get("metadata") or {}
            where = f" in namespace `{meta['namespace']}`" if meta.get("namespace") else ""
            rel = path.relative_to(project).as_posix()
            lines.append(f"- `{rel}`: {doc.get('kind', '?')} `{meta.get('name', '?')}`{where}")
    if not lines:
        return []
    return [
        "## Deployment",
        "",
        *lines,
        "",
        "Validate with `k8s.validate`; `k8s.apply` deploys once a person approves.",
        "",
    ]


def _branch_protection(project: Path) -> list[str]:
    path = project / POLICY_FILE
    doc = next(iter(_yaml_docs(path)), {}) if path.is_file() else {}
    lines = []
    for branch, rule in sorted((doc.get("branches") or {}).items()):
        reviews = (rule.get("required_pull_request_reviews") or {}).get("required_approving_review_count", 0)
        checks = (rule.get("required_status_checks") or {}).get("contexts", [])
        force = "allowed" if rule.get("allow_force_pushes") else "not allowed"
        lines.append(
            f"- `{branch}`: {reviews} approving review(s), required checks {', '.join(checks) or 'none'}, "
            f"force pushes {force}"
        )
    return ["## Branch protection", "", *lines, ""] if lines else []


SECTIONS = (
    ("overview", _overview),
    ("modules", _modules),
    ("tests", _tests),
    ("ci", _pipelines),
    ("deployment", _deployment),
    ("branch protection", _branch_protection),
)


def generate_docs(ws: Workspace, project: Path) -> dict[str, Any]:
    """Write ``docs/README.md`` for ``project`` from its files; the path and the sections written."""
    lines: list[str] = []
    written = []
    for name, build in SECTIONS:
        part = build(project)
        lines += part
        written += [name] if part else []
    lines.append("_Generated by docs.generate from the project's files; run it again after they change._")
    path = ws.write_text(project / "docs" / "README.md", "\n".join(lines) + "\n")
    return {"path": path, "sections": written}
