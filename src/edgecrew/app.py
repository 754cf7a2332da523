"""The server app: the API and mission control in one process that also runs the engine and the model pool.

``create_app`` wires the runtime (built at start-up, or given by an embedding program or a test),
the durable engine (launched at start-up; runs orphaned by dead processes of this project are
adopted), auth, problem details, middleware and routers. On shutdown the engine stops without
finishing its runs: they stay PENDING under this process's executor id, and the next server (or
``edgecrew resume``) adopts them from their last finished step.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware

from edgecrew.api import problems
from edgecrew.api.a2a import mount_a2a
from edgecrew.api.auth import Authenticator
from edgecrew.api.deps import single_query_values
from edgecrew.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from edgecrew.api.routers import (
    alerts,
    approvals,
    audio,
    cluster,
    feedback,
    health,
    incidents,
    jobs,
    models,
    openai_compat,
    projects,
    routines,
    runs,
    sessions,
    tasks,
    teams,
)
from edgecrew.api.telemetry import ServerTelemetry, instrument
from edgecrew.engine.runtime import Runtime
from edgecrew.ops import Ops
from edgecrew.settings import Settings, get_settings
from edgecrew.ui import (
    alerts_pages,
    chat_pages,
    cluster_pages,
    incidents_pages,
    jobs_pages,
    pages,
    pilot_pages,
    projects_pages,
    routines_pages,
    runs_pages,
    task_form,
    task_posts,
    tasks_pages,
)
from edgecrew.version import __version__

log = logging.getLogger("edgecrew.api")

DESCRIPTION = """\
The edgecrew server: start and watch team runs, decide approvals, read models and metrics.

Authenticate with an API key (`edgecrew keys create NAME --scopes read,runs`) sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Errors are RFC 9457 problem details.
"""


def create_app(
    settings: Settings | None = None, *, runtime: Runtime | None = None, start_engine: bool = True
) -> FastAPI:
    """The app; ``runtime`` defaults to one bootstrapped from ``settings`` at start-up."""
    settings = settings or (runtime.settings if runtime is not None else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from edgecrew.bootstrap import bootstrap
        from edgecrew.engine import durable
        from edgecrew.engine.approvals import ApprovalService

        telemetry = ServerTelemetry(app, settings)
        telemetry.start()  # first, so that start-up's own log lines are JSON too
        try:
            rt = runtime or bootstrap(settings, mcp=True)
        except BaseException:
            telemetry.close()
            raise
        telemetry.attach(rt)
        app.state.rt = rt
        app.state.approvals = ApprovalService(rt)
        app.state.auth = Authenticator(
            rt.keys,
            keyless_localhost=settings.allow_keyless_localhost,
            per_minute=settings.rate_limit_per_minute,
        )
        app.state.engine_ready = False
        app.state.ops = ops = Ops.of(rt)
        pages.setup(app, rt.keys, rt.settings.home)
        if not settings.allow_keyless_localhost and not rt.keys.list(include_revoked=False):
            log.warning("no API key yet: every request but /health needs one (mission control's sign-in too); "
                        "create one with `edgecrew keys create me --scopes admin`")  # fmt: skip
        if start_engine:
            durable.launch(rt, queues=ops.queues())
            recovery = await durable.recover_orphans(rt)
            if recovery.interrupted_executions:
                ids = ", ".join(str(i) for i in recovery.interrupted_executions)
                log.info("task executions interrupted by a dead process (rerun them): %s", ids)
            if recovery.adopted:
                log.info("resuming %d interrupted run(s): %s", len(recovery.adopted), ", ".join(recovery.adopted))
            for run_id, missing in recovery.blocked:
                log.warning("run %s was interrupted and cannot go on here: this project no longer has %s; "
                            "restore it and resume the run", run_id, missing)  # fmt: skip
            await ops.start()  # routines, the metric sampler, alerts, job admission
            app.state.engine_ready = True
        try:
            yield
        finally:
            await ops.stop()
            if start_engine:
                durable.shutdown()  # unfinished runs stay PENDING and resumable
            await rt.close_pool()
            telemetry.close()

    app = FastAPI(
        title="edgecrew",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(single_query_values)],
    )
    problems.install(app)
    pages.mount(app)  # mission control at / (pages, static files, sign-in)
    # Pages of their own modules, built on pages' helpers.
    pages_of_their_own = (runs_pages, task_form, tasks_pages, routines_pages, alerts_pages, jobs_pages, pilot_pages)
    for extra in (*pages_of_their_own, task_posts, projects_pages, cluster_pages, incidents_pages, chat_pages):
        app.include_router(extra.router)
    for router in (
        health.router,
        teams.router,
        runs.router,
        feedback.router,
        approvals.router,
        models.router,
        tasks.router,
        routines.router,
        alerts.router,
        incidents.router,
        jobs.router,
        projects.router,
        cluster.router,
        sessions.router,
    ):
        app.include_router(router)
    app.include_router(openai_compat.router)  # /v1: OpenAI clients talk to teams
    app.include_router(audio.router)  # /v1/audio: offline speech to text and text to speech
    mount_a2a(app)  # /a2a/{team}/: every team as an A2A agent
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origin_list:  # outside the body limit: a browser can read its 413 too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
        )
    instrument(app)  # access log and request metrics (a 413 included), GET /metrics
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer, even a 413, carries the id
    return app
