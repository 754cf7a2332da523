"""Request and response bodies of the task workspace (see ``routers/tasks``).

Numbers posted as metrics must be finite (JSON parsers here accept ``NaN``; an average over it
would be NaN forever), and every free-text field has a bound, so a bad request fails on its field.
Numbers are JSON numbers: the document says ``number`` and ``integer``, so ``true`` or ``"0.5"`` is
refused, not quietly turned into a number as pydantic would by default (``2.0`` is still an integer,
as JSON Schema has it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from edgecrew.api.shapes import Out, Page
from edgecrew.store.taskfiles import LogFile
from edgecrew.store.tasks import CodeRecord

TaskStatus = Literal["open", "in_progress", "done", "failed", "cancelled"]
Verdict = Literal["accepted", "needs_changes", "rejected"]


def _no_text_or_bool(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]  # strict float still takes an int
Version = Annotated[
    int,
    Field(ge=1, le=2**31 - 1, description="A code version number of this task."),
    BeforeValidator(_no_text_or_bool),  # strict int would refuse 2.0, which JSON Schema calls an integer
]
Name = Annotated[str, Field(min_length=1, max_length=128)]
MetricName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")]
# A file name whose last component holds a letter or digit: what is left once sanitized is not empty.
FILENAME_PATTERN = r"^(.*[/\\])?[^/\\]*[A-Za-z0-9][^/\\]*$"
# A log file's name as the task store serves it (store.taskfiles: one safe component of at most 200
# characters, no ".."), written without look-ahead so that every JSON Schema tool can use it.
LOG_FILENAME_PATTERN = r"^[A-Za-z0-9](?:\.?[A-Za-z0-9_-])*\.?$"
LOG_FILENAME_MAX = 200


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    team: str | None = Field(default=None, min_length=1, max_length=200, description="A team (GET /teams).")


def _patch_schema(schema: dict[str, Any]) -> None:
    """Document what the validator enforces: some field is sent, and only ``team`` may be null."""
    schema["minProperties"] = 1
    for name in ("title", "description", "status"):
        prop = schema["properties"][name]
        kinds = [k for k in prop.pop("anyOf", []) if k.get("type") != "null"]
        prop.pop("default", None)
        if kinds:
            prop.update(kinds[0])


class TaskPatch(BaseModel):
    model_config = ConfigDict(json_schema_extra=_patch_schema)

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    team: str | None = Field(default=None, min_length=1, max_length=200, description="null clears it.")
    status: TaskStatus | None = None

    @model_validator(mode="after")
    def _some_valid_change(self) -> TaskPatch:
        sent = self.model_dump(exclude_unset=True)
        nulls = [k for k, v in sent.items() if v is None and k != "team"]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        if not sent:
            raise ValueError("send at least one of title, description, team, status")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields sent (a ``null`` team clears the team)."""
        return self.model_dump(exclude_unset=True)


class TaskOut(Out):
    id: str
    title: str
    description: str
    team: str | None
    status: TaskStatus
    created_at: float
    updated_at: float


class TaskPage(Page[TaskOut]):
    """Tasks, newest first."""


class CodeTextIn(BaseModel):
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


class ResultIn(BaseModel):
    version: Version | None = None
    accuracy: Finite | None = None
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


class ResultOut(Out):
    id: int
    task_id: str
    version: int | None
    accuracy: float | None
    loss: float | None
    runtime_s: float | None
    metrics: dict[str, float]
    log_file: str | None = Field(description="Under GET /tasks/{task_id}/logs/{log_file}.")
    author: str | None
    created_at: float


class MessageIn(BaseModel):
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
