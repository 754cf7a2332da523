"""The ``policies:`` section of ``edgecrew.yaml`` (when jobs may start), and how a policy judges a job.

A policy covers some jobs (by tag, name glob, minimum priority; none given: every job) and says when
they may start: inside its time windows (days and ``HH:MM``-``HH:MM`` in a time zone; a window whose
end is before its start runs past midnight), under its thresholds (load per core, free memory,
memory percent, temperature) and its concurrency limit. A job may start when every policy covering
it allows it now. The one design decision: judging is a pure function of fed-in facts
(:func:`evaluate`), so every rule is tested with chosen times and loads, and the scheduler, the
``scheduler.suggest_window`` tool and the pages all ask the same function.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgecrew.domain.sizes import human_size, parse_size
from edgecrew.specs.routines import known_zone

__all__ = [
    "DAYS",
    "Covers",
    "JobFacts",
    "MachineFacts",
    "PolicyDoc",
    "Refusal",
    "Window",
    "covering",
    "evaluate",
    "policy_digest",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ALL_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 24 * 3600


def _seconds(value: str) -> int:
    """Seconds after midnight of ``HH:MM`` (or ``HH:MM:SS``); ValueError says how to write it."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts[1:]) or not parts[0].isdigit():
        raise ValueError(f"'{value}' is not a time of day; write HH:MM, e.g. '22:00' or '06:30'")
    hours, minutes, seconds = int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
    total = hours * 3600 + minutes * 60 + seconds
    if minutes > 59 or seconds > 59 or total > DAY_SECONDS:
        raise ValueError(f"'{value}' is not a time of day; hours go 00-23 (24:00 ends a day), minutes 00-59")
    return total


class Window(BaseModel):
    """When jobs may start: on ``days``, from ``start`` to ``end`` (``HH:MM`` or ``HH:MM:SS``, local time of
    the policy's zone); an end before the start runs past midnight, an equal one makes a whole day."""

    model_config = ConfigDict(extra="forbid")
    days: list[Day] = Field(default_factory=lambda: list(_ALL_DAYS), min_length=1)
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str) -> str:
        _seconds(value)
        return value

    @property
    def length(self) -> timedelta:
        """How long the window stays open once it opens (start == end: a whole day)."""
        span = (_seconds(self.end) - _seconds(self.start)) % DAY_SECONDS
        return timedelta(seconds=span or DAY_SECONDS)

    def _openings(self, local: datetime, back_days: int, ahead_days: int) -> Iterable[datetime]:
        start = _seconds(self.start)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(-back_days, ahead_days + 1):
            day = midnight + timedelta(days=offset)
            if DAYS[day.weekday()] in self.days:
                opening = day + timedelta(seconds=start)
                # Rebuild in the zone: a DST change between midnight and the start shifts the offset.
                yield opening.replace(tzinfo=None).replace(tzinfo=local.tzinfo)

    def open_interval(self, local: datetime) -> tuple[datetime, datetime] | None:
        """The opening that contains ``local`` (an aware time), as (opened, closes), or None."""
        for opened in self._openings(local, 1, 0):
            if opened <= local < opened + self.length:
                return opened, opened + self.length
        return None

    def next_opening(self, local: datetime) -> datetime:
        """The first opening at or after ``local``."""
        return min(o for o in self._openings(local, 0, 7) if o >= local)


class Covers(BaseModel):
    """Which jobs a policy covers: every condition given must hold (none given: every job)."""

    model_config = ConfigDict(extra="forbid")
    tags: list[str] = []  # the job has at least one of these tags
    names: list[str] = []  # the job's name matches one of these globs, e.g. "train-*"
    min_priority: int | None = Field(default=None, ge=0, le=100)


class PolicyDoc(BaseModel):
    """One scheduling policy."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    covers: Covers = Covers()
    timezone: str = "UTC"
    windows: list[Window] = []  # none: any time
    max_load_per_core: float | None = Field(default=None, gt=0)  # 1-minute load average / CPU count
    min_free_memory: str | int | None = None  # e.g. "2GiB": available memory must stay above it
    max_memory_percent: float | None = Field(default=None, gt=0, le=100)
    max_temperature_c: float | None = Field(default=None, gt=0)
    max_concurrent: int | None = Field(default=None, ge=1)  # running jobs this policy covers

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    @field_validator("min_free_memory")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        if value is not None and (parse_size(value) or 0) < 0:
            raise ValueError("must not be negative")
        return value

    @model_validator(mode="after")
    def _says_something(self) -> PolicyDoc:
        rules = (
            self.windows,
            self.max_load_per_core,
            self.min_free_memory,
            self.max_memory_percent,
            self.max_temperature_c,
            self.max_concurrent,
        )
        if not any(rule not in (None, []) for rule in rules):
            raise ValueError(
                "the policy sets no rule; give windows, max_load_per_core, min_free_memory, "
                "max_memory_percent, max_temperature_c or max_concurrent"
            )
        return self

    @property
    def min_free_memory_bytes(self) -> int | None:
        return parse_size(self.min_free_memory)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def covers_job(self, job: JobFacts) -> bool:
        c = self.covers
        if c.tags and not set(c.tags) & set(job.tags):
            return False
        if c.names and not any(fnmatch.fnmatchcase(job.name, glob) for glob in c.names):
            return False
        return c.min_priority is None or job.priority >= c.min_priority

    def window_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        return not self.windows or any(w.open_interval(local) is not None for w in self.windows)

    def next_opening(self, now: datetime) -> datetime | None:
        """When a window opens next (``now`` when one is open; None: no windows, always open)."""
        if not self.windows:
            return None
        local = now.astimezone(self.zone)
        if self.window_open(now):
            return now
        return min(w.next_opening(local) for w in self.windows)

    def open_throughout(self, start: datetime, end: datetime) -> bool:
        """Whether one window stays open from ``start`` to ``end`` (a job's whole expected run)."""
        if not self.windows:
            return True
        local_start, local_end = start.astimezone(self.zone), end.astimezone(self.zone)
        for window in self.windows:
            interval = window.open_interval(local_start)
            if interval is not None and local_end <= interval[1]:
                return True
        return False


@dataclass(frozen=True)
class JobFacts:
    """What a policy reads of a job."""

    name: str
    tags: tuple[str, ...] = ()
    priority: int = 50


@dataclass(frozen=True)
class MachineFacts:
    """What a policy reads of the machine now (temperature None: no sensor)."""

    load1: float
    cpu_count: int
    available_memory_bytes: int
    memory_percent: float
    temperature_c: float | None = None
    total_memory_bytes: int | None = None  # None: not known (a window ahead then judges max_memory_percent by now)


@dataclass(frozen=True)
class Refusal:
    """One policy's no: why, and when a closed window opens again (None: ask again later)."""

    policy: str
    reason: str
    retry_at: datetime | None = None
    kind: str = "rule"  # window | load | memory | memory_percent | temperature | concurrency (or the caller's own)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "policy": self.policy,
            "reason": self.reason,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }


def covering(policies: Mapping[str, PolicyDoc], job: JobFacts) -> list[str]:
    """The names of the policies that cover ``job``."""
    return sorted(name for name, doc in policies.items() if doc.covers_job(job))


def evaluate(
    policies: Mapping[str, PolicyDoc],
    job: JobFacts,
    machine: MachineFacts,
    now: datetime,
    running: Mapping[str, int] | None = None,
) -> list[Refusal]:
    """Every covering policy's reason to say no now (empty: the job may start). ``running``: how many
    running jobs each policy covers (its ``max_concurrent`` counts them)."""
    refusals: list[Refusal] = []
    for name in covering(policies, job):
        refusals += _judge(name, policies[name], machine, now, (running or {}).get(name, 0))
    return refusals


def _judge(name: str, doc: PolicyDoc, m: MachineFacts, now: datetime, running: int) -> list[Refusal]:
    out: list[Refusal] = []
    if not doc.window_open(now):
        opens = doc.next_opening(now)
        when = opens.astimezone(doc.zone).strftime("%a %H:%M:%S %Z") if opens else "?"
        out.append(Refusal(name, f"outside its time windows (next opens {when})", opens, "window"))
    per_core = m.load1 / max(m.cpu_count, 1)
    if doc.max_load_per_core is not None and per_core > doc.max_load_per_core:
        out.append(
            Refusal(name, f"load per core is {per_core:.2f}, above its limit {doc.max_load_per_core:g}", kind="load")
        )
    floor = doc.min_free_memory_bytes
    if floor is not None and m.available_memory_bytes < floor:
        out.append(
            Refusal(
                name, f"free memory is {_mib(m.available_memory_bytes)}, below its floor {_mib(floor)}", kind="memory"
            )
        )
    if doc.max_memory_percent is not None and m.memory_percent > doc.max_memory_percent:
        out.append(
            Refusal(
                name,
                f"memory use is {m.memory_percent:.0f}%, above its limit {doc.max_memory_percent:g}%",
                kind="memory_percent",
            )
        )
    hot = doc.max_temperature_c
    if hot is not None and m.temperature_c is not None and m.temperature_c > hot:
        out.append(
            Refusal(name, f"temperature is {m.temperature_c:.0f} °C, above its limit {hot:g} °C", kind="temperature")
        )
    if doc.max_concurrent is not None and running >= doc.max_concurrent:
        out.append(Refusal(name, f"{running} of its jobs run already (limit {doc.max_concurrent})", kind="concurrency"))
    return out


def never_met(policies: Mapping[str, PolicyDoc], total_memory_bytes: int) -> list[tuple[str, str]]:
    """Rules no moment on a machine with this much memory meets, as (policy, what): every job the policy
    covers would wait for ever there (a warning: the file may be meant for a bigger machine)."""
    out = []
    for name, doc in sorted(policies.items()):
        floor = doc.min_free_memory_bytes
        if floor is not None and floor >= total_memory_bytes:
            out.append(
                (
                    name,
                    f"policy '{name}': min_free_memory {human_size(floor)} is not below this machine's memory "
                    f"({human_size(total_memory_bytes)}): every job it covers waits for ever here",
                )
            )
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def policy_digest(doc: PolicyDoc | Mapping[str, Any]) -> str:
    """A stable digest of a policy's content (a new version is recorded when it changes)."""
    plain = doc.model_dump(mode="json") if isinstance(doc, PolicyDoc) else dict(doc)
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()
