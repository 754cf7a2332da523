"""Adding a code version to a task, the one way the agents' tool and the CLI both do it.

The one design decision: the store records the version (``TaskStore.add_code``, as the API's upload
does: the next number, the file, its SHA-256) and a task still ``open`` moves to ``in_progress``,
since someone has started on it; a task in any other status keeps it.
"""

from __future__ import annotations

from edgecrew.store.tasks import CodeRecord, TaskStore

__all__ = ["add_version"]


def add_version(tasks: TaskStore, task_id: str, filename: str, data: bytes, author: str | None) -> CodeRecord:
    """Store ``data`` as the task's next code version under ``filename``; returns the version."""
    task = tasks.get(task_id)
    record = tasks.add_code(task_id, filename, data, author=author)
    if task.status == "open":
        tasks.update(task_id, status="in_progress")
    return record
