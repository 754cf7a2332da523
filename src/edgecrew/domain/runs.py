"""Run and step states, agent-turn outcomes, and the event vocabulary.

A run moves ``queued → running → (waiting_approval ↔ running) → succeeded | failed | cancelled``;
terminal states never change again. Every state change is also an event row.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})

_ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.WAITING_APPROVAL, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.WAITING_APPROVAL: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
}


def can_transition(current: RunStatus, new: RunStatus) -> bool:
    """Whether a run in ``current`` may move to ``new`` (same state is allowed: replay re-applies it)."""
    return current == new or new in _ALLOWED.get(current, frozenset())


# A run's error when every agent finished and the team's ``failed_when`` held on the answer (a task that
# failed its checks): the work's own result, told to whoever started the run, not a failure to heal.
ANSWER_SAYS_FAILED = "the team's answer says its work failed"


class Outcome(StrEnum):
    """How one agent turn ended."""

    FINAL = "final"  # returned its output (valid against its schema when it has one)
    MAX_STEPS = "max_steps"  # ran out of its step budget
    LOOP_DETECTED = "loop_detected"  # asked for the same tool call three times
    TIMEOUT = "timeout"  # ran past its wall-clock limit
    INVALID_OUTPUT = "invalid_output"  # kept returning output that fails its schema
    ERROR = "error"  # the model backend failed
    TOOL_ERRORS = "tool_errors"  # too many failed tool calls in one turn
    CANCELLED = "cancelled"  # its run was cancelled during the turn, which stopped at its next call


class EventType(StrEnum):
    """The kinds of run events; each has its typed payload in :mod:`edgecrew.domain.events`."""

    RUN_CREATED = "run_created"
    RUN_STARTED = "run_started"
    RUN_RESUMED = "run_resumed"
    STEP_STARTED = "step_started"
    MODEL_CALLED = "model_called"
    TOOL_CALLED = "tool_called"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    ROUTE_TAKEN = "route_taken"
    STEP_FINISHED = "step_finished"
    RUN_FINISHED = "run_finished"
    RUN_CANCELLED = "run_cancelled"
    TOOLS_SELECTED = "tools_selected"  # tool retrieval offered the model only these tools at one step
    FEEDBACK_GIVEN = "feedback_given"  # a person rated the run's answer
    MEMORY_RECALLED = "memory_recalled"  # automatic recall put memories in an agent's prompt
    # reported by model routing while it picks the model for one call
    MODEL_SKIPPED = "model_skipped"
    MODEL_CHOSEN = "model_chosen"
    MODEL_FALLBACK = "model_fallback"


def started_by(trigger: Mapping[str, Any] | None) -> str | None:
    """Who started a run when no person did, in words (None: a person, through the CLI, API or UI)."""
    if not trigger:
        return None
    kind = str(trigger.get("kind") or "")
    match kind:
        case "routine":
            name = trigger.get("routine")
            return (
                f"routine {name}, fired by hand"
                if trigger.get("manual")
                else f"routine {name} ({trigger.get('firing')})"
            )
        case "job":
            return f"job {trigger.get('job')}"
        case "supervisor":
            action = trigger.get("action")
            what = f": {action}" + (f" ({trigger['change']})" if trigger.get("change") else "") if action else ": retry"
            return f"the supervisor, automatically, for incident {trigger.get('incident')}{what}"
        case "chat":
            return f"chat session {trigger.get('session')} (turn {trigger.get('turn')})"
        case "from_step":
            return f"run {trigger.get('run')}, from its step {trigger.get('step')} on (the outputs before it copied)"
    return kind or None
