"""Models: the registry of aliases, and what the model pools hold now (this server's and others')."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from edgecrew.api.deps import Read, RuntimeDep
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.engine.executors import executor_id
from edgecrew.engine.runtime import published_pool_states
from edgecrew.models.registry import ModelDef

router = APIRouter(prefix="/models", tags=["models"], responses=PROBLEM_RESPONSES)


class ModelOut(BaseModel):
    alias: str
    backend: str
    source: str
    description: str
    tags: list[str]
    fallbacks: list[str]
    capabilities: list[str]
    memory_bytes: int | None
    n_ctx: int
    pinned: bool
    slots: int
    resident: bool
    details: dict[str, Any]


class PoolOut(BaseModel):
    executor: str
    state: dict[str, Any]


class PoolsOut(BaseModel):
    server: PoolOut
    others: list[dict[str, Any]]


@router.get("", response_model=list[ModelOut])
def list_models(rt: RuntimeDep, _: Read) -> list[ModelOut]:
    """Every alias (built-in and the project's), and whether this server holds it in memory."""
    resident = rt.pool.resident_aliases()
    return [_model_out(d, resident) for d in rt.models.definitions()]


@router.get("/pool", response_model=PoolsOut)
def pool_state(rt: RuntimeDep, _: Read) -> PoolsOut:
    """This server's pool (resident models, memory budget and use, queue, waits, swaps) and the
    pools other edgecrew processes on this machine published."""
    me = executor_id()
    others = [s for s in published_pool_states(rt.settings.home) if s.get("executor") != me]
    return PoolsOut(server=PoolOut(executor=me, state=rt.pool.state().to_dict()), others=others)


@router.get("/{alias}", response_model=ModelOut)
def get_model(alias: str, rt: RuntimeDep, _: Read) -> ModelOut:
    return _model_out(rt.models.definition(alias), rt.pool.resident_aliases())


def _model_out(d: ModelDef, resident: frozenset[str]) -> ModelOut:
    return ModelOut(
        alias=d.alias,
        backend=d.backend,
        source=d.source,
        description=d.describe(),
        tags=list(d.tags),
        fallbacks=list(d.fallbacks),
        capabilities=sorted(d.capabilities),
        memory_bytes=d.memory_bytes,
        n_ctx=d.n_ctx,
        pinned=d.pinned,
        slots=d.slots,
        resident=d.alias in resident,
        details=d.to_dict(),
    )
