"""Feedback on runs' answers: rate one (up or down, a comment, the answer you wanted), read a run's
ratings, and export them all as JSON Lines for fine-tuning or few-shot examples."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from edgecrew.api.auth import Principal
from edgecrew.api.deps import Read, RunsDep, StartRuns
from edgecrew.api.problems import PROBLEM_RESPONSES, problem_response
from edgecrew.api.shapes import Out
from edgecrew.engine.service import RunService
from edgecrew.store.feedback import MAX_TEXT, FeedbackRecord

router = APIRouter(tags=["feedback"], responses=PROBLEM_RESPONSES)

RATINGS = {"up": 1, "down": -1}


class Rate(BaseModel):
    """A rating of a run's answer."""

    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=MAX_TEXT)
    correction: str | None = Field(None, max_length=MAX_TEXT, description="The answer you wanted, if you have it.")


class FeedbackOut(Out):
    id: int
    run_id: str
    rating: Literal["up", "down"]
    comment: str
    correction: str | None
    author: str
    via: str
    created_at: float

    @classmethod
    def of_record(cls, record: FeedbackRecord) -> FeedbackOut:
        return cls(**{**record.__dict__, "rating": "up" if record.rating > 0 else "down"})


def rate(runs: RunService, run_id: str, body: Rate, who: Principal, via: str) -> FeedbackOut:
    record = runs.rate(
        run_id, RATINGS[body.rating], comment=body.comment, correction=body.correction, author=who.name, via=via
    )
    return FeedbackOut.of_record(record)


@router.post(
    "/runs/{run_id}/feedback",
    status_code=201,
    response_model=FeedbackOut,
    responses={409: problem_response(409, "The run has not ended yet: its answer cannot be rated.")},
)
async def rate_run(run_id: str, body: Rate, runs: RunsDep, who: StartRuns) -> FeedbackOut:
    """Rate a run's answer (once it has ended); every rating is kept, and shows in the run's events."""
    return await asyncio.to_thread(rate, runs, run_id, body, who, "api")


@router.get("/runs/{run_id}/feedback", response_model=list[FeedbackOut])
def run_feedback(run_id: str, runs: RunsDep, _: Read) -> list[FeedbackOut]:
    """A run's ratings, oldest first."""
    return [FeedbackOut.of_record(r) for r in runs.feedback(run_id)]


@router.get(
    "/feedback/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "One rating per line."}},
)
def export_feedback(
    runs: RunsDep,
    _: Read,
    team: Annotated[str | None, Query(max_length=200)] = None,
    rating: Literal["up", "down"] | None = None,
) -> StreamingResponse:
    """Every rating as JSON Lines: team, task, answer, rating, comment, correction, and ``messages`` (the task,
    then the corrected answer or the run's) ready for fine-tuning or few-shot examples."""

    def lines() -> Iterator[str]:
        for row in runs.feedback_export(team=team, rating=RATINGS[rating] if rating else None):
            yield json.dumps(row, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
