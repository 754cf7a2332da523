"""Jobs under policies without the durable engine: policy evaluation on fed-in facts (times, loads,
memory), policies' spec errors with file:line, versions (YAML and applied), and admission decisions
(`JobService.check`) on a real SQLite store with the machine's facts fed in."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ConflictError, NotFoundError, SpecError, UserError
from edgecrew.ops import Ops
from edgecrew.ops.jobs import JobNeeds, JobService
from edgecrew.specs.jobs import JobFacts, MachineFacts, PolicyDoc, evaluate
from edgecrew.specs.project import load_project
from tests.conftest import write

GiB = 2**30
CALM = MachineFacts(load1=0.2, cpu_count=4, available_memory_bytes=8 * GiB, memory_percent=40.0, temperature_c=50.0)
JOB = JobFacts("train-small", ("batch",), 50)
MONDAY_23 = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)  # a Monday


def policy(**values: Any) -> PolicyDoc:
    return PolicyDoc.model_validate(values)


# -- evaluation on fed-in facts ---------------------------------------------------------------------------


def test_a_window_across_midnight_is_open_late_and_early_and_closed_by_day() -> None:
    night = {"night": policy(windows=[{"days": ["mon", "tue"], "start": "22:00", "end": "06:00"}])}
    assert evaluate(night, JOB, CALM, MONDAY_23) == []
    assert evaluate(night, JOB, CALM, MONDAY_23 + timedelta(hours=6, minutes=59)) == []  # Tue 05:59
    [closed] = evaluate(night, JOB, CALM, MONDAY_23 + timedelta(hours=8))  # Tue 07:00
    assert closed.kind == "window" and closed.policy == "night"
    assert closed.retry_at == datetime(2026, 12, 8, 22, 0, tzinfo=UTC)  # Tuesday evening
    # Wednesday 23:00 is not one of its days; it opens again next Monday.
    [wed] = evaluate(night, JOB, CALM, MONDAY_23 + timedelta(days=2))
    assert wed.retry_at == datetime(2026, 12, 14, 22, 0, tzinfo=UTC)


def test_a_window_is_read_in_its_time_zone() -> None:
    berlin = {"b": policy(timezone="Europe/Berlin", windows=[{"start": "08:00", "end": "09:00"}])}
    assert evaluate(berlin, JOB, CALM, datetime(2026, 12, 7, 7, 30, tzinfo=UTC)) == []  # 08:30 in Berlin
    assert evaluate(berlin, JOB, CALM, datetime(2026, 12, 7, 8, 30, tzinfo=UTC))  # 09:30 there


def test_thresholds_say_no_with_the_figures() -> None:
    strict = {
        "strict": policy(max_load_per_core=0.5, min_free_memory="4GiB", max_memory_percent=80, max_temperature_c=70)
    }
    assert evaluate(strict, JOB, CALM, MONDAY_23) == []
    busy = MachineFacts(load1=3.0, cpu_count=4, available_memory_bytes=2 * GiB, memory_percent=91.0, temperature_c=82)
    found = {r.kind: r.reason for r in evaluate(strict, JOB, busy, MONDAY_23)}
    assert found == {
        "load": "load per core is 0.75, above its limit 0.5",
        "memory": "free memory is 2048 MiB, below its floor 4096 MiB",
        "memory_percent": "memory use is 91%, above its limit 80%",
        "temperature": "temperature is 82 °C, above its limit 70 °C",
    }
    no_sensor = MachineFacts(0.1, 4, 8 * GiB, 10.0, None)
    assert evaluate(strict, JOB, no_sensor, MONDAY_23) == []  # no sensor: temperature is not judged


def test_only_covering_policies_judge_and_concurrency_counts_their_running_jobs() -> None:
    policies = {
        "batch-only": policy(covers={"tags": ["batch"]}, max_concurrent=1),
        "gpu-names": policy(covers={"names": ["gpu-*"]}, max_load_per_core=0.01),
        "urgent": policy(covers={"min_priority": 90}, max_load_per_core=0.01),
    }
    [refusal] = evaluate(policies, JOB, CALM, MONDAY_23, running={"batch-only": 1})
    assert refusal.policy == "batch-only" and refusal.kind == "concurrency"
    assert evaluate(policies, JOB, CALM, MONDAY_23, running={"batch-only": 0}) == []
    assert [r.policy for r in evaluate(policies, JobFacts("gpu-train", (), 95), CALM, MONDAY_23)] == [
        "gpu-names",
        "urgent",
    ]


def test_a_window_with_seconds_and_a_whole_day_window() -> None:
    tight = {"t": policy(windows=[{"start": "23:00:05", "end": "23:00:10"}])}
    assert evaluate(tight, JOB, CALM, MONDAY_23)[0].retry_at == MONDAY_23 + timedelta(seconds=5)
    assert evaluate(tight, JOB, CALM, MONDAY_23 + timedelta(seconds=7)) == []
    weekend = {"w": policy(windows=[{"days": ["sat", "sun"], "start": "00:00", "end": "00:00"}])}
    assert evaluate(weekend, JOB, CALM, datetime(2026, 12, 12, 13, 0, tzinfo=UTC)) == []  # Saturday
    assert policy(windows=[{"start": "10:00", "end": "12:00"}]).open_throughout(
        datetime(2026, 12, 7, 10, 30, tzinfo=UTC), datetime(2026, 12, 7, 11, 30, tzinfo=UTC)
    )
    assert not policy(windows=[{"start": "10:00", "end": "12:00"}]).open_throughout(
        datetime(2026, 12, 7, 11, 30, tzinfo=UTC), datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
    )


# -- spec errors ------------------------------------------------------------------------------------------


def test_policy_mistakes_are_reported_with_file_and_line(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        policies:
          night:
            windows:
              - {days: [mon, funday], start: "25:00", end: "06:00"}
            timezone: Mars/Olympus
          empty: {}
          loose:
            max_load_per_core: 1
            max_concurent: 2
        """,
    )
    with pytest.raises(SpecError) as caught:
        load_project(project_dir)
    text = str(caught.value)
    config = str(project_dir / "edgecrew.yaml")
    assert f"{config}:4: policies.night.windows.0.days.1: Input should be 'mon'" in text
    assert "'25:00' is not a time of day" in text
    assert f"{config}:5" in text and "unknown time zone 'Mars/Olympus'" in text
    assert f"{config}:6: policies.empty: the policy sets no rule" in text
    assert f"{config}:9" in text and "max_concurent" in text


# -- the service on a real store, facts fed in ----------------------------------------------------------


@pytest.fixture
def jobs(project_dir: Path) -> JobService:
    write(
        project_dir / "edgecrew.yaml",
        """\
        models:
          fake: {backend: scripted, replies: [{text: done}]}
        teams:
          - name: solo
            agents: {a: {model: fake, system: hi}}
            graph: {start: a, edges: [{from: a, to: end}]}
        policies:
          calm:
            max_load_per_core: 0.5
          batch:
            covers: {tags: [batch]}
            max_concurrent: 1
        """,
    )
    rt: Runtime = bootstrap()
    service = Ops.of(rt).jobs
    service.facts = lambda: CALM
    service.room = lambda needs: None
    return service


def _create(service: JobService, **values: Any) -> str:
    job_id = f"j{time.monotonic_ns()}"
    row = service._validated(
        values.pop("argv", ["true"]),
        None,
        None,
        values.pop("name", None),
        False,
        values.pop("needs", JobNeeds()),
        values.pop("priority", 50),
        values.pop("deadline", None),
        values.pop("tags", ()),
    )
    service.store.create(job_id, workflow_id=service.workflow_id(job_id), **row)
    return job_id


def test_a_job_waits_while_a_threshold_says_no_and_starts_when_it_flips(jobs: JobService) -> None:
    job = _create(jobs)
    jobs.facts = lambda: MachineFacts(3.0, 2, 8 * GiB, 40.0)
    verdict = jobs.check(job)
    assert verdict["action"] == "wait" and verdict["sleep_s"] == jobs.rt.settings.jobs_check_s
    waiting = jobs.get(job)
    assert waiting.state == "waiting"
    assert waiting.reason == "calm: load per core is 1.50, above its limit 0.5"
    assert waiting.waiting_on == [{"kind": "load", "policy": "calm", "reason": waiting.reason.split(": ", 1)[1],
                                   "retry_at": None}]  # fmt: skip
    jobs.facts = lambda: CALM
    assert jobs.check(job)["action"] == "start"
    started = jobs.get(job)
    assert started.state == "running" and started.allowed_at is not None and started.waiting_on is None
    assert [e.kind for e in jobs.events(job)] == ["submitted", "waiting", "allowed"]
    assert jobs.check(job)["action"] == "start"  # a replayed check finds it claimed: never a second claim


def test_concurrency_slots_go_by_priority(jobs: JobService) -> None:
    first = _create(jobs, tags=["batch"], priority=50)
    assert jobs.check(first)["action"] == "start"  # alone in its slot
    low = _create(jobs, tags=["batch"], priority=10)
    high = _create(jobs, tags=["batch"], priority=90)
    assert jobs.check(low)["action"] == "wait"
    assert jobs.check(high)["action"] == "wait"
    assert "1 of its jobs run already" in (jobs.get(high).reason or "")
    jobs.store.transition(first, ("running",), state="succeeded", finished_at=time.time())
    # The slot is free: the low-priority job yields to the high one that waits for the same slot.
    assert jobs.check(low)["action"] == "wait"
    assert "1 job(s) ahead of it wait for its 1 free slot(s)" in (jobs.get(low).reason or "")
    assert jobs.check(high)["action"] == "start"


def test_a_job_that_waits_past_its_deadline_fails_saying_why(jobs: JobService) -> None:
    deadline = time.time() + 2  # room for the job's writes before the first check on a loaded machine
    job = _create(jobs, deadline=deadline)
    jobs.facts = lambda: MachineFacts(9.0, 1, 8 * GiB, 40.0)
    asked = time.time()
    verdict = jobs.check(job)
    assert verdict["action"] == "wait" and verdict["sleep_s"] <= deadline - asked + 0.02  # wakes for the deadline
    time.sleep(max(0.0, deadline - time.time()) + 0.05)
    assert jobs.check(job)["action"] == "end"
    failed = jobs.get(job)
    assert failed.state == "failed" and failed.finished_at is not None
    assert "waited past its deadline" in (failed.reason or "") and "calm: load per core is 9.00" in (
        failed.reason or ""
    )


def test_cancel_a_waiting_job_and_cancel_twice(jobs: JobService) -> None:
    job = _create(jobs)
    cancelled = jobs.cancel(job, by="alice")
    assert cancelled.state == "cancelled" and cancelled.reason == "cancelled by alice before it started"
    assert jobs.check(job)["action"] == "end"
    with pytest.raises(ConflictError, match="already cancelled"):
        jobs.cancel(job)
    with pytest.raises(NotFoundError, match="no job 'nope'"):
        jobs.cancel("nope")


def test_the_machine_room_is_a_refusal(jobs: JobService) -> None:
    job = _create(jobs, needs=JobNeeds(memory_bytes=GiB // 2))  # fits the machine, not its free memory now
    jobs.room = lambda needs: "needs 512 MiB of memory, 400 MiB free" if needs.memory_bytes else None
    jobs.check(job)
    assert jobs.get(job).waiting_on[0]["policy"] == "machine"  # type: ignore[index]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "a job is a command or a team run"),
        ({"argv": ["x"], "team": "solo", "task": "t"}, "a job is a command or a team run"),
        ({"argv": []}, "command: it is empty"),
        ({"argv": ["x"], "task": "t"}, "task: only a team job has a task"),
        ({"team": "nope", "task": "t"}, "no team 'nope'"),
        ({"team": "solo", "task": "  "}, "task: a team job needs a task"),
        ({"team": "solo", "task": "t", "sandbox": True}, "sandbox: only command jobs"),
        ({"argv": ["x"], "priority": 101}, "priority: 101 is out of range"),
        ({"argv": ["x"], "deadline": 1.0}, "deadline: 1970-01-01T00:00:01+00:00 has already passed"),
        ({"argv": ["x"], "deadline": 1e308}, "deadline: 1e+308 is not a time before the year 9999"),
        ({"argv": ["x"], "deadline": float("nan")}, "deadline: nan is not a time before the year 9999"),
        ({"argv": ["x"], "tags": ["Bad Tag"]}, "tag 'Bad Tag'"),
        ({"argv": ["x"], "needs": JobNeeds(memory_bytes=-1)}, "must not be negative"),
        # needs no machine of this size meets: it would wait for ever
        (
            {"argv": ["x"], "needs": JobNeeds(memory_bytes=9999 * 2**40)},
            "9999.0 TiB of memory is more than this machine",
        ),
        ({"argv": ["x"], "needs": JobNeeds(cpu_cores=100_000)}, "100000 CPU cores is more than this machine has"),
        # POST /jobs's bound, for every way in: a sandboxed one failed "Python int too large to convert to C long"
        ({"argv": ["x"], "needs": JobNeeds(duration_s=8.64e18)}, "duration of 8.64e+18 s is more than a year"),
        ({"argv": ["x"], "needs": JobNeeds(duration_s=float("nan"))}, "duration of nan s is more than a year"),
        # a sandboxed command's memory is its address-space limit: 104 bytes ended it "signal SIGSEGV"
        (
            {"argv": ["x"], "sandbox": True, "needs": JobNeeds(memory_bytes=104)},
            "too little to start a process; give at least 32.0 MiB",
        ),
    ],
)
async def test_submit_refuses_bad_input_saying_where_and_why(
    jobs: JobService, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("+", r"\+")):
        await jobs.submit(**values)
    assert jobs.list_jobs() == []


async def test_a_job_needing_gpu_memory_is_refused_where_there_is_no_gpu(jobs: JobService) -> None:
    jobs.rt.pool.gpu_budget_bytes = 0  # this machine: no GPU found
    with pytest.raises(UserError, match=r"2\.0 GiB of GPU memory, but this machine has no GPU memory budget"):
        await jobs.submit(argv=["true"], needs=JobNeeds(gpu_memory_bytes=2 * GiB))
    assert jobs.list_jobs() == []  # it would have waited for ever
    jobs.rt.pool.gpu_budget_bytes = 8 * GiB
    assert (await jobs.submit(argv=["true"], needs=JobNeeds(gpu_memory_bytes=2 * GiB))).state == "queued"


async def test_a_deadline_before_a_covering_policy_opens_is_refused(jobs: JobService, project_dir: Path) -> None:
    """A job whose deadline passes before its policy's window opens can never start: it was queued
    all the same, and failed at its deadline ('waited past its deadline')."""
    now = datetime.now(UTC)
    opens = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    closes = opens + timedelta(hours=1)
    day = opens.strftime("%a").lower()
    config = project_dir / "edgecrew.yaml"
    config.write_text(
        config.read_text()
        + f"""  nightly:
    covers: {{tags: [night]}}
    windows: [{{days: [{day}], start: "{opens:%H:%M}", end: "{closes:%H:%M}"}}]
""",
        encoding="utf-8",
    )
    jobs.rt.project = load_project(project_dir)
    jobs.sync_policies()
    soon = time.time() + 3600
    with pytest.raises(UserError) as info:
        await jobs.submit(argv=["true"], tags=["night"], deadline=soon)
    said = str(info.value)
    assert said.startswith("deadline: ") and "before policy 'nightly' lets the job start (its next time" in said
    assert f"{opens:%H:%M}" in said and "give a later deadline" in said, said
    assert jobs.list_jobs() == []
    later = await jobs.submit(argv=["true"], tags=["night"], deadline=opens.timestamp() + 600)
    untagged = await jobs.submit(argv=["true"], deadline=soon)  # not covered: its deadline is no concern
    assert later.state == untagged.state == "queued"


async def test_plain_commands_can_be_switched_off(jobs: JobService) -> None:
    jobs.rt.settings = jobs.rt.settings.model_copy(update={"jobs_plain_commands": False})
    with pytest.raises(UserError, match="plain commands are off"):
        await jobs.submit(argv=["true"])


# -- policy versions --------------------------------------------------------------------------------------


def test_yaml_versions_applied_versions_and_what_is_in_force(jobs: JobService, project_dir: Path) -> None:
    assert {name: p.version.version for name, p in jobs.effective_policies().items()} == {"calm": 1, "batch": 1}
    applied = jobs.apply_policy("calm", {"max_load_per_core": 0.9}, "load is low at night", "optimizer")
    assert (applied.version, applied.source) == (2, "optimizer")
    assert jobs.effective_policies()["calm"].doc.max_load_per_core == 0.9
    # A restart with the same YAML keeps the applied version in force.
    again = Ops.of(bootstrap()).jobs
    assert again.sync_policies() == []
    assert again.effective_policies()["calm"].version.version == 2
    # The YAML changes: its content is a new version, in force again; a policy removed from it is not.
    text = (project_dir / "edgecrew.yaml").read_text().replace("max_load_per_core: 0.5", "max_load_per_core: 0.7")
    batch = "  batch:\n    covers: {tags: [batch]}\n    max_concurrent: 1\n"
    (project_dir / "edgecrew.yaml").write_text(text.replace(batch, ""))
    changed = Ops.of(bootstrap()).jobs
    recorded = changed.sync_policies()
    assert [(v.policy, v.version, v.reason) for v in recorded] == [
        ("calm", 3, "changed in edgecrew.yaml"),
        ("batch", 2, "removed from edgecrew.yaml"),
    ]
    assert {n: p.doc.max_load_per_core for n, p in changed.effective_policies().items()} == {"calm": 0.7}
    assert [v.source for v in changed.policy_versions("calm")] == ["yaml", "optimizer", "yaml"]


def test_a_policy_changed_in_the_yaml_wakes_the_waiting_jobs(
    jobs: JobService, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an applied change does: they would check again only at their next timed check (up to a minute)."""
    woken: list[int] = []
    monkeypatch.setattr(JobService, "wake_waiting", lambda self: woken.append(1) or 0)
    declared = [v.reason for v in Ops.of(bootstrap()).jobs.sync_policies()]
    assert declared == ["declared in edgecrew.yaml"] * 2 and woken == []  # a new policy lets nobody in
    assert Ops.of(bootstrap()).jobs.sync_policies() == [] and woken == []  # unchanged
    text = (project_dir / "edgecrew.yaml").read_text()
    (project_dir / "edgecrew.yaml").write_text(text.replace("max_load_per_core: 0.5", "max_load_per_core: 0.9"))
    assert [v.reason for v in Ops.of(bootstrap()).jobs.sync_policies()] == ["changed in edgecrew.yaml"]
    assert woken == [1]


def test_an_applied_policy_is_validated_like_the_yaml(jobs: JobService) -> None:
    with pytest.raises(UserError, match=r"policy 'calm' is not valid: max_load_per_core: Input should be greater"):
        jobs.apply_policy("calm", {"max_load_per_core": -1}, "why", "optimizer")
    with pytest.raises(UserError, match=r"windows\.0\.start: '7pm' is not a time of day"):
        jobs.apply_policy("calm", {"windows": [{"start": "7pm"}]}, "why", "optimizer")
    with pytest.raises(UserError, match="say why it changes"):
        jobs.apply_policy("calm", {"max_concurrent": 1}, " ", "optimizer")
    with pytest.raises(UserError, match="not 'yaml'"):
        jobs.apply_policy("calm", {"max_concurrent": 1}, "why", "yaml")
    with pytest.raises(NotFoundError, match="no policy 'nope' \\(known: batch, calm\\)"):
        jobs.policy_versions("nope")


# -- the tools ----------------------------------------------------------------------------------------------


class FakeSampler:
    """The sampler's read port: free memory is low from 08:00 to 18:00 UTC, load is low at night."""

    def __init__(self, days: int = 3) -> None:
        self.points = [time.time() - days * 86400 + i * 600 for i in range(days * 144)]

    def series(self, name: str, since: float, until: float | None = None) -> list[tuple[float, float]]:
        def busy(at: float) -> bool:
            return 8 <= datetime.fromtimestamp(at, UTC).hour < 18

        if name == "memory_available_bytes":
            return [(at, 1 * GiB if busy(at) else 12 * GiB) for at in self.points]
        return [(at, 3.0 if busy(at) else 0.2) for at in self.points]


def test_suggest_window_follows_the_policy_window_when_there_is_no_history(jobs: JobService) -> None:
    from edgecrew.ops.job_tools import _suggest

    now = datetime.now(UTC).replace(microsecond=0)
    opens = now + timedelta(hours=2)
    jobs.apply_policy("calm", {"windows": [{"start": opens.strftime("%H:%M:%S"),
                                            "end": (opens + timedelta(hours=1)).strftime("%H:%M:%S")}]},
                      "test", "test")  # fmt: skip
    Ops.of(jobs.rt).__dict__["sampler"] = object()  # a sampler without history
    out = _suggest(jobs, 512, 0, 0, 30, 24, (), 50, now=now)
    assert not out.fits_now and out.windows and not out.history
    assert out.windows[0].start == opens.isoformat(timespec="minutes")
    assert datetime.fromisoformat(out.windows[-1].end) <= opens + timedelta(minutes=30)  # ends in the window
    assert out.summary.startswith(f"Next window: a job may start from {opens.isoformat(timespec='minutes')} until ")
    assert "no metric history yet" in out.summary and "Not now: calm: outside its time windows" in out.summary
    assert out.policies == ["calm"]


def test_a_window_with_one_start_time_is_said_so(jobs: JobService) -> None:
    """A 30-minute window for a 30-minute job read "Next window starts 18:30 (until 18:30)", as if it
    were no time at all: its one start time is said as that."""
    from edgecrew.ops.job_tools import _suggest

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    opens = now + timedelta(hours=2)
    jobs.apply_policy("calm", {"windows": [{"start": opens.strftime("%H:%M"),
                                            "end": (opens + timedelta(minutes=30)).strftime("%H:%M")}]},
                      "test", "test")  # fmt: skip
    Ops.of(jobs.rt).__dict__["sampler"] = object()  # a sampler without history
    out = _suggest(jobs, 512, 0, 0, 30, 24, (), 50, now=now)
    at = opens.isoformat(timespec="minutes")
    assert [(w.start, w.end) for w in out.windows] == [(at, at)]
    assert out.summary.startswith(f"Next window: a job may start at {at} only."), out


def test_suggest_window_reads_the_history_by_hour(jobs: JobService) -> None:
    from edgecrew.ops.job_tools import _suggest

    jobs.apply_policy("calm", {"max_load_per_core": 0.5, "min_free_memory": "1GiB"}, "test", "test")
    Ops.of(jobs.rt).__dict__["sampler"] = FakeSampler()
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    out = _suggest(jobs, 4096, 1, 0, 60, 24, (), 50, now=noon)
    assert out.history and out.fits_now  # the facts fed in now are calm
    later = [w for w in out.windows if w.basis == "history"]
    assert later and all(not 8 <= datetime.fromisoformat(w.start).hour < 18 for w in later)
    assert later[0].start == noon.replace(hour=18).isoformat(timespec="minutes")
    assert later[0].expected_free_memory_mb == 12 * 1024


def test_suggest_window_offers_no_window_a_memory_percent_limit_would_refuse(jobs: JobService) -> None:
    """A window ahead is judged by every limit a prediction exists for: with 16 GiB in all, 12 GiB free
    expected at night is 25% in use, above a 20% limit (it was offered, and the policy refused the job)."""
    from edgecrew.ops.job_tools import _suggest

    jobs.apply_policy("calm", {"max_memory_percent": 20}, "test", "test")
    Ops.of(jobs.rt).__dict__["sampler"] = FakeSampler()
    jobs.facts = lambda: MachineFacts(0.2, 4, 8 * GiB, 50.0, None, 16 * GiB)
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    out = _suggest(jobs, 512, 0, 0, 60, 24, (), 50, now=noon)
    assert not out.fits_now and out.windows == []
    assert "calm: memory use is 50%, above its limit 20%" in out.summary
    jobs.apply_policy("calm", {"max_memory_percent": 30}, "test", "test")  # 25% at night is under it
    later = _suggest(jobs, 512, 0, 0, 60, 24, (), 50, now=noon).windows
    assert later and later[0].start == noon.replace(hour=18).isoformat(timespec="minutes")


def test_suggest_window_says_a_job_bigger_than_the_machine_never_fits_here(jobs: JobService) -> None:
    """EdgePilot's "Can I run a 100 TB job?" said "No window in the next 24 h", as if a later day might
    do, where jobs submit says such a job could never start here."""
    from edgecrew.ops.job_tools import _suggest

    Ops.of(jobs.rt).__dict__["sampler"] = FakeSampler()
    jobs.facts = lambda: MachineFacts(0.2, 4, 8 * GiB, 40.0, None, 16 * GiB)
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    out = _suggest(jobs, 32 * 1024, 1, 0, 30, 24, (), 50, now=noon)
    assert not out.fits_now and out.windows == []
    assert out.summary == (
        "It can never run here: it needs 32768 MiB of memory, more than this machine has (16384 MiB)."
    ), out.summary
    cores = _suggest(jobs, 512, 8, 0, 30, 24, (), 50, now=noon)
    assert not cores.fits_now and cores.windows == []
    assert cores.summary == "It can never run here: it needs 8 CPU cores, more than this machine has (4).", cores
    assert _suggest(jobs, 512, 1, 0, 30, 24, (), 50, now=noon).windows  # one that fits the machine gets windows


async def test_the_job_tools_are_declared_and_answer_with_a_summary_first(jobs: JobService) -> None:
    from edgecrew.tools.base import ToolContext

    registry = jobs.rt.tools
    submit, status = registry.get("jobs.submit"), registry.get("jobs.status")
    assert (submit.risk, status.risk, registry.get("scheduler.suggest_window").risk) == ("risky", "safe", "safe")
    for spec in (submit, status, registry.get("scheduler.suggest_window")):
        assert spec.result_schema is not None and next(iter(spec.result_schema["properties"])) == "summary"
    ctx = ToolContext(run_id="r1", agent="planner", workspace=jobs.rt.settings.home)
    out = await submit.call({"argv": ["echo", "hi"], "memory_mb": 64, "tags": ["batch"]}, ctx)
    job = jobs.get(out["job_id"])
    assert out["summary"].startswith(f"Submitted job {job.id}") and job.sandbox  # an agent's command is sandboxed
    assert job.submitted_by == "planner@r1" and job.needs["memory_bytes"] == 64 * 2**20
    shown = await status.call({"job_id": job.id}, ctx)
    assert list(shown) == ["summary", "jobs"] and shown["summary"] == f"Job {job.id} (echo) is queued."
    with pytest.raises(Exception, match="a job is a command or a team run"):
        await submit.call({}, ctx)
    jobs.close()


# -- the CLI ------------------------------------------------------------------------------------------------


def test_the_cli_submits_lists_shows_cancels_and_reads_policies(jobs: JobService) -> None:
    import json

    from typer.testing import CliRunner

    from edgecrew.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["jobs", "submit", "--memory", "1g", "--cpus", "1", "--duration", "30m",
                               "--deadline", "+2h", "--tag", "batch", "--priority", "70", "--json",
                               "--", "python", "train.py", "--epochs", "3"])  # fmt: skip
    assert made.exit_code == 0, made.output
    job = json.loads(made.output)
    assert job["argv"] == ["python", "train.py", "--epochs", "3"] and job["name"] == "python"
    assert job["needs"] == {"cpu_cores": 1.0, "memory_bytes": 2**30, "gpu_memory_bytes": 0, "duration_s": 1800.0}
    assert job["priority"] == 70 and job["tags"] == ["batch"] and job["deadline"] > time.time() + 7000
    team = runner.invoke(app, ["jobs", "submit", "--team", "solo", "--task", "write it"])
    assert team.exit_code == 0 and "submitted job" in team.output
    listed = runner.invoke(app, ["jobs", "list"])
    assert listed.exit_code == 0 and job["id"] in listed.output
    none_running = runner.invoke(app, ["jobs", "list", "--state", "running"])  # there are jobs, none running
    assert none_running.exit_code == 0 and "no running jobs; `edgecrew jobs list` shows" in none_running.output
    as_json = json.loads(runner.invoke(app, ["jobs", "list", "--json"]).output)
    assert [j["kind"] for j in as_json] == ["team", "command"] and as_json[0]["task"] == "write it"
    shown = runner.invoke(app, ["jobs", "show", job["id"]])
    assert shown.exit_code == 0 and "python train.py --epochs 3" in shown.output and "submitted" in shown.output
    assert "needs:     1 CPU core, 1.0 GiB memory, about 30 min" in shown.output  # sizes, not bytes in JSON
    cancelled = runner.invoke(app, ["jobs", "cancel", job["id"]])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    again = runner.invoke(app, ["jobs", "cancel", job["id"]])
    assert again.exit_code == 1 and "already cancelled; nothing to cancel" in again.output
    policies = runner.invoke(app, ["jobs", "policies"])
    assert policies.exit_code == 0 and "calm" in policies.output and "batch" in policies.output
    versions = runner.invoke(app, ["jobs", "policies", "calm", "--json"])
    assert versions.exit_code == 0 and json.loads(versions.output)[0]["reason"] == "declared in edgecrew.yaml"
    unknown = runner.invoke(app, ["jobs", "policies", "nope"])
    assert unknown.exit_code == 1 and "no policy 'nope'" in unknown.output


def test_a_job_is_named_by_an_id_prefix_as_runs_approvals_and_incidents_are(jobs: JobService) -> None:
    """`jobs show j3b77` said "no job 'j3b77'" where `runs show`, `approvals approve` and `incidents show`
    take the start of an id."""
    from typer.testing import CliRunner

    from edgecrew.cli import app

    job = _create(jobs)
    runner = CliRunner()
    shown = runner.invoke(app, ["jobs", "show", job[:-2]])
    assert shown.exit_code == 0 and job in shown.output and "submitted" in shown.output, shown.output
    cancelled = runner.invoke(app, ["jobs", "cancel", job[:-2]])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output, cancelled.output
    assert jobs.get(job).state == "cancelled" and [e.kind for e in jobs.events(job[:-2])][-1] == "cancelled"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--memory", "lots", "--", "true"], "--memory: cannot read size 'lots'"),
        (["--memory", "4", "--", "true"], "--memory: '4' has no unit; write e.g. 4GiB or 4MiB"),
        (["--duration", "soon", "--", "true"], "--duration: cannot read 'soon'"),
        (["--deadline", "tomorrow", "--", "true"], "--deadline: cannot read 'tomorrow'"),
        (["--team", "solo"], "task: a team job needs a task"),
        ([], "a job is a command or a team run"),
    ],
)
def test_the_cli_says_what_is_wrong_with_a_job(jobs: JobService, args: list[str], says: str) -> None:
    from typer.testing import CliRunner

    from edgecrew.cli import app

    result = CliRunner().invoke(app, ["jobs", "submit", *args])
    assert result.exit_code == 1 and says in " ".join(result.output.split()), result.output


def test_a_command_whose_pid_was_never_recorded_is_found_by_its_job_id() -> None:
    """A server killed between starting a command and recording its pid: the next one finds the command
    by the EDGECREW_JOB_ID it was given (the leader of its own group), and nothing for another job."""
    import os
    import subprocess
    import types

    from edgecrew.ops.jobs import _alive, _command_of

    env = {**os.environ, "EDGECREW_JOB_ID": "jorphan"}
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"], env=env, start_new_session=True)
    try:
        lost = types.SimpleNamespace(id="jorphan", pid=None, pid_started=None, argv=["sh"])
        deadline = time.monotonic() + 30
        while (found := _command_of(lost))[0] is None and time.monotonic() < deadline:
            time.sleep(0.05)  # its environment is readable once it has started
        pid, started = found
        assert pid == proc.pid and started is not None and _alive(pid, started)
        assert _command_of(types.SimpleNamespace(id="jother", pid=None, pid_started=None, argv=["sh"])) == (None, None)
        assert _command_of(types.SimpleNamespace(id="jorphan", pid=None, pid_started=None, argv=None)) == (None, None)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
