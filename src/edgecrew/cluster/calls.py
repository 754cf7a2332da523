"""Model calls in a cluster: run here when this worker serves the model, else on a worker that does.

The one design decision: where a call runs is decided by a recorded DBOS step (``route``), so a run
replayed on another worker after a failover takes the same decisions. A call for a model this worker
does not serve becomes a child workflow enqueued on that model's queue (``edgecrew.cluster.model.<alias>``),
which only workers advertising the alias listen to; DBOS records the child's result once, so a
replay reads it instead of calling again. While the call waits, a worker dying is DBOS's to recover
(the child goes back on its queue); when no live worker serves the alias any more, the child is
cancelled and the call falls back along the alias's chain. A call that no worker serves at all (this
one included: ``--models``) fails, naming the model, rather than loading it here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

from dbos import DBOS

from edgecrew.cluster.lease import WorkerInfo, serving
from edgecrew.cluster.table import WorkerTable
from edgecrew.domain.events import ModelFallback, ModelSkipped
from edgecrew.domain.messages import ModelRequest
from edgecrew.domain.specs import AgentSpec
from edgecrew.engine import durable
from edgecrew.engine.graph import step_key_of
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import EdgecrewError
from edgecrew.models.registry import TAG_PREFIX, ModelRegistry

__all__ = ["MODEL_QUEUE_PREFIX", "CallRouter", "candidates", "model_queue", "plan"]

MODEL_QUEUE_PREFIX = "edgecrew.cluster.model."
_WORKERS_CHECK_S = 1.0  # how often a waiting call asks whether its model still has a live worker


def model_queue(alias: str) -> str:
    return MODEL_QUEUE_PREFIX + alias


def candidates(models: ModelRegistry, ref: str) -> list[str]:
    """The aliases to try for an agent's model reference: the registry's chain. An alias this worker's
    project does not declare is still tried, by name: another worker may serve it (``plan`` sends the call
    there, or passes it over and the step reports the unknown alias, as without a cluster)."""
    try:
        return models.candidates(ref)
    except EdgecrewError:
        return [] if ref.startswith(TAG_PREFIX) else [ref]


def plan(
    candidates: list[str], local: Collection[str], workers: list[WorkerInfo], now: float, lease_s: float
) -> tuple[str, str | None, list[str]]:
    """Where a call goes: ("local" | "remote", the alias, the candidates passed over for want of a live
    worker). The first candidate served here or by a live worker wins; none: local, as without a cluster."""
    passed: list[str] = []
    for alias in candidates:
        if alias in local:
            return "local", alias, passed
        if serving(workers, alias, now, lease_s):
            return "remote", alias, passed
        passed.append(alias)
    return "local", None, passed


class CallRouter:
    """The model route of one cluster worker (``durable.route_model_calls(router)``)."""

    def __init__(self, rt: Runtime, local: Collection[str]) -> None:
        self.rt = rt
        self.local = frozenset(local)
        self.table = WorkerTable(rt.store.engine)

    async def __call__(
        self, rt: Runtime, run_id: str, key: str, agent: AgentSpec, request: ModelRequest, timeout_s: float
    ) -> dict[str, Any]:
        ref = agent.model
        chain = candidates(rt.models, ref)
        gone: list[str] = []
        while True:
            where, alias, passed = await route_step(run_id, key, agent.name, ref, chain, gone)
            if where == "local" and alias is None and (unserved := self.unserved(passed)):
                return {"error": unserved, "kind": "error", "alias": None}
            if where == "local":
                # The first candidate keeps the reference (its fallback chain and events as without a
                # cluster); a later one is asked for by name.
                chosen = ref if alias is None or (chain and alias == chain[0]) else alias
                return await durable.model_call_step(run_id, key, agent.name, chosen, request, timeout_s)
            assert alias is not None
            handle = await DBOS.enqueue_workflow_async(
                model_queue(alias), remote_model_call, run_id, key, agent.name, alias, request, timeout_s
            )
            outcome = await await_call_step(handle.workflow_id, alias)
            if "data" in outcome:
                data: dict[str, Any] = outcome["data"]
                return data
            gone.append(alias)
            following = [c for c in chain if c not in gone]
            self.rt.store.emit(
                run_id,
                f"{key}.cluster.gone.{alias}",
                ModelFallback(from_=alias, to=following[0] if following else "", error=str(outcome["gone"])),
                step_key=step_key_of(key),
                agent=agent.name,
            )

    def unserved(self, passed: list[str]) -> str | None:
        """Why a call whose every candidate was passed over fails (None: there were none). Run here, it
        would load a model this worker was told not to serve (``--models``: a small box kept from a large
        model) while its events said the model was skipped; or it failed with "unknown model alias" when
        this worker's project does not declare it, which the project that started the run does."""
        if not passed:
            return None
        known = self.rt.models.aliases()
        declared = [a for a in passed if a in known]
        names = ", ".join(f"'{a}'" for a in declared or passed)
        if not declared:
            return (
                f"no live worker in the cluster serves model {names}, and this worker does not know it: its "
                f"project ({self.rt.settings.project_dir}) declares {', '.join(sorted(known)) or 'no models'}; "
                "start every worker with the project that started the run (see `edgecrew cluster status`)"
            )
        return (
            f"no live worker in the cluster serves model {names} (this worker serves "
            f"{', '.join(sorted(self.local)) or 'none'}: `edgecrew worker --models`); start a worker that "
            "serves it, or give the alias `fallbacks:` that a live worker serves (see `edgecrew cluster status`)"
        )


def _router() -> CallRouter:
    route = durable._model_route
    if not isinstance(route, CallRouter):
        raise RuntimeError("this process is not a cluster worker (edgecrew worker)")
    return route


@DBOS.step(name="edgecrew.cluster.route")
async def route_step(
    run_id: str, key: str, agent: str, ref: str, candidates: list[str], gone: list[str]
) -> tuple[str, str | None, list[str]]:
    """Decide (once: recorded) where one model call runs, from the live workers' advertisements."""
    router = _router()
    settings = router.rt.settings
    workers = await asyncio.to_thread(router.table.all)
    where, alias, passed = plan(
        [c for c in candidates if c not in gone], router.local, workers, time.time(), settings.cluster_lease_s
    )
    for skipped in passed:
        router.rt.store.emit(
            run_id,
            f"{key}.cluster.skip.{skipped}",
            ModelSkipped(alias=skipped, reason="no live worker in the cluster serves it"),
            step_key=step_key_of(key),
            agent=agent,
        )
    return where, alias, passed


@DBOS.workflow(name="edgecrew.cluster.model_call")
async def remote_model_call(
    run_id: str, key: str, agent: str, alias: str, request: ModelRequest, timeout_s: float
) -> dict[str, Any]:
    """One model call on a worker that serves ``alias`` (dequeued from the alias's queue)."""
    data: dict[str, Any] = await durable.model_call_step(run_id, key, agent, alias, request, timeout_s)
    return data


@DBOS.step(name="edgecrew.cluster.await_call")
async def await_call_step(workflow_id: str, alias: str) -> dict[str, Any]:
    """Wait for a remote call's result: {"data": ...}, or {"gone": why} when no live worker serves its
    model any more (the call is cancelled, so it never runs late)."""
    router = _router()
    lease_s, poll_s = router.rt.settings.cluster_lease_s, router.rt.settings.cluster_queue_poll_s / 2
    next_check = 0.0
    while True:
        found = await DBOS.list_workflows_async(workflow_ids=[workflow_id], load_input=False, load_output=True)
        status = found[0].status if found else None
        if status == "SUCCESS":
            return {"data": found[0].output}
        if status == "ERROR":
            error = f"model '{alias}' failed on a cluster worker: {found[0].error}"
            return {"data": {"error": error, "kind": "error", "alias": alias}}
        if status == "CANCELLED":
            return {"gone": f"the call to model '{alias}' was cancelled"}
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + _WORKERS_CHECK_S
            workers = await asyncio.to_thread(router.table.all)
            live = serving(workers, alias, time.time(), lease_s)
            if not live and alias not in router.local:
                await DBOS.cancel_workflow_async(workflow_id)
                return {"gone": f"no live worker serves model '{alias}' (its worker died)"}
        await asyncio.sleep(poll_s)
