"""The agents' tools on the task workspace: tasks.create, add_version, run_version, latest,
post_feedback, post_message and finish.

They are closures over one runtime's TaskStore and ExecutionService (registered by
:func:`register_task_tools`, no module state), and every write names the run and agent that made it
(``agent@run`` in the author fields, run and agent on executions). Store errors (an unknown task or
version, a bad verdict) come back as ToolError, so the model reads what to fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgecrew.errors import NotFoundError, ToolError, UserError
from edgecrew.store.tasks import DESCRIPTION_MAX, TITLE_MAX, ExecutionRecord, TaskRecord, TaskStore
from edgecrew.tasks.checks import TaskLimitsJson, parse_checks, parse_limits, whole_counts
from edgecrew.tasks.executions import ExecutionService, author_of
from edgecrew.tasks.versions import add_version
from edgecrew.tools.base import ToolContext, ToolRegistry, as_tool_errors, spec_from_function

__all__ = ["TASK_TOOLS", "register_task_tools"]

TASK_TOOLS = (
    "tasks.create",
    "tasks.add_version",
    "tasks.run_version",
    "tasks.latest",
    "tasks.post_feedback",
    "tasks.post_message",
    "tasks.finish",
)
RUN_TIMEOUT_S = 600.0  # an execution runs every io case under the task's wall limit; it outlives a waiter cut short
CODE_SHOWN = 8_000
TEXT_SHOWN = 4_000
STDERR_LINES = 20


class IoCaseArg(BaseModel):
    """One row of a task's input/expected-output table, as a tool argument."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="What the program reads on stdin.")
    expected: str = Field(description="What it must print (trailing whitespace is ignored).")


TaskId = Annotated[str, Field(min_length=1, max_length=64, description="The task's id (tasks.create returns it).")]
Version = Annotated[int, Field(ge=1, description="A code version number of the task (tasks.add_version returns it).")]


def _author(ctx: ToolContext) -> str:
    return author_of(ctx.agent, ctx.run_id) or "agent"


def register_task_tools(
    registry: ToolRegistry, tasks: TaskStore | None = None, executions: ExecutionService | None = None
) -> None:
    """Register the task tools, bound to a runtime's task store and execution service; unbound (None),
    they are only listed (validation and `edgecrew tools list` need their names, not a store) and a
    call says so. Registering again replaces them: bootstrap binds them once the store is open."""
    bound = _TaskTools(tasks, executions)
    specs: list[tuple[str, Callable[..., Any], float]] = [
        ("tasks.create", bound.create, 30.0),
        ("tasks.add_version", bound.add_version, 30.0),
        ("tasks.run_version", bound.run_version, RUN_TIMEOUT_S),
        ("tasks.latest", bound.latest, 30.0),
        ("tasks.post_feedback", bound.post_feedback, 30.0),
        ("tasks.post_message", bound.post_message, 30.0),
        ("tasks.finish", bound.finish, 30.0),
    ]
    for name, fn, timeout_s in specs:
        # All "safe": they read and write the task workspace only, and run_version runs code sandboxed.
        spec = spec_from_function(fn, name=name, timeout_s=timeout_s, risk="safe")
        registry.register(replace(spec, parameters=spec.parameters.rewritten(_inlined)))


class _TaskTools:
    """The tools' functions, bound to one runtime's services (their docstrings are the descriptions)."""

    def __init__(self, tasks: TaskStore | None, executions: ExecutionService | None) -> None:
        self._tasks, self._executions = tasks, executions

    @property
    def tasks(self) -> TaskStore:
        if self._tasks is None:
            raise ToolError("the task workspace is not open in this process (the tools are only listed here)")
        return self._tasks

    @property
    def executions(self) -> ExecutionService:
        if self._executions is None:
            raise ToolError("the task workspace is not open in this process (the tools are only listed here)")
        return self._executions

    def _team_of(self, run_id: str | None) -> str | None:
        try:
            return self.tasks.store.get_run(run_id).team if run_id else None
        except NotFoundError:  # a call outside a run (tests, a tool called by hand)
            return None

    def create(
        self,
        title: Annotated[str, Field(min_length=1, max_length=TITLE_MAX, pattern=r"\S")],
        spec: Annotated[
            str, Field(max_length=DESCRIPTION_MAX, description="What the code must do: inputs, outputs, rules.")
        ],
        ctx: ToolContext,
        io: Annotated[
            list[IoCaseArg] | None, Field(description="Acceptance checks: stdin input and the exact expected stdout.")
        ] = None,
        test: Annotated[
            str | None,
            Field(
                description="Optional Python test: asserts, unittest or pytest-style test_ functions (no fixtures); "
                "`import solution` loads it."
            ),
        ] = None,
        limits: Annotated[
            TaskLimitsJson | None, Field(description="Sandbox limits for its versions (the defaults otherwise).")
        ] = None,
    ) -> dict[str, Any]:
        """Create a task with its spec, acceptance checks and sandbox limits; returns its task_id."""
        with as_tool_errors():
            given = {"io": [dict(c) for c in io] if io is not None else None, "test": test}
            given = {k: v for k, v in given.items() if v is not None}
            checks = parse_checks(given or None, written=True)  # none given: none; given empty: refused
            # A dict by now (the call dumps it); given empty: refused, as empty checks are.
            valid_limits = parse_limits(dict(limits) if limits is not None else None, written=True).to_json()
            team = self._team_of(ctx.run_id)  # the scoreboard counts tasks per team
            task = self.tasks.create(
                title, spec, team, checks=checks.to_json(), limits=valid_limits, created_by=_author(ctx)
            )
        return {"task_id": task.id, "title": task.title, "checks": checks.total, "limits": valid_limits}

    def add_version(
        self,
        task_id: TaskId,
        filename: Annotated[str, Field(min_length=1, max_length=200, description="e.g. solution.py")],
        code: Annotated[str, Field(min_length=1, max_length=1_000_000)],
        ctx: ToolContext,
    ) -> dict[str, Any]:
        """Add a new code version of a task (the next number); returns the version, and ``same_as``: the
        earlier version with the same file and bytes, if any (a coder that repeats itself makes no progress)."""
        self._task(task_id)
        with as_tool_errors():
            earlier = self.tasks.code_versions(task_id)
            record = add_version(self.tasks, task_id, filename, code.encode("utf-8"), _author(ctx))
        same = [v.version for v in earlier if (v.sha256, v.filename) == (record.sha256, record.filename)]
        return {
            "task_id": task_id,
            "version": record.version,
            "filename": record.filename,
            "size": record.size,
            "same_as": same[-1] if same else None,
        }

    async def run_version(self, task_id: TaskId, version: Version, ctx: ToolContext) -> dict[str, Any]:
        """Run a code version in the sandbox against the task's checks; returns the status, checks passed,
        metrics and the reason it failed."""
        # "safe": the code runs in the sandbox (no network, a private work dir, CPU, memory and
        # process limits), never in edgecrew's process, so running it risks nothing the policy guards.
        await asyncio.to_thread(self._check_version, task_id, version)
        with as_tool_errors():
            record = await self.executions.run(task_id, version, run_id=ctx.run_id, agent=ctx.agent)
        return await asyncio.to_thread(_execution_summary, record, self.executions)

    def latest(self, task_id: TaskId) -> dict[str, Any]:
        """The task's spec and checks, its latest code version, and that version's latest result and feedback."""
        task = self._task(task_id)
        with as_tool_errors():
            return _latest(self.tasks, task)

    def post_feedback(
        self,
        task_id: TaskId,
        version: Version,
        verdict: Literal["accepted", "needs_changes", "rejected"],
        ctx: ToolContext,
        notes: Annotated[str, Field(max_length=20_000, description="What to change, or why it is accepted.")] = "",
    ) -> dict[str, Any]:
        """Post a verdict on a code version, with notes for the coder."""
        self._check_version(task_id, version)
        with as_tool_errors():
            record = self.tasks.add_feedback(
                task_id, author=_author(ctx), verdict=verdict, notes=notes, version=version
            )
        return {"feedback_id": record.id, "task_id": task_id, "version": version, "verdict": verdict}

    def post_message(
        self, task_id: TaskId, content: Annotated[str, Field(min_length=1, max_length=100_000)], ctx: ToolContext
    ) -> dict[str, Any]:
        """Post a message on the task's timeline."""
        self._task(task_id)
        with as_tool_errors():
            record = self.tasks.add_message(task_id, _author(ctx), "agent", content)
        return {"message_id": record.id, "task_id": task_id}

    def finish(self, task_id: TaskId, status: Literal["done", "failed"], ctx: ToolContext) -> dict[str, Any]:
        """Mark the task done or failed and name its best version (the latest accepted, else the one
        that passed the most checks)."""
        if self._task(task_id).status == "cancelled":  # a person stopped it while the team worked on it
            raise ToolError(f"task {task_id} was cancelled while you worked on it; it stays cancelled, stop here")
        with as_tool_errors():
            best, why = self.tasks.best_version(task_id)
            self.tasks.update(task_id, status=status, best_version=best)
            named = f"best version {best} ({why})" if best is not None else why
            self.tasks.add_message(task_id, _author(ctx), "agent", f"finished as {status}; {named}")
        return {"task_id": task_id, "status": status, "best_version": best, "why": why}

    def _task(self, task_id: str) -> TaskRecord:
        try:
            return self.tasks.get(task_id)
        except UserError:
            raise ToolError(f"unknown task {task_id[:80]!r}; tasks.create returns a new task's id") from None

    def _check_version(self, task_id: str, version: int) -> None:
        self._task(task_id)
        known = [c.version for c in self.tasks.code_versions(task_id)]
        if version not in known:
            listed = ", ".join(map(str, known)) if known else "none yet (tasks.add_version adds one)"
            raise ToolError(f"unknown version {version} of task {task_id}; its versions: {listed}")


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its ``$defs`` written in place: model adapters embed a tool's schema in a
    larger one (the embedded model's grammar), where a ``#/$defs/...`` reference would point nowhere."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


def _execution_summary(record: ExecutionRecord, executions: ExecutionService) -> dict[str, Any]:
    _, stderr_path = executions.log_paths(record.id)
    try:
        lines = stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    return {
        "execution_id": record.id,
        "version": record.version,
        "status": record.status,
        "checks_passed": record.checks_passed,
        "checks_total": record.checks_total,
        "metrics": record.metrics or {},
        "reason": record.reason,
        "stderr_tail": "\n".join(lines[-STDERR_LINES:])[-TEXT_SHOWN:],
    }


def _latest(tasks: TaskStore, task: TaskRecord) -> dict[str, Any]:
    checks = parse_checks(task.checks)
    summary: dict[str, Any] = {
        "task": {
            "id": task.id,
            "title": task.title,
            "status": task.status,
            "spec": task.description[:TEXT_SHOWN],
            "io_checks": [{"input": c.input[:200], "expected": c.expected[:200]} for c in checks.io[:5]],
            "io_checks_total": len(checks.io),
            "test": (checks.test or "")[:TEXT_SHOWN] or None,
            "best_version": task.best_version,
        },
        "latest_version": None,
        "execution": None,
        "result": None,
        "feedback": [],
    }
    versions = tasks.code_versions(task.id)
    if not versions:
        return summary
    code = versions[-1]
    text = tasks.code_bytes(code).decode("utf-8", errors="replace")
    summary["latest_version"] = {
        "version": code.version,
        "filename": code.filename,
        "author": code.author,
        "code": text[:CODE_SHOWN] + ("\n# … (cut)" if len(text) > CODE_SHOWN else ""),
    }
    runs = tasks.executions(task.id, version=code.version)
    if runs:
        run = runs[-1]
        summary["execution"] = {
            "execution_id": run.id,
            "status": run.status,
            "reason": run.reason,
            "checks_passed": run.checks_passed,
            "checks_total": run.checks_total,
        }
    results = tasks.results(task.id, version=code.version)
    if results:
        r = results[-1]
        summary["result"] = {
            "accuracy": r.accuracy,
            "loss": r.loss,
            "runtime_s": r.runtime_s,
            "metrics": whole_counts(r.metrics),  # the API's rule: "checks_passed": 2, not 2.0
            "author": r.author,
        }
    summary["feedback"] = [
        {"verdict": f.verdict, "notes": f.notes[:TEXT_SHOWN], "author": f.author}
        for f in tasks.feedback(task.id, version=code.version)[-3:]
    ]
    return summary
