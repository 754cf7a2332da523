"""Failpoints: named places where a crash test can stop the process deterministically.

``EDGECREW_FAILPOINTS="before_model_call:2"`` makes the process, the 2nd time it reaches
``before_model_call``, write ``<home>/failpoint.hit`` and block, so the test can SIGKILL it at that
exact point. With the setting empty (always, outside tests) a failpoint costs one dict lookup.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter

from edgecrew.settings import get_settings

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _armed() -> dict[str, int]:
    return _parse(get_settings().failpoints)


@functools.lru_cache(maxsize=8)
def _parse(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition(":")
        armed[name] = int(nth or 1)
    return armed


def failpoint(name: str) -> None:
    armed = _armed()
    if name not in armed:
        return
    with _lock:
        _counts[name] += 1
        hit = _counts[name] == armed[name]
    if hit:
        marker = get_settings().home / "failpoint.hit"
        marker.write_text(name)
        while True:  # wait here for the SIGKILL
            time.sleep(1)
