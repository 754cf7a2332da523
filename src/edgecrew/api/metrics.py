"""Prometheus metrics of the server: counters fed by the run store's events, pool gauges read at scrape.

The engine never calls into this module. The server subscribes to its RunStore, whose events
(``run_started``, ``step_finished``, ``model_called``, ``tool_called``, ``run_finished``...) carry
everything a metric needs, so what is counted is exactly what the run's history says happened. An
event that a replayed step rewrites (same run and key) is not counted again, and a run is counted
finished once even when both a cancel and the workflow report its end. The model pool is read when
Prometheus scrapes, through a custom collector. Each app has its own CollectorRegistry (two apps in
one process never share counts). Labels are bounded: team, agent, tool and model names come from the
project, never run ids; a tool name a model made up is counted as ``unknown``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgecrew.domain.events import (
    EventRecord,
    FeedbackGiven,
    ModelCalled,
    RunCancelled,
    RunFinished,
    RunStarted,
    StepFinished,
    ToolCalled,
)
from edgecrew.domain.runs import RunStatus
from edgecrew.engine.service import RunService
from edgecrew.ops import Ops

if TYPE_CHECKING:
    from edgecrew.engine.runtime import Runtime

log = logging.getLogger("edgecrew.telemetry")

MODEL_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)
_REMEMBERED_RUNS = 10_000  # finished run ids kept to count each run's end once


class ServerMetrics:
    """The server's metrics in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs_started = Counter("edgecrew_runs_started", "Team runs that began executing.", ["team"], registry=r)
        self.runs_finished = Counter(
            "edgecrew_runs_finished", "Team runs that ended, by final status.", ["team", "status"], registry=r
        )
        self.agent_steps = Counter(
            "edgecrew_agent_steps", "Agent turns that ended, by outcome.", ["agent", "outcome"], registry=r
        )
        self.feedback = Counter(
            "edgecrew_feedback",
            "Ratings people gave runs' answers, by team and rating.",
            ["team", "rating"],
            registry=r,
        )
        self.tool_calls = Counter(
            "edgecrew_tool_calls", "Tool calls, by tool and outcome (ok or error).", ["tool", "outcome"], registry=r
        )
        self.tool_duration = Histogram(
            "edgecrew_tool_call_duration_seconds", "Time a tool call took.", ["tool"], buckets=TOOL_BUCKETS, registry=r
        )
        self.model_calls = Counter(
            "edgecrew_model_calls",
            "Model calls, by model alias, backend and outcome (ok or error).",
            ["alias", "backend", "outcome"],
            registry=r,
        )
        self.model_duration = Histogram(
            "edgecrew_model_call_duration_seconds",
            "Time a model call took, from request to last token.",
            ["alias", "backend"],
            buckets=MODEL_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_ttft = Histogram(
            "edgecrew_model_time_to_first_token_seconds",
            "Time from a model request to its first token.",
            ["alias", "backend"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.model_tokens = Counter(
            "edgecrew_model_tokens",
            "Tokens by model alias and kind (prompt, cached: prompt tokens served from a cache, completion).",
            ["alias", "kind"],
            registry=r,
        )
        self.http_requests = Counter(
            "edgecrew_http_requests",
            "HTTP requests, by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "edgecrew_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of the body, streams included).",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self._rt: Runtime | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._collectors: list[Collector] = []
        self._finished: OrderedDict[str, None] = OrderedDict()

    # -- wiring ----------------------------------------------------------------------------------------
    def bind(self, rt: Runtime) -> None:
        """Count ``rt``'s store events and expose its model pool and unfinished runs."""
        self.unbind()
        self._rt = rt
        self._unsubscribe = RunService(rt).subscribe(self.observe)
        self._collectors = [PoolCollector(rt), UnfinishedRunsCollector(rt), FiringAlertsCollector(rt)]
        for collector in self._collectors:
            self.registry.register(collector)

    def unbind(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for collector in self._collectors:
            self.registry.unregister(collector)
        self._collectors = []
        self._rt = None

    # -- events ----------------------------------------------------------------------------------------
    def observe(self, event: EventRecord, new: bool) -> None:
        """A RunStore listener: count ``event`` unless it is a replayed step's rewrite."""
        if not new:
            return
        match p := event.payload:
            case RunStarted():
                self.runs_started.labels(team=p.team or self._team(event.run_id)).inc()
            case RunFinished():
                self._run_ended(event.run_id, p.status)
            case RunCancelled():
                self._run_ended(event.run_id, RunStatus.CANCELLED)
            case StepFinished():
                self.agent_steps.labels(agent=event.agent or "unknown", outcome=p.outcome.value).inc()
            case ModelCalled():
                self._model_called(p)
            case ToolCalled():
                self._tool_called(p)
            case FeedbackGiven():
                rating = "up" if p.rating > 0 else "down"
                self.feedback.labels(team=self._team(event.run_id), rating=rating).inc()

    def _run_ended(self, run_id: str, status: RunStatus) -> None:
        if run_id in self._finished:  # a cancel and the workflow may both report the end
            return
        self._finished[run_id] = None
        if len(self._finished) > _REMEMBERED_RUNS:
            self._finished.popitem(last=False)
        self.runs_finished.labels(team=self._team(run_id), status=status.value).inc()

    def _model_called(self, call: ModelCalled) -> None:
        alias = call.alias or "unknown"
        backend = call.backend or self._backend(alias)
        self.model_calls.labels(alias=alias, backend=backend, outcome="ok" if call.ok else "error").inc()
        if not call.ok:
            return
        if call.latency_s is not None:
            self.model_duration.labels(alias=alias, backend=backend).observe(call.latency_s)
        if call.ttft_s is not None:
            self.model_ttft.labels(alias=alias, backend=backend).observe(call.ttft_s)
        tokens = {"prompt": call.prompt_tokens, "cached": call.cached_tokens, "completion": call.completion_tokens}
        for kind, count in tokens.items():
            if count > 0:
                self.model_tokens.labels(alias=alias, kind=kind).inc(count)

    def _tool_called(self, call: ToolCalled) -> None:
        tool = call.tool
        if self._rt is None or self._rt.tools.find(tool) is None:
            tool = "unknown"  # a name a model made up must not mint a label value
        self.tool_calls.labels(tool=tool, outcome="error" if call.is_error else "ok").inc()
        if call.duration_s is not None:
            self.tool_duration.labels(tool=tool).observe(call.duration_s)

    def _team(self, run_id: str) -> str:
        try:
            return RunService(self._rt).get(run_id).team if self._rt is not None else "unknown"
        except Exception:  # a metric must never fail the event that triggered it
            return "unknown"

    def _backend(self, alias: str) -> str:
        try:
            return self._rt.models.definition(alias).backend if self._rt is not None else "unknown"
        except Exception:  # a tag or an alias gone from the project
            return "unknown"

    # -- HTTP ------------------------------------------------------------------------------------------
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route=route, method=method, status=str(status)).inc()
        self.http_duration.labels(route=route, method=method).observe(seconds)


class PoolCollector(Collector):
    """The model pool's state, read when Prometheus scrapes."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape only: registering must not create the pool

    def collect(self) -> Iterable[Metric]:
        try:
            state = self.rt.pool.state()
        except Exception:  # a broken probe must not fail the whole scrape
            log.exception("could not read the model pool's state for /metrics")
            return []
        resident = GaugeMetricFamily(
            "edgecrew_pool_model_memory_bytes", "Memory a resident model holds, by alias.", labels=["alias"]
        )
        for model in state.resident:
            resident.add_metric([model.alias], model.memory_bytes)
        return [
            _gauge("edgecrew_pool_queue_depth", "Model requests waiting for a model.", state.queue_depth),
            _gauge("edgecrew_pool_resident_models", "Models loaded or loading in the pool.", len(state.resident)),
            resident,
            _gauge("edgecrew_pool_memory_used_bytes", "Memory held by the pool's models.", state.used_bytes),
            _gauge("edgecrew_pool_memory_budget_bytes", "Memory the pool may fill.", state.budget_bytes),
            _gauge(
                "edgecrew_pool_gpu_memory_used_bytes", "GPU memory held by the pool's models.", state.gpu_used_bytes
            ),
            _gauge("edgecrew_pool_gpu_memory_budget_bytes", "GPU memory the pool may fill.", state.gpu_budget_bytes),
            _counter("edgecrew_pool_requests", "Model requests the pool served.", state.grants),
            _counter("edgecrew_pool_waits", "Model requests that had to queue.", state.waits),
            _counter("edgecrew_pool_wait_seconds", "Time requests spent queued.", state.wait_s_total),
            _counter("edgecrew_pool_loads", "Models loaded.", state.loads),
            _counter("edgecrew_pool_load_failures", "Model loads that failed.", state.load_failures),
            _counter("edgecrew_pool_evictions", "Models unloaded to make room for another.", state.evictions),
        ]


class FiringAlertsCollector(Collector):
    """The alert rules, 1 while firing and 0 otherwise, by rule and severity (read at scrape)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "edgecrew_alert_firing", "Alert rules firing now (1) or not (0).", labels=["rule", "severity"]
        )
        try:
            for state in Ops.of(self.rt).alerts.states():
                family.add_metric([state.name, state.rule.severity], 1.0 if state.state == "firing" else 0.0)
        except Exception:
            log.exception("could not read the alert states for /metrics")
            return []
        return [family]


class UnfinishedRunsCollector(Collector):
    """Runs in the store not yet ended, by status (queued, running, waiting_approval)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("edgecrew_runs_unfinished", "Runs not yet ended, by status.", labels=["status"])
        try:
            for status in UNFINISHED:
                family.add_metric([status.value], RunService(self.rt).count_runs(status=status.value))
        except Exception:
            log.exception("could not count unfinished runs for /metrics")
            return []
        return [family]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
