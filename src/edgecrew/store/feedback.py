"""Feedback on runs in the store: a person's rating of an answer (up or down), a comment, and optionally
the answer they wanted. The one design decision: each rating is a row *and* a ``feedback_given`` event
of its run, written in one transaction, so the timeline shows it, /metrics counts it from the same
event stream as everything else, and the rows export as JSONL for fine-tuning or few-shot examples.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from edgecrew.domain.events import FeedbackGiven
from edgecrew.errors import UserError
from edgecrew.store import tables as t
from edgecrew.store.repo import RunStore

VIA = ("cli", "api", "ui", "v1")
MAX_TEXT = 20_000


@dataclass(frozen=True)
class FeedbackRecord:
    """One rating of a run's answer."""

    id: int
    run_id: str
    rating: int  # +1 up, -1 down
    comment: str
    correction: str | None
    author: str
    via: str
    created_at: float


class FeedbackStore:
    """Ratings of runs' answers, in the run store's database."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def add(
        self, run_id: str, rating: int, *, comment: str = "", correction: str | None = None, author: str, via: str
    ) -> FeedbackRecord:
        """Record a rating of run ``run_id`` (a full id) and its event."""
        if rating not in (1, -1):
            raise UserError(f"a rating is up (+1) or down (-1), not {rating!r}")
        if via not in VIA:
            raise UserError(f"feedback comes via {', '.join(VIA)}, not {via!r}")
        if len(comment) > MAX_TEXT or len(correction or "") > MAX_TEXT:
            raise UserError(f"a comment or correction is at most {MAX_TEXT} characters")
        record = FeedbackRecord(0, run_id, rating, comment, correction or None, author, via, time.time())
        with self.store.transaction() as conn:
            row = {k: v for k, v in record.__dict__.items() if k != "id"}
            insert = t.run_feedback.insert().values(**row).returning(t.run_feedback.c.id)
            feedback_id = int(conn.execute(insert).scalar_one())
            event = FeedbackGiven(
                feedback=feedback_id,
                rating=rating,
                comment=comment[:500],
                corrected=bool(correction),
                author=author,
                via=via,
            )
            self.store.emit(run_id, f"feedback.{feedback_id}", event)
        return dataclasses.replace(record, id=feedback_id)

    def of_run(self, run_id: str) -> list[FeedbackRecord]:
        """A run's ratings, oldest first."""
        query = sa.select(t.run_feedback).where(t.run_feedback.c.run_id == run_id).order_by(t.run_feedback.c.id)
        with self.store.transaction() as conn:
            return [FeedbackRecord(**row._mapping) for row in conn.execute(query)]

    def all(self, *, after: int = 0, batch: int = 500) -> Iterator[FeedbackRecord]:
        """Every rating, oldest first (read in batches, for exports of any size)."""
        while True:
            query = sa.select(t.run_feedback).where(t.run_feedback.c.id > after).order_by(t.run_feedback.c.id)
            with self.store.transaction() as conn:
                rows = [FeedbackRecord(**row._mapping) for row in conn.execute(query.limit(batch))]
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].id
