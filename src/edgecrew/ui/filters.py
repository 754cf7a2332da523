"""Small Jinja filters and tests the pages share."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")
_NUMBERED = re.compile(r"\s*\d+[.)]\s")


def domid(value: str) -> str:
    """``value`` as a piece of an HTML id a CSS selector can name (a step key holds dots)."""
    return _NOT_ID.sub("-", value)


def utc(ts: float) -> str:
    """A Unix time as an ISO 8601 UTC string (a <time>'s datetime, a title)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def number(value: object) -> object:
    """A metric as people read it: a whole float as an integer (``checks_passed=2``, not ``2.0``: the
    store keeps every metric a float, counts among them); any other value as it is."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def numbered(value: object) -> bool:
    """A string that numbers itself ("1. Research"): a list of such goes in a plain list."""
    return isinstance(value, str) and _NUMBERED.match(value) is not None
