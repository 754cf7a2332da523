"""What handlers get from the app: the runtime and the services built on it, the scope guards,
and the one check every route shares (a single-valued query parameter is given once)."""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from edgecrew.api.auth import Principal, require
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService
from edgecrew.ops import Ops

MAX_ID = 2**62  # ids and offsets past this are not ours (SQLite integers stop at 2**63 - 1)
_EVENT_ID = re.compile(r"[0-9]{1,18}")


def resume_point(after: int, last_event_id: str | None) -> int:
    """Where an event stream resumes: after ``after``, or after ``Last-Event-ID`` when that is later
    (an id that is not one of ours is ignored, as the SSE spec has servers do)."""
    given = (last_event_id or "").strip()
    return max(after, int(given)) if _EVENT_ID.fullmatch(given) else after


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def get_runs(request: Request) -> RunService:
    return RunService(get_runtime(request))


def get_ops(request: Request) -> Ops:
    """The runtime's operations services (routines, sampler, alerts, jobs)."""
    return Ops.of(get_runtime(request))


def get_approvals(request: Request) -> ApprovalService:
    svc: ApprovalService = request.app.state.approvals
    return svc


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RunsDep = Annotated[RunService, Depends(get_runs)]
ApprovalsDep = Annotated[ApprovalService, Depends(get_approvals)]
OpsDep = Annotated[Ops, Depends(get_ops)]
Read = Annotated[Principal, Depends(require("read"))]
StartRuns = Annotated[Principal, Depends(require("runs"))]
Approve = Annotated[Principal, Depends(require("approve"))]
Admin = Annotated[Principal, Depends(require("admin"))]


async def single_query_values(request: Request) -> None:
    """Refuse a query parameter that takes one value but came several times (``?run=a&run=b``):
    FastAPI would keep the last one silently, so the caller would not learn the others were dropped.
    An operation of the API (one its document lists) that takes query parameters refuses one it does not
    take too: ``GET /approvals?run_id=R`` listed every run's pending approvals, as if unfiltered."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    if getattr(route, "include_in_schema", False):
        known = _query_names(dependant)
        unknown = sorted({name for name in request.query_params if name not in known})
        if unknown and known:  # one that takes none (a health probe with a cache buster) reads nothing of it
            takes = ", ".join(sorted(known)) or "none"
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", name),
                        "msg": f"not a parameter of this operation (it takes: {takes})",
                        "type": "unknown",
                    }
                    for name in unknown
                ]
            )
    counts = {name: len(request.query_params.getlist(name)) for name in _single_valued_query(dependant)}
    repeated = {name: n for name, n in counts.items() if n > 1}
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": f"given {n} times; it takes one value", "type": "repeated"}
                for name, n in sorted(repeated.items())
            ]
        )


def _query_names(dependant: Any) -> set[str]:
    """Every query parameter an operation takes, its dependencies' included."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names |= {f.alias for f in current.query_params}
        stack.extend(current.dependencies)
    return names


def _single_valued_query(dependant: Any) -> set[str]:
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names |= {f.alias for f in current.query_params if not _takes_many(f.field_info.annotation)}
        stack.extend(current.dependencies)
    return names


def _takes_many(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_takes_many(a) for a in get_args(annotation))
    kinds = (list, tuple, set, frozenset, Sequence)
    return origin in kinds or annotation in kinds
