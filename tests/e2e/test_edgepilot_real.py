"""EdgePilot on the real embedded models: the answer's figures are the machine's at that moment."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psutil
import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine import durable
from edgecrew.engine.service import RunService, TeamName

pytest.importorskip("llama_cpp", reason="the embedded models need the [local] extra (make test installs it)")
pytestmark = pytest.mark.real_model


@pytest.fixture(autouse=True)
def _shutdown() -> Iterator[None]:
    yield
    durable.shutdown()


async def test_edgepilot_answers_whether_a_4_gb_job_fits_with_this_machines_figures() -> None:
    rt = bootstrap()
    before = psutil.virtual_memory().available
    done = await RunService(rt).run(TeamName("edgepilot"), "Can I run a 4 GB job now? If not, when?")
    after = psutil.virtual_memory().available
    assert done.ok, done.run.error
    steps = {s.agent: s for s in rt.store.steps(done.run.id)}
    assert steps["planner"].completion_tokens > 0 and steps["summarizer"].completion_tokens > 0
    facts = steps["executor"].output["facts"]
    can_run = facts[0]["result"]
    text = done.run.output["text"]
    # The scheduler's figure is this machine's free memory at that moment (less the pool's reserve).
    free_mib = can_run["free_memory_mb"]
    assert min(before, after) / 2**20 * 0.7 <= free_mib <= max(before, after) / 2**20 * 1.05
    verdict = "fits now" if can_run["fits"] else "does not fit now"
    assert f"A job needing 3815 MiB {verdict}" in text and f"({free_mib} MiB of memory" in text
    # Every figure the answer states is one of the facts' (the check's promise).
    stated = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?", text))
    assert stated <= set(steps["executor"].output["figures"]) | {"3815", "4"}, stated


async def test_edgepilot_names_what_used_the_most_memory() -> None:
    rt = bootstrap()
    done = await RunService(rt).run(TeamName("edgepilot"), "What used the most memory in the last hour?")
    assert done.ok, done.run.error
    steps = {s.agent: s for s in rt.store.steps(done.run.id)}
    fact = steps["executor"].output["facts"][0]
    assert fact["tool"] == "metrics.top"
    assert fact["statement"] and fact["statement"] in done.run.output["text"]
