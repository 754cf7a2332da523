"""`edgecrew doctor`'s llama.cpp check: a one-token generation in a child process.

A broken native build does not raise, it kills the process (SIGSEGV in a matrix multiply, SIGILL
on an instruction this CPU lacks). So the check runs in a child (``python -m
edgecrew.models.selftest``) that reports each stage it reaches as a JSON line; the parent reads
how far it got and how it died, and :func:`diagnose` turns that into what to tell the user. The
diagnosis is a pure function of those facts, tested with fed-in crashes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from edgecrew.models.cpu import CpuFacts, amx_hazard, build_features, missing_features
from edgecrew.models.llamabuild import REBUILD

STAGES = ("imported", "loaded", "generated")
SELFTEST_PROMPT = " ".join(["Edge boxes run small local models for teams of agents, offline and durably."] * 20)


@dataclass(frozen=True)
class SelfTest:
    """What the child reported before it ended, and how it ended."""

    returncode: int
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    stderr: str = ""
    timed_out: bool = False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str
    fix: str = ""


def run_selftest(timeout_s: float = 180.0, model_path: str | None = None) -> SelfTest:
    """Run the child and collect its stage lines (never raises for a crash or a hang)."""
    command = [sys.executable, "-m", "edgecrew.models.selftest", *([model_path] if model_path else [])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return SelfTest(-1, _stages(out), "", timed_out=True)
    return SelfTest(done.returncode, _stages(done.stdout), done.stderr)


def _stages(stdout: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("stage") in STAGES:
            found[data["stage"]] = data
    return found


def diagnose(test: SelfTest, cpu: CpuFacts) -> Verdict:
    """What the self-test says about this machine, and the fix when it failed."""
    imported = test.stages.get("imported", {})
    features = build_features(str(imported.get("system_info", "")))
    shown = " ".join(sorted(features - {"LLAMAFILE", "OPENMP", "REPACK"})) or "unknown"
    version = imported.get("version", "?")
    if "generated" in test.stages and test.returncode == 0:
        seconds = test.stages["generated"].get("seconds", 0.0)
        note = "" if test.stages["loaded"].get("extra_bufts", True) else "; AMX compiled in, weight repacking off"
        return Verdict(True, f"llama-cpp-python {version}, one token in {seconds:.2f}s; CPU features {shown}{note}")
    missing = missing_features(features, cpu)
    if missing:  # refused by ensure_safe_build, or killed by SIGILL before it could refuse
        end = "refused to load it" if test.returncode >= 0 else f"died with {_signal_name(-test.returncode)}"
        return Verdict(
            False,
            f"llama-cpp-python {version} uses {', '.join(missing)}, which this CPU lacks "
            f"(a wheel built on another machine); the one-token generation {end}",
            REBUILD,
        )
    if test.timed_out:
        return Verdict(False, f"the one-token generation did not finish (stages: {_reached(test)})", REBUILD)
    if test.returncode >= 0:
        error = _last_line(test.stderr) or f"exit status {test.returncode}"
        if "No module named 'llama_cpp'" in test.stderr:
            return Verdict(False, "llama-cpp-python is not installed", "pip install 'edgecrew[local]' (or `make demo`)")
        return Verdict(False, f"the one-token generation failed: {error}", "see `edgecrew doctor` output above")
    name = _signal_name(-test.returncode)
    where = f"after '{_reached(test)}'" if test.stages else "while importing llama_cpp"
    cause = f"llama.cpp died with {name} {where}; CPU features in use: {shown}"
    if amx_hazard(features, cpu):
        return Verdict(
            False,
            f"{cause}. This is llama.cpp's AMX backend, which crashes on this CPU",
            f"{REBUILD}; it compiles AMX out (bench/README.md, 'which build')",
        )
    if name == "SIGILL":
        return Verdict(False, f"{cause}. The build uses an instruction this CPU lacks", REBUILD)
    return Verdict(False, cause, f"{REBUILD}; if it still crashes, report it with `edgecrew doctor`'s output")


def _reached(test: SelfTest) -> str:
    return next((s for s in reversed(STAGES) if s in test.stages), "start")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _emit(stage: str, **data: Any) -> None:
    print(json.dumps({"stage": stage, **data}), flush=True)


def main(argv: list[str]) -> int:
    """The child: import llama.cpp, load the model, generate one token, reporting each stage."""
    import asyncio

    import llama_cpp

    from edgecrew.domain.messages import Message, ModelRequest
    from edgecrew.models.llamabuild import ensure_safe_build
    from edgecrew.models.llamacpp import LlamaCppModel
    from edgecrew.models.resources import SMOLLM2_DISTRIBUTION, packaged_gguf

    info = llama_cpp.llama_print_system_info()
    _emit("imported", version=llama_cpp.__version__, system_info=info.decode("utf-8", "replace"))
    check = ensure_safe_build(llama_cpp)
    path = argv[0] if argv else str(packaged_gguf(SMOLLM2_DISTRIBUTION))
    model = LlamaCppModel(path, name="selftest", n_ctx=1024, prefix_cache=False)
    model.load()
    _emit("loaded", extra_bufts=check.extra_bufts)
    started = time.perf_counter()
    # A prompt of a few hundred tokens: llama.cpp takes its batched matrix-multiply path (where the
    # AMX crash is) only for prompts, not for single tokens.
    asyncio.run(model.request(ModelRequest(messages=(Message("user", SELFTEST_PROMPT),), max_tokens=1)))
    _emit("generated", seconds=round(time.perf_counter() - started, 3))
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
