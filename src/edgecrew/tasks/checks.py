"""A task's acceptance checks and sandbox limits: what they may hold, and how output is judged.

The store keeps both as plain JSON on the task row; this module is the one place that says what
that JSON may be, so every writer (the agents' tools, the API, the CLI) validates the same way and
reports every problem at once (the limits' shape is also one pydantic model, ``TaskLimitsJson``, that
the API's bodies and the tools' arguments share). Checks are an input/expected-output table (``io``: each input is
fed to the program on stdin, its stdout compared after trailing whitespace is stripped, a last
line of metrics aside) and/or a
Python ``test`` (stdlib only: plain asserts, unittest, or pytest-style ``test*`` functions and
``Test*`` classes without fixtures, each run and reported) run after the program in the same work
dir, where the version's file is under its own name and as ``solution.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from edgecrew.errors import UserError
from edgecrew.tools.sandbox import SandboxLimits

MiB = 1024 * 1024
MAX_IO_CASES = 100
MAX_TEXT_CHARS = 100_000  # one input or expected output
MAX_TEST_CHARS = 200_000
# Upper bounds of what a task may ask for: a task is data an agent may write.
LIMIT_BOUNDS: dict[str, tuple[type, float]] = {
    "cpu_s": (int, 3600),
    "wall_s": (float, 3600),
    "memory_mb": (int, 64 * 1024),
    "processes": (int, 1024),
}
# Lower bounds where less cannot work: the interpreter alone maps ~16 MiB before the program's first
# line (less ended an execution with the dynamic loader's "failed to map segment", not a memory error).
LIMIT_LEAST = {"memory_mb": 32}
# Metric names that have a column of their own on a task result, and the values those columns take
# (the API's: an accuracy is a fraction, a runtime is not negative).
RESULT_COLUMNS = {"accuracy": "accuracy", "loss": "loss", "runtime": "runtime_s", "runtime_s": "runtime_s"}
COLUMN_RANGES = {"accuracy": (0.0, 1.0), "loss": (-math.inf, math.inf), "runtime_s": (0.0, math.inf)}
# Metrics that count (an execution's result holds them): whole numbers, though the store keeps floats.
COUNT_METRICS = frozenset({"checks_passed", "checks_total"})


def whole_counts(metrics: Mapping[str, float]) -> dict[str, int | float]:
    """A result's metrics as the API and the agents' tools give them: a count whole (``"checks_passed": 2``,
    not ``2.0``, which reads as a measure), every other metric as stored."""
    return {k: int(v) if k in COUNT_METRICS and float(v).is_integer() else v for k, v in metrics.items()}


@dataclass(frozen=True)
class IoCase:
    """One row of the input/expected-output table."""

    input: str
    expected: str


@dataclass(frozen=True)
class TaskChecks:
    """What a version must pass: the io table and an optional Python test."""

    io: tuple[IoCase, ...] = ()
    test: str | None = None

    @property
    def total(self) -> int:
        return len(self.io) + (1 if self.test else 0)

    def to_json(self) -> dict[str, Any] | None:
        """The JSON kept on the task (None when there are no checks)."""
        if not self.total:
            return None
        data: dict[str, Any] = {"io": [{"input": c.input, "expected": c.expected} for c in self.io]}
        if self.test:
            data["test"] = self.test
        return data


def _no_text_or_bool(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# An integer as JSON has it: ``true`` and ``"5"`` are refused (pydantic would take them), ``2.0`` is
# taken, as JSON Schema calls it an integer (a strict int would refuse it). It goes after the bounds in
# ``Annotated[int, Field(...), JSON_INT]``, or the schema loses them.
JSON_INT = BeforeValidator(_no_text_or_bool)


def _most(key: str) -> float:
    return LIMIT_BOUNDS[key][1]


class TaskLimitsJson(BaseModel):
    """A task's sandbox limits as the API and the agents' tools take them, each optional (the defaults
    otherwise) but one at least (limits that hold none are refused, as empty checks are): numbers within
    the bounds; true, text, infinity and NaN are refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    cpu_s: Annotated[int, Field(gt=0, le=_most("cpu_s")), JSON_INT] | None = Field(
        None, description="CPU seconds per process."
    )
    wall_s: Annotated[float, Field(gt=0, le=_most("wall_s"), allow_inf_nan=False, strict=True)] | None = Field(
        None, description="Wall-clock seconds per process."
    )
    memory_mb: Annotated[int, Field(ge=LIMIT_LEAST["memory_mb"], le=_most("memory_mb")), JSON_INT] | None = Field(
        None, description="Address space per process, in MiB (a Python program needs 32 to start)."
    )
    processes: Annotated[int, Field(gt=0, le=_most("processes")), JSON_INT] | None = Field(
        None, description="Processes at once."
    )

    def parsed(self) -> TaskLimits:
        """The limits as the task keeps them, checked as every writer checks them (a UserError; limits
        that hold no limit are refused as empty checks are)."""
        return parse_limits(self.model_dump(exclude_none=True), written=True)


@dataclass(frozen=True)
class TaskLimits:
    """The sandbox limits a task names; the others stay at the process's defaults."""

    cpu_s: int | None = None
    wall_s: float | None = None
    memory_mb: int | None = None
    processes: int | None = None

    def apply(self, base: SandboxLimits) -> SandboxLimits:
        return replace(
            base,
            cpu_s=self.cpu_s if self.cpu_s is not None else base.cpu_s,
            wall_s=self.wall_s if self.wall_s is not None else base.wall_s,
            memory_bytes=self.memory_mb * MiB if self.memory_mb is not None else base.memory_bytes,
            processes=self.processes if self.processes is not None else base.processes,
        )

    def to_json(self) -> dict[str, Any] | None:
        data = {k: v for k, v in vars(self).items() if v is not None}
        return data or None


EMPTY_CHECKS = "checks is empty: give at least one io case {input, expected} or a test, or leave checks out"


def parse_checks(data: Any, *, written: bool = False) -> TaskChecks:
    """Checks from JSON (None means none); a UserError lists every problem. ``written``: someone gives
    them now (the API, the CLI, the form, an agent's tool), so checks that hold no check (``{}``, an empty
    io table and no test, a blank test) are refused as a blank title is, not kept as none; checks read
    back from the store are taken as they are."""
    if data is None:
        return TaskChecks()
    if not isinstance(data, Mapping):
        raise UserError("checks: expected an object like {io: [{input, expected}], test: '<python source>'}")
    problems = [f"checks: unknown field {k!r} (use io, test)" for k in data if k not in ("io", "test")]
    io_data = data.get("io") or []
    cases: list[IoCase] = []
    if not isinstance(io_data, list):
        problems.append("checks.io: expected a list of {input, expected} objects")
        io_data = []
    if len(io_data) > MAX_IO_CASES:
        problems.append(f"checks.io: {len(io_data)} cases; at most {MAX_IO_CASES}")
    for i, case in enumerate(io_data[:MAX_IO_CASES], 1):
        where = f"checks.io[{i}]"
        if not isinstance(case, Mapping):
            problems.append(f"{where}: expected an object {{input, expected}}")
            continue
        extra = sorted(set(case) - {"input", "expected"})
        if extra:
            problems.append(f"{where}: unknown field(s) {', '.join(extra)} (use input, expected)")
        values = [case.get("input", ""), case.get("expected")]
        if "expected" not in case:
            problems.append(f"{where}: 'expected' is missing")
        for name, value in zip(("input", "expected"), values, strict=True):
            if value is not None and not isinstance(value, str):
                problems.append(f"{where}.{name}: expected text, got {type(value).__name__}")
            elif isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
                problems.append(f"{where}.{name}: {len(value)} characters; at most {MAX_TEXT_CHARS}")
        if isinstance(values[0], str) and isinstance(values[1], str):
            cases.append(IoCase(values[0], values[1]))
    test = data.get("test")
    if test is not None and not isinstance(test, str):
        problems.append(f"checks.test: expected Python source text, got {type(test).__name__}")
        test = None
    elif isinstance(test, str) and len(test) > MAX_TEST_CHARS:
        problems.append(f"checks.test: {len(test)} characters; at most {MAX_TEST_CHARS}")
    elif isinstance(test, str) and test.strip() and _checks_nothing(test):
        problems.append(
            "checks.test: it checks nothing (no assert, no test function or Test class, no unittest.main or "
            "sys.exit), so every version would pass it; assert what the program must do"
        )
    if problems:
        raise UserError("; ".join(problems))
    checks = TaskChecks(tuple(cases), test if test and test.strip() else None)
    if written and not checks.total:
        raise UserError(EMPTY_CHECKS)
    return checks


def _checks_nothing(source: str) -> bool:
    """Whether a test's source can never fail: it parses, and has no assert, raise, test function, test
    class or exit (a source that does not parse fails when it runs, with the parser's message)."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert | ast.Raise):
            return False
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            return False
        if isinstance(node, ast.ClassDef) and (node.name.startswith("Test") or node.bases):
            return False
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("exit", "main", "_exit", "fail"):
                return False
    return True


EMPTY_LIMITS = f"limits is empty: give at least one of {', '.join(LIMIT_BOUNDS)}, or leave limits out for the defaults"


def parse_limits(data: Any, *, written: bool = False) -> TaskLimits:
    """Limits from JSON (None means the defaults); a UserError lists every problem. ``written``: someone
    gives them now, so limits that hold no limit (``{}``, only nulls) are refused as empty checks are
    (:func:`parse_checks`), not taken as the defaults; limits read back from the store are taken as they are."""
    if data is None:
        return TaskLimits()
    if not isinstance(data, Mapping):
        raise UserError("limits: expected an object like {cpu_s: 10, wall_s: 20, memory_mb: 512, processes: 64}")
    problems, values = [], {}
    for key, value in data.items():
        if key not in LIMIT_BOUNDS:
            problems.append(f"limits: unknown field {key!r} (use {', '.join(LIMIT_BOUNDS)})")
            continue
        kind, most = LIMIT_BOUNDS[key]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            problems.append(f"limits.{key}: expected {'a whole number' if kind is int else 'a number'}, got {value!r}")
        elif not 0 < value <= most:
            problems.append(f"limits.{key}: {value!r} is out of range; use more than 0 and at most {most:g}")
        elif value < LIMIT_LEAST.get(key, 0):
            problems.append(
                f"limits.{key}: {value!r} is too small for a Python program to start; use at least {LIMIT_LEAST[key]}"
            )
        else:
            values[key] = kind(value)
    if problems:
        raise UserError("; ".join(problems))
    if written and not values:
        raise UserError(EMPTY_LIMITS)
    return TaskLimits(**values)


def normalize_output(text: str) -> str:
    """Output as compared: trailing whitespace dropped from every line and from the end."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def output_matches(stdout: str, expected: str) -> bool:
    """Whether the program printed ``expected``; a last line of metrics (a JSON object) that the
    expected output does not have is not part of the answer."""
    got, want = normalize_output(stdout), normalize_output(expected)
    if got == want:
        return True
    head, _, last = got.rpartition("\n")
    return _json_object(last) is not None and head.rstrip() == want


def read_metrics(stdout: str) -> dict[str, float]:
    """The numbers of the program's last stdout line when it is a JSON object (others are ignored)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    data = _json_object(lines[-1]) if lines else None
    if data is None:
        return {}
    numbers = {str(k): _finite(v) for k, v in data.items()}
    return {k: v for k, v in numbers.items() if v is not None}


def result_columns(metrics: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """A program's metrics as its result keeps them: the numbers for a column of their own, and the
    others. A number its column does not take (an accuracy of 97, a percentage) stays among the others
    under its own name, so /stats does not average it with fractions."""
    columns: dict[str, float] = {}
    others: dict[str, float] = {}
    for name, value in metrics.items():
        column = RESULT_COLUMNS.get(name)
        if column is not None and COLUMN_RANGES[column][0] <= value <= COLUMN_RANGES[column][1]:
            columns[column] = value
        else:
            others[name] = value
    return columns, others


def _finite(value: object) -> float | None:
    """A JSON number as a float, or None: not a number, or one no float holds (NaN, 1e999, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float: JSON has no bound on integers
        return None
    return number if math.isfinite(number) else None


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def clip(text: str, limit: int = 80) -> str:
    """``text`` as a quoted, one-line, bounded string for a failure reason."""
    shown = repr(text[:limit])
    return shown + ("…" if len(text) > limit else "")
