"""The cluster: workers (state, models, load, heartbeat), each model's live workers, queue depths."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from edgecrew.api.deps import Read, RuntimeDep
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.cluster import ClusterService

router = APIRouter(prefix="/cluster", tags=["cluster"], responses=PROBLEM_RESPONSES)


class ClusterOut(BaseModel):
    enabled: bool  # false: EDGECREW_CLUSTER is off or the database is not Postgres
    lease_s: float
    workers: list[dict[str, Any]]
    models: list[dict[str, Any]]  # each alias a listed worker served: its tags, live workers (ids) and their count
    queues: list[dict[str, Any]]
    warnings: list[str] = []  # what live workers disagree on: edgecrew version, project edgecrew.yaml


@router.get("", response_model=ClusterOut)
async def cluster_status(rt: RuntimeDep, _: Read) -> ClusterOut:
    """Workers, the models they serve, their load, and the cluster queues' depths."""
    found = await asyncio.to_thread(ClusterService.of(rt).status)
    return ClusterOut(**found.to_dict())
