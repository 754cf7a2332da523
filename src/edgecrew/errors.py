"""The one exception tree of edgecrew.

::

    EdgecrewError
    ├── UserError            the user wrote a bad spec, setting or argument: say what and where
    │   ├── SpecError        an invalid agent/team/project YAML; carries every SpecIssue at once
    │   │                    (its errors, and the warnings found beside them)
    │   ├── NotFoundError    a team, run or model alias that does not exist
    │   └── ConflictError    the thing is in a state that forbids this (a finished run, a decided approval)
    │       └── IdempotencyKeyReused   an idempotency key sent again for another team or task
    ├── AccessError          the caller may not do this (the pages answer with sign-in or a 403 page)
    │   ├── SignInRequiredError   nobody is signed in
    │   └── ForbiddenError        the caller lacks the scope (or the form's CSRF token) this needs
    └── RunError             something failed while running a team
        ├── ModelError       a model backend failed
        │   ├── InvalidOutputError      the model's reply is malformed (the agent may retry)
        │   ├── ModelAuthError          the provider refused the credentials (not retried)
        │   ├── ModelRateLimitError     the provider asked us to slow down (retried with backoff)
        │   ├── ContextOverflowError    the prompt does not fit the model's context (falls back)
        │   ├── ModelTimeoutError       the model did not answer in time (retried, then falls back)
        │   └── ModelUnavailableError   the backend is down or unreachable (retried, then falls back)
        ├── ToolError        a tool failed (its message goes back to the model as an observation)
        └── NoRouteError     no edge of the team's graph fits an agent's output (engine.graph)

Exceptions carry data and never log by themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


class EdgecrewError(Exception):
    """Base of every error edgecrew raises on purpose."""


class UserError(EdgecrewError):
    """Bad input from the user: a spec, a setting, a CLI argument."""


class NotFoundError(UserError):
    """A named thing (team, run, model alias, tool) does not exist."""


class ModelNotFound(NotFoundError):
    """A model id (on ``/v1``: a team, or team/agent) names nothing."""


class ConflictError(UserError):
    """The action does not fit the current state: cancelling a finished run, deciding twice."""


class IdempotencyKeyReused(ConflictError):
    """An idempotency key that already started a run, sent again with another team or task."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Idempotency-Key was first used for run {run_id} with another team or task; use a new key")
        self.run_id = run_id


class AccessError(EdgecrewError):
    """The caller may not do this: nobody is signed in, or the caller lacks a right."""


class SignInRequiredError(AccessError):
    """No live session or credentials: sign in first."""


class ForbiddenError(AccessError):
    """The caller is known but lacks the scope (or the CSRF token) this action needs."""


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec file: where it is, what is wrong, and what to change.

    An ``error`` makes the spec invalid; a ``warning`` is something that may fail at run time (a run
    still starts): validate and run show it, and the spec loads."""

    file: str
    line: int | None
    message: str
    hint: str = ""
    severity: Severity = "error"

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class SpecError(UserError):
    """An invalid spec; ``issues`` lists every error found, not just the first, and ``warnings`` what was
    found beside them that would not stop a run by itself."""

    def __init__(self, issues: list[SpecIssue], warnings: list[SpecIssue] | tuple[SpecIssue, ...] = ()) -> None:
        self.issues = list(issues)
        self.warnings = list(warnings)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        noun = "problem" if len(self.issues) == 1 else "problems"
        super().__init__(f"{len(self.issues)} {noun} in spec:\n{lines}")


class RunError(EdgecrewError):
    """A failure while running a team."""


class ModelError(RunError):
    """A model backend failed or its output could not be used."""


class InvalidOutputError(ModelError):
    """The model answered, but its reply cannot be parsed (malformed JSON, no usable shape).

    ``spent``: what the call cost all the same (a ``ModelResponse`` with the raw text, usage and timing),
    when the adapter knows it: the run's accounting counts it (see ``models.replies.response_of``)."""

    spent: Any = None


class ModelAuthError(ModelError):
    """The provider rejected the API key or credentials."""


class ModelRateLimitError(ModelError):
    """The provider rate-limited the call; ``retry_after`` seconds when it said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ContextOverflowError(ModelError):
    """The prompt is longer than the model's context window."""


class ModelTimeoutError(ModelError):
    """The model did not answer within its time limit."""


class ModelUnavailableError(ModelError):
    """The backend is unreachable, overloaded or failing on its side (5xx)."""


TRANSIENT_MODEL_ERRORS: tuple[type[ModelError], ...] = (ModelRateLimitError, ModelTimeoutError, ModelUnavailableError)


class ToolError(RunError):
    """A tool failed; the agent loop turns this into an observation for the model."""


_PATTERN_WORDS: dict[str, str] = {}


def worded(pattern: str, words: str) -> str:
    """Register what the regular expression ``pattern`` of a field asks for, in words ("not blank, and no
    '/'"), and return it: a value that does not match is refused with the words, not with the expression
    ("String should match pattern '^[^/]*[^\\s\\x1c-\\x1f/][^/]*$'" told nobody what was wrong)."""
    _PATTERN_WORDS[pattern] = words
    return pattern


def pattern_words(error: Mapping[str, Any]) -> str | None:
    """A pattern error's message in the words its pattern was registered with (:func:`worded`), or None."""
    if error.get("type") != "string_pattern_mismatch":
        return None
    words = _PATTERN_WORDS.get(str((error.get("ctx") or {}).get("pattern", "")))
    return f"should be {words}" if words else None


def validation_message(error: Mapping[str, Any]) -> str:
    """One pydantic error's message as people read it: "unknown field" for a field the model does not
    take, a pattern's words (:func:`worded`), and a validator's own words without pydantic's "Value
    error, " in front."""
    message = pattern_words(error) or str(error.get("msg", ""))
    if error.get("type") == "extra_forbidden" and message == "Extra inputs are not permitted":
        return "unknown field"
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def validation_problem(error: Mapping[str, Any], whole: str = "") -> str:
    """``where: what`` of one pydantic error (``whole`` names the place when the error is the model's own)."""
    where = ".".join(str(p) for p in error.get("loc", ())) or whole
    return f"{where}: {validation_message(error)}" if where else validation_message(error)
