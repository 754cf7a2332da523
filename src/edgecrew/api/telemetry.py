"""Wires metrics, tracing and logging into the FastAPI app, in three calls from ``create_app``.

``instrument(app)`` at build time (the middleware, ``/metrics`` and the app's own registry);
``ServerTelemetry.start()`` first thing at start-up (logs, the tracer provider), ``attach(rt)``
once the runtime exists (metrics follow its store and pool, its models' API keys are scrubbed from
logs), and ``close()`` at shutdown (spans flushed, logging put back as it was).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastapi import FastAPI

from edgecrew.api.metrics import ServerMetrics
from edgecrew.api.observability import TelemetryMiddleware, router
from edgecrew.telemetry import tracing
from edgecrew.telemetry.logging import LogSetup, Redactor, configure_logging

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from edgecrew.engine.runtime import Runtime
    from edgecrew.settings import Settings


def instrument(app: FastAPI) -> None:
    """Add the access-log/metrics middleware and ``GET /metrics`` (call before the request-id middleware)."""
    app.state.metrics = ServerMetrics()
    app.include_router(router)
    app.add_middleware(TelemetryMiddleware)


class ServerTelemetry:
    """The observability of one running app, from start-up to shutdown."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.redactor = Redactor()
        self._logs: LogSetup | None = None
        self._provider: TracerProvider | None = None

    def start(self) -> None:
        if self.settings.log_format != "off":
            self._logs = configure_logging(
                level=self.settings.log_level, fmt=self.settings.log_format, redactor=self.redactor
            )
        self._provider = tracing.build_provider(self.settings)
        if self._provider is not None:
            tracing.install(self._provider)

    def attach(self, rt: Runtime) -> None:
        self.redactor.add(os.environ.get(m.api_key_env) for m in rt.models.definitions() if m.api_key_env)
        metrics: ServerMetrics | None = getattr(self.app.state, "metrics", None)
        if metrics is not None:
            metrics.bind(rt)

    def close(self) -> None:
        metrics: ServerMetrics | None = getattr(self.app.state, "metrics", None)
        if metrics is not None:
            metrics.unbind()
        if self._provider is not None:
            tracing.uninstall(self._provider)  # flushes the spans still batched
            self._provider = None
        if self._logs is not None:
            self._logs.close()
            self._logs = None
