"""EdgePilot's operations side: routines, the metrics sampler, alerts, jobs under policies.

It sits above the engine (routines and jobs start team runs through :class:`RunService`) and below the
composition root's users: the server, the CLI and the UI reach each part through one :class:`Ops`
built from the runtime, never through the store. ``Ops.start()`` (the server, a worker) begins the
background parts; short-lived CLI processes use the services without starting them.

DBOS queues are per project (``Ops.of(rt).queue("jobs")``, ``queue("routines")``): the server launches
the durable engine listening to exactly ``queues()``, so no other process (``edgecrew run``, a server
of another project sharing the data dir) ever dequeues this project's routine firings or jobs.
Register a queue after launch with ``DBOS.register_queue(Ops.of(rt).queue("jobs"), ...)``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from edgecrew.engine.runtime import Runtime

if TYPE_CHECKING:
    from edgecrew.ops.alerts import AlertService
    from edgecrew.ops.jobs import JobService
    from edgecrew.ops.orphans import OrphanSweep
    from edgecrew.ops.routines import RoutineService
    from edgecrew.ops.sampler import MetricSampler
    from edgecrew.ops.supervisor import Supervisor

__all__ = ["Ops"]


class Ops:
    """The operations services of one runtime: get them with ``Ops.of(rt)`` (one per runtime, so the
    server, the tools and the pages share the same sampler, job admission and schedules)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._started = False

    @classmethod
    def of(cls, rt: Runtime) -> Ops:
        return rt.extension(cls, cls)

    @property
    def project_key(self) -> str:
        """A short stable name of this runtime's project (``Runtime.project_key``): each project serves
        only its own routines and jobs."""
        return self.rt.project_key

    def queue(self, part: str) -> str:
        """The DBOS queue of one part of this project ("routines", "jobs")."""
        return f"edgecrew.{part}.{self.project_key}"

    def queues(self) -> list[str]:
        """The queues a server of this project runs (``durable.launch(rt, queues=...)``)."""
        return [self.queue("routines"), self.queue("jobs")]

    @cached_property
    def routines(self) -> RoutineService:
        from edgecrew.ops.routines import RoutineService

        return RoutineService(self.rt)

    @cached_property
    def sampler(self) -> MetricSampler:
        from edgecrew.ops.sampler import MetricSampler

        return MetricSampler(self.rt)

    @cached_property
    def alerts(self) -> AlertService:
        from edgecrew.ops.alerts import AlertService

        return AlertService(self.rt)

    @cached_property
    def jobs(self) -> JobService:
        from edgecrew.ops.jobs import JobService

        return JobService(self.rt)

    @cached_property
    def supervisor(self) -> Supervisor:
        from edgecrew.ops.supervisor import Supervisor

        return Supervisor(self.rt)

    @cached_property
    def orphans(self) -> OrphanSweep:
        from edgecrew.ops.orphans import OrphanSweep

        return OrphanSweep(self.rt)

    async def start(self) -> None:
        """Begin the background parts (after the durable engine is launched): the sampler, the
        routines' schedules, alert evaluation, job admission, the supervisor and the orphan sweep."""
        if self._started:
            return
        self._started = True
        await self.routines.start()
        await self.sampler.start()
        await self.alerts.start()
        await self.jobs.start()
        await self.supervisor.start()
        await self.orphans.start()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.orphans.stop()
        await self.supervisor.stop()
        await self.jobs.stop()
        await self.alerts.stop()
        await self.sampler.stop()
        await self.routines.stop()
