"""The task capability: a task's acceptance checks and limits, executions of its code versions in
the sandbox, and the agents' tools on the workspace (the generator → coder → runner → evaluator loop).

Rows and files stay in the store (``edgecrew.store.tasks``); this package runs code against them. It
sits above the store and the tools and imports nothing from the engine, which lends it the process's
executor id and liveness check (``ExecutionService(tasks, executor=..., executor_alive=...)``).
"""

from edgecrew.tasks.checks import IoCase, TaskChecks, TaskLimits, TaskLimitsJson, parse_checks, parse_limits
from edgecrew.tasks.executions import ExecutionService, author_of
from edgecrew.tasks.tools import TASK_TOOLS, register_task_tools
from edgecrew.tasks.versions import add_version

__all__ = [
    "TASK_TOOLS",
    "ExecutionService",
    "IoCase",
    "TaskChecks",
    "TaskLimits",
    "TaskLimitsJson",
    "add_version",
    "author_of",
    "parse_checks",
    "parse_limits",
    "register_task_tools",
]
