"""The approval gate: a risky tool call waits, durably, for a person to approve, deny or edit it.

Inside the workflow the call records a pending approval, moves the run to ``waiting_approval`` and
waits on a DBOS message (``recv``), which survives restarts: a resumed run waits again, or finds
the decision already delivered. Deciding is a conditional update in the store (only a pending
approval changes) followed by a DBOS ``send`` with the approval id as idempotency key, so however
many times, or from however many places, a call is approved, it runs exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgecrew.domain.events import ApprovalDecided, ApprovalRequested
from edgecrew.domain.runs import RunStatus
from edgecrew.engine.graph import step_key_of
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import ConflictError, ToolError, UserError
from edgecrew.store.approvals import ApprovalRecord, ApprovalStore

WAIT_CHUNK_S = 3600.0  # recv waits this long per round; a decision may take days


def topic(approval_id: str) -> str:
    return f"approval:{approval_id}"


@dataclass(frozen=True)
class Decision:
    approved: bool
    arguments: dict[str, Any]
    note: str | None = None


async def await_decision(
    rt: Runtime, run_id: str, call_key: str, agent: str, tool: str, arguments: dict[str, Any], reason: str
) -> Decision:
    """Record the request and wait for its decision (called from workflow code only)."""
    from dbos import DBOS

    approvals = ApprovalStore(rt.store)
    record = approvals.request(run_id, call_key, str(DBOS.workflow_id), agent, tool, arguments, reason)
    rt.store.set_status(run_id, RunStatus.WAITING_APPROVAL)
    rt.store.emit(
        run_id,
        f"{call_key}.approval",
        ApprovalRequested(approval=record.id, tool=tool, arguments=arguments, reason=reason),
        step_key=step_key_of(call_key),
        agent=agent,
    )
    message = None
    while message is None:
        message = await DBOS.recv_async(topic(record.id), timeout_seconds=WAIT_CHUNK_S)
    if message.get("cancelled"):  # the run was cancelled while it waited (see RunService.cancel): no decision
        return Decision(approved=False, arguments=arguments, note="the run was cancelled")
    decision = Decision(approved=message["approved"], arguments=message["arguments"], note=message.get("note"))
    rt.store.set_status(run_id, RunStatus.RUNNING)
    rt.store.emit(
        run_id,
        f"{call_key}.decision",
        ApprovalDecided(
            approval=record.id, approved=decision.approved, arguments=decision.arguments, note=decision.note
        ),
        step_key=step_key_of(call_key),
        agent=agent,
    )
    return decision


@dataclass(frozen=True)
class Waiting:
    """A run waiting for a person, as told to a caller that cannot decide (MCP's team tools, /v1): the
    calls waiting, and how to decide them. One wording for every such caller; each says how it goes on."""

    run_id: str
    approvals: tuple[ApprovalRecord, ...]

    def message(self, goes_on: str) -> str:
        """The calls, the commands that decide them, ``goes_on`` (what the caller does next), where the result is."""
        calls = "; ".join(
            f"{a.tool} {json.dumps(a.arguments, ensure_ascii=False)} (agent {a.agent}): "
            f"edgecrew approvals approve {a.id} (or deny {a.id} --reason ...)"
            for a in self.approvals
        )
        return (
            f"run {self.run_id} waits for a person's approval of {calls or 'a risky tool call'}. "
            f"Decide it from the CLI as shown, or in mission control's Approvals (edgecrew serve); {goes_on}. "
            f"Its result: edgecrew runs show {self.run_id}"
        )

    def calls(self) -> list[dict[str, Any]]:
        return [{"id": a.id, "agent": a.agent, "tool": a.tool, "arguments": a.arguments} for a in self.approvals]


class ApprovalService:
    """List, approve, deny and edit pending approvals (the CLI, API and UI all call this)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.approvals = ApprovalStore(rt.store)

    def list(self, status: str | None = "pending", run_id: str | None = None) -> list[ApprovalRecord]:
        """Approvals in ``status`` (None: all), of one run when given: its id or a prefix, as everywhere
        (an unknown one is NotFoundError: it listed nothing, as if that run had no approvals)."""
        if run_id:
            run_id = self.rt.store.get_run(run_id).id
        return self.approvals.list(status, run_id)

    def waiting(self, run_id: str) -> Waiting:
        """What a run waits for: its pending approvals (none once they are decided)."""
        return Waiting(self.rt.store.get_run(run_id).id, tuple(self.list("pending", run_id)))

    def edit(self, approval_id: str, arguments: dict[str, Any]) -> ApprovalRecord:
        """Change a pending call's arguments; they are validated against the tool's schema first."""
        record = self.approvals.get(approval_id)
        try:
            checked = self.rt.tools.get(record.tool).validate_arguments(arguments)
        except ToolError as exc:
            raise UserError(str(exc)) from None
        return self.approvals.edit(approval_id, checked)

    def approve(self, approval_id: str, note: str | None = None) -> ApprovalRecord:
        return self._decide(approval_id, "approved", note)

    def deny(self, approval_id: str, note: str | None = None) -> ApprovalRecord:
        return self._decide(approval_id, "denied", note)

    def _decide(self, approval_id: str, status: str, note: str | None) -> ApprovalRecord:
        record = self.approvals.get(approval_id)
        run = self.rt.store.get_run(record.run_id)
        if run.status.terminal:
            raise ConflictError(f"run {run.id} already {run.status.value}; its approvals no longer matter")
        try:
            record = self.approvals.decide(approval_id, status, note)
        except ConflictError:
            current = self.approvals.get(approval_id)
            if current.status != status:
                raise
            record = current  # the same decision again: deliver it again (idempotent) in case it was lost
        self._deliver(record)
        return record

    def _deliver(self, record: ApprovalRecord) -> None:
        from dbos import DBOSClient

        client = DBOSClient(system_database_url=self.rt.settings.system_database_url)
        try:
            client.send(
                record.workflow_id,
                {"approved": record.status == "approved", "arguments": record.arguments, "note": record.decision_note},
                topic(record.id),
                idempotency_key=f"decision:{record.id}",
            )
        finally:
            client.destroy()
