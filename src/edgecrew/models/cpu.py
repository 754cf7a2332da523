"""Which llama.cpp build fits this CPU, and whether the build in use does.

Everything here is decided from facts the machine reports (``/proc/cpuinfo``'s flags, the features
llama.cpp says it was compiled with) and is a pure function of them, so each decision is tested by
feeding in the flag sets of CPUs we do not have.

The one design decision: on x86 CPUs with AMX, build llama.cpp for the native CPU *minus* AMX. With
``GGML_NATIVE=ON`` llama.cpp compiles its AMX backend, repacks the weights into an "AMX model
buffer" and then segfaults in ``ggml_backend_amx_mul_mat`` (an open upstream bug). Compiling AMX out
keeps every other native instruction and the CPU weight repacking (see bench/README.md for the
figures behind this choice). A build that has AMX compiled in anyway (a user's own wheel) is loaded
with llama.cpp's extra buffer types off, which avoids the AMX path at some cost in speed.
"""

from __future__ import annotations

import hashlib
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE_CMAKE_ARGS",
    "BuildPlan",
    "CpuFacts",
    "amx_hazard",
    "build_features",
    "missing_features",
    "plan_build",
]

# A lean llama.cpp: no examples, tests, server, tools or multimodal, no downloads.
BASE_CMAKE_ARGS = (
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_CURL=OFF",
)
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})

# llama.cpp's CPU feature names (llama_print_system_info) -> the flag the CPU must report for it:
# x86 names as in /proc/cpuinfo "flags", arm64 names as in its "Features" line.
_NEEDS: dict[str, tuple[str, ...]] = {
    "SSE3": ("pni", "sse3"),
    "SSSE3": ("ssse3",),
    "AVX": ("avx",),
    "AVX_VNNI": ("avx_vnni",),
    "AVX2": ("avx2",),
    "F16C": ("f16c",),
    "FMA": ("fma",),
    "BMI2": ("bmi2",),
    "AVX512": ("avx512f",),
    "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni", "avx512vnni"),
    "AVX512_BF16": ("avx512_bf16",),
    "AMX_INT8": ("amx_int8",),
    "NEON": ("asimd", "neon"),
    "ARM_FMA": ("asimd", "fma", "neon"),
    "FP16_VA": ("asimdhp", "fphp"),
    "DOTPROD": ("asimddp",),
    "MATMUL_INT8": ("i8mm",),
    "SVE": ("sve",),
    "SVE2": ("sve2",),
    "SME": ("sme",),
}


@dataclass(frozen=True)
class CpuFacts:
    """What the CPU reports: its architecture and its instruction-set flags (lower case)."""

    machine: str
    flags: frozenset[str]

    @property
    def x86(self) -> bool:
        return self.machine.lower() in {"x86_64", "amd64", "i686", "i386"}

    @property
    def has_amx(self) -> bool:
        return bool(self.flags & AMX_FLAGS)

    @classmethod
    def of(cls, machine: str, flags: Iterable[str] | str) -> CpuFacts:
        """Facts from a flag list or a space-separated line of flags."""
        names = flags.split() if isinstance(flags, str) else flags
        return cls(machine, frozenset(f.lower() for f in names))

    @classmethod
    def read(cls, cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFacts:
        """This machine's facts; no flags where /proc/cpuinfo is missing (macOS, Windows)."""
        try:
            text = cpuinfo.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        return cls.of(platform.machine(), parse_cpuinfo(text))

    def fingerprint(self) -> str:
        """A short hash of the architecture and flags: a native build is only valid for the same one."""
        data = self.machine + ":" + " ".join(sorted(self.flags))
        return hashlib.sha256(data.encode()).hexdigest()[:10]


def parse_cpuinfo(text: str) -> set[str]:
    """The flags of the first processor in /proc/cpuinfo ("flags" on x86, "Features" on arm64)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in {"flags", "features"}:
            return set(value.split())
    return set()


@dataclass(frozen=True)
class BuildPlan:
    """How to compile llama.cpp for a CPU: a name, the CMake arguments, and why."""

    name: str  # native | native-no-amx | portable | custom
    cmake_args: tuple[str, ...]
    why: str
    cpu_specific: bool  # only valid on a CPU with the same flags (the wheel cache keys on them)

    @property
    def cmake_args_text(self) -> str:
        """CMAKE_ARGS as scikit-build-core reads it (split like a shell line)."""
        return " ".join(a.replace(" ", "\\ ") for a in self.cmake_args)


def plan_build(cpu: CpuFacts, mode: str = "auto", custom_args: str = "") -> BuildPlan:
    """The llama.cpp build for ``cpu``.

    ``mode``: ``auto`` (the fastest build that runs safely here), ``native``, ``portable`` (runs on
    any x86-64 CPU with AVX2, or any arm64: for wheels copied between machines), or ``custom``
    (``custom_args`` as given, e.g. a user's CMAKE_ARGS).
    """
    if mode == "custom":
        return BuildPlan("custom", (*BASE_CMAKE_ARGS, *custom_args.split()), "CMake arguments as given", True)
    if mode == "portable":
        return BuildPlan(
            "portable",
            (*BASE_CMAKE_ARGS, "-DGGML_NATIVE=OFF"),
            "no -march=native: the default instruction sets of llama.cpp, valid on other CPUs of this kind",
            False,
        )
    if mode not in {"auto", "native"}:
        raise ValueError(f"unknown llama.cpp build mode {mode!r}; use auto, native, portable or custom")
    if cpu.x86 and cpu.has_amx:
        flags = f"{NO_AMX_FLAGS}"
        return BuildPlan(
            "native-no-amx",
            (*BASE_CMAKE_ARGS, "-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"),
            "this CPU has AMX, whose llama.cpp backend crashes; every other native instruction is kept",
            True,
        )
    return BuildPlan(
        "native", (*BASE_CMAKE_ARGS, "-DGGML_NATIVE=ON"), "tuned to this CPU (-march=native / -mcpu=native)", True
    )


_FEATURE = re.compile(r"([A-Z][A-Z0-9_]*)\s*=\s*1\b")


def build_features(system_info: str) -> frozenset[str]:
    """The CPU features a llama.cpp build uses, from ``llama_print_system_info()``'s text.

    Only the names before the first ``LLAMAFILE``/``OPENMP``/``REPACK`` (build options, not
    instruction sets) matter for the CPU, but those never appear in :data:`_NEEDS` anyway.
    """
    return frozenset(_FEATURE.findall(system_info))


def missing_features(features: Iterable[str], cpu: CpuFacts) -> list[str]:
    """Features the build uses that this CPU does not report: running them dies with SIGILL.

    A CPU that reports no flags at all (no /proc/cpuinfo) gives no verdict.
    """
    if not cpu.flags:
        return []
    return sorted(f for f in features if f in _NEEDS and not cpu.flags.intersection(_NEEDS[f]))


def amx_hazard(features: Iterable[str], cpu: CpuFacts) -> bool:
    """True when the build has llama.cpp's AMX backend and this CPU would run it (the crash)."""
    return "AMX_INT8" in set(features) and "amx_int8" in cpu.flags
