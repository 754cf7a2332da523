"""Mission control's EdgePilot page: ask the ops copilot, and see its plan, facts and answer side by side.

Asking starts a run of the built-in ``edgepilot`` team through the one run use case; the page of that
run shows the planner's choice and the typed plan, each fact with the tool that produced it, and the
answer, and refreshes itself until the run ends (the full timeline stays on the run's own page).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgecrew.context import request_id as current_request_id
from edgecrew.domain.runs import RunStatus
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.service import RunService, TeamName
from edgecrew.errors import EdgecrewError
from edgecrew.ui.pages import Checked, Viewer, back, find_run, need, page

router = APIRouter(include_in_schema=False)
TEAM = "edgepilot"
EXAMPLES = (
    "Can I run a 4 GB job now? If not, when?",
    "What used the most memory in the last hour?",
    "How busy is this machine right now?",
)


@router.get("/ui/pilot")
def pilot_page(request: Request, session: Viewer, notice: str = "") -> HTMLResponse:
    svc = RunService(request.app.state.rt)
    recent = svc.list_runs(limit=10, team=TEAM)
    return page(request, "pilot.html", session, run=None, recent=recent, examples=EXAMPLES, notice=notice)


@router.post("/ui/pilot")
async def ask(request: Request, session: Checked, question: Annotated[str, Form(max_length=2000)] = "") -> Response:
    need(session, "runs")
    try:
        started = await RunService(request.app.state.rt).start(
            TeamName(TEAM), question, request_id=current_request_id.get()
        )
    except EdgecrewError as exc:
        return back("/ui/pilot", str(exc))
    return back(f"/ui/pilot/{started.run.id}", "; ".join(started.notices))


@router.get("/ui/pilot/{run_id}")
def pilot_run(request: Request, run_id: str, session: Viewer, notice: str = "") -> Response:
    svc = RunService(request.app.state.rt)
    run = find_run(svc, run_id)
    if run.team != TEAM:  # this page reads edgepilot's agents: another team's run has its own page
        return RedirectResponse(f"/ui/runs/{run.id}", status_code=303)
    latest = {s.agent: s for s in svc.steps(run.id)}  # each agent's latest step
    out = {agent: step.output for agent, step in latest.items()}
    # A proposed job waits for jobs.submit's approval: the page offers it (there is nothing else to wait for)
    waiting = (
        ApprovalService(request.app.state.rt).list("pending", run_id=run.id)
        if run.status == RunStatus.WAITING_APPROVAL
        else []
    )
    return page(
        request,
        "pilot.html",
        session,
        run=run,
        planner=out.get("planner"),
        plan=out.get("plan"),
        executor=out.get("executor"),
        summarizer=out.get("summarizer"),
        answer=(run.output or {}).get("text") if isinstance(run.output, dict) else None,
        approvals=waiting,
        recent=[],
        examples=EXAMPLES,
        notice=notice,
    )
