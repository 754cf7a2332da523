"""Mission control's runs list and run comparison.

The list's filters (status, team, agent, model, a date range, search over tasks, outputs and events)
all live in the URL, so a filtered list is a link that reloads to the same rows. Comparison aligns the
two runs' steps by step key (``v1.writer``: the agent and its visit), so runs of one team line up step
by step and runs of different teams still compare, a step only one of them took shown as missing.
"""

from __future__ import annotations

import difflib
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgecrew.domain.events import ModelCalled
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import RunService
from edgecrew.errors import UserError
from edgecrew.store.repo import RunRecord, StepRecord
from edgecrew.ui.pages import Viewer, find_run, page

router = APIRouter(include_in_schema=False)

STATUSES = ("queued", "running", "waiting_approval", "succeeded", "failed", "cancelled")
RunId = Annotated[str | None, Query(max_length=64)]


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def _day(value: str | None, name: str) -> date | None:
    """A ``YYYY-MM-DD`` filter (as a date input sends it), or None when empty."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"'{name}' must be a date like 2025-01-31, not '{value}'") from None


def _epoch(day: date) -> float:
    """The start of ``day`` in UTC, in epoch seconds (runs' ``created_at``)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


@router.get("/ui/runs")
def runs_page(
    request: Request,
    session: Viewer,
    status: Annotated[str | None, Query(max_length=32)] = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=128)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """Runs, filtered by status, team, agent, model, creation date (UTC) and text (in the task, the
    output or any event), every filter in the URL."""
    rt = _rt(request)
    svc = RunService(rt)
    first, last = _day(since, "from"), _day(until, "to")
    if first and last and last < first:
        raise UserError(f"the date range ends ({last}) before it starts ({first})")
    if status and status not in STATUSES:  # a hand-edited address: it listed "no bogus runs"
        raise UserError(f"no run status {status!r}; one of {', '.join(STATUSES)}")
    chosen = {
        "q": (q or "").strip(),
        "status": status or "",
        "team": team or "",
        "agent": agent or "",
        "model": model or "",
        "from": first.isoformat() if first else "",
        "to": last.isoformat() if last else "",
    }
    where: dict[str, Any] = {
        "status": status or None,
        "team": team or None,
        "text": chosen["q"] or None,
        "agent": agent or None,
        "model": model or None,
        "since": _epoch(first) if first else None,
        "until": _epoch(last + timedelta(days=1)) if last else None,  # "to" includes its whole day
    }
    runs = svc.list_runs(limit=50, offset=offset, **where)
    total = svc.count_runs(**where)
    agents, models = svc.run_filter_choices()
    filters = {k: v for k, v in chosen.items() if v}
    return page(
        request,
        "runs.html",
        session,
        runs=runs,
        usage=svc.usage_by_run([r.id for r in runs]),
        total=total,
        offset=offset,
        chosen=chosen,
        status=chosen["status"],
        statuses=STATUSES,
        teams=sorted(rt.project.teams),
        agents=sorted({*agents, *filter(None, [agent])}),  # a chosen one stays offered
        models=sorted({*models, *filter(None, [model])}),
        query=urlencode(filters),
        filtered=bool(filters),
        pick=True,
    )


# -- compare ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One run of a comparison, with its steps and totals."""

    run: RunRecord
    steps: list[StepRecord]
    models: list[str]  # the model aliases its calls were routed to

    @property
    def duration(self) -> float | None:
        return self.run.finished_at - self.run.created_at if self.run.finished_at else None

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.steps)

    @property
    def model_calls(self) -> int:
        return sum(s.model_calls for s in self.steps)

    @property
    def tool_calls(self) -> int:
        return sum(s.tool_calls for s in self.steps)


@dataclass(frozen=True)
class StepPair:
    """A step key and each run's step under it (None: that run took no such step)."""

    key: str
    a: StepRecord | None
    b: StepRecord | None

    @property
    def agent(self) -> str:
        step = self.a or self.b
        return step.agent if step else ""

    @property
    def same_output(self) -> bool:
        return self.a is not None and self.b is not None and self.a.output == self.b.output

    @property
    def differs(self) -> bool:
        """Missing on one side, another outcome, or another output."""
        if self.a is None or self.b is None:
            return True
        return self.a.outcome != self.b.outcome or not self.same_output

    @property
    def diff(self) -> list[tuple[str, str]]:
        """Where two different outputs differ, line by line (a unified diff with two lines of context),
        each line with its kind: ``del`` (only in A), ``add`` (only in B), ``ctx`` or ``hunk``; at most
        MAX_DIFF_LINES lines, the last one then saying how many more there are."""
        if self.a is None or self.b is None or self.same_output:
            return []
        lines = list(
            difflib.unified_diff(
                output_text(self.a.output).splitlines(), output_text(self.b.output).splitlines(), n=2, lineterm=""
            )
        )[2:]  # without the ---/+++ header
        shown = [({"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx"), line) for line in lines]
        if len(shown) > MAX_DIFF_LINES:
            more = len(shown) - MAX_DIFF_LINES
            shown = [*itertools.islice(shown, MAX_DIFF_LINES), ("hunk", f"… {more} more lines")]
        return shown


MAX_DIFF_LINES = 200


def output_text(output: Any) -> str:
    """A step's output as the text to diff: a reply's text as it is, anything else as indented JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, dict) and list(output) == ["text"] and isinstance(output["text"], str):
        return output["text"]
    return json.dumps(output, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def step_duration(step: StepRecord | None) -> float | None:
    return step.finished_at - step.started_at if step and step.finished_at else None


def align(a: list[StepRecord], b: list[StepRecord]) -> list[StepPair]:
    """The steps of both runs by key, in ``a``'s order; a step only ``b`` took goes right after the
    step ``b`` took before it (so an extra loop turn shows where it happened)."""
    order = [s.key for s in a]
    for i, step in enumerate(b):
        if step.key in order:
            continue
        # every step b took before this one is in ``order`` by now (shared, or inserted above)
        order.insert(order.index(b[i - 1].key) + 1 if i else 0, step.key)
    by_a, by_b = {s.key: s for s in a}, {s.key: s for s in b}
    return [StepPair(key, by_a.get(key), by_b.get(key)) for key in order]


def _side(svc: RunService, run_id: str) -> Side:
    run = find_run(svc, run_id)  # a 404 page for an unknown id
    calls = [e.payload for e in svc.event_page(run.id, limit=10_000) if e.type == "model_called"]
    models = sorted({c.alias for c in calls if isinstance(c, ModelCalled) and c.alias})
    return Side(run, svc.steps(run.id), models)


@router.get("/ui/compare", response_model=None)
def compare_page(
    request: Request,
    session: Viewer,
    a: RunId = None,
    b: RunId = None,
    run: Annotated[list[str] | None, Query(max_length=10)] = None,
) -> Response:
    """Two runs side by side: totals, final outputs and a step-by-step table that marks what differs.

    The runs list's checkboxes send ``?run=X&run=Y``; that redirects to the canonical ``?a=X&b=Y``."""
    if not a and not b and run is not None:
        picked = [r for r in run if r]
        if len(picked) == 2 and all(len(r) <= 64 for r in picked):
            return RedirectResponse("/ui/compare?" + urlencode({"a": picked[0], "b": picked[1]}), status_code=303)
    if not a or not b:
        raise UserError("pick two runs to compare: tick two runs in the runs list, then press Compare")
    svc = RunService(_rt(request))
    left, right = _side(svc, a), _side(svc, b)
    return page(
        request,
        "compare.html",
        session,
        a=left,
        b=right,
        pairs=align(left.steps, right.steps),
        same_output=left.run.output == right.run.output,
        duration=step_duration,
    )
