"""The ``routines:`` section of ``edgecrew.yaml``: a team and a task run on a cron schedule.

Each entry is checked here (cron expression, time zone) so a mistake is reported with its file:line
like any other spec problem; whether the team exists is checked when the routines are synced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

ROUTINE_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def known_zone(value: str) -> str:
    """An IANA time zone name, or a ValueError that says how to write one (routines and policies)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{value}'; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None
    return value


_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of the month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("weekday", "0-6 (0 is Sunday) or sun-sat"),
)


def _cron_problem(value: str, fields: list[str]) -> str:
    """Why ``value`` is not a cron expression: the field that is wrong, what it may be, when one field is
    (each is tried alone among stars); else how to write one."""
    if len(fields) in (5, 6):
        six = len(fields) == 6
        for i, (name, allowed) in enumerate(((("second", "0-59"),) if six else ()) + _FIELDS):
            alone = " ".join(field if j == i else "*" for j, field in enumerate(fields))
            if not croniter.is_valid(alone, second_at_beginning=six):
                return (
                    f"'{value}': its {name} field '{fields[i]}' is not valid; write {allowed}, a range (1-5), "
                    "a list (1,3) or a step (*/15)"
                )
    return (
        f"'{value}' is not a cron expression; write five fields (minute hour day month weekday), "
        "e.g. '0 8 * * 1-5' for 08:00 on weekdays"
    )


class RoutineDoc(BaseModel):
    """One routine: ``cron`` has five fields (minute hour day month weekday), or six with seconds first."""

    model_config = ConfigDict(extra="forbid")
    team: str = Field(min_length=1)
    task: str = Field(min_length=1)
    cron: str
    timezone: str = "UTC"
    enabled: bool = True
    # A firing missed while no edgecrew process was up: run it once at start ("once") or not ("skip").
    catch_up: Literal["once", "skip"] = "once"
    # The project the runs work in (its files at project/, its memory); see `edgecrew projects create`.
    project: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(value, second_at_beginning=len(fields) == 6):
            raise ValueError(_cron_problem(value, fields))
        seconds = value if len(fields) == 6 else f"0 {value}"
        try:  # a date that never comes (31 February) is valid syntax: the scheduler would fail on it
            croniter(seconds, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"'{value}' never fires: no date matches its day and month fields") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @property
    def seconds_cron(self) -> str:
        """The expression with a seconds field first (how DBOS reads cron)."""
        return self.cron if len(self.cron.split()) == 6 else f"0 {self.cron}"
