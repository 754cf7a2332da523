"""The model pool: which models are resident, within what memory, and whose request goes next.

One pool per process. It loads a model on first use, keeps resident models within a memory budget
(RAM, and GPU memory when NVML finds a GPU), evicts the least recently used idle unpinned model to make
room, bounds concurrent generations per model (slots), and orders waiting requests: higher priority
first, then requests for resident models before ones that need a load (fewer swaps), FIFO otherwise;
a waiter passed over ``fairness`` times goes next regardless, so nobody starves.

The design decision: the pool owns no thread and no event loop, so several loops may share it (the
CLI's, and the one DBOS runs recovered workflows on). Its bookkeeping sits behind a ``threading.Lock``
that is never held across an ``await``; each waiter waits on a future created on its own loop, resolved
from whichever thread frees the slot with ``call_soon_threadsafe``. A model is loaded, and evicted
models unloaded, on the loop of the request that needed the room.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from edgecrew.errors import UserError
from edgecrew.models.base import ChatModel
from edgecrew.models.probe import GpuInfo, PsutilProbe, SystemProbe, default_budgets, mib

__all__ = [
    "CanRun",
    "GpuInfo",
    "ModelPool",
    "PoolModelSpec",
    "PoolState",
    "PsutilProbe",
    "ResidentModel",
    "SystemProbe",
    "WaitingRequest",
    "default_budgets",
]

DEFAULT_FAIRNESS = 4  # times a waiting request may be passed over before it goes next

Loader = Callable[[str], Awaitable[ChatModel]]
Unloader = Callable[[str, ChatModel], Awaitable[None] | None]


@dataclass(frozen=True)
class PoolModelSpec:
    """What the pool needs to know about a model: footprint, slots, and whether it may be evicted."""

    alias: str
    memory_bytes: int | None = None  # RAM footprint; None: measured at first load (RSS delta)
    gpu_bytes: int | None = 0  # GPU memory footprint; None: measured at first load (NVML delta)
    slots: int = 1  # concurrent generations
    pinned: bool = False  # never evicted once resident

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise UserError(f"model '{self.alias}': slots must be at least 1, got {self.slots}")
        for name in ("memory_bytes", "gpu_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"model '{self.alias}': {name} must not be negative, got {value}")


@dataclass(frozen=True)
class CanRun:
    """Whether a job of the given size fits now, and why not when it does not."""

    fits: bool
    reason: str
    free_memory_bytes: int
    free_cpu: float
    free_gpu_bytes: int = 0


@dataclass(frozen=True)
class ResidentModel:
    alias: str
    memory_bytes: int
    gpu_bytes: int
    active: int
    slots: int
    pinned: bool
    loading: bool
    last_used: float
    idle_s: float
    loads: int


@dataclass(frozen=True)
class WaitingRequest:
    alias: str
    priority: int
    waited_s: float
    overtaken: int


@dataclass(frozen=True)
class PoolState:
    """A snapshot for `edgecrew models status`, the API and metrics."""

    budget_bytes: int
    used_bytes: int
    gpu_budget_bytes: int
    gpu_used_bytes: int
    resident: tuple[ResidentModel, ...]
    queue_depth: int
    waiting: tuple[WaitingRequest, ...]
    grants: int  # requests served
    waits: int  # requests that had to queue
    wait_s_total: float
    loads: int
    evictions: int  # swaps: models unloaded to make room
    load_failures: int
    unload_failures: int
    resident_first: bool
    fairness: int
    gpus: tuple[GpuInfo, ...] | None  # None: no GPU found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- internals -------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Entry:
    spec: PoolModelSpec
    memory_bytes: int
    gpu_bytes: int
    model: ChatModel | None = None  # None while loading
    active: int = 0
    last_used: float = 0.0
    measuring: bool = False  # its footprint is unknown until the load ends


@dataclass(frozen=True, eq=False)
class _Ticket:
    """A grant: a slot on ``entry``; with ``load`` the holder must load the model first."""

    entry: _Entry
    load: bool = False
    evicted: tuple[tuple[str, ChatModel], ...] = ()


@dataclass(eq=False)
class _Waiter:
    alias: str
    priority: int
    seq: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[_Ticket]
    enqueued_at: float
    overtaken: int = 0
    queued: bool = False  # not served on arrival: counts as a wait
    ticket: _Ticket | None = None


_Delivery = tuple["_Waiter", "_Ticket | BaseException"]


def _settle(future: asyncio.Future[_Ticket], result: _Ticket | BaseException) -> None:
    if future.done():  # cancelled meanwhile: the waiter gives the ticket back itself
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class ModelPool:
    """Loads models on demand and shares them out within a memory budget; safe across event loops."""

    def __init__(
        self,
        loader: Loader,
        *,
        specs: Mapping[str, PoolModelSpec] | Callable[[str], PoolModelSpec | None] | None = None,
        unloader: Unloader | None = None,
        budget_bytes: int | None = None,
        gpu_budget_bytes: int | None = None,
        fairness: int = DEFAULT_FAIRNESS,
        resident_first: bool = True,
        clock: Callable[[], float] = time.monotonic,
        probe: SystemProbe | None = None,
    ) -> None:
        if fairness < 0:
            raise UserError(f"pool fairness must be 0 or more, got {fairness}")
        self._loader = loader
        self._specs = specs
        self._unloader = unloader
        self._probe: SystemProbe = probe if probe is not None else PsutilProbe()
        if budget_bytes is None or gpu_budget_bytes is None:
            ram, gpu = default_budgets(self._probe)
            budget_bytes = ram if budget_bytes is None else budget_bytes
            gpu_budget_bytes = gpu if gpu_budget_bytes is None else gpu_budget_bytes
        self.budget_bytes = budget_bytes
        self.gpu_budget_bytes = gpu_budget_bytes
        self.fairness = fairness
        self.resident_first = resident_first
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self._measured: dict[str, tuple[int, int]] = {}  # alias -> footprint measured at an earlier load
        self._load_counts: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._grants = self._waits = self._loads = self._evictions = 0
        self._load_failures = self._unload_failures = 0
        self._wait_s_total = 0.0

    # -- public API --------------------------------------------------------------------------------

    @asynccontextmanager
    async def use(self, alias: str, *, priority: int = 0) -> AsyncIterator[ChatModel]:
        """Hold one slot of ``alias`` (loading it first if needed) for the body of the block."""
        ticket = await self._acquire(alias, priority)
        entry = ticket.entry
        try:
            if ticket.load:
                await self._load(ticket)  # on failure the reservation is already gone
            model = entry.model
            assert model is not None  # a held slot is on a loaded model
            yield model
        finally:
            if entry.model is not None:
                with self._lock:
                    deliveries = self._release(entry)
                self._deliver(deliveries)

    def preload(self, alias: str, *, evict: bool = True) -> asyncio.Task[None] | None:
        """Start loading ``alias`` in the background when that can happen now without keeping anyone waiting.

        Skipped (returns None) when the model is resident or loading, when requests are queued (they
        come first), or when making room would evict a busy or pinned model (or any model, with
        ``evict=False``). Call it from a coroutine; the returned task never raises.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if alias in self._entries or self._queue:
                return None
            grant = self._reserve(alias, active=0, evict=evict)
            if not isinstance(grant, _Ticket):
                return None
        task = loop.create_task(self._preload(grant))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def can_run(self, memory_bytes: int, cpu_cores: float = 0.0, gpu_bytes: int = 0) -> CanRun:
        """Whether a job needing this much memory and CPU fits now, within the pool and on the machine."""
        with self._lock:
            used, gpu_used = self._used()
            models = [(a, e.model) for a, e in self._entries.items() if e.active and e.model is not None]
        generating = {a: n for a, m in models if (n := _cpu_threads(m))}
        pool_free = self.budget_bytes - used
        free = max(0, min(pool_free, self._probe.available_memory()))
        free_gpu = max(0, self.gpu_budget_bytes - gpu_used)
        # The probe leaves this process's CPU out (a model call a moment ago is no load now); a model
        # generating now holds its threads' cores for as long as the call lasts.
        free_cpu = round(max(0.0, self._probe.free_cpu() - sum(generating.values())), 2)
        problems = []
        if memory_bytes > free:
            problems.append(
                f"needs {mib(memory_bytes)} of memory, {mib(free)} free "
                f"(pool budget {mib(self.budget_bytes)}, {mib(used)} held by models)"
            )
        if gpu_bytes > free_gpu:
            problems.append(f"needs {mib(gpu_bytes)} of GPU memory, {mib(free_gpu)} free")
        if cpu_cores > free_cpu:
            # rounded down: 0.98 free is "0.9 free", never "1.0 free" beside a need of 1
            held = ", ".join(f"{n} by model '{a}'" for a, n in sorted(generating.items()))
            problems.append(
                f"needs {cpu_cores:g} CPU cores, {math.floor(free_cpu * 10) / 10:.1f} free"
                + (f" ({held}, generating now)" if held else "")
            )
        reason = "; ".join(problems) or "fits"
        return CanRun(not problems, reason, free, free_cpu, free_gpu)

    def resize(self, budget_bytes: int) -> int:
        """Set the memory budget (the supervisor's ``change_memory_budget``) and return the one before;
        waiters that fit now are served. A smaller budget evicts idle models as room is next needed."""
        if budget_bytes < 0:
            raise UserError(f"a pool budget must be 0 or more, got {budget_bytes}")
        with self._lock:
            before, self.budget_bytes = self.budget_bytes, budget_bytes
            deliveries = self._dispatch()
        self._deliver(deliveries)
        return before

    def resident_aliases(self) -> frozenset[str]:
        """Aliases whose model is loaded now (routing prefers them among models sharing a tag)."""
        with self._lock:  # asked before every model call: no snapshot of the whole pool
            return frozenset(alias for alias, e in self._entries.items() if e.model is not None)

    def fingerprint(self) -> tuple[Any, ...]:
        """What a reader of ``state()`` would see change, cheaply: the models (loading or not, busy slots,
        footprint), the queue, loads, evictions and failures; not the clocks or the per-call counters."""
        with self._lock:
            return (
                tuple(
                    (a, e.active, e.model is None, e.memory_bytes, e.gpu_bytes)
                    for a, e in sorted(self._entries.items())
                ),
                tuple(w.alias for w in self._queue),
                (self._loads, self._evictions, self._load_failures, self._unload_failures),
            )

    def state(self) -> PoolState:
        gpus = self._probe.gpus()
        with self._lock:
            now = self._clock()
            used, gpu_used = self._used()
            resident = tuple(
                ResidentModel(
                    alias=alias,
                    memory_bytes=e.memory_bytes,
                    gpu_bytes=e.gpu_bytes,
                    active=e.active,
                    slots=e.spec.slots,
                    pinned=e.spec.pinned,
                    loading=e.model is None,
                    last_used=e.last_used,
                    idle_s=0.0 if e.active else max(0.0, now - e.last_used),
                    loads=self._load_counts.get(alias, 0),
                )
                for alias, e in sorted(self._entries.items())
            )
            waiting = tuple(
                WaitingRequest(w.alias, w.priority, max(0.0, now - w.enqueued_at), w.overtaken)
                for w in sorted(self._queue, key=self._order_key)
            )
            return PoolState(
                budget_bytes=self.budget_bytes,
                used_bytes=used,
                gpu_budget_bytes=self.gpu_budget_bytes,
                gpu_used_bytes=gpu_used,
                resident=resident,
                queue_depth=len(self._queue),
                waiting=waiting,
                grants=self._grants,
                waits=self._waits,
                wait_s_total=self._wait_s_total,
                loads=self._loads,
                evictions=self._evictions,
                load_failures=self._load_failures,
                unload_failures=self._unload_failures,
                resident_first=self.resident_first,
                fairness=self.fairness,
                gpus=tuple(gpus) if gpus else None,
            )

    async def aclose(self) -> None:
        """Unload every idle model (pinned ones too); busy ones stay until their holders finish."""
        with self._lock:
            idle = [(a, e) for a, e in self._entries.items() if e.active == 0 and e.model is not None]
            for alias, _ in idle:
                del self._entries[alias]
            deliveries = self._dispatch()
        self._deliver(deliveries)
        await self._unload_all([(a, e.model) for a, e in idle if e.model is not None])

    # -- acquiring ---------------------------------------------------------------------------------

    async def _acquire(self, alias: str, priority: int) -> _Ticket:
        loop = asyncio.get_running_loop()
        with self._lock:
            waiter = _Waiter(alias, priority, next(self._seq), loop, loop.create_future(), self._clock())
            self._queue.append(waiter)
            deliveries = self._dispatch()
            waiter.queued = waiter.ticket is None
        self._deliver(deliveries)
        try:
            return await waiter.future
        except BaseException:
            await self._abandon(waiter)
            raise

    async def _abandon(self, waiter: _Waiter) -> None:
        """The waiter was cancelled: leave the queue, or give back what was granted meanwhile."""
        ticket: _Ticket | None = None
        with self._lock:
            if waiter in self._queue:
                self._queue.remove(waiter)  # may lift a fairness barrier
                deliveries = self._dispatch()
            elif waiter.ticket is not None:
                ticket = waiter.ticket
                deliveries = self._drop_reservation(ticket.entry) if ticket.load else self._release(ticket.entry)
            else:
                deliveries = []  # it was refused with an error
        self._deliver(deliveries)
        if ticket is not None and ticket.evicted:
            await self._unload_all(list(ticket.evicted))

    async def _load(self, ticket: _Ticket) -> None:
        """Unload what was evicted for it, then load the model; on any failure give the room back."""
        alias, entry = ticket.entry.spec.alias, ticket.entry
        try:
            await self._unload_all(list(ticket.evicted))
            before = self._footprint_now() if entry.measuring else (0, 0)
            model = await self._loader(alias)
            after = self._footprint_now() if entry.measuring else (0, 0)
        except BaseException:
            with self._lock:
                self._load_failures += 1
                deliveries = self._drop_reservation(entry)
            self._deliver(deliveries)
            raise
        with self._lock:
            if entry.measuring:
                if entry.spec.memory_bytes is None:
                    # The RSS delta, at least what the model says it holds: the delta reads ~0 when the
                    # allocator hands the load memory an earlier model freed (still counted in RSS).
                    entry.memory_bytes = max(0, after[0] - before[0], _reported_bytes(model))
                if entry.spec.gpu_bytes is None:
                    entry.gpu_bytes = max(0, after[1] - before[1])
                entry.measuring = False
                self._measured[alias] = (entry.memory_bytes, entry.gpu_bytes)
            entry.model = model
            entry.last_used = self._clock()
            self._loads += 1
            self._load_counts[alias] = self._load_counts.get(alias, 0) + 1
            overflow = self._evict_overflow()  # a measured footprint may exceed what was reserved
            deliveries = self._dispatch()
        self._deliver(deliveries)
        await self._unload_all(overflow)

    async def _preload(self, ticket: _Ticket) -> None:
        try:
            await self._load(ticket)
        except Exception:  # fire-and-forget: a failed preload only shows in load_failures
            return

    def _footprint_now(self) -> tuple[int, int]:
        return self._probe.process_memory(), sum(g.used_bytes for g in self._probe.gpus())

    async def _unload_all(self, models: list[tuple[str, ChatModel]]) -> None:
        for alias, model in models:
            try:
                if self._unloader is not None:
                    result = self._unloader(alias, model)
                else:
                    close = getattr(model, "close", None)
                    result = close() if callable(close) else None
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a model that fails to close is dropped anyway; counted for the status
                with self._lock:
                    self._unload_failures += 1

    # -- bookkeeping (called with the lock held) ---------------------------------------------------

    def _spec(self, alias: str) -> PoolModelSpec:
        spec = self._specs(alias) if callable(self._specs) else (self._specs or {}).get(alias)
        return spec if spec is not None else PoolModelSpec(alias)

    def _used(self) -> tuple[int, int]:
        return sum(e.memory_bytes for e in self._entries.values()), sum(e.gpu_bytes for e in self._entries.values())

    def _order_key(self, w: _Waiter) -> tuple[bool, int, bool, int]:
        if w.overtaken >= self.fairness:  # passed over enough: oldest such waiter first, before anyone else
            return (False, 0, False, w.seq)
        return (True, -w.priority, self.resident_first and w.alias not in self._entries, w.seq)

    def _dispatch(self) -> list[_Delivery]:
        """Grant what can be granted, best-placed waiter first; returns the futures to resolve."""
        deliveries: list[_Delivery] = []
        progressed = True
        while progressed and self._queue:
            progressed = False
            for waiter in sorted(self._queue, key=self._order_key):
                grant = self._grant(waiter)
                if grant is None:
                    # Plain FIFO never lets a later request pass; a starved waiter bars everyone behind it.
                    if not self.resident_first or waiter.overtaken >= self.fairness:
                        break
                    continue
                self._queue.remove(waiter)
                deliveries.append((waiter, grant))
                if isinstance(grant, _Ticket):
                    self._note_grant(waiter, grant)
                progressed = True
                break  # the order may have changed
        return deliveries

    def _grant(self, waiter: _Waiter) -> _Ticket | BaseException | None:
        entry = self._entries.get(waiter.alias)
        if entry is not None:
            if entry.model is not None and entry.active < entry.spec.slots:
                entry.active += 1
                return _Ticket(entry)
            return None  # all slots busy, or still loading
        return self._reserve(waiter.alias, active=1, evict=True)

    def _reserve(self, alias: str, *, active: int, evict: bool) -> _Ticket | BaseException | None:
        """Make room for ``alias`` (evicting LRU idle unpinned models) and reserve it; None: not now."""
        spec = self._spec(alias)
        measured = self._measured.get(alias)
        memory = spec.memory_bytes if spec.memory_bytes is not None else (measured[0] if measured else None)
        gpu = spec.gpu_bytes if spec.gpu_bytes is not None else (measured[1] if measured else None)
        measuring = memory is None or gpu is None
        if measuring and any(e.measuring for e in self._entries.values()):
            return None  # one measured load at a time, or the deltas would mix
        memory, gpu = memory or 0, gpu or 0
        refusal = self._never_fits(alias, memory, gpu)
        if refusal is not None:
            return refusal
        victims = self._victims(memory, gpu)
        if victims is None or (victims and not evict):
            return None
        for victim in victims:
            del self._entries[victim.spec.alias]
            self._evictions += 1
        entry = _Entry(spec, memory, gpu, active=active, measuring=measuring)
        self._entries[alias] = entry
        evicted = tuple((v.spec.alias, v.model) for v in victims if v.model is not None)
        return _Ticket(entry, load=True, evicted=evicted)

    def _never_fits(self, alias: str, memory: int, gpu: int) -> UserError | None:
        pinned = [e for a, e in self._entries.items() if e.spec.pinned and a != alias]
        for what, need, budget, held in (
            ("memory", memory, self.budget_bytes, sum(e.memory_bytes for e in pinned)),
            ("GPU memory", gpu, self.gpu_budget_bytes, sum(e.gpu_bytes for e in pinned)),
        ):
            if need <= budget - held:
                continue
            text = f"model '{alias}' needs {mib(need)} of {what} but the pool budget is {mib(budget)}"
            if held and need <= budget:
                names = ", ".join(sorted(e.spec.alias for e in pinned))
                text += f" and pinned models ({names}) hold {mib(held)}; unpin one of them"
            elif what == "GPU memory" and budget == 0:
                text += " (no GPU found); run it on the CPU or on a machine with a GPU"
            else:
                text += "; pick a smaller model (or quantization, or context) or free memory on this machine"
            return UserError(text)
        return None

    def _victims(self, memory: int, gpu: int) -> list[_Entry] | None:
        used, gpu_used = self._used()
        free, free_gpu = self.budget_bytes - used, self.gpu_budget_bytes - gpu_used
        victims: list[_Entry] = []
        idle = (e for e in self._entries.values() if e.model is not None and e.active == 0 and not e.spec.pinned)
        candidates = sorted(idle, key=lambda e: e.last_used)
        while memory > free or gpu > free_gpu:
            if not candidates:
                return None
            victim = candidates.pop(0)
            victims.append(victim)
            free, free_gpu = free + victim.memory_bytes, free_gpu + victim.gpu_bytes
        return victims

    def _evict_overflow(self) -> list[tuple[str, ChatModel]]:
        """After a measured load: evict idle models until the pool is back within its budget, if it can be."""
        evicted = []
        for victim in self._victims(0, 0) or []:
            del self._entries[victim.spec.alias]
            self._evictions += 1
            if victim.model is not None:
                evicted.append((victim.spec.alias, victim.model))
        return evicted

    def _note_grant(self, waiter: _Waiter, ticket: _Ticket) -> None:
        waiter.ticket = ticket
        self._grants += 1
        if waiter.queued:
            self._waits += 1
            self._wait_s_total += max(0.0, self._clock() - waiter.enqueued_at)
        for other in self._queue:
            # Passed over: a later request took this waiter's model, or kept memory it needs busy.
            if other.seq < waiter.seq and (other.alias == waiter.alias or other.alias not in self._entries):
                other.overtaken += 1

    def _release(self, entry: _Entry) -> list[_Delivery]:
        entry.active -= 1
        entry.last_used = self._clock()
        return self._dispatch()

    def _drop_reservation(self, entry: _Entry) -> list[_Delivery]:
        if self._entries.get(entry.spec.alias) is entry:
            del self._entries[entry.spec.alias]
        return self._dispatch()

    # -- waking waiters (called without the lock) --------------------------------------------------

    def _deliver(self, deliveries: list[_Delivery]) -> None:
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for waiter, result in deliveries:
            if waiter.loop is current:
                _settle(waiter.future, result)
                continue
            try:
                waiter.loop.call_soon_threadsafe(_settle, waiter.future, result)
            except RuntimeError:  # its loop is closed: nobody will take the grant, so give it back
                if isinstance(result, _Ticket):
                    with self._lock:
                        more = self._drop_reservation(result.entry) if result.load else self._release(result.entry)
                    self._deliver(more)


def _reported_bytes(model: ChatModel) -> int:
    """The memory a loaded model reports holding (``footprint_bytes()``, e.g. llama.cpp's weights); 0
    when it says nothing."""
    report = getattr(model, "footprint_bytes", None)
    if not callable(report):
        return 0
    try:
        return max(0, int(report() or 0))
    except Exception:  # a report is a floor, never a reason to fail a load
        return 0


def _cpu_threads(model: ChatModel) -> int:
    """The cores an in-process model keeps busy while it generates (its llama.cpp threads); 0 for a
    model served elsewhere."""
    threads = getattr(model, "cpu_threads", 0)
    return threads if isinstance(threads, int) and threads > 0 else 0
