"""Byte sizes as people write them ("900MiB", "1.5GB", 512): one parser for specs and settings."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}


def parse_size(value: str | int | None) -> int | None:
    """Bytes from ``"900MiB"``, ``"1.5GB"`` or an int; None stays None; ValueError says how to write it."""
    if value is None or isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"cannot read size {value!r}; write e.g. 900MiB or 1.5GB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower() if match.group(2) else None])


_MENTION = re.compile(r"(\d+(?:\.\d+)?)\s*(kb|kib|mb|mib|gb|gib)\b", re.IGNORECASE)


def find_size(text: str) -> int | None:
    """Bytes of the first size written with a unit in ``text`` ("does a 2 GB job fit?" -> 2000000000)."""
    match = _MENTION.search(text)
    return None if match is None else int(float(match.group(1)) * _UNITS[match.group(2).lower()])
