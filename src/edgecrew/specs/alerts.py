"""The ``alerts:`` section of ``edgecrew.yaml``: usage alert rules, keyed by name.

A rule watches one number: a metric of the built-in sampler (``metric``), a PromQL expression
(``promql``) or a figure of the model calls in the run store over a window (``model_calls``). It
fires when that number is ``above`` or ``below`` its threshold for ``for`` (a duration), and
resolves when it no longer is. The one design decision: every check is made here, per field, so a
mistake is reported with the file:line of the key at fault like any other spec problem; the
evaluation itself (``edgecrew.ops.alerts``) never meets a malformed rule. A PromQL expression's syntax
is checked by ``promql-parser`` (the Rust parser of GreptimeDB, which follows Prometheus's grammar),
so a typo is found by ``edgecrew validate``, not first when the rule runs.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from edgecrew.domain.sizes import parse_size

# The sampler's host metrics (edgecrew.ops.sampler): the first eleven are the query contract other
# capabilities code against; the rest are recorded too.
SAMPLER_METRICS: tuple[str, ...] = (
    "cpu_percent",
    "load1",
    "load5",
    "load15",
    "memory_available_bytes",
    "memory_used_percent",
    "swap_used_percent",
    "disk_free_bytes",
    "gpu_memory_used_bytes",
    "gpu_utilization_percent",
    "gpu_temperature_c",
    "memory_total_bytes",
    "memory_used_bytes",
    "swap_used_bytes",
    "disk_used_percent",
    "root_disk_free_bytes",
    "root_disk_used_percent",
    "gpu_memory_total_bytes",
)
# Figures over the model calls of a window (ModelCalled events): seconds, seconds, percent of calls.
MODEL_CALL_FIGURES: tuple[str, ...] = ("latency_p95_s", "ttft_p95_s", "error_percent")
SEVERITIES = ("info", "warning", "critical")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str | float, *, allow_zero: bool = True) -> float:
    """Seconds in ``"90s"``, ``"2m"``, ``"1h30m"`` or a plain number of seconds; ValueError says how to write it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"cannot read duration {value!r}; write e.g. 0s, 30s, 2m or 1h30m") from None
            seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    else:
        raise ValueError(f"cannot read duration {value!r}; write e.g. 0s, 30s, 2m or 1h30m")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"duration {value!r} must be {'zero or more' if allow_zero else 'more than zero'}")
    return seconds


@functools.cache
def _register_prometheus_2_functions() -> None:
    """Teach the parser Prometheus 2's ``holt_winters`` (Prometheus 3 renamed it, and the parser
    knows only the new name; Debian 12 ships Prometheus 2.42). Registration is process-wide, once."""
    import promql_parser  # a compiled extension: imported when a rule has PromQL, not with edgecrew

    promql_parser.register_extra_functions(
        [
            promql_parser.Function(
                "holt_winters",
                [promql_parser.ValueType.Matrix, promql_parser.ValueType.Scalar, promql_parser.ValueType.Scalar],
                promql_parser.ValueType.Vector,
            )
        ]
    )


# The parser recurses once per level of the expression and overflows the stack (a segfault that ends
# the process, not an error) at a few thousand levels: 10000 on the main thread, 1400 chained binary
# operators on a 2 MiB thread stack. A level takes at least one character outside the quoted strings,
# so a longer expression is refused before it is parsed; 2000 such characters parsed on a 2 MiB
# thread stack in every shape tried (nested parentheses, calls, unary signs, binary chains).
PROMQL_MAX_CHARS = 2000
_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', re.DOTALL)


def check_promql(expr: str) -> None:
    """Raise ValueError naming the syntax error in a PromQL expression, as the parser words it.
    Only the expression itself: whether its metrics exist is Prometheus's to say when the rule runs."""
    import promql_parser

    outside = len(_PROMQL_STRING.sub("", expr))
    if outside > PROMQL_MAX_CHARS:
        raise ValueError(
            f"PromQL of {outside} characters outside its quoted strings is longer than the {PROMQL_MAX_CHARS} "
            "edgecrew checks; move parts of it into Prometheus recording rules"
        )
    _register_prometheus_2_functions()
    try:
        promql_parser.parse(expr)
    except ValueError as error:
        raise ValueError(f"invalid PromQL: {error}") from None


def _in_unit(watched: str, threshold: float, size: object) -> None:
    """Refuse a threshold in another unit than the figure's (a size for a percent, a load or seconds),
    or a percent out of 0 to 100: the rule would fire at once, or never, and say nothing of why.
    (A threshold a figure passes always or never on purpose, as to try a webhook, stays valid.)"""
    percent = watched.endswith("_percent")
    if size is not None and not watched.endswith("_bytes"):
        unit = "a percent (0 to 100)" if percent else "seconds" if watched.endswith("_s") else "a plain number"
        raise ValueError(f"{size!r} is a size, but {watched} is {unit}; write a plain number")
    if percent and not 0 <= threshold <= 100:
        raise ValueError(f"{threshold:g} is no percent, and {watched} is one (0 to 100); write a number from 0 to 100")


class AlertDoc(BaseModel):
    """One alert rule: what to watch (exactly one of ``metric``, ``promql``, ``model_calls``), the
    threshold (exactly one of ``above``, ``below``), how long it must hold, and who hears of it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    metric: str | None = Field(default=None, description="A sampler metric, e.g. memory_available_bytes.")
    promql: str | None = Field(default=None, min_length=1, description="A PromQL expression (needs a Prometheus URL).")
    model_calls: str | None = Field(default=None, description="latency_p95_s, ttft_p95_s or error_percent.")
    model: str | None = Field(default=None, min_length=1, description="model_calls: only calls of this model alias.")
    window: float = Field(default=900.0, description="model_calls: the window looked at, e.g. 15m.")
    min_calls: int = Field(default=5, ge=1, description="model_calls: fewer calls in the window is no data.")
    # A finite number: `above: .nan` never fired and said nothing; `below: .inf` always fired
    above: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description='Fire when the value is above this (a number, or a size like "2GiB").',
    )
    below: float | None = Field(default=None, allow_inf_nan=False, description="Fire when the value is below this.")
    for_s: float = Field(default=0.0, alias="for", description="How long the condition must hold, e.g. 2m.")
    severity: Literal["info", "warning", "critical"] = "warning"
    description: str = ""
    webhook: str | None = Field(default=None, description="Also POST this rule's firings here.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in SAMPLER_METRICS:
            raise ValueError(f"unknown sampler metric {value!r}; known: {', '.join(SAMPLER_METRICS)}")
        return value

    @field_validator("promql")
    @classmethod
    def _promql_syntax(cls, value: str | None) -> str | None:
        if value is not None:
            check_promql(value)
        return value

    @field_validator("model_calls")
    @classmethod
    def _known_figure(cls, value: str | None) -> str | None:
        if value is not None and value not in MODEL_CALL_FIGURES:
            raise ValueError(f"unknown model_calls figure {value!r}; use one of {', '.join(MODEL_CALL_FIGURES)}")
        return value

    @field_validator("for_s", mode="before")
    @classmethod
    def _for(cls, value: object) -> float:
        return parse_duration(value)  # type: ignore[arg-type]  # parse_duration names any other type

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> float:
        return parse_duration(value, allow_zero=False)  # type: ignore[arg-type]

    @field_validator("above", "below", mode="before")
    @classmethod
    def _threshold(cls, value: object, info: ValidationInfo) -> object:
        sized = False
        if isinstance(value, str):
            try:
                number: object = float(value)
            except ValueError:
                try:
                    number, sized = float(parse_size(value) or 0), True
                except ValueError:
                    raise ValueError(
                        f"cannot read threshold {value!r}; write a number, or a size like 2GiB or 500MB"
                    ) from None
        else:
            number = value  # a number, or pydantic's own error for anything else
        watched = info.data.get("metric") or info.data.get("model_calls")  # validated before the thresholds
        if watched and isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number):
            _in_unit(str(watched), float(number), value if sized else None)
        return number

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"webhook {value!r} is not an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_source_one_threshold(self) -> AlertDoc:
        given = [k for k in ("metric", "promql", "model_calls") if getattr(self, k) is not None]
        if len(given) != 1:
            what = " and ".join(given) if given else "none"
            raise ValueError(
                f"a rule watches exactly one of metric, promql or model_calls (given: {what}); "
                "split it into one rule per thing watched"
            )
        if (self.above is None) == (self.below is None):
            raise ValueError("a rule needs exactly one of 'above' or 'below' (its threshold)")
        if self.model_calls is None and (self.model is not None or "window" in self.model_fields_set):
            raise ValueError("'model' and 'window' belong to model_calls rules only")
        return self

    # -- what the evaluation reads -----------------------------------------------------------------
    @property
    def comparison(self) -> Literal["above", "below"]:
        return "above" if self.above is not None else "below"

    @property
    def threshold(self) -> float:
        value = self.above if self.above is not None else self.below
        return 0.0 if value is None else value

    @property
    def kind(self) -> Literal["metric", "promql", "model_calls"]:
        return "metric" if self.metric else "promql" if self.promql else "model_calls"

    @property
    def source(self) -> str:
        """What the rule watches, in one line (``metric:memory_available_bytes``, ``promql:up == 0``)."""
        if self.metric:
            return f"metric:{self.metric}"
        if self.promql:
            return f"promql:{self.promql}"
        scope = f" of {self.model}" if self.model else ""
        return f"model_calls:{self.model_calls}{scope} over {self.window:g}s"

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.comparison == "above" else value < self.threshold
