"""Usage alerts: the ``alerts:`` rules of ``edgecrew.yaml`` evaluated on a schedule, each firing and
resolution recorded, logged and POSTed to webhooks.

A rule's number comes from the sampler's newest sample of this machine, from Prometheus (an instant
PromQL query) or from the model calls in the run store over its window. Each rule walks
ok → pending → firing → resolved (→ pending or firing again). The one design decision: a state
lives in the store and moves only by compare-and-set (``AlertStore.compare_and_set``), so however
many edgecrew processes evaluate the rules, one firing is recorded and announced once, by the
process whose update won. Webhooks are delivered after the transition is stored, with retries and
backoff; how the delivery went is written onto the event row. A state records the project whose rule
it is: a server starting resolves the firing alerts of rules its edgecrew.yaml no longer has (with the
reason, to the webhooks the firing went to), and leaves other projects' alerts in the data dir alone.
States and history are the project's own: another project's rule of the same name has its own state.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgecrew.engine.runtime import Runtime
from edgecrew.errors import NotFoundError, ToolError
from edgecrew.ops.periodic import Periodic
from edgecrew.ops.sampler import MetricSampler
from edgecrew.specs.alerts import AlertDoc
from edgecrew.store.alerts import AlertEventRecord, AlertStateRecord, AlertStore
from edgecrew.tools.builtins.prometheus import _Client

__all__ = ["AlertService", "AlertStatus", "Reading", "next_state", "shown", "webhook_payload"]

log = logging.getLogger("edgecrew.alerts")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
WEBHOOK_TIMEOUT_S = 5.0
MIN_FRESH_S = 60.0  # a sampler value older than this (or three intervals) is no data


@dataclass(frozen=True)
class Reading:
    """What one evaluation saw: the value (None: no data) and why there is none. ``unread``: the source
    could not be read at all (no fresh sample, Prometheus out of reach), so the rule keeps its state: a
    firing alert is not resolved by a server restart or an outage of what it watches."""

    value: float | None
    error: str | None = None
    unread: bool = False


@dataclass(frozen=True)
class AlertStatus:
    """A rule with where it stands (for the entry points)."""

    name: str
    rule: AlertDoc
    scope: str
    state: str
    value: float | None
    since: float
    updated_at: float
    error: str | None


def next_state(state: str, since: float, breached: bool, now: float, for_s: float) -> tuple[str, float, str | None]:
    """Where a rule goes from ``state`` (entered at ``since``) when its condition is ``breached`` now:
    (new state, when it was entered, the transition to announce: "firing", "resolved" or None)."""
    if breached:
        if state == "firing":
            return state, since, None
        if state == "pending":
            return ("firing", now, "firing") if now - since >= for_s else (state, since, None)
        return ("firing", now, "firing") if for_s <= 0 else ("pending", now, None)
    if state == "firing":
        return "resolved", now, "resolved"
    if state == "pending":
        return "ok", now, None
    return state, since, None


class AlertService:
    """The project's alert rules, their states and history, and their evaluation."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.store = AlertStore(rt.store)
        self._reader: MetricSampler | None = None
        self._loop = Periodic(
            "edgecrew-alerts", self.evaluate_now, "evaluating the alert rules failed", "the alert evaluation"
        )

    # -- what the entry points read ---------------------------------------------------------------
    def rules(self) -> dict[str, AlertDoc]:
        """The project's rules by name."""
        return dict(self.rt.project.alerts)

    def rule(self, name: str) -> AlertDoc:
        rules = self.rules()
        if name not in rules:
            known = ", ".join(sorted(rules)) or "none"
            raise NotFoundError(
                f"no alert rule '{name[:80]}' (rules: {known}); they live under alerts: in edgecrew.yaml"
            )
        return rules[name]

    def scope_of(self, rule: AlertDoc) -> str:
        """Sampler rules are per machine (their state is this host's); the others are shared."""
        return self._sampler().host if rule.kind == "metric" else ""

    def states(self) -> list[AlertStatus]:
        """Every rule with its current state, value and since (rules never evaluated are ``ok``)."""
        stored = {(s.rule, s.scope): s for s in self.store.states(self._project)}
        out = []
        for name, rule in sorted(self.rules().items()):
            scope = self.scope_of(rule)
            found = stored.get((name, scope))
            if found is None:
                out.append(AlertStatus(name, rule, scope, "ok", None, 0.0, 0.0, None))
            else:
                out.append(
                    AlertStatus(name, rule, scope, found.state, found.value, found.since, found.updated_at, found.error)
                )
        return out

    def firing(self) -> list[AlertStatus]:
        """The rules firing now (for banners and ``/metrics``)."""
        return [s for s in self.states() if s.state == "firing"]

    def history(self, limit: int = 50, offset: int = 0, rule: str | None = None) -> list[AlertEventRecord]:
        """Firings and resolutions, newest first."""
        return self.store.history(limit=limit, offset=offset, rule=rule, project=self._project)

    def count_history(self, rule: str | None = None) -> int:
        return self.store.count(rule=rule, project=self._project)

    # -- evaluation -------------------------------------------------------------------------------
    async def evaluate_now(self, now: float | None = None) -> list[AlertStatus]:
        """Evaluate every rule once: read its value, move its state, record and announce what changed."""
        now = time.time() if now is None else now
        rules = self.rules()
        readings = await asyncio.gather(*(self._read(rule, now) for rule in rules.values()))
        deliveries = []
        for (name, rule), reading in zip(rules.items(), readings, strict=True):
            event = await asyncio.to_thread(self._apply, name, rule, reading, now)
            if event is not None:
                deliveries.append(self._announce(name, rule, event))
        await asyncio.gather(*deliveries)
        return self.states()

    def _apply(self, name: str, rule: AlertDoc, reading: Reading, now: float) -> AlertEventRecord | None:
        """Move the rule's stored state by compare-and-set; the event recorded when this process won a
        transition, None when nothing is to be announced (no change, or another process announced it)."""
        seen = self.store.state(name, self.scope_of(rule), now, project=self._project)
        if reading.unread:  # nothing was learnt: a firing (or pending) rule stays so, and says why
            state, since, transition = seen.state, seen.since, None
        else:  # a value, or a source that answered with nothing (a PromQL filter that matched no series)
            breached = reading.value is not None and rule.breached(reading.value)
            state, since, transition = next_state(seen.state, seen.since, breached, now, rule.for_s)
        event = None
        if transition is not None:
            event = {
                "kind": transition,
                "severity": rule.severity,
                "threshold": rule.threshold,
                "comparison": rule.comparison,
                "source": rule.source,
                "description": rule.description,
            }
        won, event_id = self.store.compare_and_set(
            seen,
            state=state,
            since=since,
            value=reading.value,
            error=reading.error,
            now=now,
            event=event,
        )
        if not won or event_id is None:
            return None
        record = self.store.event(event_id)
        level = logging.WARNING if transition == "firing" else logging.INFO
        log.log(
            level,
            "alert %s %s: %s is %s (%s %s)",
            name,
            transition,
            rule.source,
            shown(reading.value, rule.source),
            rule.comparison,
            shown(rule.threshold, rule.source),
            extra={"alert": name, "transition": transition, "severity": rule.severity, "value": reading.value},
        )
        return record

    @property
    def _project(self) -> str:
        return str(self.rt.project.dir)

    async def resolve_removed(self, now: float | None = None) -> list[AlertEventRecord]:
        """Close the alerts of this project's rules that edgecrew.yaml no longer has: a firing one is
        resolved, with the reason, and announced to the webhooks its firing went to (and the shared one);
        a pending one goes back to ok. The resolutions this process recorded."""
        now = time.time() if now is None else now
        rules, states = self.rules(), await asyncio.to_thread(self.store.states, self._project)
        gone = [s for s in states if s.rule not in rules]
        resolved: list[AlertEventRecord] = []
        for seen in (s for s in gone if s.state in ("firing", "pending")):
            record = await asyncio.to_thread(self._close, seen, now)
            if record is not None:
                resolved.append(record)
                fired = await asyncio.to_thread(
                    self.store.last_event, seen.rule, seen.scope, "firing", project=self._project
                )
                urls = [self.rt.settings.alert_webhook_url, *((fired.delivery or {}) if fired else {})]
                await self._deliver(record, list(dict.fromkeys(u for u in urls if u)))
        return resolved

    def _close(self, seen: AlertStateRecord, now: float) -> AlertEventRecord | None:
        if seen.state == "pending":
            self.store.compare_and_set(seen, state="ok", since=now, value=seen.value, error=None, now=now)
            return None
        reason = f"the rule '{seen.rule}' is no longer in {self.rt.project.dir / 'edgecrew.yaml'}"
        fired = self.store.last_event(seen.rule, seen.scope, "firing", project=self._project)
        event = None
        if fired is not None:  # what the firing said the rule was: the rule itself is gone
            keep = ("severity", "threshold", "comparison", "source", "description")
            event = {"kind": "resolved", "reason": reason, **{k: getattr(fired, k) for k in keep}}
        won, event_id = self.store.compare_and_set(
            seen, state="resolved", since=now, value=seen.value, error=reason, now=now, event=event
        )
        if not won or event_id is None:
            return None
        log.info("alert %s resolved: %s", seen.rule, reason, extra={"alert": seen.rule, "transition": "resolved"})
        return self.store.event(event_id)

    async def _read(self, rule: AlertDoc, now: float) -> Reading:
        try:
            if rule.metric is not None:
                return await asyncio.to_thread(self._read_metric, rule.metric, now)
            if rule.promql is not None:
                return await self._read_promql(rule.promql, rule.comparison, now)
            return await asyncio.to_thread(self._read_model_calls, rule, now)
        except Exception as exc:  # one broken rule must not stop the others
            log.exception("alert rule on %s could not be read", rule.source)
            return Reading(None, f"{type(exc).__name__}: {exc}", unread=True)

    def _read_metric(self, metric: str, now: float) -> Reading:
        max_age = max(MIN_FRESH_S, 3 * self.rt.settings.sample_interval_s)
        found = self._sampler().latest_value(metric, max_age, now)
        if found is None:
            why = f"no sample of {metric} in the last {max_age:g}s (is the sampler running?)"
            return Reading(None, why, unread=True)
        return Reading(found[1])

    async def _read_promql(self, expr: str, comparison: str, now: float) -> Reading:
        url = self.rt.settings.prometheus_url
        if not url:
            return Reading(None, "no Prometheus URL: set EDGECREW_PROMETHEUS_URL for promql rules", unread=True)
        try:
            data = await _Client(url, 10.0).get("/api/v1/query", {"query": expr, "time": f"{now:.3f}"})
        except ToolError as exc:
            return Reading(None, str(exc), unread=True)
        values = _promql_values(data)
        if not values:
            return Reading(None, "the query returned no series")
        # Any series past the threshold breaches: report the most extreme one.
        return Reading(max(values) if comparison == "above" else min(values))

    def _read_model_calls(self, rule: AlertDoc, now: float) -> Reading:
        calls = [c for c in self.store.model_calls(now - rule.window, now) if rule.model in (None, c.alias)]
        if len(calls) < rule.min_calls:
            return Reading(None, f"{len(calls)} model call(s) in the window, fewer than min_calls={rule.min_calls}")
        if rule.model_calls == "error_percent":
            return Reading(100.0 * sum(1 for c in calls if not c.ok) / len(calls))
        key = "latency_s" if rule.model_calls == "latency_p95_s" else "ttft_s"
        values = [v for c in calls if c.ok and (v := getattr(c, key)) is not None]
        if not values:
            return Reading(None, f"no successful call in the window recorded {key}")
        return Reading(_p95(values))

    def _sampler(self) -> MetricSampler:
        # Its own reader of the samples (the sampler keeps nothing else between calls): importing Ops
        # here would make a cycle of the package's modules.
        if self._reader is None:
            self._reader = MetricSampler(self.rt)
        return self._reader

    # -- announcing -------------------------------------------------------------------------------
    def webhooks(self, rule: AlertDoc) -> list[str]:
        urls = [self.rt.settings.alert_webhook_url, rule.webhook]
        return list(dict.fromkeys(u for u in urls if u))

    async def _announce(self, name: str, rule: AlertDoc, event: AlertEventRecord) -> None:
        await self._deliver(event, self.webhooks(rule))

    async def _deliver(self, event: AlertEventRecord, urls: list[str]) -> None:
        if not urls:
            return
        payload = webhook_payload(event)
        results = await asyncio.gather(*(self._post(url, payload) for url in urls))
        delivery = dict(zip(urls, results, strict=True))
        await asyncio.to_thread(self.store.set_delivery, event.id, delivery)

    async def _post(self, url: str, payload: dict[str, Any]) -> str:
        """POST with retries and doubling backoff; what happened, in a few words."""
        import httpx  # here, not at the top: every CLI command imports this module, few send alerts

        attempts = self.rt.settings.alert_webhook_attempts
        wait = self.rt.settings.alert_webhook_backoff_s
        problem = ""
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
            for attempt in range(1, attempts + 1):
                try:
                    response = await client.post(url, json=payload)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.is_success:
                        return f"delivered (HTTP {response.status_code}) on attempt {attempt}"
                    problem = f"HTTP {response.status_code}"
                    if response.status_code not in RETRY_STATUSES:
                        break
                if attempt < attempts:
                    await asyncio.sleep(wait * 2 ** (attempt - 1))
        log.warning("alert webhook %s for %s failed: %s", url, payload["rule"], problem)
        return f"failed: {problem}"

    # -- background loop --------------------------------------------------------------------------
    async def start(self) -> None:
        """Resolve the alerts of removed rules, then evaluate every rule every ``alert_interval_s`` (0, or
        no rules: never)."""
        try:
            await self.resolve_removed()
        except Exception:  # the server starts all the same; the next start tries again
            log.exception("resolving the alerts of removed rules failed")
        if self.rules():
            self._loop.start(self.rt.settings.alert_interval_s)

    async def stop(self) -> None:
        """End the loop, letting an evaluation in progress finish."""
        await self._loop.stop()


def webhook_payload(event: AlertEventRecord) -> dict[str, Any]:
    """The JSON a webhook receives for one firing or resolution (``text`` is one line for chat tools)."""
    value = shown(event.value, event.source)
    threshold = shown(event.threshold, event.source)
    what = f"{event.source} is {value} ({event.comparison} {threshold})"
    text = f"[{event.severity}] alert {event.rule} {event.kind}: {what}"
    if event.description:
        text += f" - {event.description}"
    if event.reason:
        text += f" ({event.reason})"
    return {
        "text": text,
        "rule": event.rule,
        "status": event.kind,
        "severity": event.severity,
        "value": event.value,
        "threshold": event.threshold,
        "comparison": event.comparison,
        "source": event.source,
        "description": event.description,
        "reason": event.reason,
        "host": event.scope or None,
        "at": datetime.fromtimestamp(event.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "event_id": event.id,
    }


def _promql_values(data: dict[str, Any]) -> list[float]:
    kind, result = data.get("resultType"), data.get("result")
    raw: Iterable[Any] = []
    if kind == "scalar" and isinstance(result, list):
        raw = [result[1]]
    elif kind == "vector" and isinstance(result, list):
        raw = [row["value"][1] for row in result]
    values = []
    for text in raw:
        try:
            value = float(text)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            values.append(value)
    return values


def _p95(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def shown(value: float | None, source: str = "") -> str:
    """A value as people read it: sizes for byte metrics (``metric:..._bytes``), else a plain number."""
    if value is None:
        return "no data"
    if "_bytes" in source:
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= size:
                return f"{value / size:.2f} {unit}"
        return f"{value:.0f} B"
    return f"{value:,.0f}" if abs(value) >= 1e6 else f"{value:.4g}"
