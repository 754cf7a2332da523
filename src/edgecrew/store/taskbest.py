"""The best version of a task: the one rule by which every finish names it (the ``tasks.finish`` tool,
a person's done or failed, a failed run ending the task it left open).

The one design decision: it reads through the connection it is given, so a writer names the best version
inside its own transaction (the run's end, which must not depend on the task store above it).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from edgecrew.domain.text import counted
from edgecrew.store import tables as t

__all__ = ["best_version"]


def best_version(conn: Connection, task_id: str) -> tuple[int | None, str]:
    """The version to keep and why: the latest accepted one, else the one whose execution passed the
    most checks and no one rejected, else the latest written (None: no version was written). A
    version's latest verdict is its standing: accepted, then rejected, it is rejected."""
    code = t.task_code.c
    known = set(conn.execute(sa.select(code.version).where(code.task_id == task_id)).scalars())  # not deleted
    f = t.task_feedback.c
    verdicts = conn.execute(
        sa.select(f.id, f.version, f.verdict, f.author).where(f.task_id == task_id).order_by(f.id)
    ).all()
    standing = {row.version: row for row in verdicts if row.version in known}  # oldest first: the latest stays
    accepted = sorted((row for row in standing.values() if row.verdict == "accepted"), key=lambda row: row.id)
    if accepted:
        return accepted[-1].version, f"accepted by {accepted[-1].author}"
    rejected = {version for version, row in standing.items() if row.verdict == "rejected"}
    e = t.executions.c
    runs = conn.execute(
        sa.select(e.id, e.version, e.status, e.checks_passed, e.checks_total).where(e.task_id == task_id).order_by(e.id)
    ).all()
    ran = [r for r in runs if r.version in known and r.version not in rejected and r.checks_total is not None]
    if ran:
        best = max(ran, key=lambda r: (r.checks_passed or 0, r.status == "succeeded", r.id))
        return (
            best.version,
            f"passed {best.checks_passed or 0} of {counted(best.checks_total, 'check')} in execution {best.id}",
        )
    if known - rejected:
        return max(known - rejected), "no version was accepted or run; the latest"
    if known:
        return max(known), "every version was rejected; the latest"
    return None, "no version was written"
