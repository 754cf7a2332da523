"""The optimizer's evidence: candidate policy changes derived from fed-in job history, each with its
reasons in figures, and none where the evidence does not support one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgecrew.ops.optimizer import evidence
from edgecrew.specs.jobs import PolicyDoc

MiB = 2**20


@dataclass
class Version:
    version: int


@dataclass
class Effective:
    doc: PolicyDoc
    version: Version


@dataclass
class Event:
    kind: str
    detail: Any


@dataclass
class Job:
    id: str
    name: str
    created_at: float
    started_at: float | None
    usage: dict[str, Any] | None = None
    needs: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    priority: int = 50


class Jobs:
    """What evidence() reads of a JobService."""

    def __init__(self, policies: dict[str, PolicyDoc], jobs: list[Job], held: dict[str, list[dict[str, Any]]]) -> None:
        self.policies, self.jobs, self.held = policies, jobs, held

    def effective_policies(self) -> dict[str, Effective]:
        return {name: Effective(doc, Version(2)) for name, doc in self.policies.items()}

    def history(self, *, limit: int) -> list[Job]:
        return self.jobs[:limit]

    def events(self, job_id: str) -> list[Event]:
        return [Event("waiting", self.held.get(job_id, []))]


def refusal(kind: str, policy: str = "nightly") -> list[dict[str, Any]]:
    return [{"kind": kind, "policy": policy, "reason": f"{kind} says no", "retry_at": None}]


def test_a_load_limit_that_held_jobs_on_an_idle_cpu_becomes_a_candidate() -> None:
    policy = PolicyDoc(max_load_per_core=0.8)
    jobs = [Job(f"j{i}", f"train-{i}", 0, 600 + i) for i in range(5)]
    found = evidence(Jobs({"nightly": policy}, jobs, {f"j{i}": refusal("load") for i in range(4)}), cpu_p90=35.0)
    assert found["candidates"] == [
        {
            "policy": "nightly",
            "field": "max_load_per_core",
            "before": 0.8,
            "after": 1.0,
            "change": "nightly: max_load_per_core 0.8 -> 1.0",
            "reason": "the load limit held jobs back 4 times; CPU p90 35% over 24 h",
            "id": 1,
        }
    ]
    assert found["policies"][0] | {"median_wait_s": 0} == {
        "policy": "nightly",
        "version": 2,
        "jobs": 5,
        "never_started": 0,
        "waited": 5,
        "median_wait_s": 0,
        "held_by": {"load": 4},
        "overran_memory": 0,
    }
    assert "Candidates: 1. nightly: max_load_per_core 0.8 -> 1.0" in found["summary"]


def test_a_busy_cpu_keeps_the_load_limit() -> None:
    policy = PolicyDoc(max_load_per_core=0.8)
    jobs = [Job(f"j{i}", "x", 0, 600) for i in range(5)]
    found = evidence(Jobs({"nightly": policy}, jobs, {f"j{i}": refusal("load") for i in range(5)}), cpu_p90=95.0)
    assert found["candidates"] == [] and found["summary"].endswith("No change is supported by the evidence.")


def test_jobs_that_used_more_memory_than_declared_raise_the_memory_floor() -> None:
    policy = PolicyDoc(min_free_memory="512MiB")
    usage = {"peak_rss_bytes": 900 * MiB}
    jobs = [Job(f"j{i}", "etl", 0, 1, usage=usage, needs={"memory_bytes": 300 * MiB}) for i in range(3)]
    found = evidence(Jobs({"etl": policy}, jobs, {}))
    assert [(c["field"], c["before"], c["after"]) for c in found["candidates"]] == [
        ("min_free_memory", "512MiB", "1080MiB")
    ]
    assert "3 jobs used more memory than they declared, up to 900 MiB" in found["candidates"][0]["reason"]


def test_jobs_outside_a_policy_do_not_count_for_it() -> None:
    policy = PolicyDoc(max_concurrent=1, covers={"tags": ["gpu"]})
    jobs = [Job(f"j{i}", "x", 0, 100) for i in range(4)]  # no gpu tag: not covered
    found = evidence(Jobs({"gpu": policy}, jobs, {f"j{i}": refusal("concurrency", "gpu") for i in range(4)}))
    assert found["policies"][0]["jobs"] == 0 and found["candidates"] == []


def test_a_job_that_ended_before_it_started_is_no_finished_job() -> None:
    """A job cancelled while it waited counted as a finished one ("1 finished jobs" for none that ran);
    the refusals that held it still count."""
    jobs = [Job("j1", "nightly-a", created_at=0, started_at=None)]
    out = evidence(Jobs({"nightly": PolicyDoc(max_load_per_core=0.5)}, jobs, {"j1": refusal("load")}))
    assert out["summary"].startswith(
        "nightly (v2): 0 finished jobs, 0 waited (median 0 s), 1 ended before they started, held by {'load': 1}"
    )
    assert out["policies"][0]["jobs"] == 0 and out["policies"][0]["never_started"] == 1
