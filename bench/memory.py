"""Long-term memory: retrieval quality on real text, the index against exact search, and latency.

Three parts, each beside its anchor, in this one process on SQLite files in one temporary folder:

1. **Hit rate on labelled questions**: three of the seed documents (``bench/data/*.md``) cut into
   chunks at their headings (about 700 characters each, the heading path kept in front), each
   chunk remembered in one project; then each of the questions in ``QUESTIONS`` is recalled (k=5).
   A hit is a recalled chunk that contains the question's answer text. Figures: hit@1, hit@5, MRR.
   Anchor: the same pipeline with ``HashingEmbedder`` (bag of words, no model).
2. **recall@5 of the index against exact search on the same embeddings**: for the questions above
   (real E5 vectors), and for random unit vectors at the latency sizes (|index top 5 ∩ exact top 5| / 5).
3. **Latency** at 10k and 100k memories in one scope (the worst case: no partition narrows the
   search): insert per memory (batches of 1000, and single inserts), query (k=5) through the index
   and through the exact fallback (brute force in Python over the stored vectors). The memories are
   **random unit vectors** of the model's 384 dimensions (embedding 100k texts would take over an hour
   on a 2-core box, and an index does not care where a vector came from); the embedding cost is
   measured on its own: one query, and passages in batches of 32.

    nice .venv/bin/python bench/memory.py [--sizes 10000,100000] [--queries 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data"
SEEDS = ("edgepilot.md", "cluster-agent.md", "idp-copilot.md")
CHUNK_CHARS = 700

# (question, text that the chunk answering it contains)
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("Which plan step types does the EdgePilot planner produce?", "`report`, `can_run`, `suggest_window`, `run_task`"),
    ("What collects the deployment choices when EdgePilot is installed?", "Install Wizard"),
    ("Which exporters supply the live system metrics?", "Prometheus, node_exporter, and cAdvisor"),
    ("What does the scheduler optimizer produce from historical policy data?", "synthesize an optimized scheduling"),
    ("Which port does the EdgePilot API run on?", "uvicorn edgepilot.app:app --reload --port 5057"),
    ("What are the default Grafana login credentials?", "admin / admin123"),
    ("How do I stop the monitoring containers?", "docker-compose -f infra/docker-compose.yml down"),
    ("Where are the reusable planner, executor and summarizer helpers?", "edgepilot/pipeline.py"),
    ("What should I check when Prometheus cannot reach Alertmanager?", "alertmanager:9093"),
    ("What does the summarizer add to the final answer?", "Adds recommended actions, confidence notes"),
    ("How does a bare-metal machine get its operating system installed?", "download the Debian kernel, initrd"),
    ("What happens to the error log when a provisioning run fails?", "TODO.md"),
    ("How is the inventory protected when several nodes call home at once?", "file locking"),
    ("Which tool schedules the services on the cluster?", "for orchestration and [HashiCorp Consul]"),
    ("How does the TwinService discover expert LLM backends?", "querying Consul for services tagged"),
    ("What kind of long-term memory does the cluster agent keep?", "long-term FAISS vector store"),
    ("Which OpenAI-compatible endpoint does the gateway expose?", "exposes a `/v1/chat/completions` endpoint"),
    ("How does the supervisor fix a job that ran out of memory?", "heal_job.yaml"),
    ("Which library mutates the reflection logic to learn from failures?", "evolutionary algorithm (`openevolve`)"),
    ("How are the control plane's API keys stored?", "stores a SHA-256 hash of the key"),
    ("Can an operator approve or deny the agent's actions from the UI?", "approve or deny actions"),
    ("Where does the copilot prototype save session state?", "./agent_states/<session_id>.pkl"),
    ("On which port is the copilot's Prometheus metrics server?", "Port: 8070"),
    ("Which metric counts failed workflows?", "idp_workflows_failed"),
    ("How can traces be printed to the console?", "Console exporter (configurable via"),
    ("Which built-in tool generates Kubernetes manifests?", "generate_k8s_manifests"),
    ("Does the copilot support several users?", "No multi-tenancy or user management"),
    ("What line length does the code formatter use?", "Black (line-length: 100)"),
    ("Which LLM providers does the provider abstraction support?", "A[LLMProvider Interface] --> B[OpenAIProvider]"),
    ("What agent pattern is the IDP copilot built around?", "ReAct (Reasoning + Acting) agent pattern"),
    ("What sections does a markdown todo list have?", "Sections: Title, Meta, Tasks, Open Questions, Notes"),
    ("Which API key must be set to run the copilot?", "`OPENAI_API_KEY` - OpenAI API access"),
)


def chunks(text: str, source: str) -> list[str]:
    """Sections cut at headings, packed to about CHUNK_CHARS, each prefixed with its heading path."""
    out: list[str] = []
    path: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        body = "\n".join(buf).strip()
        if body:
            out.append(f"{source} > {' > '.join(path)}\n{body}" if path else f"{source}\n{body}")
        buf.clear()

    for line in text.splitlines():
        heading = re.match(r"^(#{1,6})\s+(.*)", line)
        if heading:
            flush()
            level = len(heading.group(1))
            path[:] = [*path[: level - 1], heading.group(2).strip()]
            continue
        if buf and sum(len(b) + 1 for b in buf) + len(line) > CHUNK_CHARS and not line.startswith(" "):
            flush()
        buf.append(line)
    flush()
    return out


def corpus() -> list[str]:
    texts: list[str] = []
    for name in SEEDS:
        texts += chunks((DATA / name).read_text(encoding="utf-8"), name.removesuffix(".md"))
    return texts


@dataclass
class Quality:
    hit1: float
    hit5: float
    mrr: float
    recall5_vs_exact: float
    misses: list[str]


def quality(root: Path, embedder: Any, texts: list[str]) -> Quality:
    from edgecrew.memory import MemoryService, ScopeRef
    from edgecrew.store import open_store

    svc = MemoryService.open(open_store(f"sqlite:///{root / f'quality-{embedder.model_id}.db'}"), embedder=embedder)
    for i in range(0, len(texts), 32):
        svc.remember_many(texts[i : i + 32], "project", "seeds")
    scope = [ScopeRef("project", "seeds")]
    hit1 = hit5 = rr = overlap = 0.0
    misses: list[str] = []
    for question, answer in QUESTIONS:
        found = svc.recall(question, scope, k=5)
        ranks = [i for i, h in enumerate(found.hits) if answer in h.text]
        hit1 += bool(ranks and ranks[0] == 0)
        hit5 += bool(ranks)
        rr += 1.0 / (ranks[0] + 1) if ranks else 0.0
        if not ranks:
            misses.append(question)
        exact = svc.store.exact_search(svc.embedder.embed_query(question), [("project", "seeds")], 5)
        overlap += len({h.id for h in found.hits} & {h.record.id for h in exact.hits}) / 5
    n = len(QUESTIONS)
    return Quality(hit1 / n, hit5 / n, rr / n, overlap / n, misses)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ms(samples: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples, n=20) if len(samples) > 1 else [samples[0]] * 19
    return statistics.median(samples) * 1000, qs[18] * 1000


def latency(root: Path, size: int, queries: int, dim: int) -> dict[str, Any]:
    from edgecrew.store import open_store
    from edgecrew.store.memory import MemoryStore, NewMemory

    store = MemoryStore(open_store(f"sqlite:///{root / f'latency-{size}.db'}"), model="random", dim=dim)
    rng = np.random.default_rng(size)
    vectors = _unit(rng, size, dim)
    start = time.perf_counter()
    for i in range(0, size, 1000):
        store.add(
            [NewMemory(f"synthetic memory {j}", "project", "bench", v) for j, v in enumerate(vectors[i : i + 1000], i)]
        )
    batch_insert_s = (time.perf_counter() - start) / size
    singles = []
    for v in _unit(rng, 30, dim):
        t0 = time.perf_counter()
        store.add([NewMemory("one more", "project", "bench", v)])
        singles.append(time.perf_counter() - t0)
    scope = [("project", "bench")]
    qs = _unit(rng, queries, dim)
    index_t, exact_t, overlap = [], [], 0.0
    exact_n = max(5, queries // 5) if size > 20_000 else queries  # the fallback is slow at 100k: fewer samples
    for i, q in enumerate(qs):
        t0 = time.perf_counter()
        got = store.search(q, scope, 5)
        index_t.append(time.perf_counter() - t0)
        if i < exact_n:
            t0 = time.perf_counter()
            want = store.exact_search(q, scope, 5)
            exact_t.append(time.perf_counter() - t0)
            overlap += len({h.record.id for h in got.hits} & {h.record.id for h in want.hits}) / 5
    db = Path(store.store.engine.url.database or "")
    size_bytes = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {
        "size": size,
        "backend": store.backend,
        "insert_batch_ms": batch_insert_s * 1000,
        "insert_single_ms": _ms(singles),
        "query_index_ms": _ms(index_t),
        "query_exact_ms": _ms(exact_t),
        "recall5_vs_exact": overlap / exact_n,
        "bytes_per_memory": size_bytes / size,
    }


def embedding_cost(embedder: Any) -> dict[str, Any]:
    texts = [f"Synthetic note {i}: the planner moved task {i % 13} to the afternoon review." for i in range(64)]
    embedder.embed_query("warm up")
    one = []
    for t in texts[:20]:
        t0 = time.perf_counter()
        embedder.embed_query(t)
        one.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    embedder.embed_passages(texts[:32])
    embedder.embed_passages(texts[32:])
    batch = (time.perf_counter() - t0) / len(texts)
    return {"query_ms": _ms(one), "passage_in_batch_ms": batch * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from edgecrew.memory import E5Embedder, HashingEmbedder

    e5 = E5Embedder(threads=int(os.environ.get("OMP_NUM_THREADS", "0")) or None)
    texts = corpus()
    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-memory-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        q_e5 = quality(root, e5, texts)
        quality_s = time.perf_counter() - t0
        q_hash = quality(root, HashingEmbedder(), texts)
        cost = embedding_cost(e5)
        sizes = [int(s) for s in args.sizes.split(",") if s]
        lat = [latency(root, n, args.queries, e5.dim) for n in sizes]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "chunks": len(texts),
        "questions": len(QUESTIONS),
        "quality_s": quality_s,
        "e5": q_e5.__dict__,
        "hashing": q_hash.__dict__,
        "embedding": cost,
        "latency": lat,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['machine']}; {len(texts)} chunks of 3 seeds, {len(QUESTIONS)} labelled questions (k=5)")
    print()
    print("| retrieval | hit@1 | hit@5 | MRR | recall@5 index vs exact |")
    print("|---|---|---|---|---|")
    for name, q in (("e5-small-q4 (edgecrew)", q_e5), ("hashed words (anchor)", q_hash)):
        print(f"| {name} | {q.hit1:.2f} | {q.hit5:.2f} | {q.mrr:.2f} | {q.recall5_vs_exact:.2f} |")
    print()
    print(f"E5 misses at k=5: {q_e5.misses or 'none'}")
    print(
        f"embedding (e5-small-q4): one query p50 {cost['query_ms'][0]:.1f} ms (p95 {cost['query_ms'][1]:.1f}), "
        f"a passage in batches of 32 {cost['passage_in_batch_ms']:.1f} ms"
    )
    print()
    print(
        "| memories (random unit vectors, 384-d, one scope) | index | insert, batch of 1000 / memory "
        "| insert one, p50 | query k=5 index p50 / p95 | exact fallback p50 / p95 | recall@5 vs exact | bytes/memory |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in lat:
        print(
            f"| {r['size']:,} | {r['backend']} | {r['insert_batch_ms']:.3f} ms | {r['insert_single_ms'][0]:.2f} ms | "
            f"{r['query_index_ms'][0]:.1f} / {r['query_index_ms'][1]:.1f} ms | "
            f"{r['query_exact_ms'][0]:.1f} / {r['query_exact_ms'][1]:.1f} ms | {r['recall5_vs_exact']:.3f} | "
            f"{r['bytes_per_memory']:.0f} |"
        )


if __name__ == "__main__":
    main()
