"""Mission control's "New task" form: a title, a spec, optional acceptance checks and a team.

The checks are typed as YAML (JSON is YAML too) and validated by ``edgecrew.tasks.checks``, the one
place every writer of a task validates them; a problem re-shows the form with what was typed kept
and every problem listed, so nothing typed is lost to a redirect.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from edgecrew.engine.chat import public_teams
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import SpecError, UserError
from edgecrew.specs.yamlsrc import parse_yaml, to_plain
from edgecrew.tasks.checks import parse_checks
from edgecrew.ui.pages import Checked, Viewer, back, need, page
from edgecrew.ui.session import Session

router = APIRouter(include_in_schema=False)

MAX_CHECKS_CHARS = 400_000  # an io table of long cases plus a test fit; the checks module bounds each part
MAX_DESCRIPTION_CHARS = 20_000
# A browser counts a line break in a textarea's maxlength as one character and sends it as two (CRLF): the
# form takes twice as many and counts them after folding CRLF to LF, as the browser did.
TEXTAREA = 2
EXAMPLE_CHECKS = """io:
  - {input: "2 3", expected: "5"}
  - {input: "10 -4", expected: "6"}
test: |
  from solution import add
  assert add(2, 3) == 5
"""


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def _form(
    request: Request, session: Session, *, status_code: int = 200, problems: list[str], **values: str
) -> HTMLResponse:
    teams = public_teams(_rt(request))  # not the internal ones: edgecrew starts those itself
    fields = {"title": "", "description": "", "checks": "", "team": ""} | values
    return page(
        request,
        "task_new.html",
        session,
        status_code=status_code,
        teams=teams,
        problems=problems,
        example=EXAMPLE_CHECKS,
        max_description=MAX_DESCRIPTION_CHARS,
        **fields,
    )


@router.get("/ui/tasks/new")
def new_task_form(request: Request, session: Viewer, team: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
    return _form(request, session, problems=[], team=team)


def checks_from_text(text: str) -> dict[str, Any] | None:
    """The checks as the task keeps them, from YAML or JSON text (blank: none); a UserError lists the problems."""
    if not text.strip():
        return None
    try:
        data = to_plain(parse_yaml(text, "checks"), "checks")
    except SpecError as exc:
        where = [
            (f"line {i.line}: " if i.line else "") + i.message + (f" ({i.hint})" if i.hint else "") for i in exc.issues
        ]
        raise UserError("; ".join(where)) from None
    return parse_checks(data, written=True).to_json()


@router.post("/ui/tasks")
async def create_task(
    request: Request,
    session: Checked,
    title: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=TEXTAREA * MAX_DESCRIPTION_CHARS)] = "",
    checks: Annotated[str, Form(max_length=TEXTAREA * MAX_CHECKS_CHARS)] = "",
    team: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    need(session, "runs")  # the API's POST /tasks asks for the same scope
    rt = _rt(request)
    description, checks = description.replace("\r\n", "\n"), checks.replace("\r\n", "\n")
    problems = []
    for field, text, most in (
        ("description", description, MAX_DESCRIPTION_CHARS),
        ("acceptance checks", checks, MAX_CHECKS_CHARS),
    ):
        if len(text) > most:
            problems.append(f"{field}: at most {most} characters ({len(text)} given)")
    if not title.strip():
        problems.append("title: give the task a short title")
    if team and team not in rt.project.teams:
        problems.append(f"team: there is no team named {team!r}; pick one from the list")
    elif team and team not in await asyncio.to_thread(public_teams, rt):
        problems.append(f"team: {team!r} is internal (edgecrew starts it itself); pick one from the list")
    parsed = None
    try:
        parsed = checks_from_text(checks)
    except UserError as exc:
        problems.append(f"acceptance checks: {exc}")
    if problems:
        typed = {"title": title, "description": description, "checks": checks, "team": team}
        return _form(request, session, status_code=400, problems=problems, **typed)
    record = await asyncio.to_thread(
        rt.tasks.create, title.strip(), description, team or None, checks=parsed, created_by=session.name
    )
    return back(f"/ui/tasks/{quote(record.id)}", "task created")
