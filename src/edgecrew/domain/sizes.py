"""Byte sizes as people write them ("900MiB", "1.5GB", "2g", 512): one parser for specs and settings."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|[kmgt]i?b|[kmgt])?\s*$", re.IGNORECASE)
# Decimal (kB, MB, GB, TB) and binary (KiB ... TiB) units; a bare letter is binary, as Docker and
# Kubernetes limits read it ("512m", "2g").
_UNITS: dict[str | None, int] = {None: 1, "b": 1}
for _i, _letter in enumerate("kmgt", start=1):
    _UNITS |= {f"{_letter}b": 1000**_i, f"{_letter}ib": 1024**_i, _letter: 1024**_i}


def parse_size(value: str | int | None) -> int | None:
    """Bytes from ``"900MiB"``, ``"1.5GB"`` or an int; None stays None; ValueError says how to write it."""
    if value is None or isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"cannot read size {value!r}; write e.g. 900MiB, 1.5GB or 2g")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower() if match.group(2) else None])


# The whole number: thousands separated by commas ("1,500 GB"), or a decimal point or comma ("1.5 GB",
# "1,5 GB", ".5 GB"); never its tail ("1,5 GB" was read as 5 GB).
_MENTION = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d*[.,]?\d+)\s*([kmgt]i?b)\b", re.IGNORECASE)


def find_size(text: str) -> int | None:
    """Bytes of the first size written with a unit in ``text`` ("does a 2 GB job fit?" -> 2000000000)."""
    match = _MENTION.search(text)
    if match is None:
        return None
    number = match.group(1)
    number = number.replace(",", "") if re.search(r",\d{3}(?:,|$)", number) else number.replace(",", ".")
    return int(float(number) * _UNITS[match.group(2).lower()])


def human_size(size: float) -> str:
    """``15032385536`` -> ``14.0 GiB``: bytes as people read them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
