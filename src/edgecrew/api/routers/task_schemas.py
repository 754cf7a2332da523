"""Request and response bodies of the task workspace (see ``routers/tasks``).

Numbers posted as metrics must be finite (JSON parsers here accept ``NaN``; an average over it
would be NaN forever), and every free-text field has a bound, so a bad request fails on its field;
a field a body does not declare is refused too (a task's "spec", a verdict's "comment", a result's
"f1" were accepted and dropped).
Numbers are JSON numbers: the document says ``number`` and ``integer``, so ``true`` or ``"0.5"`` is
refused, not quietly turned into a number as pydantic would by default (``2.0`` is still an integer,
as JSON Schema has it). A task's checks and limits are stated here with the bounds that
``edgecrew.tasks.checks`` enforces, so what the document allows is what the server takes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_serializer, field_validator, model_validator

from edgecrew.api.shapes import Out, Page
from edgecrew.store.taskfiles import LogFile
from edgecrew.store.tasks import DESCRIPTION_MAX, TITLE_MAX, CodeRecord
from edgecrew.tasks.checks import (
    JSON_INT,
    MAX_IO_CASES,
    MAX_TEST_CHARS,
    MAX_TEXT_CHARS,
    TaskLimitsJson,
    whole_counts,
)

TaskStatus = Literal["open", "in_progress", "done", "failed", "cancelled"]
Verdict = Literal["accepted", "needs_changes", "rejected"]


Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]  # strict float still takes an int
Version = Annotated[
    int,
    Field(ge=1, le=2**31 - 1, description="A code version number of this task."),
    JSON_INT,  # not true or "2"; 2.0 is an integer, as JSON Schema has it
]
Name = Annotated[str, Field(min_length=1, max_length=128)]
MetricName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")]
# A file name whose last component holds a letter or digit: what is left once sanitized is not empty.
FILENAME_PATTERN = r"^(.*[/\\])?[^/\\]*[A-Za-z0-9][^/\\]*$"
# A log file's name as the task store serves it (store.taskfiles: one safe component of at most 200
# characters, no ".."), written without look-ahead so that every JSON Schema tool can use it.
LOG_FILENAME_PATTERN = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_-])*\.?$"
LOG_FILENAME_MAX = 200
TaskId = Annotated[str, Path(min_length=1, max_length=64)]
VersionNo = Annotated[int, Path(ge=1, le=2**31 - 1)]


class IoCase(BaseModel):
    """One row of the input/expected-output table: ``input`` goes to stdin, stdout must be ``expected``."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(default="", max_length=MAX_TEXT_CHARS, description="Fed to the program on stdin.")
    expected: str = Field(
        max_length=MAX_TEXT_CHARS,
        description="Its stdout, compared without trailing whitespace (a last line of JSON metrics aside).",
    )


# At least one check: an io case or a test ({} and {io: []} are refused; so is a test with no visible
# character, which the schema leaves to the server: a string sub-schema here made a schema fuzzer's
# negative cases ask for strings longer than its generator supports).
_SOME_CHECK: dict[str, Any] = {
    "anyOf": [{"required": ["io"], "properties": {"io": {"minItems": 1}}}, {"required": ["test"]}]
}


class TaskChecksBody(BaseModel):
    """A task's acceptance checks: an input/expected-output table and/or a stdlib Python test (at least one
    check: checks that hold none are refused, not kept as none)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_SOME_CHECK)

    io: list[IoCase] = Field(default_factory=list, max_length=MAX_IO_CASES)
    test: str | None = Field(
        default=None,
        max_length=MAX_TEST_CHARS,
        description="Python source run after the program in its work dir (the version is importable as "
        "`solution`); plain asserts, unittest, or pytest-style test_ functions without fixtures.",
    )


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # "spec" (the CLI's and the tool's name) is refused, not dropped

    title: str = Field(min_length=1, max_length=TITLE_MAX, pattern=r"\S", description="Not blank.")
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    team: str | None = Field(default=None, min_length=1, max_length=200, description="A team (GET /teams).")
    checks: TaskChecksBody | None = Field(default=None, description="What a code version must pass when it runs.")
    limits: TaskLimitsJson | None = None


NULLABLE = ("team", "checks", "limits", "best_version")  # a null clears these


def _patch_schema(schema: dict[str, Any]) -> None:
    """Document what the validator enforces: some field is sent, and only some may be null."""
    schema["minProperties"] = 1
    for name in ("title", "description", "status"):
        prop = schema["properties"][name]
        kinds = [k for k in prop.pop("anyOf", []) if k.get("type") != "null"]
        prop.pop("default", None)
        if kinds:
            prop.update(kinds[0])


class TaskPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema)

    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX, pattern=r"\S", description="Not blank.")
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    team: str | None = Field(default=None, min_length=1, max_length=200, description="null clears it.")
    status: TaskStatus | None = None
    checks: TaskChecksBody | None = Field(default=None, description="Replaces the checks; null removes them.")
    limits: TaskLimitsJson | None = Field(default=None, description="Replaces the limits; null removes them.")
    best_version: Version | None = Field(default=None, description="The version to keep; null clears it.")

    @model_validator(mode="after")
    def _some_valid_change(self) -> TaskPatch:
        sent = self.model_dump(exclude_unset=True)
        nulls = [k for k, v in sent.items() if v is None and k not in NULLABLE]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        if not sent:
            raise ValueError("send at least one of title, description, team, status, checks, limits, best_version")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields sent (a ``null`` team, checks, limits or best version clears it)."""
        return {k: getattr(self, k) for k in self.model_fields_set}


class TaskOut(Out):
    id: str
    title: str
    description: str
    team: str | None
    status: TaskStatus
    created_at: float
    updated_at: float
    checks: TaskChecksBody | None = Field(description="What a version must pass when it runs; null: none.")
    limits: TaskLimitsJson | None = Field(description="Sandbox limits of its executions; null: the defaults.")
    created_by: str | None = Field(description="Who created it (an API key's name, or agent@run).")
    best_version: int | None = Field(description="The version named best when the task was finished.")
    finished_at: float | None = Field(None, description="When it ended (done, failed, cancelled); null while open.")


class TaskPage(Page[TaskOut]):
    """Tasks, newest first."""


class CodeTextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        min_length=1, max_length=255, pattern=FILENAME_PATTERN, description="Sanitized to one safe file name."
    )
    content: str = Field(min_length=1, description="The code itself (stored as UTF-8).")
    author: Name | None = Field(default=None, description="Defaults to the API key's name.")


CODE_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "additionalProperties": False,
                "properties": {
                    "file": {"type": "string", "format": "binary", "minLength": 1, "description": "Not empty."},
                    "filename": {
                        "type": "string",
                        "maxLength": 255,
                        "pattern": FILENAME_PATTERN,
                        "description": "Overrides the part's name.",
                    },
                    "author": {"type": "string", "minLength": 1, "maxLength": 128},
                },
            }
        },
        "application/json": {"schema": CodeTextIn.model_json_schema()},
    },
}


class CodeOut(BaseModel):
    task_id: str
    version: int
    filename: str
    size: int
    sha256: str
    language: str | None = Field(description="Guessed from the extension; null when unknown.")
    media_type: str
    author: str | None
    created_at: float
    download: str = Field(description="Where the raw file is.")

    @classmethod
    def of(cls, r: CodeRecord) -> CodeOut:
        return cls(**r.__dict__, download=f"/tasks/{r.task_id}/code/{r.version}/file")


_RESULT_CONTENT = {  # what makes a result worth keeping: one of these, as the schema's anyOf says
    "accuracy": {"type": "number"},
    "loss": {"type": "number"},
    "runtime_s": {"type": "number"},
    "metrics": {"type": "object", "minProperties": 1},
    "logs": {"type": "string", "minLength": 1},
}


def _result_schema(schema: dict[str, Any]) -> None:
    """Document what the validator enforces: a number, a metric or logs, not an empty result."""
    schema["anyOf"] = [{"required": [name], "properties": {name: kind}} for name, kind in _RESULT_CONTENT.items()]


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_result_schema)  # "f1": 0.3 goes in metrics

    version: Version | None = None
    # A fraction: 97 (a percentage) would be averaged with 0.97 in /stats.
    accuracy: Finite | None = Field(default=None, ge=0, le=1, description="A fraction from 0 to 1 (0.97, not 97).")
    loss: Finite | None = None
    runtime_s: Finite | None = Field(default=None, ge=0)
    metrics: dict[MetricName, Finite] = Field(
        default_factory=dict,
        max_length=64,
        description="Other numbers, by name.",
        json_schema_extra={"additionalProperties": False},  # only names matching the pattern
    )
    logs: str | None = Field(default=None, description="Raw logs; stored as a log file of the task.")
    author: Name | None = None

    @field_validator("logs")
    @classmethod
    def _utf8(cls, logs: str | None) -> str | None:
        # Stored as a UTF-8 file: a lone surrogate ("\ud800" in JSON) could not be written (a 500).
        if logs is not None:
            try:
                logs.encode("utf-8")
            except UnicodeEncodeError as exc:
                lone = f"U+{ord(logs[exc.start]):04X}"
                raise ValueError(f"character {exc.start} is {lone}, half of a pair, which UTF-8 cannot hold") from None
        return logs

    @model_validator(mode="after")
    def _says_something(self) -> ResultIn:
        if all(v is None for v in (self.accuracy, self.loss, self.runtime_s)) and not self.metrics and not self.logs:
            raise ValueError("a result holds at least one of accuracy, loss, runtime_s, metrics or logs")
        return self


# Documented as numbers (a count among them is one): a client's float field takes 2 as well as 2.0.
_NUMBERS = WithJsonSchema({"type": "object", "additionalProperties": {"type": "number"}}, mode="serialization")


class ResultOut(Out):
    id: int
    task_id: str
    version: int | None
    accuracy: float | None
    loss: float | None
    runtime_s: float | None
    metrics: Annotated[dict[str, float], _NUMBERS] = Field(
        description="Other numbers, by name; the counts an execution writes (checks_passed, checks_total) are"
        " whole numbers (2, not 2.0)."
    )
    log_file: str | None = Field(description="Under GET /tasks/{task_id}/logs/{log_file}.")
    author: str | None
    created_at: float

    @field_serializer("metrics")
    def _counts_whole(self, metrics: dict[str, float]) -> dict[str, int | float]:
        # The store keeps every metric a float: "checks_passed": 2.0 read as a measure, not a count.
        return whole_counts(metrics)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: Name = Field(description="Who speaks: an agent or a person.")
    role: str = Field(default="agent", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="e.g. generator, coder.")
    content: str = Field(min_length=1, max_length=100_000)


class MessageOut(Out):
    id: int
    task_id: str
    sender: str
    role: str
    content: str
    created_at: float


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # "comment" is refused: the field is notes

    verdict: Verdict
    version: Version | None = None
    score: Finite | None = None
    notes: str = Field(default="", max_length=20_000)
    author: Name | None = Field(default=None, description="Defaults to the API key's name.")


class FeedbackOut(Out):
    id: int
    task_id: str
    version: int | None
    author: str
    verdict: Verdict
    score: float | None
    notes: str
    created_at: float


class LogFileOut(BaseModel):
    filename: str
    size: int
    modified: float
    preview: str = Field(description="The first lines (up to 50).")
    truncated: bool = Field(description="The file goes on after the preview.")
    download: str

    @classmethod
    def of(cls, task_id: str, f: LogFile) -> LogFileOut:
        return cls(**f.__dict__, download=f"/tasks/{task_id}/logs/{f.filename}")


class TeamScoreOut(BaseModel):
    team: str
    tasks: int
    done: int
    failed: int
    versions_per_done: float | None = Field(description="Code versions an accepted (done) task took, on average.")
    seconds_per_task: float | None = Field(description="Created to done or failed, on average.")


class StatsOut(BaseModel):
    tasks: int
    tasks_by_status: dict[str, int]
    code_versions: int
    results: int
    messages: int
    feedback: int
    avg_accuracy: float | None = Field(description="Over results that report one; null when none do.")
    avg_runtime_s: float | None
    runs_by_status: dict[str, int]
    teams: list[TeamScoreOut] = Field(description="The scoreboard: per team that worked tasks.")
    executions_by_status: dict[str, int] = Field(
        description="Executions of code versions by status, every status named (one whose process is gone "
        "reads interrupted)."
    )
    executions_running: int = Field(ge=0, description="Executions running in the sandbox now.")
