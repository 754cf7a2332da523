"""The model pool on cheap scripted models with declared footprints: loading, eviction, slots, order."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from edgecrew.errors import UserError
from edgecrew.models.base import ChatModel
from edgecrew.models.pool import GpuInfo, ModelPool, PoolModelSpec, default_budgets
from edgecrew.models.scripted import ScriptedModel

MiB = 1024 * 1024


@dataclass
class FakeProbe:
    """The machine, as the pool sees it."""

    total: int = 4096 * MiB
    available: int = 3072 * MiB
    rss: int = 500 * MiB
    cpu: float = 4.0
    gpu_list: list[GpuInfo] = field(default_factory=list)

    def total_memory(self) -> int:
        return self.total

    def available_memory(self) -> int:
        return self.available

    def process_memory(self) -> int:
        return self.rss

    def free_cpu(self) -> float:
        return self.cpu

    def gpus(self) -> list[GpuInfo]:
        return list(self.gpu_list)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """Loads and unloads ScriptedModels, recording both; a load may be held until a test lets it go."""

    def __init__(self, probe: FakeProbe | None = None, grows: int = 0) -> None:
        self.loaded: list[str] = []
        self.unloaded: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail: set[str] = set()
        self.probe, self.grows = probe, grows

    async def load(self, alias: str) -> ChatModel:
        if self.gate is not None:
            await self.gate.wait()
        if alias in self.fail:
            raise RuntimeError(f"cannot load {alias}")
        if self.probe is not None:
            self.probe.rss += self.grows
        self.loaded.append(alias)
        return ScriptedModel(["ok"], name=alias, cycle=True)

    def unload(self, alias: str, model: ChatModel) -> None:
        self.unloaded.append(alias)


def make_pool(
    specs: Iterable[PoolModelSpec], budget_mib: int, backend: Backend | None = None, **kwargs: object
) -> tuple[ModelPool, Backend]:
    backend = backend or Backend()
    pool = ModelPool(
        backend.load,
        specs={s.alias: s for s in specs},
        unloader=backend.unload,
        budget_bytes=budget_mib * MiB,
        gpu_budget_bytes=0,
        probe=kwargs.pop("probe", None) or FakeProbe(),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    return pool, backend


def spec(alias: str, mib: int = 100, **kwargs: object) -> PoolModelSpec:
    return PoolModelSpec(alias, memory_bytes=mib * MiB, **kwargs)  # type: ignore[arg-type]


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds (no wall-clock timing involved)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def touch(pool: ModelPool, alias: str, log: list[str] | None = None, priority: int = 0) -> None:
    async with pool.use(alias, priority=priority) as model:
        assert model.name == alias
        if log is not None:
            log.append(alias)


class Holder:
    """Holds a slot of a model until released, from a task of its own."""

    def __init__(self, pool: ModelPool, alias: str) -> None:
        self.entered = asyncio.Event()
        self.leave = asyncio.Event()
        self.task = asyncio.create_task(self._hold(pool, alias))

    async def _hold(self, pool: ModelPool, alias: str) -> None:
        async with pool.use(alias):
            self.entered.set()
            await self.leave.wait()

    async def release(self) -> None:
        self.leave.set()
        await self.task


def resident(pool: ModelPool) -> list[str]:
    return [m.alias for m in pool.state().resident]


# -- loading and eviction ----------------------------------------------------------------------------


async def test_models_load_lazily_and_once() -> None:
    pool, backend = make_pool([spec("a")], 500)
    assert backend.loaded == [] and resident(pool) == []
    await touch(pool, "a")
    await touch(pool, "a")
    assert backend.loaded == ["a"]
    state = pool.state()
    assert state.loads == 1 and state.grants == 2 and state.evictions == 0
    assert state.used_bytes == 100 * MiB and state.resident[0].loads == 1


async def test_least_recently_used_idle_model_is_evicted() -> None:
    clock = Clock()
    pool, backend = make_pool([spec("a"), spec("b"), spec("c")], 250, clock=clock)
    for alias in ("a", "b", "a"):  # b is now the least recently used
        clock.now += 1
        await touch(pool, alias)
    clock.now += 1
    await touch(pool, "c")
    assert backend.unloaded == ["b"]
    assert resident(pool) == ["a", "c"]
    assert pool.state().evictions == 1


async def test_pinned_model_is_never_evicted() -> None:
    clock = Clock()
    pool, backend = make_pool([spec("a", pinned=True), spec("b"), spec("c")], 250, clock=clock)
    for alias in ("a", "b", "c"):  # a is the least recently used, but pinned
        clock.now += 1
        await touch(pool, alias)
    assert backend.unloaded == ["b"]
    assert resident(pool) == ["a", "c"]


async def test_busy_model_is_not_evicted_until_its_generation_ends() -> None:
    pool, backend = make_pool([spec("a"), spec("b")], 150)
    holder = Holder(pool, "a")
    await holder.entered.wait()
    waiter = asyncio.create_task(touch(pool, "b"))
    await until(lambda: pool.state().queue_depth == 1)
    assert backend.loaded == ["a"] and backend.unloaded == []
    await holder.release()
    await waiter
    assert backend.loaded == ["a", "b"] and backend.unloaded == ["a"]
    assert pool.state().waits == 1


async def test_model_bigger_than_the_budget_fails_clearly() -> None:
    pool, backend = make_pool([spec("huge", 300)], 200)
    with pytest.raises(UserError, match=r"model 'huge' needs 300 MiB of memory but the pool budget is 200 MiB"):
        await touch(pool, "huge")
    assert backend.loaded == [] and pool.state().queue_depth == 0


async def test_a_bigger_budget_serves_the_waiter_it_makes_room_for() -> None:
    pool, backend = make_pool([spec("a"), spec("b")], 150)
    holder = Holder(pool, "a")
    await holder.entered.wait()
    waiter = asyncio.create_task(touch(pool, "b"))
    await until(lambda: pool.state().queue_depth == 1)
    assert pool.resize(250 * MiB) == 150 * MiB  # the supervisor's change_memory_budget
    await waiter  # served beside the busy model: nothing evicted
    assert backend.loaded == ["a", "b"] and backend.unloaded == [] and pool.state().budget_bytes == 250 * MiB
    await holder.release()
    with pytest.raises(UserError, match="0 or more"):
        pool.resize(-1)


async def test_model_that_cannot_fit_beside_pinned_models_names_them() -> None:
    pool, _ = make_pool([spec("a", pinned=True), spec("b")], 150)
    await touch(pool, "a")
    with pytest.raises(UserError, match=r"pinned models \(a\) hold 100 MiB"):
        await touch(pool, "b")


async def test_gpu_model_without_gpu_fails_clearly() -> None:
    pool, _ = make_pool([PoolModelSpec("g", memory_bytes=MiB, gpu_bytes=100 * MiB)], 500)
    with pytest.raises(UserError, match=r"100 MiB of GPU memory .*\(no GPU found\)"):
        await touch(pool, "g")


async def test_gpu_memory_is_a_budget_of_its_own() -> None:
    backend = Backend()
    pool = ModelPool(
        backend.load,
        specs={a: PoolModelSpec(a, memory_bytes=10 * MiB, gpu_bytes=600 * MiB) for a in ("a", "b")},
        unloader=backend.unload,
        budget_bytes=1000 * MiB,
        gpu_budget_bytes=1000 * MiB,
        probe=FakeProbe(),
    )
    await touch(pool, "a")
    await touch(pool, "b")  # RAM has room for both, GPU memory only for one
    assert backend.unloaded == ["a"]
    assert pool.state().gpu_used_bytes == 600 * MiB


async def test_failed_load_frees_its_reservation_and_is_retried() -> None:
    pool, backend = make_pool([spec("a")], 150)
    backend.fail.add("a")
    with pytest.raises(RuntimeError, match="cannot load a"):
        await touch(pool, "a")
    assert resident(pool) == [] and pool.state().load_failures == 1
    backend.fail.clear()
    await touch(pool, "a")
    assert resident(pool) == ["a"]


async def test_unknown_footprint_is_measured_at_load() -> None:
    probe = FakeProbe()
    backend = Backend(probe, grows=70 * MiB)
    pool, _ = make_pool([PoolModelSpec("m")], 500, backend=backend, probe=probe)
    await touch(pool, "m")
    assert pool.state().resident[0].memory_bytes == 70 * MiB
    await pool.aclose()
    await touch(pool, "m")  # the measurement is remembered for the next load
    assert pool.state().used_bytes == 70 * MiB


async def test_a_measured_footprint_is_at_least_what_the_model_reports() -> None:
    """The RSS delta of a load reads ~0 when the allocator hands it memory an earlier model freed: the
    model's own report (llama.cpp's weights) is the floor; a report that fails is ignored."""

    class Reporting(ScriptedModel):
        def footprint_bytes(self) -> int:
            return 90 * MiB if self.name == "m" else int("broken")

    class Quiet(Backend):
        async def load(self, alias: str) -> ChatModel:
            await super().load(alias)
            return Reporting(["ok"], name=alias, cycle=True)

    probe = FakeProbe()
    pool, _ = make_pool([PoolModelSpec("m"), PoolModelSpec("n")], 500, backend=Quiet(probe, grows=0), probe=probe)
    await touch(pool, "m")
    await touch(pool, "n")
    assert {m.alias: m.memory_bytes for m in pool.state().resident} == {"m": 90 * MiB, "n": 0}
    await pool.aclose()


async def test_default_unloader_closes_the_model() -> None:
    closed: list[str] = []

    class Closable(ScriptedModel):
        def close(self) -> None:
            closed.append(self.name)

    async def load(alias: str) -> ChatModel:
        return Closable(["ok"], name=alias)

    specs = {a: spec(a) for a in ("a", "b")}
    pool = ModelPool(load, specs=specs, budget_bytes=150 * MiB, gpu_budget_bytes=0, probe=FakeProbe())
    await touch(pool, "a")
    await touch(pool, "b")
    assert closed == ["a"]


# -- slots ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slots", [1, 2])
async def test_slots_bound_concurrent_generations(slots: int) -> None:
    pool, _ = make_pool([spec("a", slots=slots)], 500)
    gate = asyncio.Event()
    inside, peak = 0, 0

    async def generate() -> None:
        nonlocal inside, peak
        async with pool.use("a"):
            inside += 1
            peak = max(peak, inside)
            await gate.wait()
            inside -= 1

    tasks = [asyncio.create_task(generate()) for _ in range(3)]
    await until(lambda: inside == slots and pool.state().queue_depth == 3 - slots)
    assert pool.state().resident[0].active == slots
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == slots
    assert pool.state().resident[0].active == 0


# -- ordering ---------------------------------------------------------------------------------------


async def alternating_workload(resident_first: bool) -> tuple[list[str], int]:
    pool, _ = make_pool([spec("a"), spec("b")], 150, resident_first=resident_first)
    holder = Holder(pool, "a")
    await holder.entered.wait()
    log: list[str] = []
    aliases = ["b", "a"] * 3
    tasks = [asyncio.create_task(touch(pool, alias, log)) for alias in aliases]
    await until(lambda: pool.state().queue_depth == len(aliases))
    await holder.release()
    await asyncio.gather(*tasks)
    return log, pool.state().evictions


async def test_resident_first_swaps_less_than_fifo_on_an_alternating_workload() -> None:
    fifo_log, fifo_swaps = await alternating_workload(resident_first=False)
    smart_log, smart_swaps = await alternating_workload(resident_first=True)
    assert fifo_log == ["b", "a", "b", "a", "b", "a"] and fifo_swaps == 6
    assert smart_log == ["a", "a", "a", "b", "b", "b"] and smart_swaps == 1


async def test_higher_priority_goes_first() -> None:
    pool, _ = make_pool([spec("a")], 500)
    holder = Holder(pool, "a")
    await holder.entered.wait()
    log: list[str] = []

    async def request(name: str, priority: int) -> None:
        async with pool.use("a", priority=priority):
            log.append(name)

    tasks = [asyncio.create_task(request(n, p)) for n, p in (("low", 0), ("high", 5), ("mid", 1))]
    await until(lambda: pool.state().queue_depth == 3)
    assert [w.priority for w in pool.state().waiting] == [5, 1, 0]
    await holder.release()
    await asyncio.gather(*tasks)
    assert log == ["high", "mid", "low"]


async def test_priority_comes_before_residency() -> None:
    pool, _ = make_pool([spec("a"), spec("b")], 150)
    holder = Holder(pool, "a")
    await holder.entered.wait()
    log: list[str] = []
    tasks = [asyncio.create_task(touch(pool, "a", log)), asyncio.create_task(touch(pool, "b", log, priority=1))]
    await until(lambda: pool.state().queue_depth == 2)
    await holder.release()
    await asyncio.gather(*tasks)
    assert log == ["b", "a"]


@pytest.mark.parametrize("fairness", [0, 1, 3])
async def test_waiter_for_a_cold_model_is_not_starved(fairness: int) -> None:
    """A stream of requests for the resident model passes a cold request at most ``fairness`` times."""
    pool, _ = make_pool([spec("hot"), spec("cold")], 150, fairness=fairness)
    holder = Holder(pool, "hot")
    await holder.entered.wait()
    log: list[str] = []
    produced = 0

    async def hot() -> None:
        # Each hot request queues the next before it finishes, so a hot request is always waiting.
        nonlocal produced
        async with pool.use("hot"):
            log.append("hot")
            if produced < 10:
                produced += 1
                nxt = asyncio.create_task(hot())
                tasks.append(nxt)
                depth = pool.state().queue_depth
                await until(lambda: pool.state().queue_depth == depth + 1)

    cold = asyncio.create_task(touch(pool, "cold", log))
    await until(lambda: pool.state().queue_depth == 1)
    tasks = [asyncio.create_task(hot())]
    await until(lambda: pool.state().queue_depth == 2)
    await holder.release()
    await cold
    while not all(t.done() for t in tasks):
        await asyncio.gather(*tasks)
    assert log.index("cold") == fairness
    assert log.count("hot") == 11


async def test_without_the_fairness_bound_resident_requests_would_all_go_first() -> None:
    pool, _ = make_pool([spec("hot"), spec("cold")], 150, fairness=100)
    holder = Holder(pool, "hot")
    await holder.entered.wait()
    log: list[str] = []
    tasks = [asyncio.create_task(touch(pool, "cold", log))]
    await until(lambda: pool.state().queue_depth == 1)
    tasks += [asyncio.create_task(touch(pool, "hot", log)) for _ in range(5)]
    await until(lambda: pool.state().queue_depth == 6)
    await holder.release()
    await asyncio.gather(*tasks)
    assert log == ["hot"] * 5 + ["cold"]


async def test_cancelled_waiter_leaves_the_queue_and_lifts_its_barrier() -> None:
    pool, _ = make_pool([spec("hot"), spec("cold")], 150, fairness=0)
    holder = Holder(pool, "hot")
    await holder.entered.wait()
    cold = asyncio.create_task(touch(pool, "cold"))
    await until(lambda: pool.state().queue_depth == 1)
    cold.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cold
    assert pool.state().queue_depth == 0
    await holder.release()
    await touch(pool, "hot")
    assert resident(pool) == ["hot"]


async def test_cancelled_load_gives_its_room_back() -> None:
    pool, backend = make_pool([spec("a"), spec("b")], 150)
    backend.gate = asyncio.Event()
    loading = asyncio.create_task(touch(pool, "a"))
    await until(lambda: resident(pool) == ["a"])
    assert pool.state().resident[0].loading
    loading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loading
    assert resident(pool) == [] and pool.state().used_bytes == 0
    backend.gate.set()
    await touch(pool, "b")
    assert resident(pool) == ["b"]


# -- preload ----------------------------------------------------------------------------------------


async def test_preload_loads_in_the_background() -> None:
    pool, backend = make_pool([spec("a"), spec("b")], 150)
    await touch(pool, "a")
    task = pool.preload("b")
    assert task is not None
    await task
    assert backend.loaded == ["a", "b"] and backend.unloaded == ["a"]
    await touch(pool, "b")
    assert backend.loaded == ["a", "b"]
    assert pool.preload("b") is None  # already resident


async def test_preload_never_evicts_a_busy_model_nor_jumps_the_queue() -> None:
    pool, backend = make_pool([spec("a"), spec("b"), spec("c")], 150)
    holder = Holder(pool, "a")
    await holder.entered.wait()
    assert pool.preload("b") is None  # would need the busy model's room
    waiter = asyncio.create_task(touch(pool, "a"))
    await until(lambda: pool.state().queue_depth == 1)
    assert pool.preload("c") is None  # someone is waiting
    await holder.release()
    await waiter
    assert pool.preload("b", evict=False) is None
    assert backend.loaded == ["a"]


async def test_request_for_a_model_being_preloaded_waits_for_that_load() -> None:
    pool, backend = make_pool([spec("a")], 150)
    backend.gate = asyncio.Event()
    task = pool.preload("a")
    assert task is not None
    user = asyncio.create_task(touch(pool, "a"))
    await until(lambda: pool.state().queue_depth == 1)
    backend.gate.set()
    await asyncio.gather(task, user)
    assert backend.loaded == ["a"]


async def test_failed_preload_is_quiet() -> None:
    pool, backend = make_pool([spec("a")], 150)
    backend.fail.add("a")
    task = pool.preload("a")
    assert task is not None
    await task
    assert resident(pool) == [] and pool.state().load_failures == 1


# -- can_run and state ------------------------------------------------------------------------------


async def test_can_run_checks_pool_room_machine_memory_and_cpu() -> None:
    probe = FakeProbe(available=800 * MiB, cpu=2.0)
    pool, _ = make_pool([spec("a", 600)], 1000, probe=probe)
    await touch(pool, "a")
    ok = pool.can_run(300 * MiB, 1)
    assert ok.fits and ok.reason == "fits" and ok.free_memory_bytes == 400 * MiB and ok.free_cpu == 2.0
    no_room = pool.can_run(500 * MiB, 1)
    assert not no_room.fits and "needs 500 MiB of memory, 400 MiB free" in no_room.reason
    probe.available = 100 * MiB  # the machine is tighter than the pool thinks
    assert not pool.can_run(300 * MiB).fits
    no_cpu = pool.can_run(10 * MiB, 4)
    assert not no_cpu.fits and "needs 4 CPU cores, 2.0 free" in no_cpu.reason
    probe.cpu = 0.98  # rounded down: it said "needs 1 CPU cores, 1.0 free" (make demo did)
    almost = pool.can_run(10 * MiB, 1)
    assert not almost.fits and "needs 1 CPU cores, 0.9 free" in almost.reason


async def test_can_run_counts_the_cores_of_an_in_process_model_while_it_generates() -> None:
    # The probe leaves edgecrew's own process out (a model call a moment ago is no load now), so the
    # pool counts a model generating now: a job must not start beside it on its cores.
    class Threaded(Backend):
        async def load(self, alias: str) -> ChatModel:
            model = await super().load(alias)
            model.cpu_threads = 2  # type: ignore[attr-defined]  # as a loaded llama.cpp model says
            return model

    pool, _ = make_pool([spec("local"), spec("remote")], 1000, Threaded(), probe=FakeProbe(cpu=3.0))
    await touch(pool, "local")
    assert pool.can_run(0, 3).fits  # loaded, not generating: its threads are idle
    holder = Holder(pool, "local")
    await holder.entered.wait()
    busy = pool.can_run(0, 3)
    assert not busy.fits and busy.free_cpu == 1.0
    assert "needs 3 CPU cores, 1.0 free (2 by model 'local', generating now)" in busy.reason
    await holder.release()
    assert pool.can_run(0, 3).fits


async def test_state_reports_residents_queue_and_counters_as_json() -> None:
    clock = Clock()
    gpu = GpuInfo(0, "Fake GPU", 8192 * MiB, 1024 * MiB, 7168 * MiB)
    pool, _ = make_pool([spec("a", slots=2, pinned=True)], 500, clock=clock, probe=FakeProbe(gpu_list=[gpu]))
    await touch(pool, "a")
    clock.now += 5
    holder = Holder(pool, "a")
    await holder.entered.wait()
    state = pool.state()
    (a,) = state.resident
    assert (a.alias, a.memory_bytes, a.active, a.slots, a.pinned, a.loading, a.loads) == (
        "a",
        100 * MiB,
        1,
        2,
        True,
        False,
        1,
    )
    assert state.budget_bytes == 500 * MiB and state.used_bytes == 100 * MiB
    assert state.queue_depth == 0 and state.grants == 2 and state.gpus == (gpu,)
    data = json.loads(json.dumps(state.to_dict()))
    assert data["resident"][0]["alias"] == "a" and data["gpus"][0]["name"] == "Fake GPU"
    await holder.release()
    assert pool.state().resident[0].idle_s == 0.0
    clock.now += 3
    assert pool.state().resident[0].idle_s == 3.0


def test_default_budget_leaves_a_margin_and_counts_gpus() -> None:
    gpu = GpuInfo(0, "g", 8192 * MiB, 0, 8192 * MiB)
    ram, vram = default_budgets(FakeProbe(total=4096 * MiB, available=3072 * MiB, gpu_list=[gpu]))
    assert ram == 3072 * MiB - int(4096 * MiB * 0.10)  # 10% of the total is more than the 256 MiB floor
    assert vram == 8192 * MiB - int(8192 * MiB * 0.10)
    assert default_budgets(FakeProbe(total=1024 * MiB, available=200 * MiB)) == (0, 0)
    pool = ModelPool(Backend().load, probe=FakeProbe(total=4096 * MiB, available=3072 * MiB))
    assert pool.budget_bytes == ram and pool.gpu_budget_bytes == 0


def test_bad_spec_is_a_user_error() -> None:
    with pytest.raises(UserError, match="slots must be at least 1"):
        PoolModelSpec("a", slots=0)


# -- several event loops ----------------------------------------------------------------------------


def test_one_pool_serves_several_event_loops() -> None:
    """A slot freed on one loop (thread) wakes a waiter on another, as with DBOS's background loop."""
    pool, _ = make_pool([spec("a")], 500)
    entered, release, done = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    async def first() -> None:
        async with pool.use("a"):
            order.append("first")
            entered.set()
            await asyncio.to_thread(release.wait, 10)

    async def second() -> None:
        async with pool.use("a"):
            order.append("second")
        done.set()

    t1 = threading.Thread(target=asyncio.run, args=(first(),))
    t1.start()
    assert entered.wait(10)
    t2 = threading.Thread(target=asyncio.run, args=(second(),))
    t2.start()
    for _ in range(1000):
        if pool.state().queue_depth == 1:
            break
        threading.Event().wait(0.001)
    assert pool.state().queue_depth == 1 and order == ["first"]
    release.set()
    assert done.wait(10)
    t1.join(10)
    t2.join(10)
    assert order == ["first", "second"] and pool.state().resident[0].active == 0
