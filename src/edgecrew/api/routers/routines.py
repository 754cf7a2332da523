"""Routines: the routines of edgecrew.yaml with their schedule state and firings; pause, resume, and
trigger (run now). The firings themselves happen in the servers, as DBOS scheduled workflows."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from edgecrew.api.deps import OpsDep, Read, StartRuns
from edgecrew.api.problems import PROBLEM_RESPONSES
from edgecrew.api.routers.runs import IdempotencyKey, RunOut, started_response
from edgecrew.context import request_id as current_request_id
from edgecrew.ops.routines import RoutineState
from edgecrew.specs.routines import ROUTINE_NAME

router = APIRouter(prefix="/routines", tags=["routines"], responses=PROBLEM_RESPONSES)
RoutineName = Path(pattern=ROUTINE_NAME, max_length=64, description="A routine's name (see GET /routines).")


class RoutineOut(BaseModel):
    name: str
    team: str
    task: str
    cron: str
    timezone: str
    enabled: bool  # as declared in edgecrew.yaml
    catch_up: str
    project: str | None = None  # the project its runs work in (their files at project/, their memory)
    status: str  # active | paused | not scheduled | invalid
    schedule: str  # its schedule's own state (active | paused | not scheduled), an invalid routine's too
    problem: str | None = None
    next_firing: datetime | None = None
    last_firing: datetime | None = None
    last_run: RunOut | None = None

    @classmethod
    def of(cls, s: RoutineState) -> RoutineOut:
        d = s.doc
        return cls(
            name=s.name,
            team=d.team,
            task=d.task,
            cron=d.cron,
            timezone=d.timezone,
            enabled=d.enabled,
            catch_up=d.catch_up,
            project=d.project,
            status=s.status,
            schedule=s.schedule,
            problem=s.problem,
            next_firing=s.next_firing,
            last_firing=s.last_firing,
            last_run=RunOut.of(s.last_run) if s.last_run else None,
        )


@router.get("", response_model=list[RoutineOut])
async def list_routines(ops: OpsDep, _: Read) -> list[RoutineOut]:
    """Every routine with its state, next and last firing, and last run."""
    return [RoutineOut.of(s) for s in await asyncio.to_thread(ops.routines.states)]


@router.get("/{name}", response_model=RoutineOut)
async def get_routine(ops: OpsDep, _: Read, name: str = RoutineName) -> RoutineOut:
    return RoutineOut.of(await asyncio.to_thread(ops.routines.state, name))


@router.get("/{name}/runs", response_model=list[RunOut])
async def routine_runs(ops: OpsDep, _: Read, name: str = RoutineName) -> list[RunOut]:
    """The routine's latest runs (scheduled and manual firings), newest first."""
    return [RunOut.of(r) for r in await asyncio.to_thread(ops.routines.runs, name)]


@router.post("/{name}/pause", response_model=RoutineOut)
async def pause_routine(ops: OpsDep, _: StartRuns, name: str = RoutineName) -> RoutineOut:
    """Stop the routine's firings in every server until it is resumed."""
    return RoutineOut.of(await asyncio.to_thread(ops.routines.pause, name))


@router.post("/{name}/resume", response_model=RoutineOut)
async def resume_routine(ops: OpsDep, _: StartRuns, name: str = RoutineName) -> RoutineOut:
    return RoutineOut.of(await asyncio.to_thread(ops.routines.resume, name))


@router.post(
    "/{name}/trigger",
    status_code=201,
    response_model=RunOut,
    responses={200: {"model": RunOut, "description": "A retry: the run this Idempotency-Key started before."}},
)
async def trigger_routine(
    ops: OpsDep, _: StartRuns, name: str = RoutineName, idempotency_key: IdempotencyKey = None
) -> Any:
    """Run the routine now; the answer is the run it started (follow it with GET /runs/{id}/events),
    with X-Edgecrew-Warning headers as POST /runs gives them."""
    started = await ops.routines.trigger(name, request_id=current_request_id.get(), idempotency_key=idempotency_key)
    return started_response(started)
