"""Build llama-cpp-python for this CPU (once) and install it into the venv; `make` runs this first.

Usage: python scripts/build_llama.py [--force]        (run with the venv's python)

Why not `pip install llama-cpp-python`: pip caches the wheel it compiles under the package's name
alone, so a wheel built with -march=native on one machine is reused on another CPU (a copied cache,
a new VM type) and dies there with SIGILL; and on CPUs with AMX the native build crashes in
llama.cpp's AMX backend. This script decides the build from the CPU's own flags
(edgecrew.models.cpu.plan_build), keeps each wheel in a cache folder named after the version, the
build and, for CPU-specific builds, a fingerprint of the CPU's flags, and reinstalls when the venv
holds a build for another key. Set EDGECREW_LLAMA_BUILD=native|portable to choose, or CMAKE_ARGS to
build exactly with your own arguments. Full compiler output goes to .venv/llama-build.log.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

VERSION = "0.3.36"  # the llama-cpp-python release edgecrew is tested with
ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> ModuleType:
    """Import a module by file: this runs before edgecrew (and its dependencies) are installed."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cpu = _load("edgecrew_cpu", ROOT / "src" / "edgecrew" / "models" / "cpu.py")
progress = _load("edgecrew_progress", ROOT / "scripts" / "progress.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build again even when a cached wheel exists")
    args = parser.parse_args()
    venv = Path(sys.prefix)
    facts = cpu.CpuFacts.read()
    custom = os.environ.get("CMAKE_ARGS", "").strip()
    mode = "custom" if custom else os.environ.get("EDGECREW_LLAMA_BUILD", "auto")
    try:
        plan = cpu.plan_build(facts, mode, custom)
    except ValueError as exc:
        print(f"error: EDGECREW_LLAMA_BUILD: {exc}", file=sys.stderr)
        return 2
    key = _key(plan, facts)
    marker = venv / "edgecrew-llama-build.json"
    print(f"    CPU: {facts.machine}, {_cpu_summary(facts)}")
    print(f"    llama.cpp build: {plan.name} ({plan.why})")
    if not args.force and _installed_key(marker) == key and _importable():
        print(f"    llama-cpp-python {VERSION} ({plan.name}) is already installed for this CPU")
        return 0
    cache = Path(os.environ.get("EDGECREW_WHEEL_CACHE", Path.home() / ".cache" / "edgecrew" / "llama-wheels")) / key
    wheels = sorted(cache.glob("llama_cpp_python-*.whl"))
    if args.force or not wheels:
        built = _build(plan, venv / "llama-build.log", cache)
        if built is None:
            return 1
        wheels = [built]
    else:
        print(f"    using the wheel built earlier for this CPU: {wheels[-1]}")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheels[-1])]
    if subprocess.run(pip, check=False).returncode != 0:
        print(f"error: could not install {wheels[-1]}", file=sys.stderr)
        return 1
    record = {"key": key, "version": VERSION, "build": plan.name, "cmake_args": list(plan.cmake_args)}
    marker.write_text(json.dumps({**record, "cpu": facts.fingerprint(), "wheel": str(wheels[-1])}, indent=2))
    print(f"    installed llama-cpp-python {VERSION} ({plan.name})")
    return 0


def _key(plan: Any, facts: Any) -> str:
    """Version, build and, for CPU-specific builds, the CPU: a wheel is reused only under the same key."""
    where = facts.fingerprint() if plan.cpu_specific else facts.machine
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(f"{plan.cmake_args_text}|{where}|{tag}".encode()).hexdigest()[:12]
    return f"{VERSION}-{plan.name}-{digest}"


def _cpu_summary(facts: Any) -> str:
    names = ["avx2", "avx512f", "avx512_vnni", "amx_int8", "asimd", "asimddp", "sve", "i8mm"]
    have = [n for n in names if n in facts.flags]
    return "flags " + (", ".join(have) if have else "(none of note)")


def _installed_key(marker: Path) -> str | None:
    try:
        return str(json.loads(marker.read_text())["key"])
    except (OSError, ValueError, KeyError):
        return None


def _importable() -> bool:
    probe = [sys.executable, "-c", "import importlib.metadata as m; print(m.version('llama-cpp-python'))"]
    done = subprocess.run(probe, capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.strip() == VERSION


def _build(plan: Any, log_path: Path, cache: Path) -> Path | None:
    env = {**os.environ, "CMAKE_ARGS": plan.cmake_args_text}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        command = [
            sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-cache-dir",
            "--no-binary", "llama-cpp-python", f"llama-cpp-python=={VERSION}", "-w", tmp,
        ]  # fmt: skip
        with (
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc,
            log_path.open("w", encoding="utf-8") as log,
        ):
            assert proc.stdout is not None
            progress.condense(proc.stdout, log)
        if proc.returncode != 0:
            print(f"error: building llama.cpp failed; last lines of {log_path}:", file=sys.stderr)
            lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            print("\n".join(lines[-40:]), file=sys.stderr)
            return None
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not built:
            print(f"error: pip built no llama-cpp-python wheel; see {log_path}", file=sys.stderr)
            return None
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
        target = cache / built[0].name
        shutil.move(built[0], target)
    return target


if __name__ == "__main__":
    sys.exit(main())
