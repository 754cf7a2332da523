"""What handlers get from the app: the runtime and the services built on it, and the scope guards."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from edgecrew.api.auth import Principal, require
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def get_runs(request: Request) -> RunService:
    return RunService(get_runtime(request))


def get_approvals(request: Request) -> ApprovalService:
    svc: ApprovalService = request.app.state.approvals
    return svc


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RunsDep = Annotated[RunService, Depends(get_runs)]
ApprovalsDep = Annotated[ApprovalService, Depends(get_approvals)]
Read = Annotated[Principal, Depends(require("read"))]
StartRuns = Annotated[Principal, Depends(require("runs"))]
Approve = Annotated[Principal, Depends(require("approve"))]
Admin = Annotated[Principal, Depends(require("admin"))]
