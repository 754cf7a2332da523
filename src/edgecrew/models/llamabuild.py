"""The llama.cpp build in use, checked against this CPU before any model is loaded.

A wheel compiled for another CPU dies with SIGILL and one with llama.cpp's AMX backend on an AMX
CPU segfaults (see :mod:`edgecrew.models.cpu`); both kill the whole process with no Python error.
So the first load asks llama.cpp which CPU features it was compiled with and compares them with the
CPU's flags: a build that needs instructions this CPU lacks is refused with a clear error, and a
build with AMX on an AMX CPU is loaded with extra buffer types (weight repacking) off, which keeps
llama.cpp off its AMX path. The decision is made once per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from edgecrew.errors import UserError
from edgecrew.models.cpu import CpuFacts, amx_hazard, build_features, missing_features

REBUILD = "rebuild llama.cpp for this CPU: `make install` (or `.venv/bin/python scripts/build_llama.py --force`)"


@dataclass(frozen=True)
class BuildCheck:
    """What the llama.cpp build uses, and what edgecrew does about this CPU."""

    version: str
    features: frozenset[str]
    missing: tuple[str, ...]  # features the build uses that this CPU lacks
    extra_bufts: bool  # False: AMX compiled in on an AMX CPU, repacking off

    @property
    def summary(self) -> str:
        shown = sorted(self.features - {"LLAMAFILE", "OPENMP", "REPACK"}) or ["(none reported)"]
        note = "" if self.extra_bufts else "; AMX compiled in: weight repacking off to avoid its crash"
        return f"CPU features {' '.join(shown)}{note}"


def inspect(llama_cpp: Any, cpu: CpuFacts) -> BuildCheck:
    """Compare the loaded llama.cpp build with ``cpu`` (pure apart from asking llama.cpp its features)."""
    info = llama_cpp.llama_print_system_info()
    features = build_features(info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info))
    return BuildCheck(
        version=str(getattr(llama_cpp, "__version__", "?")),
        features=features,
        missing=tuple(missing_features(features, cpu)),
        extra_bufts=not amx_hazard(features, cpu),
    )


_lock = threading.Lock()
_checked: BuildCheck | None = None


def ensure_safe_build(llama_cpp: Any, cpu: CpuFacts | None = None) -> BuildCheck:
    """Check the build once per process; refuse a foreign one, keep an AMX build off its AMX path."""
    global _checked
    with _lock:
        if _checked is None:
            check = inspect(llama_cpp, cpu or CpuFacts.read())
            if not check.extra_bufts:
                _without_extra_bufts(llama_cpp)
            _checked = check
        check = _checked
    if check.missing:
        raise UserError(
            f"the installed llama.cpp (llama-cpp-python {check.version}) was compiled for another CPU: it uses "
            f"{', '.join(check.missing)}, which this CPU does not have, and would die with SIGILL. {REBUILD}"
        )
    return check


def _without_extra_bufts(llama_cpp: Any) -> None:
    """Make every model this process loads use no extra buffer types (llama.cpp's AMX repacking)."""
    low = llama_cpp.llama_cpp
    default = low.llama_model_default_params

    def params() -> Any:
        p = default()
        p.use_extra_bufts = False
        return p

    low.llama_model_default_params = params
