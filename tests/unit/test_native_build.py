"""The llama.cpp build decision and the crash diagnosis, fed with the facts of CPUs we do not have."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edgecrew.errors import UserError
from edgecrew.models import llamabuild
from edgecrew.models.cpu import CpuFacts, amx_hazard, build_features, missing_features, parse_cpuinfo, plan_build
from edgecrew.models.selftest import SelfTest, _stages, diagnose

ROOT = Path(__file__).resolve().parents[2]

# /proc/cpuinfo flags of real machines (trimmed to what matters).
SAPPHIRE_RAPIDS = CpuFacts.of(
    "x86_64",
    "fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c bmi2 avx2 avx512f avx512dq avx512bw avx512vl "
    "avx512vbmi avx512_vnni avx512_bf16 avx_vnni amx_bf16 avx512_fp16 amx_tile amx_int8",
)
AVX2_LAPTOP = CpuFacts.of("x86_64", "fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c bmi2 avx2")
OLD_X86 = CpuFacts.of("x86_64", "fpu sse sse2 pni ssse3 sse4_1 sse4_2")
JETSON_ORIN = CpuFacts.of("aarch64", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp")
PI_4 = CpuFacts.of("aarch64", "fp asimd evtstrm crc32 cpuid")

# llama_print_system_info() of a native build on a Sapphire Rapids CPU, and of the one without AMX.
AMX_BUILD_INFO = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | "
    "OPENMP = 1 | REPACK = 1 | "
)
NO_AMX_INFO = AMX_BUILD_INFO.replace("AMX_INT8 = 1 | ", "")
NEON_SVE_INFO = "CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | SVE = 1 | OPENMP = 1 | REPACK = 1 |"


def test_cpuinfo_flags_are_read_on_x86_and_arm() -> None:
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 amx_int8\n\nprocessor\t: 1\nflags\t: fpu\n"
    arm = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n"
    assert parse_cpuinfo(x86) == {"fpu", "avx2", "amx_int8"}
    assert parse_cpuinfo(arm) == {"fp", "asimd", "asimddp"}
    assert parse_cpuinfo("") == set()


@pytest.mark.parametrize(
    ("cpu", "name"),
    [(SAPPHIRE_RAPIDS, "native-no-amx"), (AVX2_LAPTOP, "native"), (JETSON_ORIN, "native"), (PI_4, "native")],
)
def test_the_build_follows_the_cpu(cpu: CpuFacts, name: str) -> None:
    plan = plan_build(cpu)
    assert plan.name == name
    assert "-DGGML_NATIVE=ON" in plan.cmake_args and plan.cpu_specific
    no_amx = [a for a in plan.cmake_args if "-mno-amx-int8" in a]
    assert bool(no_amx) == (name == "native-no-amx")


def test_amx_is_compiled_out_for_c_and_cxx_in_one_shell_word_each() -> None:
    plan = plan_build(SAPPHIRE_RAPIDS)
    flags = [a for a in plan.cmake_args if a.startswith(("-DCMAKE_C_FLAGS=", "-DCMAKE_CXX_FLAGS="))]
    assert len(flags) == 2 and all("-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in f for f in flags)
    import shlex

    assert [w for w in shlex.split(plan.cmake_args_text) if w.startswith("-DCMAKE_C")] == flags


def test_portable_and_custom_builds() -> None:
    portable = plan_build(SAPPHIRE_RAPIDS, "portable")
    assert "-DGGML_NATIVE=OFF" in portable.cmake_args and not portable.cpu_specific
    custom = plan_build(AVX2_LAPTOP, "custom", "-DGGML_NATIVE=OFF -DGGML_AVX2=ON")
    assert custom.cmake_args[-2:] == ("-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON")
    with pytest.raises(ValueError, match=r"unknown llama\.cpp build mode"):
        plan_build(AVX2_LAPTOP, "fastest")


def test_build_features_and_what_a_cpu_lacks() -> None:
    features = build_features(AMX_BUILD_INFO)
    assert {"AVX512", "AMX_INT8", "AVX2"} <= features
    assert missing_features(features, SAPPHIRE_RAPIDS) == []
    assert missing_features(features, AVX2_LAPTOP) == [
        "AMX_INT8",
        "AVX512",
        "AVX512_BF16",
        "AVX512_VBMI",
        "AVX512_VNNI",
        "AVX_VNNI",
    ]
    assert "AVX2" in missing_features(build_features(NO_AMX_INFO), OLD_X86)
    assert missing_features(build_features(NEON_SVE_INFO), PI_4) == ["DOTPROD", "FP16_VA", "SVE"]
    assert missing_features(build_features(NEON_SVE_INFO), CpuFacts.of("aarch64", [])) == []  # no facts: no verdict


def test_amx_hazard_needs_both_the_build_and_the_cpu() -> None:
    assert amx_hazard(build_features(AMX_BUILD_INFO), SAPPHIRE_RAPIDS)
    assert not amx_hazard(build_features(NO_AMX_INFO), SAPPHIRE_RAPIDS)
    assert not amx_hazard(build_features(AMX_BUILD_INFO), AVX2_LAPTOP)  # missing_features catches that one


def _fake_llama(info: str) -> Any:
    params = SimpleNamespace(use_extra_bufts=True)
    low = SimpleNamespace(llama_model_default_params=lambda: SimpleNamespace(**vars(params)))
    return SimpleNamespace(__version__="0.3.36", llama_print_system_info=lambda: info.encode(), llama_cpp=low)


def test_an_amx_build_on_an_amx_cpu_loads_without_extra_buffer_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamabuild, "_checked", None)
    fake = _fake_llama(AMX_BUILD_INFO)
    check = llamabuild.ensure_safe_build(fake, SAPPHIRE_RAPIDS)
    assert not check.extra_bufts and "repacking off" in check.summary
    assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is False


def test_a_build_without_amx_keeps_extra_buffer_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamabuild, "_checked", None)
    fake = _fake_llama(NO_AMX_INFO)
    assert llamabuild.ensure_safe_build(fake, SAPPHIRE_RAPIDS).extra_bufts
    assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_a_build_for_another_cpu_is_refused_before_it_can_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamabuild, "_checked", None)
    with pytest.raises(UserError, match=r"compiled for another CPU: it uses AMX_INT8, AVX512.*SIGILL.*make install"):
        llamabuild.ensure_safe_build(_fake_llama(AMX_BUILD_INFO), AVX2_LAPTOP)


def _test(code: int, *stages: str, info: str = AMX_BUILD_INFO, stderr: str = "") -> SelfTest:
    data = {"imported": {"version": "0.3.36", "system_info": info}, "loaded": {"extra_bufts": True}}
    data["generated"] = {"seconds": 0.05}
    return SelfTest(code, {s: data[s] for s in stages}, stderr)


def test_diagnose_an_amx_segfault() -> None:
    verdict = diagnose(_test(-11, "imported", "loaded"), SAPPHIRE_RAPIDS)
    assert not verdict.ok
    assert "SIGSEGV after 'loaded'" in verdict.detail and "AMX_INT8" in verdict.detail and "AMX" in verdict.fix
    assert "make install" in verdict.fix


def test_diagnose_a_wheel_from_another_cpu() -> None:
    killed = diagnose(_test(-4, "imported"), AVX2_LAPTOP)
    assert not killed.ok and "SIGILL" in killed.detail and "AVX512" in killed.detail and "make install" in killed.fix
    refused = diagnose(_test(1, "imported", stderr="UserError: ... compiled for another CPU"), AVX2_LAPTOP)
    assert not refused.ok and "refused to load it" in refused.detail


def test_diagnose_a_crash_while_importing_and_a_success() -> None:
    early = diagnose(SelfTest(-4), AVX2_LAPTOP)
    assert not early.ok and "SIGILL while importing llama_cpp" in early.detail
    good = diagnose(_test(0, "imported", "loaded", "generated", info=NO_AMX_INFO), SAPPHIRE_RAPIDS)
    assert good.ok and "one token in 0.05s" in good.detail and "AVX512" in good.detail
    hung = diagnose(SelfTest(-1, {}, timed_out=True), AVX2_LAPTOP)
    assert not hung.ok and "did not finish" in hung.detail


def test_stage_lines_are_read_among_other_output() -> None:
    out = 'noise\n{"stage": "imported", "version": "1"}\n{"not": "a stage"}\n[1, 2]\n{"stage": "loaded"}\n'
    assert list(_stages(out)) == ["imported", "loaded"]


def _build_script() -> Any:
    spec = importlib.util.spec_from_file_location("build_llama_under_test", ROOT / "scripts" / "build_llama.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_wheel_cache_key_changes_with_the_cpu_for_native_builds_only() -> None:
    script = _build_script()
    other = CpuFacts.of("x86_64", [*AVX2_LAPTOP.flags, "avx512f"])
    native = [script._key(plan_build(cpu), cpu) for cpu in (AVX2_LAPTOP, other)]
    assert native[0] != native[1]
    portable = [script._key(plan_build(cpu, "portable"), cpu) for cpu in (AVX2_LAPTOP, other)]
    assert portable[0] == portable[1] and "portable" in portable[0]
    assert script.VERSION in native[0]


def test_the_pinned_llama_version_satisfies_the_project_requirement() -> None:
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    local = [Requirement(r) for r in project["optional-dependencies"]["local"]]
    llama = next(r for r in local if r.name == "llama-cpp-python")
    assert llama.specifier.contains(_build_script().VERSION)


FAKE_LLAMA = """
import os, signal
__version__ = "0.0-fake"
def llama_print_system_info():
    return b"CPU : LLAMAFILE = 1 | OPENMP = 1 | "
def llama_log_callback(fn):
    return fn
def llama_log_set(*args):
    pass
class Llama:
    def __init__(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)  # what a broken native build does in its first decode
"""


def test_doctor_survives_and_names_a_build_that_crashes(tmp_path: Path) -> None:
    """The real `edgecrew doctor` process, with a llama_cpp whose model load segfaults."""
    import os
    import subprocess

    package = tmp_path / "fake" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_LLAMA)
    (package / "llama_cpp.py").write_text("def llama_model_default_params():\n    return None\n")
    (package / "llama_chat_format.py").write_text("CHATML_CHAT_TEMPLATE = ''\nclass Jinja2ChatFormatter:\n    pass\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(ROOT)])}
    command = [sys.executable, "-c", "from edgecrew.cli import main; main()", "doctor"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    text = " ".join(done.stdout.split())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "llama.cpp died with SIGSEGV after 'imported'" in text
    assert "make install" in text
