"""Mission control's core pages: sign-in, home, a run (live), approvals, teams, models, metrics.

The other pages (the runs list and compare, tasks and executions, chat, the cluster, incidents, routines,
alerts, jobs, projects, the pilot) live in the ``ui/*_pages.py`` modules, built on the helpers here
(``page``, ``viewer``, ``need``).

Handlers stay thin: they read through the same services as the API and render a template. State
changes are plain HTML form posts (they work without JavaScript) answered with a redirect; the run
page's live parts come from one SSE stream of rendered fragments that htmx swaps in.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgecrew.api.auth import Principal, local_and_same_site
from edgecrew.api.deps import MAX_ID, resume_point
from edgecrew.api.problems import status_of
from edgecrew.context import request_id as current_request_id
from edgecrew.domain.checklist import checklist
from edgecrew.domain.events import EventRecord, StepStarted
from edgecrew.domain.runs import started_by
from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.chat import internal_team
from edgecrew.engine.executors import executor_alive
from edgecrew.engine.live import LiveText
from edgecrew.engine.runtime import Runtime
from edgecrew.engine.service import TASK_MAX_CHARS, RunService, TeamName
from edgecrew.errors import EdgecrewError, ForbiddenError, NotFoundError, SignInRequiredError, SpecError, UserError
from edgecrew.specs.loader import load_team_text
from edgecrew.specs.project import TeamSource
from edgecrew.store.keys import ApiKeyStore
from edgecrew.store.repo import RunRecord
from edgecrew.ui import trace, views
from edgecrew.ui.filters import domid, number, numbered, utc
from edgecrew.ui.session import COOKIE, LOGIN_COOKIE, MAX_AGE_S, Session, SessionStore, tokens_match

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["pretty"] = views.pretty_json
templates.env.globals["graph_svg"] = views.graph_svg
templates.env.globals["task_max_chars"] = TASK_MAX_CHARS  # the runs use case's one limit on a task
templates.env.filters["domid"] = domid
templates.env.filters["utc"] = utc
templates.env.filters["number"] = number
templates.env.filters["started_by"] = started_by
templates.env.tests["numbered"] = numbered
router = APIRouter(include_in_schema=False)


class SignInRequired(SignInRequiredError):
    """No live session: the page answers with a redirect to the sign-in form."""


class Forbidden(ForbiddenError):
    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def viewer(request: Request) -> Session:
    """The signed-in session (or a keyless local one when the server allows that)."""
    sessions: SessionStore = request.app.state.sessions
    session = sessions.get(request.cookies.get(COOKIE))
    if session is not None:
        need(session, "read")  # every page shows what the API's `read` scope guards
        return session
    if request.app.state.auth.keyless_localhost and local_and_same_site(request):
        return Session("", "", None, "localhost", ("admin",), float("inf"))
    raise SignInRequired


Viewer = Annotated[Session, Depends(viewer)]


async def checked(request: Request, session: Viewer) -> Session:
    """A session whose state-changing request carries its CSRF token (form field or header)."""
    if session.key_id is None and not session.id:
        return session  # keyless localhost: `viewer` let it in only from this server's own pages
    form = await request.form()
    given = request.headers.get("x-csrf-token") or str(form.get("csrf") or "")
    if not tokens_match(session.csrf, given):
        raise Forbidden("csrf")
    return session


Checked = Annotated[Session, Depends(checked)]


def need(session: Session, scope: str) -> None:
    if not session.allows(scope):
        raise Forbidden(scope)


def page(
    request: Request, template: str, session: Session | None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    context |= {"session": session, "path": request.url.path}
    # A notice from the address is shown only when this server wrote it (``back``): a link's author
    # cannot make mission control say what they like ("your key expired, sign in at ...").
    query = request.query_params
    if context.get("notice") and context["notice"] == query.get("notice") and not _signed(context["notice"], query):
        context["notice"] = ""
    return templates.TemplateResponse(request, template, context, status_code=status_code)


_NOTICE_KEY = secrets.token_bytes(32)  # this process's: a notice outlives no restart, which is fine


def _notice_mac(notice: str) -> str:
    return hmac.new(_NOTICE_KEY, notice.encode(), hashlib.sha256).hexdigest()[:32]


def _signed(notice: str, query: Any) -> bool:
    return tokens_match(_notice_mac(notice), query.get("ns"))


def back(url: str, notice: str = "") -> RedirectResponse:
    """A redirect after a form (303), with a notice the next page shows (signed: see ``page``)."""
    if notice:
        url += ("&" if "?" in url else "?") + f"notice={quote(notice)}&ns={_notice_mac(notice)}"
    return RedirectResponse(url, status_code=303)


# -- sign-in ----------------------------------------------------------------------------------------


@router.get("/ui/login")
def login_form(request: Request, next: str = "/", error: str = "", notice: str = "") -> HTMLResponse:

    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", None, next=_safe_next(next), error=error, login_token=token, notice=notice)
    response.set_cookie(LOGIN_COOKIE, token, max_age=600, httponly=True, samesite="strict", path="/ui/login")
    return response


@router.post("/ui/login")
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=200)] = "",
    login_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    if not tokens_match(request.cookies.get(LOGIN_COOKIE), login_token):
        return back("/ui/login", "the sign-in form expired; try again")
    try:
        principal: Principal = await asyncio.to_thread(request.app.state.auth.identify, request, key.strip())
    except Exception:  # a wrong, revoked or rate-limited key: the same answer, without details
        return RedirectResponse(f"/ui/login?error=1&next={quote(_safe_next(next))}", status_code=303)
    if not principal.allows("read"):
        return back("/ui/login", "that key lacks the 'read' scope the pages need; create one with --scopes read,...")
    session = request.app.state.sessions.open(principal)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return response


@router.post("/ui/logout")
async def logout(request: Request, session: Checked) -> Response:
    request.app.state.sessions.close(session.id)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _safe_next(target: str) -> str:
    """Only paths on this server (no //host or scheme): a sign-in link cannot send you elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


# -- home and runs ----------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, session: Viewer) -> HTMLResponse:
    rt = _rt(request)
    runs = RunService(rt)
    active = [r for r in runs.list_runs(limit=200) if not r.status.terminal]
    recent = runs.list_runs(limit=10)
    usage = runs.usage_by_run(list({r.id: None for r in [*active, *recent]}))  # the tables' tokens column
    pending = ApprovalService(rt).list("pending")
    pool = rt.pool.state()
    alerts = _alerts(rt, pool)
    return page(
        request,
        "home.html",
        session,
        active=active,
        recent=recent,
        usage=usage,
        pending=pending,
        pool=pool,
        alerts=alerts,
    )


def _alerts(rt: Runtime, pool: Any) -> list[str]:
    import psutil

    alerts = []
    mem = psutil.virtual_memory()
    if mem.percent >= 90:
        alerts.append(f"memory is {mem.percent:.0f}% used: models may be evicted or fail to load")
    if pool.queue_depth:
        alerts.append(f"{pool.queue_depth} model call(s) are waiting for a model slot")
    if pool.load_failures:
        alerts.append(f"{pool.load_failures} model load(s) failed since the server started")
    day_ago = time.time() - 86400  # every failure ever would keep the alert up for good after the first
    failed = RunService(rt).count_runs(status="failed", since=day_ago)
    if failed:
        alerts.append(f"{failed} run(s) failed in the last 24 h; see the runs list")
    from edgecrew.ops import Ops

    for firing in Ops.of(rt).alerts.firing():
        what = firing.rule.description or firing.rule.source
        alerts.append(f"alert {firing.name} is firing ({firing.rule.severity}): {what}; see /ui/alerts")
    return alerts


OPEN_ALL_EVENTS = 60  # a run with at most this many events shows every step unfolded


def _run_view(rt: Runtime, run: RunRecord, events: list[EventRecord], now: float) -> dict[str, Any]:
    """What the run page and its live fragments show, all derived from the run's events."""
    built = trace.build(events, created_at=run.created_at)
    return {
        "trace": built,
        "t0": built.start,
        "now": now,
        "sm": trace.summary(built, now),
        "wf_rows": trace.rows(built, now),
        "wf_ticks": trace.ticks(built, now),
        "open_all": len(events) <= OPEN_ALL_EVENTS,
    }


def _busy(built: trace.Trace, now: float) -> str:
    running = [s for s in built.steps if s.state == "running"]
    if not running:
        return "between steps…" if built.end is None else ""
    s = running[-1]
    if s.open_wait is not None:
        return f"{s.agent} waits for a person to approve a tool call (see Approvals)"
    what = f"runs tool {s.tool}" if s.agent_kind == "tool" else "is working"
    return f"{s.agent} {what} ({s.duration(now):.0f} s so far)"


def _interrupted(svc: RunService, run: RunRecord) -> bool:
    """Whether no live process runs an unfinished run, as DBOS sees its workflow: a run its recording
    process left behind may run on in a server that adopted it, or on a cluster worker."""
    if run.status.terminal:
        return False
    try:
        return svc.orphaned(run)
    except Exception:  # no DBOS system database to ask: the recording process is all there is
        return not executor_alive(run.executor)


def find_run(svc: RunService, run_id: str) -> RunRecord:
    """The run, or a not-found page worded for the site (the store's message sends you to the CLI)."""
    try:
        return svc.get(run_id)
    except NotFoundError:
        raise NotFoundError(
            f"There is no run '{run_id}'. Check the address, or find the run in the runs list."
        ) from None


@router.get("/ui/runs/{run_id}")
def run_page(
    request: Request,
    run_id: str,
    session: Viewer,
    notice: str = "",
    step: Annotated[str | None, Query(max_length=160)] = None,
) -> HTMLResponse:
    from edgecrew.projects import ProjectService

    rt = _rt(request)
    svc = RunService(rt)
    run = find_run(svc, run_id)
    events = svc.event_page(run.id, limit=5000)
    spec = team_from_snapshot(run.spec)
    works_in = ProjectService.of(rt).project_of_run(run.id)  # Run again starts the new run there too
    now = time.time()
    view = _run_view(rt, run, events, now)
    built: trace.Trace = view["trace"]
    # The inspector opens on the step asked for, else the running one, else the last.
    chosen = built.step(step) if step else None
    if chosen is None and built.steps:
        chosen = next((s for s in reversed(built.steps) if s.state == "running"), built.steps[-1])
        if step:  # an address with a step this run does not have: say so, never show another as it
            shown = "running" if chosen.state == "running" else "last"
            missing = f"run {run.id} has no step '{step}'; the inspector shows the {shown} one"
            notice = f"{notice}; {missing}" if notice else missing
    return page(
        request,
        "run.html",
        session,
        run=run,
        spec=spec,
        works_in=works_in,
        state=views.graph_state(events),
        timeline=trace.timeline(events, built),
        approvals={a.id: a for a in ApprovalService(rt).list(None, run.id)},
        last_id=events[-1].id if events else 0,
        notice=notice,
        # Resume only what no live process is running (a running run would only be followed).
        interrupted=_interrupted(svc, run),
        checklist=checklist(spec, run.task, events),
        feedback=svc.feedback(run.id),
        writings=LiveText.of(rt).of_run(run.id),
        busy=_busy(built, now),
        st=chosen,
        selected=chosen.key if chosen else None,
        messages=svc.messages(run.id, chosen.key) if chosen else [],
        **view,
    )


@router.get("/ui/runs/{run_id}/steps/{step_key}")
def step_inspector(
    request: Request, run_id: str, step_key: Annotated[str, PathParam(max_length=160)], session: Viewer
) -> Response:
    """One step in the inspector (a fragment for htmx; the whole page with ``?step=`` otherwise)."""
    rt = _rt(request)
    svc = RunService(rt)
    run = find_run(svc, run_id)
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"/ui/runs/{run.id}?step={quote(step_key)}#inspector", status_code=303)
    events = svc.event_page(run.id, limit=5000)
    built = trace.build(events, created_at=run.created_at)
    st = built.step(step_key)
    if st is None:
        raise NotFoundError(f"run {run.id} has no step '{step_key}'")
    return page(
        request,
        "_inspector.html",
        session,
        run=run,
        st=st,
        t0=built.start,
        now=time.time(),
        messages=svc.messages(run.id, st.key),
    )


@router.post("/ui/runs/{run_id}/steps/{step_key}/rerun")
async def run_from_step(
    request: Request,
    run_id: str,
    step_key: Annotated[str, PathParam(max_length=160)],
    session: Checked,
    task: Annotated[str, Form(max_length=TASK_MAX_CHARS)],
) -> Response:
    """A new run that copies the outputs before ``step_key`` and runs on from there."""
    need(session, "runs")
    svc = RunService(_rt(request))
    started = await svc.start_from_step(run_id, step_key, task, request_id=current_request_id.get())
    return back(f"/ui/runs/{started.run.id}", "; ".join(started.notices))


@router.get("/ui/runs/{run_id}/stream")
async def run_stream(
    request: Request, run_id: str, session: Viewer, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> EventSourceResponse:
    rt = _rt(request)
    run = await asyncio.to_thread(find_run, RunService(rt), run_id)
    start = resume_point(after, request.headers.get("last-event-id"))
    return EventSourceResponse(_fragments(rt, run.id, start, session), ping=15)


LIVE_POLL_S = 0.25  # how often the stream looks at the text being written
REDRAW_S = 2.0  # how often a running run's summary and waterfall are redrawn without new events


async def _fragments(rt: Runtime, run_id: str, after: int, session: Session) -> AsyncIterator[ServerSentEvent]:
    """The run page's live parts: each new event into the timeline (a new step as a new group, the
    others into their step's group), then the graph, checklist, summary, waterfall and status as they
    are now; the text models are writing as it grows; ``done`` at the end (the page reloads once)."""
    svc = RunService(rt)
    run = await asyncio.to_thread(svc.get, run_id)
    spec = team_from_snapshot(run.spec)
    seen = [e for e in await asyncio.to_thread(svc.event_page, run_id, 0, 5000) if e.id <= after]
    groups = {e.step_key for e in seen if e.step_key and isinstance(e.payload, StepStarted)}
    live = LiveText.of(rt)
    batches: asyncio.Queue[list[EventRecord] | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for batch in svc.events(run_id, after):
                await batches.put(batch)
        finally:
            await batches.put(None)

    pumping = asyncio.create_task(pump())
    last, drawn = after, time.monotonic()
    shown: tuple[tuple[str, int], ...] = ()

    def sse(event: str, html: str) -> ServerSentEvent:
        return ServerSentEvent(data=html.replace("\n", " "), event=event, id=str(last))

    def render(name: str, **context: Any) -> str:
        return templates.get_template(name).render(**context)

    try:
        while True:
            try:
                batch = await asyncio.wait_for(batches.get(), timeout=LIVE_POLL_S)
            except TimeoutError:
                batch = []
            if batch is None:
                break
            now = time.time()
            if batch:
                run = await asyncio.to_thread(svc.get, run_id)
                approvals = {a.id: a for a in await asyncio.to_thread(ApprovalService(rt).list, None, run_id)}
                seen += batch
                last = batch[-1].id
                view = _run_view(rt, run, seen, now)
                context = {"approvals": approvals, "session": session, "run": run, **view}
                yield sse("timeline", _timeline_fragment(batch, view["trace"], groups, context))
                yield sse("graph", str(views.graph_svg(spec, views.graph_state(seen))))
                yield sse("checklist", render("_checklist.html", checklist=checklist(spec, run.task, seen)))
                yield sse("status", render("_status.html", run=run, now=now))  # the clock keeps its time
            if batch or time.monotonic() - drawn >= REDRAW_S:
                drawn = time.monotonic()
                view = _run_view(rt, run, seen, now)
                yield sse("summary", render("_summary.html", **view))
                yield sse("waterfall", render("_waterfall.html", run=run, selected=None, **view))
            writings = live.of_run(run_id)
            signature = tuple((w.call_key, w.version) for w in writings)
            if signature != shown or batch:
                shown = signature
                busy = _busy(trace.build(seen, created_at=run.created_at), now)
                yield sse("live", render("_live.html", writings=writings, busy=busy))
    finally:
        pumping.cancel()
    yield ServerSentEvent(data="done", event="done", id=str(last))


def _timeline_fragment(batch: list[EventRecord], built: trace.Trace, groups: set[str], context: dict[str, Any]) -> str:
    """New events for the timeline. A step first seen in this batch is a new group at the end of the
    list, drawn with all its events; events of a group already on the page go into it out of band,
    and that group's head line is redrawn (out-of-band targets must exist before this swap)."""
    item = templates.get_template("_event.html")
    head = templates.get_template("_step_head.html")
    fresh: dict[str, list[EventRecord]] = {}
    main: list[str | EventRecord] = []  # a new group's key, or a run-level event, in order
    oob: list[str] = []
    touched: list[str] = []
    for e in batch:
        st = built.step(e.step_key) if e.step_key else None
        if st is None:
            main.append(e)
        elif st.key in fresh:
            fresh[st.key].append(e)
        elif st.key not in groups:
            groups.add(st.key)
            fresh[st.key] = [e]
            main.append(st.key)
        else:
            oob.append(f'<ol hx-swap-oob="beforeend:#tle-{domid(st.key)}">{item.render(e=e, **context)}</ol>')
            if st.key not in touched:
                touched.append(st.key)
    parts = [
        templates.get_template("_step_group.html").render(st=built.step(entry), group=fresh[entry], **context)
        if isinstance(entry, str)
        else item.render(e=entry, **context)
        for entry in main
    ]
    for key in touched:
        oob.append(
            f'<summary hx-swap-oob="innerHTML:#tlh-{domid(key)}">{head.render(st=built.step(key), **context)}</summary>'
        )
    return "".join(oob + parts)


@router.post("/ui/runs/{run_id}/cancel")
async def cancel_run(request: Request, run_id: str, session: Checked) -> Response:
    need(session, "runs")
    run = await asyncio.to_thread(RunService(_rt(request)).cancel, run_id)
    return back(f"/ui/runs/{run.id}", "cancelled")


@router.post("/ui/runs/{run_id}/feedback")
async def rate_run(request: Request, run_id: str, session: Checked) -> Response:
    need(session, "runs")
    form = await request.form()
    rating = {"up": 1, "down": -1}.get(str(form.get("rating") or ""))
    if rating is None:
        raise UserError("rate the answer up or down")
    comment, correction = str(form.get("comment") or ""), str(form.get("correction") or "") or None
    svc = RunService(_rt(request))
    await asyncio.to_thread(
        svc.rate, run_id, rating, comment=comment, correction=correction, author=session.name, via="ui"
    )
    return back(f"/ui/runs/{svc.get(run_id).id}", "thanks for the feedback")


@router.post("/ui/runs/{run_id}/resume")
async def resume_run(request: Request, run_id: str, session: Checked) -> Response:
    need(session, "runs")
    run, how, _ = await RunService(_rt(request)).resume(run_id)
    return back(f"/ui/runs/{run.id}", how)


# -- approvals --------------------------------------------------------------------------------------


@router.get("/ui/approvals")
def approvals_page(request: Request, session: Viewer, notice: str = "", show: str = "pending") -> HTMLResponse:
    svc = ApprovalService(_rt(request))
    records = svc.list(None if show == "all" else "pending")
    return page(request, "approvals.html", session, approvals=records, notice=notice, show=show)


@router.post("/ui/approvals/{approval_id}/{action}")
async def decide(
    request: Request,
    approval_id: str,
    action: str,
    session: Checked,
    note: Annotated[str, Form(max_length=2000)] = "",
    arguments: Annotated[str, Form(max_length=200_000)] = "",
    back_to: Annotated[str, Form(max_length=500)] = "/ui/approvals",
) -> Response:
    need(session, "approve")
    svc = ApprovalService(_rt(request))
    target = _safe_next(back_to)
    if action == "edit":
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            return back(target, f"arguments are not valid JSON: {exc}")
        if not isinstance(parsed, dict):
            return back(target, "arguments must be a JSON object")
        try:
            await asyncio.to_thread(svc.edit, approval_id, parsed)
        except EdgecrewError as exc:
            return back(target, str(exc))
        return back(target, "arguments changed; approve to run the call")
    if action not in ("approve", "deny"):
        raise NotFoundError(f"no action '{action}' (approve, deny or edit)")
    fn = svc.approve if action == "approve" else svc.deny
    try:
        record = await asyncio.to_thread(fn, approval_id, note or None)
    except EdgecrewError as exc:
        return back(target, str(exc))
    return back(target, f"{record.tool} {record.status}")


# -- teams ------------------------------------------------------------------------------------------


@router.get("/ui/teams")
def teams_page(request: Request, session: Viewer) -> HTMLResponse:
    rt = _rt(request)
    catalog = rt.catalog()
    teams = []
    for name, source in sorted(rt.project.teams.items()):
        try:
            spec = rt.project.load_source(source, catalog)
            teams.append({"name": name, "source": source, "spec": spec, "issues": [], "warnings": spec.warnings})
        except SpecError as exc:
            teams.append({"name": name, "source": source, "spec": None, "issues": exc.issues, "warnings": exc.warnings})
    return page(request, "teams.html", session, teams=teams)


def find_team(rt: Runtime, name: str) -> TeamSource:
    """The team's source, or a not-found page worded for the site (the project's message names the CLI)."""
    try:
        return rt.project.named_source(name)
    except NotFoundError:
        raise NotFoundError(f"There is no team '{name}'. The Teams page lists this project's teams.") from None


@router.get("/ui/teams/{name}")
def team_page(request: Request, name: str, session: Viewer, notice: str = "") -> HTMLResponse:
    rt = _rt(request)
    source = find_team(rt, name)
    text = source.file.read_text(encoding="utf-8")
    spec, issues, warnings = None, [], []
    try:
        spec = rt.project.load_source(source, rt.catalog())
        warnings = list(spec.warnings)
    except SpecError as exc:
        issues, warnings = exc.issues, exc.warnings
    from edgecrew.projects import ProjectService

    return page(
        request,
        "team.html",
        session,
        projects=ProjectService.of(rt).list_projects(limit=200),  # a run may work in one (crew needs one)
        name=name,
        source=source,
        text=text,
        spec=spec,
        issues=issues,
        warnings=warnings,
        notice=notice,
    )


@router.post("/ui/teams/{name}/validate")
async def validate_team(
    request: Request, name: str, session: Checked, yaml: Annotated[str, Form(max_length=1_000_000)] = ""
) -> HTMLResponse:
    """Check an edited spec (not saved) and show its problems in place, by line."""
    rt = _rt(request)
    source = find_team(rt, name)
    issues, warnings = [], []
    spec = None
    try:
        spec = await asyncio.to_thread(load_team_text, yaml, str(source.file), rt.catalog())
        warnings = list(spec.warnings)
    except SpecError as exc:
        issues, warnings = exc.issues, exc.warnings
    lines = yaml.splitlines()
    marked = {i.line for i in issues if i.line}
    return page(
        request, "_validation.html", session, issues=issues, warnings=warnings, spec=spec, lines=lines, marked=marked
    )


@router.post("/ui/teams/{name}/run")
async def start_run(
    request: Request,
    name: str,
    session: Checked,
    task: Annotated[str, Form(max_length=TASK_MAX_CHARS)] = "",
    project: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    need(session, "runs")
    runs = RunService(_rt(request))
    try:
        spec = await asyncio.to_thread(runs.load_team, TeamName(name))
        if why := internal_team(spec, "start from this page"):  # its page offers no form: a hand-made post
            raise UserError(why)
        started = await runs.start(
            TeamName(name), task, request_id=current_request_id.get(), project=project.strip() or None
        )
    except EdgecrewError as exc:
        return back(f"/ui/teams/{name}", str(exc))
    # e.g. no live worker (the run waits for one), what the team's spec warns of (the run goes on)
    return back(f"/ui/runs/{started.run.id}", "; ".join(started.notices))


# -- models and metrics -----------------------------------------------------------------------------


@router.get("/ui/models")
def models_page(request: Request, session: Viewer) -> HTMLResponse:
    from edgecrew.engine.runtime import published_pool_states

    rt = _rt(request)
    pool = rt.pool.state()
    resident = {m.alias: m for m in pool.resident}
    others = [s for s in published_pool_states(rt.settings.home) if s.get("executor") != _executor()]
    return page(
        request, "models.html", session, models=rt.models.definitions(), pool=pool, resident=resident, others=others
    )


def _executor() -> str:
    from edgecrew.engine.executors import executor_id

    return executor_id()


@router.get("/ui/metrics")
def metrics_page(request: Request, session: Viewer) -> HTMLResponse:
    rt = _rt(request)
    calls = RunService(rt).events_of_type("model_called", limit=5000)
    stats = views.model_stats(calls)
    runs = RunService(rt).list_runs(limit=5000)
    days = views.outcomes_by_day(runs)
    return page(request, "metrics.html", session, stats=stats, days=days, charts=views, total_calls=len(calls))


# -- wiring -----------------------------------------------------------------------------------------


def mount(app: FastAPI) -> None:
    """Add the pages, the static files and the sign-in redirect to the app."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")

    def user_error(exc: Exception) -> tuple[int, str, str]:
        status = status_of(exc) if isinstance(exc, UserError) else 400
        return status, {404: "Not found", 409: "Not possible now"}.get(status, "Bad request"), str(exc)

    def invalid(exc: Exception) -> tuple[int, str, str]:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
        return 400, "Bad request", where

    def http_error(exc: Exception) -> tuple[int, str, str]:
        status = getattr(exc, "status_code", 500)
        if status == 404:
            return 404, "Not found", "There is no page at this address."
        return status, {405: "Not possible here"}.get(status, "Error"), str(getattr(exc, "detail", "") or "")

    def internal(exc: Exception) -> tuple[int, str, str]:
        return 500, "Something went wrong", "an unexpected error; the server log has the details"

    _html_on_pages(app, UserError, user_error)  # a missing run on a page is a page, not JSON
    _html_on_pages(app, RequestValidationError, invalid)  # so is a bad number in its URL
    _html_on_pages(app, StarletteHTTPException, http_error)  # and an address that names no page
    _html_on_pages(app, Exception, internal, always_api=True)  # and a bug (the API's handler logs it)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _exc: SignInRequired) -> Response:
        target = f"/ui/login?next={quote(request.url.path)}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        detail = (
            "this form expired or came from another site; reload the page and try again"
            if exc.scope == "csrf"
            else f"your API key lacks the '{exc.scope}' scope for this action"
        )
        return page(request, "error.html", None, status_code=403, title="Not allowed", detail=detail)


def _html_on_pages(
    app: FastAPI,
    kind: type[Exception],
    describe: Callable[[Exception], tuple[int, str, str]],
    *,
    always_api: bool = False,
) -> None:
    """Answer ``kind`` with an HTML error page on pages, and with the API's own handler elsewhere
    (``always_api``: on pages too, for what it does besides answering, its answer replaced)."""
    api = app.exception_handlers.get(kind)

    async def handler(request: Request, exc: Exception) -> Response:
        answer: Response | None = None
        if (always_api or not _is_page(request)) and api is not None:
            made = api(request, exc)
            answer = await made if inspect.isawaitable(made) else made
        if answer is not None and not _is_page(request):
            return answer
        status, title, detail = describe(exc)
        request_id = answer.headers.get("X-Request-ID") if answer is not None else None
        if request_id:
            detail += f" under request id {request_id}"
        # Inside the site's frame (its navigation) when the visitor is signed in.
        sessions: SessionStore | None = getattr(request.app.state, "sessions", None)
        session = sessions.get(request.cookies.get(COOKIE)) if sessions is not None else None
        shown = page(request, "error.html", session, status_code=status, title=title, detail=detail)
        if request_id:  # outside the middleware that sets it on every other answer
            shown.headers["X-Request-ID"] = request_id
        return shown

    app.add_exception_handler(kind, handler)


def _is_page(request: Request) -> bool:
    return request.url.path == "/" or request.url.path.startswith("/ui/")


SESSIONS_FILE = "ui-sessions.json"  # under the home: a restart keeps people signed in


def setup(app: FastAPI, keys: ApiKeyStore, home: Path | None = None) -> None:
    """Per-app state the pages need (called from the app's start-up); ``home``: where the sessions are kept."""
    app.state.sessions = SessionStore(keys, None if home is None else home / SESSIONS_FILE)
