"""Alert rules: their spec (every mistake with file:line), the state machine, compare-and-set in the
store, evaluation of sampler, model-call and PromQL rules, webhooks with retries against a real local
HTTP server, and the `edgecrew alerts` commands."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecrew.bootstrap import bootstrap
from edgecrew.cli import app as cli
from edgecrew.domain.events import ModelCalled
from edgecrew.engine.runtime import Runtime
from edgecrew.errors import NotFoundError, SpecError
from edgecrew.ops import Ops
from edgecrew.ops.alerts import AlertService, next_state, shown
from edgecrew.specs.alerts import AlertDoc, parse_duration
from edgecrew.specs.project import load_project
from edgecrew.store.alerts import AlertStore
from edgecrew.store.samples import Sample
from tests.conftest import write
from tests.webhook import webhook_receiver

GiB = 2**30
runner = CliRunner()


def _runtime(project_dir: Path, rules: str, **settings: object) -> Runtime:
    write(project_dir / "edgecrew.yaml", "alerts:\n" + rules)
    rt = bootstrap()
    rt.settings = rt.settings.model_copy(update={"alert_webhook_backoff_s": 0.01, **settings})
    return rt


def _sample(rt: Runtime, at: float, **metrics: float) -> None:
    sampler = Ops.of(rt).sampler
    sampler.samples.write(Sample(sampler.host, at, metrics, []))


# -- the spec --------------------------------------------------------------------------------------


def test_every_bad_rule_is_reported_with_its_line(project_dir: Path) -> None:
    config = write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          low-memory:
            metric: memory_free
            below: 2GiB
          slow:
            metric: load1
            above: 4
            for: 2 minutes
          mixed:
            metric: cpu_percent
            promql: up == 0
            above: 90
          no-threshold:
            metric: cpu_percent
          loud:
            metric: cpu_percent
            above: 90
            severity: page
            webhook: ftp://example.com/hook
          Bad_Name:
            metric: cpu_percent
            above: lots
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    found = {(i.line, i.message.split(":")[0]) for i in info.value.issues}
    assert found >= {
        (3, "alerts.low-memory.metric"),
        (8, "alerts.slow.for"),
        (9, "alerts.mixed"),
        (13, "alerts.no-threshold"),
        (18, "alerts.loud.severity"),
        (19, "alerts.loud.webhook"),
        (22, "alerts.Bad_Name.above"),
    }, found
    text = str(info.value)
    assert f"{config}:3: alerts.low-memory.metric: unknown sampler metric 'memory_free'; known: " in text
    assert "cannot read duration '2 minutes'; write e.g. 0s, 30s, 2m or 1h30m" in text
    assert "exactly one of metric, promql or model_calls (given: metric and promql)" in text
    assert "needs exactly one of 'above' or 'below'" in text
    assert "webhook 'ftp://example.com/hook' is not an http:// or https:// URL" in text
    assert "cannot read threshold 'lots'" in text
    assert "alerts.Bad_Name" in text  # the name itself breaks the naming rule


def test_a_threshold_that_is_no_finite_number_is_refused(project_dir: Path) -> None:
    """`above: .nan` was valid and never fired (every comparison with NaN is false); `below: .inf`
    and `above: "-inf"` always fired: none is a threshold anyone means."""
    write(
        project_dir / "edgecrew.yaml",
        """        alerts:
          never:
            metric: cpu_percent
            above: .nan
          always:
            metric: cpu_percent
            below: .inf
          written:
            metric: cpu_percent
            above: "-inf"
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    found = {(i.line, i.message.split(":")[0]) for i in info.value.issues}
    assert found == {(4, "alerts.never.above"), (7, "alerts.always.below"), (10, "alerts.written.above")}, found
    assert "finite number" in str(info.value)


def test_model_rules_are_checked_too(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          a:
            model_calls: p99_latency
            above: 2
          b:
            model_calls: latency_p95_s
            window: 0s
            above: 2
          c:
            metric: cpu_percent
            window: 5m
            above: 2
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    text = str(info.value)
    assert ":3: alerts.a.model_calls: unknown model_calls figure 'p99_latency'; use one of " in text
    assert ":7: alerts.b.window: duration '0s' must be more than zero" in text
    assert ":9: alerts.c: 'model' and 'window' belong to model_calls rules only" in text


def test_a_threshold_in_the_wrong_unit_is_refused(project_dir: Path) -> None:
    """`memory_used_percent` `below: 2GiB` compared a percent with 2,147,483,648 and fired at once;
    `cpu_percent` `above: 150` could never fire: both were valid, and said nothing."""
    config = write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          sized-percent:
            metric: memory_used_percent
            below: 2GiB
          sized-load:
            metric: load1
            above: 4GB
          sized-seconds:
            model_calls: latency_p95_s
            above: 10MiB
          over-percent:
            metric: cpu_percent
            above: 150
          under-percent:
            model_calls: error_percent
            below: -5
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    found = {(i.line, i.message.split(":")[0]) for i in info.value.issues}
    assert found == {
        (4, "alerts.sized-percent.below"),
        (7, "alerts.sized-load.above"),
        (10, "alerts.sized-seconds.above"),
        (13, "alerts.over-percent.above"),
        (16, "alerts.under-percent.below"),
    }, found
    text = str(info.value)
    assert (
        f"{config}:4: alerts.sized-percent.below: '2GiB' is a size, but memory_used_percent is a percent"
        " (0 to 100); write a plain number" in text
    )
    assert "'4GB' is a size, but load1 is a plain number" in text
    assert "'10MiB' is a size, but latency_p95_s is seconds" in text
    assert "150 is no percent, and cpu_percent is one (0 to 100); write a number from 0 to 100" in text
    assert "-5 is no percent, and error_percent is one (0 to 100)" in text


def test_sizes_and_reachable_thresholds_stay_valid(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          busy:
            metric: cpu_percent
            above: 99.5
          bytes:
            metric: gpu_memory_used_bytes
            above: 6GiB
          by-prometheus:
            promql: node_memory_MemAvailable_bytes
            below: 512MiB
          errors:
            model_calls: error_percent
            above: 0
          always:
            metric: load1
            above: -1
        """,
    )
    rules = load_project(project_dir).alerts
    assert {n: r.threshold for n, r in rules.items()} == {
        "busy": 99.5,
        "bytes": 6 * GiB,
        "by-prometheus": 512 * 2**20,
        "errors": 0.0,
        "always": -1.0,  # fires at once, as when trying a webhook out
    }


def test_malformed_promql_is_reported_when_the_rule_is_loaded(project_dir: Path) -> None:
    """A PromQL rule with a syntax error was found only when the rule ran (`edgecrew alerts list`, and
    then only as a Prometheus error or 'no data'); `edgecrew validate` called the project valid."""
    config = write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          cpu:
            promql: "rate(node_cpu_seconds_total[5m"
            above: 1
          labels:
            promql: 'up{job="node"'
            below: 1
          typo:
            promql: sum(rat(node_cpu_seconds_total[5m]))
            above: 1
          dangling:
            promql: up ==
            above: 0
          fine:
            promql: sum by (job) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) > 0.5
            above: 0
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    found = {(i.line, i.message) for i in info.value.issues}
    assert found == {
        (3, "alerts.cpu.promql: invalid PromQL: unexpected end of input inside brackets"),
        (6, "alerts.labels.promql: invalid PromQL: unexpected end of input inside braces"),
        (9, "alerts.typo.promql: invalid PromQL: unknown function with name 'rat'"),
        (12, "alerts.dangling.promql: invalid PromQL: invalid promql query"),
    }, found
    result = runner.invoke(cli, ["validate", str(project_dir)], env={"COLUMNS": "300"})
    assert result.exit_code != 0, result.output
    assert f"{config}:3" in result.output and "alerts.cpu.promql: invalid PromQL" in result.output


def test_valid_promql_of_prometheus_2_and_3_stays_valid() -> None:
    for expr in (
        "up == 0",
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        "predict_linear(node_filesystem_avail_bytes[1h], 4 * 3600) < 0",
        "rate(up[5m:1m] offset 1h)",
        "holt_winters(node_load1[10m], 0.5, 0.5)",  # Prometheus 2 (Debian 12 ships 2.42)
        "double_exponential_smoothing(node_load1[10m], 0.5, 0.5)",  # its name in Prometheus 3
        '{"my.dotted.metric", job="x"}',  # Prometheus 3's quoted UTF-8 names
    ):
        assert AlertDoc.model_validate({"promql": expr, "above": 0}).promql == expr


def test_promql_too_deep_for_the_parser_is_refused_before_it_is_parsed() -> None:
    """The parser overflows its stack (a segfault) on an expression some thousands of levels deep: the
    check is refused past PROMQL_MAX_CHARS characters outside quoted strings, never parsed."""
    deep = "(" * 20000 + "up" + ")" * 20000
    with pytest.raises(ValueError, match="PromQL of 40002 characters outside its quoted strings is longer than"):
        AlertDoc.model_validate({"promql": deep, "above": 0})
    long_regex = 'up{job=~"' + "|".join(f"job-{i}" for i in range(1000)) + '"} == 0'
    assert AlertDoc.model_validate({"promql": long_regex, "above": 0}).promql == long_regex
    assert AlertDoc.model_validate({"promql": "-" * 1990 + "up", "above": 0}).promql.endswith("up")


def test_a_model_rule_naming_no_model_is_reported(project_dir: Path) -> None:
    """A `model:` alias nobody has matched no call: the rule said '0 model call(s)' for ever."""
    config = write(
        project_dir / "edgecrew.yaml",
        """\
        models:
          fake: {backend: scripted, replies: ["hi"]}
        alerts:
          slow-typo:
            model_calls: latency_p95_s
            model: lcoal
            above: 10
          slow-fake:
            model_calls: latency_p95_s
            model: fake
            above: 10
          slow-builtin:
            model_calls: ttft_p95_s
            model: local
            above: 2
        """,
    )
    issues = [i for i in load_project(project_dir).duplicates if "alerts." in i.message]
    assert [(i.file, i.line, i.message) for i in issues] == [
        (str(config), 6, "alerts.slow-typo.model: no model alias 'lcoal'")
    ]
    assert "local" in (issues[0].hint or "") and "fake" in (issues[0].hint or "")


def test_a_good_rule_reads_sizes_durations_and_defaults(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          low-memory:
            metric: memory_available_bytes
            below: 2GiB
            for: 1h30m
            description: less than 2 GiB left
          slow-model:
            model_calls: ttft_p95_s
            model: local
            window: 10m
            above: 1.5
            severity: critical
        """,
    )
    rules = load_project(project_dir).alerts
    low, slow = rules["low-memory"], rules["slow-model"]
    assert (low.kind, low.comparison, low.threshold, low.for_s, low.severity) == (
        "metric",
        "below",
        2 * GiB,
        5400.0,
        "warning",
    )
    assert low.source == "metric:memory_available_bytes" and low.breached(GiB) and not low.breached(3 * GiB)
    assert (slow.kind, slow.window, slow.min_calls, slow.threshold, slow.for_s) == ("model_calls", 600.0, 5, 1.5, 0.0)
    assert slow.source == "model_calls:ttft_p95_s of local over 600s"
    assert AlertDoc.model_validate({"promql": "up == 0", "above": "0.5"}).threshold == 0.5
    assert parse_duration(90) == 90.0 and parse_duration("0s") == 0.0
    with pytest.raises(ValueError, match="must be zero or more"):
        parse_duration(-1)


# -- the state machine -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "breached", "for_s", "now", "expected"),
    [
        ("ok", False, 0, 100, ("ok", 10, None)),
        ("ok", True, 0, 100, ("firing", 100, "firing")),
        ("ok", True, 60, 100, ("pending", 100, None)),
        ("resolved", True, 60, 100, ("pending", 100, None)),
        ("resolved", False, 60, 100, ("resolved", 10, None)),
        ("pending", True, 60, 69, ("pending", 10, None)),
        ("pending", True, 60, 70, ("firing", 70, "firing")),
        ("pending", False, 60, 70, ("ok", 70, None)),
        ("firing", True, 60, 100, ("firing", 10, None)),
        ("firing", False, 60, 100, ("resolved", 100, "resolved")),
    ],
)
def test_state_transitions(state: str, breached: bool, for_s: float, now: float, expected: tuple[object, ...]) -> None:
    assert next_state(state, 10, breached, now, for_s) == expected


def test_a_transition_is_a_compare_and_set(project_dir: Path) -> None:
    """Two processes that saw the same state both decide the rule fires: only the first records it."""
    store = AlertStore(bootstrap().store)
    seen = store.state("hot", "box", now=1, project="p")
    assert (seen.state, seen.version) == ("ok", 0)
    event = {"kind": "firing", "severity": "critical", "threshold": 1, "comparison": "above", "source": "s"}
    event |= {"description": ""}
    first = store.compare_and_set(seen, state="firing", since=2, value=5, error=None, now=2, event=event)
    second = store.compare_and_set(seen, state="firing", since=2, value=5, error=None, now=2, event=event)
    assert first[0] and first[1] is not None and second == (False, None)
    assert [(e.rule, e.kind, e.value) for e in store.history()] == [("hot", "firing", 5.0)]
    assert store.state("hot", "box", project="p").version == 1 and store.count() == 1


# -- evaluation ------------------------------------------------------------------------------------


async def test_a_sampler_rule_goes_pending_firing_resolved(project_dir: Path) -> None:
    rt = _runtime(
        project_dir,
        """\
          busy:
            metric: cpu_percent
            above: 90
            for: 2m
            severity: critical
            description: the CPU is saturated
        """,
    )
    alerts = Ops.of(rt).alerts
    assert [(s.name, s.state, s.value) for s in alerts.states()] == [("busy", "ok", None)]
    t0 = time.time()
    _sample(rt, t0, cpu_percent=95)
    [s] = await alerts.evaluate_now(now=t0)
    assert (s.state, s.value, s.since, s.scope) == ("pending", 95, t0, Ops.of(rt).sampler.host)
    _sample(rt, t0 + 60, cpu_percent=97)
    [s] = await alerts.evaluate_now(now=t0 + 60)
    assert (s.state, s.since) == ("pending", t0)
    _sample(rt, t0 + 120, cpu_percent=99)
    [s] = await alerts.evaluate_now(now=t0 + 120)
    assert (s.state, s.since, s.value) == ("firing", t0 + 120, 99)
    assert [s.name for s in alerts.firing()] == ["busy"]
    _sample(rt, t0 + 150, cpu_percent=10)
    [s] = await alerts.evaluate_now(now=t0 + 150)
    assert (s.state, s.value) == ("resolved", 10)
    history = alerts.history()
    assert [(e.kind, e.value, e.severity, e.description) for e in history] == [
        ("resolved", 10, "critical", "the CPU is saturated"),
        ("firing", 99, "critical", "the CPU is saturated"),
    ]
    assert history[0].delivery is None  # no webhook configured
    # No fresh sample (the sampler stopped): no data, which resolves nothing further and says why.
    [s] = await alerts.evaluate_now(now=t0 + 3600)
    assert s.state == "resolved" and s.value is None and s.error and "no sample of cpu_percent" in s.error


async def test_a_firing_rule_whose_source_cannot_be_read_stays_firing(project_dir: Path) -> None:
    """A server restarted a few minutes later evaluates before its sampler's first sample: that says
    nothing about the CPU, so it must not announce a resolution (and a firing again a moment later)."""
    rt = _runtime(project_dir, "  busy:\n    metric: cpu_percent\n    above: 90\n")
    alerts = Ops.of(rt).alerts
    t0 = time.time()
    _sample(rt, t0, cpu_percent=99)
    [s] = await alerts.evaluate_now(now=t0)
    assert s.state == "firing"
    [s] = await alerts.evaluate_now(now=t0 + 600)  # the newest sample is 10 minutes old
    assert (s.state, s.since, s.value) == ("firing", t0, None)
    assert s.error and "no sample of cpu_percent in the last 60s" in s.error
    _sample(rt, t0 + 615, cpu_percent=20)
    [s] = await alerts.evaluate_now(now=t0 + 615)
    assert (s.state, s.value, s.error) == ("resolved", 20, None)
    assert [(e.kind, e.value) for e in alerts.history()] == [("resolved", 20), ("firing", 99)]


async def test_two_processes_announce_one_firing(project_dir: Path) -> None:
    rt = _runtime(project_dir, "  hot:\n    metric: load1\n    above: 1\n")
    _sample(rt, time.time(), load1=5)
    first, second = AlertService(rt), AlertService(rt)  # as two edgecrew processes would
    now = time.time()
    await asyncio.gather(first.evaluate_now(now=now), second.evaluate_now(now=now), first.evaluate_now(now=now))
    assert [e.kind for e in first.history()] == ["firing"]


async def test_model_call_rules_read_the_run_events(project_dir: Path) -> None:
    rt = _runtime(
        project_dir,
        """\
          slow:
            model_calls: latency_p95_s
            above: 2
            min_calls: 3
          late-first-token:
            model_calls: ttft_p95_s
            model: local
            above: 0.5
            min_calls: 3
          failing:
            model_calls: error_percent
            above: 20
            min_calls: 3
        """,
    )
    alerts = Ops.of(rt).alerts
    rt.store.create_run("r1", "t", "x", {}, "/tmp")
    by_name = {s.name: s for s in await alerts.evaluate_now()}
    assert all(s.value is None and "fewer than min_calls=3" in (s.error or "") for s in by_name.values())
    calls = [
        ModelCalled(alias="local", latency_s=1.0, ttft_s=0.1),
        ModelCalled(alias="local", latency_s=1.0, ttft_s=0.9),
        ModelCalled(alias="local", latency_s=5.0, ttft_s=1.0),
        ModelCalled(alias="remote", latency_s=1.0, ttft_s=3.0),
        ModelCalled(alias="remote", error="boom"),
    ]
    for i, call in enumerate(calls):
        rt.store.emit("r1", f"call-{i}", call)
    by_name = {s.name: s for s in await alerts.evaluate_now()}
    assert by_name["failing"].value == pytest.approx(20.0) and by_name["failing"].state == "ok"  # not above 20
    assert by_name["slow"].state == "firing" and by_name["slow"].value == pytest.approx(4.4)
    assert by_name["late-first-token"].state == "firing"  # 'remote' calls are not counted
    assert by_name["late-first-token"].value == pytest.approx(0.99)


async def test_a_promql_rule_without_prometheus_has_no_data(project_dir: Path) -> None:
    rt = _runtime(project_dir, "  down:\n    promql: up == 0\n    above: 0\n")
    [s] = await Ops.of(rt).alerts.evaluate_now()
    assert (s.state, s.value, s.scope) == ("ok", None, "")
    assert s.error == "no Prometheus URL: set EDGECREW_PROMETHEUS_URL for promql rules"
    rt.settings = rt.settings.model_copy(update={"prometheus_url": "http://127.0.0.1:9"})
    [s] = await Ops.of(rt).alerts.evaluate_now()
    assert s.state == "ok" and s.error and s.error.startswith("Prometheus is unreachable at http://127.0.0.1:9")


async def test_the_webhook_is_retried_until_it_answers(project_dir: Path) -> None:
    with webhook_receiver(fail_first=1) as hook, webhook_receiver() as shared:
        rt = _runtime(
            project_dir,
            f"  hot:\n    metric: load1\n    above: 1\n    severity: info\n    webhook: {hook.url}\n",
            alert_webhook_url=shared.url,
        )
        alerts = Ops.of(rt).alerts
        t0 = time.time()
        _sample(rt, t0, load1=3)
        await alerts.evaluate_now(now=t0)
        assert [a["status"] for a in hook.attempts] == [500, 200]  # the first try failed, the second arrived
        [payload] = hook.delivered
        assert payload == shared.delivered[0]
        assert {k: payload[k] for k in ("rule", "status", "severity", "value", "threshold", "comparison")} == {
            "rule": "hot",
            "status": "firing",
            "severity": "info",
            "value": 3.0,
            "threshold": 1.0,
            "comparison": "above",
        }
        assert payload["source"] == "metric:load1" and payload["host"] == Ops.of(rt).sampler.host
        assert payload["text"] == "[info] alert hot firing: metric:load1 is 3 (above 1)"
        [event] = alerts.history()
        assert event.delivery == {
            shared.url: "delivered (HTTP 200) on attempt 1",
            hook.url: "delivered (HTTP 200) on attempt 2",
        }
        _sample(rt, t0 + 1, load1=0.5)
        await alerts.evaluate_now(now=t0 + 1)
        assert [p["status"] for p in hook.delivered] == ["firing", "resolved"]


async def test_a_rule_removed_while_firing_is_resolved_when_a_server_starts(project_dir: Path, tmp_path: Path) -> None:
    """Its webhooks were told it fires: they are told it is over, and why; another project's alerts in
    the same data dir (whose rules this project does not have) are left as they are."""
    other = tmp_path / "other"
    write(other / "edgecrew.yaml", "alerts:\n  theirs:\n    metric: load1\n    above: 1\n")
    with webhook_receiver() as hook:
        rt = _runtime(project_dir, f"  hot:\n    metric: load1\n    above: 1\n    webhook: {hook.url}\n")
        theirs = bootstrap(rt.settings.model_copy(update={"project": other}))
        t0 = time.time()
        _sample(rt, t0, load1=3)
        await Ops.of(rt).alerts.evaluate_now(now=t0)
        await Ops.of(theirs).alerts.evaluate_now(now=t0)
        assert [p["status"] for p in hook.delivered] == ["firing"]
        write(project_dir / "edgecrew.yaml", "alerts:\n  cool:\n    metric: load1\n    below: 0\n")
        alerts = Ops.of(bootstrap(rt.settings)).alerts  # the server restarted on the edited YAML
        await alerts.start()
        await alerts.stop()
        assert [(p["rule"], p["status"]) for p in hook.delivered] == [("hot", "firing"), ("hot", "resolved")]
        reason = f"the rule 'hot' is no longer in {project_dir.resolve() / 'edgecrew.yaml'}"
        assert reason in hook.delivered[1]["reason"] and reason in hook.delivered[1]["text"]
        [resolved] = alerts.history(rule="hot", limit=1)
        assert resolved.kind == "resolved" and resolved.reason and reason in resolved.reason
        assert resolved.delivery == {hook.url: "delivered (HTTP 200) on attempt 1"}
        assert {(s.rule, s.state) for s in alerts.store.states()} >= {("hot", "resolved"), ("theirs", "firing")}
        await alerts.start()  # another start: nothing more to resolve
        await alerts.stop()
        assert len(hook.delivered) == 2 and alerts.count_history("hot") == 2
    table = runner.invoke(cli, ["alerts", "history"], env={"COLUMNS": "300"})
    assert table.exit_code == 0 and "no longer in" in table.output, table.output


async def test_two_projects_with_a_rule_of_the_same_name_keep_their_own_states(
    project_dir: Path, tmp_path: Path
) -> None:
    """Two projects share the data dir and both have a rule 'hot': one firing does not resolve, announce
    or show up in the other's, and the other removing its 'hot' resolves nothing of the first's."""
    other = tmp_path / "other"
    with webhook_receiver() as mine_hook, webhook_receiver() as their_hook:
        rt = _runtime(project_dir, f"  hot:\n    metric: load1\n    above: 1\n    webhook: {mine_hook.url}\n")
        write(
            other / "edgecrew.yaml",
            f"alerts:\n  hot:\n    metric: load1\n    above: 10\n    webhook: {their_hook.url}\n",
        )
        theirs = bootstrap(rt.settings.model_copy(update={"project": other}))
        mine, their = Ops.of(rt).alerts, Ops.of(theirs).alerts
        t0 = time.time()
        _sample(rt, t0, load1=3)  # above my 1, below their 10
        await mine.evaluate_now(now=t0)
        await their.evaluate_now(now=t0 + 1)
        await mine.evaluate_now(now=t0 + 2)
        assert [(s.name, s.state) for s in mine.states()] == [("hot", "firing")]
        assert [(s.name, s.state) for s in their.states()] == [("hot", "ok")]
        assert [p["status"] for p in mine_hook.delivered] == ["firing"] and their_hook.delivered == []
        assert [e.kind for e in mine.history()] == ["firing"] and their.history() == []
        assert their.count_history("hot") == 0 and mine.count_history("hot") == 1
        write(other / "edgecrew.yaml", "alerts:\n  cool:\n    metric: load1\n    below: 0\n")
        their = Ops.of(bootstrap(theirs.settings)).alerts  # their server restarts without 'hot'
        await their.start()
        await their.stop()
        assert [(s.name, s.state) for s in mine.states()] == [("hot", "firing")]
        assert [p["status"] for p in mine_hook.delivered] == ["firing"]


async def test_resolving_removed_rules_reads_the_store_off_the_event_loop(project_dir: Path) -> None:
    """A server starting resolves the alerts of removed rules without blocking its event loop on the store
    (each firing's last event was read in the loop's own thread)."""
    import threading

    rt = _runtime(project_dir, "  hot:\n    metric: load1\n    above: 1\n")
    t0 = time.time()
    _sample(rt, t0, load1=3)
    await Ops.of(rt).alerts.evaluate_now(now=t0)
    write(project_dir / "edgecrew.yaml", "alerts:\n  cool:\n    metric: load1\n    below: 0\n")
    alerts = Ops.of(bootstrap(rt.settings)).alerts
    loop_thread, readers = threading.get_ident(), []
    read = alerts.store.last_event

    def last_event(*args: object, **kwargs: object) -> object:
        readers.append(threading.get_ident())
        return read(*args, **kwargs)  # type: ignore[arg-type]

    alerts.store.last_event = last_event  # type: ignore[method-assign]
    [resolved] = await alerts.resolve_removed()
    assert resolved.rule == "hot" and readers and loop_thread not in readers


async def test_a_webhook_that_keeps_failing_is_recorded_as_failed(project_dir: Path) -> None:
    with webhook_receiver(fail_first=100) as broken, webhook_receiver(status_after=404) as missing:
        rt = _runtime(project_dir, f"  hot:\n    metric: load1\n    above: 1\n    webhook: {missing.url}\n")
        rt.settings = rt.settings.model_copy(update={"alert_webhook_url": broken.url, "alert_webhook_attempts": 3})
        _sample(rt, time.time(), load1=3)
        await Ops.of(rt).alerts.evaluate_now()
        assert len(broken.attempts) == 3 and len(missing.attempts) == 1  # a 404 is not retried
        [event] = Ops.of(rt).alerts.history()
        assert event.delivery == {broken.url: "failed: HTTP 500", missing.url: "failed: HTTP 404"}


def test_values_are_shown_as_people_read_them() -> None:
    assert shown(None) == "no data"
    assert shown(2.5 * GiB, "metric:memory_available_bytes") == "2.50 GiB"
    assert shown(300 * 2**20, "promql:sum(node_memory_MemAvailable_bytes)") == "300.00 MiB"
    assert shown(95.25, "metric:cpu_percent") == "95.25" and shown(12_345_678) == "12,345,678"


def test_unknown_rules_are_not_found(project_dir: Path) -> None:
    rt = _runtime(project_dir, "  hot:\n    metric: load1\n    above: 1\n")
    with pytest.raises(NotFoundError, match=r"no alert rule 'cold' \(rules: hot\)"):
        Ops.of(rt).alerts.rule("cold")


async def test_the_loop_evaluates_until_stopped(project_dir: Path) -> None:
    rt = _runtime(project_dir, "  hot:\n    metric: load1\n    above: -1\n", alert_interval_s=0.05)
    _sample(rt, time.time(), load1=1)
    alerts = AlertService(rt)
    await alerts.start()
    try:
        for _ in range(200):
            if alerts.history():
                break
            await asyncio.sleep(0.05)
    finally:
        await alerts.stop()
    assert [e.kind for e in alerts.history()] == ["firing"]
    await alerts.stop()


# -- the commands ----------------------------------------------------------------------------------


def test_the_commands_list_check_and_show_history(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        alerts:
          roomy:
            metric: memory_available_bytes
            above: 1
            description: there is memory
          never:
            metric: load1
            above: 1000000
        """,
    )
    listed = runner.invoke(cli, ["alerts", "list"])
    assert listed.exit_code == 0, listed.output
    assert "roomy" in listed.output and "never" in listed.output and "ok" in listed.output
    checked = runner.invoke(cli, ["alerts", "check", "--json"])
    assert checked.exit_code == 0, checked.output
    states = {s["name"]: s for s in json.loads(checked.output)}
    assert states["roomy"]["state"] == "firing" and states["roomy"]["value"] > 1
    assert states["never"]["state"] == "ok" and states["roomy"]["host"]
    history = runner.invoke(cli, ["alerts", "history", "--json"])
    assert [(e["rule"], e["kind"]) for e in json.loads(history.output)] == [("roomy", "firing")]
    table = runner.invoke(cli, ["alerts", "history", "--rule", "roomy"])
    assert table.exit_code == 0 and "roomy" in table.output and "firing" in table.output
    unknown = runner.invoke(cli, ["alerts", "history", "--rule", "nosuch"])
    assert unknown.exit_code == 1 and "no alert rule 'nosuch' (rules: never, roomy)" in unknown.output


def test_list_without_rules_shows_an_example() -> None:
    result = runner.invoke(cli, ["alerts", "list"])
    assert result.exit_code == 0 and "metric: memory_available_bytes" in result.output
