"""Approvals in the store: a risky tool call waiting for a person, and the one decision it gets.

``decide`` is a conditional update (only a pending approval changes), so when two people approve
the same call at the same moment exactly one of them wins and the call runs exactly once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edgecrew.errors import ConflictError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore


@dataclass(frozen=True)
class ApprovalRecord:
    id: str
    run_id: str
    call_key: str
    workflow_id: str
    agent: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    status: str
    decision_note: str | None
    created_at: float
    decided_at: float | None


class ApprovalStore:
    def __init__(self, store: RunStore) -> None:
        self.store = store

    def request(
        self,
        run_id: str,
        call_key: str,
        workflow_id: str,
        agent: str,
        tool: str,
        arguments: dict[str, Any],
        reason: str,
    ) -> ApprovalRecord:
        """Record a pending approval for a call (idempotent: a replay finds the existing one)."""
        existing = self._find(run_id, call_key)
        if existing is not None:
            return existing
        approval_id = "a" + hashlib.sha256(f"{run_id}:{call_key}".encode()).hexdigest()[:15]
        row = {
            "id": approval_id,
            "run_id": run_id,
            "call_key": call_key,
            "workflow_id": workflow_id,
            "agent": agent,
            "tool": tool,
            "arguments": arguments,
            "reason": reason,
            "status": "pending",
            "created_at": time.time(),
        }
        self.store._upsert(t.approvals, [row], ("run_id", "call_key"), exclude_on_update=tuple(row))
        found = self._find(run_id, call_key)
        assert found is not None
        return found

    def get(self, approval_id: str) -> ApprovalRecord:
        """The approval with this id, or the only one whose id starts with it."""
        return ApprovalRecord(
            **dict(self.store.row_by_id(t.approvals, approval_id, "approval", "edgecrew approvals list"))
        )

    def list(self, status: str | None = "pending", run_id: str | None = None) -> list[ApprovalRecord]:
        query = sa.select(t.approvals).order_by(t.approvals.c.created_at)
        if status:
            query = query.where(t.approvals.c.status == status)
        if run_id:
            query = query.where(t.approvals.c.run_id == run_id)
        with self.store.engine.connect() as conn:
            return [ApprovalRecord(**dict(r)) for r in conn.execute(query).mappings()]

    def edit(self, approval_id: str, arguments: dict[str, Any]) -> ApprovalRecord:
        approval_id = self.get(approval_id).id
        with self.store.transaction() as conn:
            changed = conn.execute(
                t.approvals.update()
                .where(t.approvals.c.id == approval_id, t.approvals.c.status == "pending")
                .values(arguments=arguments)
            ).rowcount
        if not changed:
            raise ConflictError(
                f"approval {approval_id} is {self.get(approval_id).status}; only pending ones can be edited"
            )
        return self.get(approval_id)

    def decide(self, approval_id: str, status: str, note: str | None = None) -> ApprovalRecord:
        """Approve or deny; raises ConflictError when someone already decided."""
        approval_id = self.get(approval_id).id
        with self.store.transaction() as conn:
            changed = conn.execute(
                t.approvals.update()
                .where(t.approvals.c.id == approval_id, t.approvals.c.status == "pending")
                .values(status=status, decision_note=note, decided_at=time.time())
            ).rowcount
        record = self.get(approval_id)
        if not changed:
            raise ConflictError(f"approval {approval_id} was already {record.status}")
        return record

    def _find(self, run_id: str, call_key: str) -> ApprovalRecord | None:
        query = sa.select(t.approvals).where(t.approvals.c.run_id == run_id, t.approvals.c.call_key == call_key)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return ApprovalRecord(**dict(row)) if row else None
