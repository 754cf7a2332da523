"""The sandbox runs code in a confined child: normal execution, then a corpus of attacks.

Every attack runs in the best tier this machine offers; a subset also runs in each fallback tier (and
the network attacks under a seccomp-only and a Landlock-TCP-only variant). Each attack asserts a
concrete containment condition (a file not created, a secret not printed, a listener with no
connection, a count under its limit, no process left) and that it ended within its limit plus 1 s.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from edgecrew.errors import ToolError
from edgecrew.tools.sandbox import (
    SandboxLimits,
    SandboxTier,
    available_tiers,
    fresh_workdir,
    run_sandboxed,
    sandbox_tier,
)
from tests.sandbox_attacks.corpus import ATTACKS, NAME, Attack, Ctx, contained_in

MiB = 1024 * 1024
TIERS = available_tiers()
BEST = TIERS[0]


# ---------------------------------------------------------------- normal execution


async def test_python_stdout_exit_code_and_stdin(tmp_path: Path) -> None:
    code = "import sys\nname = input()\nprint('hello', name)\nprint('oops', file=sys.stderr)\nsys.exit(3)"
    result = await run_sandboxed("python", code, workdir=tmp_path / "w", stdin="crew\n")
    assert result.stdout == "hello crew\n"
    assert result.stderr == "oops\n"
    assert result.exit_code == 3
    assert (result.timed_out, result.killed_reason, result.truncated) == (False, None, False)
    assert result.tier == BEST.name


async def test_shell_runs_in_the_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    code = "pwd; echo $HOME; read x; echo got $x > marker; exit 4"
    result = await run_sandboxed("shell", code, workdir=workdir, stdin="7")
    cwd, home = result.stdout.splitlines()
    # the path the code sees is the work dir's, or (root without bwrap, private parents) a bind of it
    assert cwd == home and (cwd == str(workdir) or BEST.name != "bwrap")
    assert (workdir / "marker").read_text() == "got 7\n" and result.files_produced == ["marker"]
    assert result.exit_code == 4


@pytest.mark.parametrize("tier", TIERS, ids=[t.name for t in TIERS])
async def test_files_produced_lists_new_and_modified_files_only(tmp_path: Path, tier: SandboxTier) -> None:
    workdir = tmp_path / "w"
    (workdir / "keep").mkdir(parents=True)
    (workdir / "keep" / "same.txt").write_text("same")
    (workdir / "edit.txt").write_text("old")
    (workdir / "gone.txt").write_text("bye")
    code = (
        "import os\nos.makedirs('out/deep')\nopen('out/deep/new.txt', 'w').write('new')\n"
        "open('edit.txt', 'a').write('er')\nos.remove('gone.txt')\nos.symlink('edit.txt', 'link')"
    )
    result = await run_sandboxed("python", code, workdir=workdir, tier=tier)
    assert result.exit_code == 0, result.stderr
    assert result.files_produced == ["edit.txt", "link", "out/deep/new.txt"]
    assert (workdir / "edit.txt").read_text() == "older"
    uid = os.geteuid()
    assert all(p.lstat().st_uid == uid for p in [workdir, *workdir.rglob("*")])  # ownership given back


@pytest.mark.parametrize("tier", TIERS, ids=[t.name for t in TIERS])
async def test_python_imports_modules_from_the_workdir_and_stdlib_only(tmp_path: Path, tier: SandboxTier) -> None:
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "helper.py").write_text("ANSWER = 42\n")
    code = "import json, helper\nprint(json.dumps(helper.ANSWER))\nimport psutil"
    result = await run_sandboxed("python", code, workdir=workdir, tier=tier)
    assert result.stdout == "42\n"
    assert "No module named 'psutil'" in result.stderr  # edgecrew's site-packages stay invisible


async def test_output_is_capped_with_a_note(tmp_path: Path) -> None:
    code = "print('a' * 5000)\nprint('b' * 5000)"
    result = await run_sandboxed("python", code, workdir=tmp_path / "w", limits=SandboxLimits(output_bytes=1000))
    assert result.truncated
    assert result.stdout.startswith("a" * 1000)
    assert "output truncated, 9002 more bytes not shown" in result.stdout
    assert result.exit_code == 0 and result.killed_reason is None


async def test_the_output_listener_hears_the_output_as_it_is_printed_and_only_what_is_kept(tmp_path: Path) -> None:
    heard: list[tuple[str, bytes, float]] = []
    code = "import sys, time\nprint('first', flush=True)\nprint('oops', file=sys.stderr, flush=True)\n"
    code += "time.sleep(1)\nprint('x' * 5000)\n"
    result = await run_sandboxed(
        "python",
        code,
        workdir=tmp_path / "w",
        limits=SandboxLimits(output_bytes=1000),
        on_output=lambda stream, data: heard.append((stream, data, time.monotonic())),
    )
    ended = time.monotonic()
    stdout = b"".join(data for stream, data, _ in heard if stream == "stdout")
    assert stdout == b"first\n" + b"x" * 994 and result.stdout.startswith(stdout.decode())  # the kept bytes only
    assert b"".join(data for stream, data, _ in heard if stream == "stderr") == b"oops\n"
    assert ended - heard[0][2] > 0.8  # heard while the code still ran

    def broken(stream: str, data: bytes) -> None:
        raise OSError("disk full")

    big = await run_sandboxed("python", "print('y' * 300000)", workdir=tmp_path / "w2", on_output=broken)
    assert (big.exit_code, big.killed_reason, big.stdout[:3]) == (0, None, "yyy")  # the pipe was still drained


async def test_timeout_keeps_partial_output(tmp_path: Path) -> None:
    code = "import time\nprint('started')\ntime.sleep(60)"
    started = time.monotonic()
    # 3 s: the launcher and the program start (two interpreters) well inside it on a loaded machine.
    result = await run_sandboxed("python", code, workdir=tmp_path / "w", limits=SandboxLimits(wall_s=3))
    assert time.monotonic() - started < 30  # killed at its limit, long before the program's own end
    assert result.stdout == "started\n"
    assert result.timed_out and result.killed_reason == "wall" and result.exit_code == -signal.SIGKILL


async def test_the_code_tools_take_their_limits_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgecrew.settings import reset_settings
    from edgecrew.tools.base import ToolContext, ToolRegistry
    from edgecrew.tools.builtins import code as code_tools

    monkeypatch.setenv("EDGECREW_SANDBOX_WALL_S", "3")  # room for two interpreters to start under load
    monkeypatch.setenv("EDGECREW_SANDBOX_MEMORY", "256MiB")
    reset_settings()
    assert code_tools.sandbox_limits().memory_bytes == 256 * MiB
    registry = ToolRegistry()
    code_tools.register(registry)
    spec = registry.find("python.run")
    assert spec is not None and spec.timeout_s == 3 + code_tools.SANDBOX_MARGIN_S
    ctx = ToolContext(run_id="r", agent="a", workspace=tmp_path)
    result = await code_tools.python_run("import time\nprint('started')\ntime.sleep(30)", ctx)
    assert result["timed_out"] and result["killed"] == "wall" and result["stdout"] == "started\n"


@pytest.mark.parametrize(
    ("code", "echoed"),
    [
        ("17*23", '__import__("sys").displayhook((17*23))'),
        ("x = 2; x * 3  # tripled\n", 'x = 2; __import__("sys").displayhook((x * 3))  # tripled\n'),
        ("1, 2", '__import__("sys").displayhook((1, 2))'),
        ("(1 +\r\n 2)", '__import__("sys").displayhook(((1 +\r\n 2)))'),
        ("s = 'é'\ns  + 'ü'", "s = 'é'\n__import__(\"sys\").displayhook((s  + 'ü'))"),
        ("x = 17*23", "x = 17*23"),  # not an expression
        ("for i in range(2):\n    i", "for i in range(2):\n    i"),  # only the top level's last statement
        ("17*", "17*"),  # does not parse: the sandbox reports it as written
        ("", ""),
    ],
)
def test_python_run_echoes_only_a_last_bare_expression(code: str, echoed: str) -> None:
    from edgecrew.tools.builtins.code import echo_last_expression

    assert echo_last_expression(code) == echoed


async def test_python_run_prints_a_last_expression_like_a_repl_in_the_sandbox(tmp_path: Path) -> None:
    from edgecrew.tools.base import ToolContext, ToolRegistry
    from edgecrew.tools.builtins import code as code_tools

    ctx = ToolContext(run_id="r", agent="a", workspace=tmp_path)
    # SmolLM2 as the twin's math expert wrote this, saw no output and made up an answer.
    result = await code_tools.python_run("17*23", ctx)
    assert (result["stdout"], result["exit_code"], result["sandbox"]) == ("391\n", 0, BEST.name)
    # print() returns None: shown once, as a REPL shows it; a traceback keeps the model's line numbers
    code = "print('a')\n\nprint(1 // 0)"
    result = await code_tools.python_run(code, ctx)
    assert result["stdout"] == "a\n" and result["exit_code"] == 1
    assert "line 3" in result["stderr"] and "ZeroDivisionError" in result["stderr"]
    registry = ToolRegistry()
    code_tools.register(registry)
    spec = registry.find("python.run")
    assert spec is not None and "17*23" in spec.description  # the tool's description tells the model


def test_a_sandbox_size_setting_that_cannot_be_read_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from edgecrew.settings import Settings

    monkeypatch.setenv("EDGECREW_SANDBOX_DISK", "lots")
    with pytest.raises(ValidationError, match=r"cannot read size 'lots'; write e\.g\. 900MiB"):
        Settings()


async def test_large_unread_stdin_does_not_hang(tmp_path: Path) -> None:
    result = await run_sandboxed("shell", "echo ok", workdir=tmp_path / "w", stdin="x" * (4 * MiB))
    assert result.stdout == "ok\n" and result.exit_code == 0


async def test_invalid_utf8_output_is_replaced(tmp_path: Path) -> None:
    result = await run_sandboxed("shell", r"printf 'a\377b'", workdir=tmp_path / "w")
    assert result.stdout == "a\ufffdb"


def test_tiers_are_reported() -> None:
    tier = sandbox_tier()
    assert tier == BEST and tier.isolation and tier.detail
    assert TIERS[-1].name == "rlimits" and TIERS[-1].weak and "WEAK" in TIERS[-1].detail
    assert {"rlimits", "scrubbed-env", "subreaper"} <= set(tier.isolation)


async def test_unknown_tier_is_a_tool_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="not available"):
        await run_sandboxed("shell", "true", workdir=tmp_path, tier="nope")  # type: ignore[arg-type]


def test_fresh_workdir_is_new_each_time(tmp_path: Path) -> None:
    first, second = fresh_workdir(tmp_path / "root"), fresh_workdir(tmp_path / "root")
    assert first != second and first.is_dir() and second.parent == tmp_path / "root"


# ---------------------------------------------------------------- attacks (tests/sandbox_attacks/corpus.py)


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    token = secrets.token_hex(5)
    secret = tmp_path / "secret" / "key.txt"
    secret.parent.mkdir()
    secret.write_text(f"TOPSECRET-{token}")
    outside = tmp_path / "outside"
    outside.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "link").symlink_to(outside)
    canary = f"CANARY-{token}"
    monkeypatch.setenv("EDGECREW_TEST_API_KEY", canary)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0edgecrew-test-{token}")
    abstract.listen(8)
    for sock in (tcp, udp, abstract):
        sock.setblocking(False)
    sentinel = subprocess.Popen(["sleep", "120"])
    host_tmp = Path(f"/tmp/edgecrew-pwned-{token}")
    try:
        yield Ctx(
            workdir, secret, secret.read_text(), outside, host_tmp, canary, f"ec{token}", tcp, udp, abstract, sentinel
        )
    finally:
        sentinel.kill()
        sentinel.wait()
        for sock in (tcp, udp, abstract):
            sock.close()
        host_tmp.unlink(missing_ok=True)


def _variants() -> list[tuple[str, SandboxTier, Attack]]:
    cases: list[tuple[str, SandboxTier, Attack]] = [(BEST.name, BEST, a) for a in ATTACKS]
    for tier in TIERS[1:]:
        cases += [(tier.name, tier, a) for a in ATTACKS if a.fallback]
    landlock = next((t for t in TIERS if t.name == "landlock"), None)
    if landlock is not None:
        base = [x for x in landlock.isolation if x not in ("netns", "netns-userns", "landlock-net")]
        seccomp = SandboxTier("landlock", "seccomp net", [*base, "seccomp-net"])
        tcp_only = SandboxTier("landlock", "landlock tcp", [*base, "landlock-net"])
        cases += [("seccomp", seccomp, a) for a in ATTACKS if a.needs in ("net", "tcp")]
        cases += [("landlock-tcp", tcp_only, a) for a in ATTACKS if a.needs == "tcp"]
    return cases


CASES = _variants()


@pytest.mark.parametrize("tier", TIERS, ids=[t.name for t in TIERS])
async def test_cancelling_the_call_kills_everything(tier: SandboxTier, ctx: Ctx) -> None:
    code = ctx.render(NAME + "import os, time\nif os.fork() == 0:\n    os.setsid()\ntime.sleep(60)")
    rundirs = set(Path(tempfile.gettempdir()).glob("edgecrew-sandbox-*"))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_sandboxed("python", code, workdir=ctx.workdir, tier=tier), timeout=0.5)
    assert time.monotonic() - started < 20  # the cancel's clean-up, not the program's 60 s
    assert survivors(ctx.name) == []
    assert set(Path(tempfile.gettempdir()).glob("edgecrew-sandbox-*")) <= rundirs  # cleaned up


def survivors(name: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == name]


@pytest.mark.parametrize(("label", "tier", "attack"), CASES, ids=[f"{label}-{a.id}" for label, _, a in CASES])
async def test_attack_is_contained(label: str, tier: SandboxTier, attack: Attack, ctx: Ctx) -> None:
    if label == "seccomp" and not _kernel_has("seccomp"):
        pytest.skip("seccomp filters are not available on this machine")
    if label == "landlock-tcp" and not _kernel_has("landlock_net"):
        pytest.skip("Landlock ABI < 4 here: no TCP rules")
    if not contained_in(tier, attack):
        pytest.skip(f"tier {tier.name} ({', '.join(tier.isolation)}) does not contain '{attack.needs}' attacks")
    started = time.monotonic()
    result = await run_sandboxed(
        attack.kind, ctx.render(attack.code), workdir=ctx.workdir, limits=attack.limits, tier=tier
    )
    elapsed = time.monotonic() - started
    # The wall clock bounds every attack; CPU attacks check killed_reason == "cpu" (their CPU limit, not the
    # wall clock, stopped them): CPU seconds against elapsed seconds depends on how loaded the machine is.
    limit = attack.limits.wall_s
    assert elapsed < limit + 1.0, f"took {elapsed:.2f}s, limit {limit}s: {result}"
    assert result.tier == tier.name
    assert attack.check(result, ctx) is not False, f"not contained: {result}"
    assert ctx.sentinel.poll() is None
    deadline = time.monotonic() + 0.5
    while survivors(ctx.name) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert survivors(ctx.name) == [], "a process the code started outlived the sandbox"


def _kernel_has(what: str) -> bool:
    from edgecrew.tools import sandbox

    kernel = sandbox._kernel()
    return bool(kernel["seccomp"]) if what == "seccomp" else int(kernel["landlock_abi"]) >= 4
