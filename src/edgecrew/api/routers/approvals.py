"""Approvals: the inbox of risky tool calls, and approve / deny / edit (the same service as the CLI)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from edgecrew.api.deps import ApprovalsDep, Approve, Read
from edgecrew.api.problems import PROBLEM_RESPONSES, problem_response
from edgecrew.api.shapes import Out

router = APIRouter(prefix="/approvals", tags=["approvals"], responses=PROBLEM_RESPONSES)


class ApprovalOut(Out):
    id: str
    run_id: str
    agent: str
    tool: str
    arguments: dict[str, Any]
    reason: str = Field(description="Why the agent wants to make this call.")
    status: Literal["pending", "approved", "denied", "expired"]
    decision_note: str | None
    created_at: float
    decided_at: float | None


class DecisionIn(BaseModel):
    # `reason` too, as `edgecrew approvals deny --reason` names it; any other field is refused, not
    # dropped: a denial's reason lost on the way shows as a bare "denied" in the run's answer.
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(
        default=None,
        max_length=2000,
        validation_alias=AliasChoices("note", "reason"),
        description="Recorded with the decision (also accepted as `reason`).",
    )


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a field it does not declare is refused by name, not dropped

    arguments: dict[str, Any] = Field(description="The new arguments; checked against the tool's schema.")


@router.get("", response_model=list[ApprovalOut])
def list_approvals(
    svc: ApprovalsDep,
    _: Read,
    status: Literal["pending", "approved", "denied", "expired", "all"] = "pending",
    run: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ApprovalOut]:
    """Approvals, oldest first (pending ones unless ``status`` says otherwise)."""
    return [ApprovalOut.of(r) for r in svc.list(None if status == "all" else status, run)]


@router.get("/{approval_id}", response_model=ApprovalOut)
def get_approval(approval_id: str, svc: ApprovalsDep, _: Read) -> ApprovalOut:
    return ApprovalOut.of(svc.approvals.get(approval_id))


@router.post("/{approval_id}/approve", response_model=ApprovalOut)
async def approve(approval_id: str, svc: ApprovalsDep, _: Approve, body: DecisionIn | None = None) -> ApprovalOut:
    """Let the call run (with its current arguments). Approving twice is harmless: it runs once."""
    return ApprovalOut.of(await asyncio.to_thread(svc.approve, approval_id, body.note if body else None))


@router.post("/{approval_id}/deny", response_model=ApprovalOut)
async def deny(approval_id: str, svc: ApprovalsDep, _: Approve, body: DecisionIn | None = None) -> ApprovalOut:
    """Refuse the call; the agent is told and carries on without it."""
    return ApprovalOut.of(await asyncio.to_thread(svc.deny, approval_id, body.note if body else None))


@router.post(
    "/{approval_id}/edit",
    response_model=ApprovalOut,
    responses={400: problem_response(400, "The arguments do not fit the tool's own schema (the detail says where).")},
)
async def edit(approval_id: str, body: EditIn, svc: ApprovalsDep, _: Approve) -> ApprovalOut:
    """Change a pending call's arguments (validated against the tool's schema); approve it afterwards."""
    return ApprovalOut.of(await asyncio.to_thread(svc.edit, approval_id, body.arguments))
