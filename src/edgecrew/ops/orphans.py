"""The server's orphan sweep: runs of this project whose process died while the server runs (an
`edgecrew run` killed with -9, a laptop lid shut, the OOM killer) are adopted within
``orphan_sweep_s``, by the rules of start-up recovery (``durable.sweep_orphans``).

The one design decision: the sweep is only another caller of the engine's adoption, whose single
conditional update lets exactly one process resume an orphan; a new `edgecrew run`, `edgecrew
resume` or a second server may sweep at the same moment. A tick with no unfinished run of this
project is one query of the store.
"""

from __future__ import annotations

import logging

from edgecrew.engine import durable
from edgecrew.engine.runtime import Runtime
from edgecrew.ops.periodic import Periodic

__all__ = ["OrphanSweep"]

log = logging.getLogger("edgecrew.ops.orphans")


class OrphanSweep:
    """Adopts this project's orphaned runs every ``orphan_sweep_s`` (0: never) while the server runs."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._blocked: set[str] = set()  # runs already reported as unable to go on here (said once)
        self._loop = Periodic(
            "edgecrew-orphan-sweep", self.sweep, "sweeping for orphaned runs failed", "the orphan sweep"
        )

    async def start(self) -> None:
        # In a cluster the runs are the workers', and a dead worker's are recovered by the live ones
        # when its lease runs out (edgecrew.cluster): a sweep would race them for no gain.
        if durable.launched(self.rt) and not self.rt.settings.cluster_enabled:
            self._loop.start(self.rt.settings.orphan_sweep_s)

    async def stop(self) -> None:
        await self._loop.stop()

    async def sweep(self) -> list[str]:
        """Adopt the orphans found now; returns the ids of the runs this process adopted."""
        found = await durable.sweep_orphans(self.rt)
        if found.adopted:
            log.info("adopted %d run(s) whose process died: %s", len(found.adopted), ", ".join(found.adopted))
        for run_id, missing in found.blocked:
            if run_id not in self._blocked:
                log.warning("run %s was interrupted and cannot go on here: this project no longer has %s; "
                            "restore it and resume the run", run_id, missing)  # fmt: skip
        self._blocked = {run_id for run_id, _ in found.blocked}  # a restored, then lost part is said again
        return found.adopted
