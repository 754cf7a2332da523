"""Run generated ``python`` and ``shell`` code in a confined child process, never in edgecrew's own.

The one design decision: isolation comes in tiers, probed once, and every layer is applied *inside the
child*, by ``sandbox_launcher.py`` (a stdlib-only supervisor copied next to the code), so this module
only decides what to apply and watches from outside (wall clock, output, disk). Tiers, best first:

- ``bwrap``: bubblewrap namespaces (mount, pid, net, ipc, uts; user when not root) over a minimal
  read-only view of the system, with only the work dir and a private ``/tmp`` writable; inside it
  Landlock and rlimits as well. Killing bwrap tears down the pid namespace, so nothing survives.
- ``landlock``: Landlock (writes only to the work dir, reads only system dirs) plus a network
  namespace, or a seccomp socket filter, or Landlock TCP rules; the launcher is a child subreaper that
  kills every descendant.
- ``rlimits``: resource limits, a scrubbed environment and the subreaper only. Reported as weak.

When edgecrew runs as root the code always runs under a fresh unprivileged uid: root ignores
RLIMIT_NPROC and may signal anything, so limits would mean little otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgecrew.errors import ToolError
from edgecrew.tools.sandbox_host import (
    LAUNCHER,
    SAFE_PATH,
    Execution,
    SandboxLimits,
    SandboxTier,
    TierName,
    read_status,
    usage,
)

__all__ = [
    "OutputListener",
    "SandboxLimits",
    "SandboxResult",
    "SandboxTier",
    "available_tiers",
    "fresh_workdir",
    "run_sandboxed",
    "sandbox_tier",
]

FLOOD_FACTOR = 16  # output past output_bytes is drained and dropped, up to this many times the cap, then killed
# Told each piece of output as it is read ("stdout" or "stderr", the bytes), on the event loop: only the bytes
# that are kept (the first output_bytes of a stream), so a listener sees no more than the result holds. It runs
# between two reads of the pipe, so it must not block: no file I/O per call (gather, and write now and then).
OutputListener = Callable[[Literal["stdout", "stderr"], bytes], None]


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed execution did."""

    stdout: str
    stderr: str
    exit_code: int  # negative: killed by that signal
    duration_s: float
    timed_out: bool
    killed_reason: str | None  # wall, cpu, output, disk, files, file_size, cancelled, signal NAME, supervisor lost
    truncated: bool
    files_produced: list[str]  # relative paths of regular files and symlinks created or modified
    tier: TierName


# ---------------------------------------------------------------- probing


@functools.cache
def _kernel() -> dict[str, Any]:
    """Landlock ABI, network namespaces, seccomp: tried by the launcher in throwaway children."""
    try:
        out = subprocess.run(
            [os.path.realpath(sys.executable), "-I", "-S", str(LAUNCHER), "--probe"],
            capture_output=True,
            timeout=15,
            env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
            check=True,
        ).stdout
        probed: dict[str, Any] = json.loads(out)
        return probed
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"landlock_abi": 0, "netns_root": False, "netns_userns": False, "seccomp": False, "euid": os.geteuid()}


def _landlock_abi() -> int:
    return int(_kernel()["landlock_abi"])


def _landlock_layers(abi: int, network_elsewhere: bool) -> list[str]:
    layers = ["landlock-fs"] if abi >= 1 else []
    if abi >= 4 and not network_elsewhere:
        layers.append("landlock-net")
    if abi >= 6:
        layers.append("landlock-scope")
    return layers


def _network_layer(kernel: dict[str, Any]) -> str | None:
    if kernel["euid"] == 0 and kernel["netns_root"]:
        return "netns"
    if kernel["netns_userns"]:
        return "netns-userns"
    if kernel["seccomp"]:
        return "seccomp-net"
    return None


@functools.cache
def available_tiers() -> list[SandboxTier]:
    """Every tier this machine supports, best first; ``rlimits`` is always last and always there."""
    kernel, abi = _kernel(), int(_kernel()["landlock_abi"])
    root = kernel["euid"] == 0
    common = ["rlimits", "subreaper", "new-session", "scrubbed-env", "private-workdir"]
    common += ["uid-drop"] if root else []
    tiers: list[SandboxTier] = []
    problem = _bwrap_problem()
    if problem is None:
        layers = ["bwrap", "mountns", "pidns", "netns", "ipcns", "utsns", *_landlock_layers(abi, True), *common]
        tiers.append(SandboxTier("bwrap", "bubblewrap namespaces, no network, minimal read-only system view", layers))
    net = _network_layer(kernel)
    if abi >= 1:
        layers = [*_landlock_layers(abi, net is not None), *([net] if net else []), *common]
        how = {"netns": "network namespace", "netns-userns": "user+network namespace", "seccomp-net": "seccomp"}
        net_text = how.get(net or "", "Landlock TCP rules (UDP open)" if abi >= 4 else "NOT blocked")
        detail = f"Landlock ABI {abi}: writes only in the work dir; network: {net_text}"
        if problem:
            detail += f" (bwrap unusable: {problem})"
        tiers.append(SandboxTier("landlock", detail, layers, weak=net is None and abi < 4))
    weak_layers = [*([net] if net in ("netns", "netns-userns") else []), *common]
    detail = "WEAK: resource limits and a scrubbed environment only; files outside the work dir are not protected"
    tiers.append(SandboxTier("rlimits", detail, weak_layers, weak=True))
    return tiers


def sandbox_tier() -> SandboxTier:
    """The tier ``run_sandboxed`` uses by default (probed once per process)."""
    return available_tiers()[0]


@functools.cache
def _bwrap_problem() -> str | None:
    """None when bubblewrap can start our launcher here; else why not."""
    if shutil.which("bwrap", path=SAFE_PATH) is None:
        return "bwrap not installed (Debian package bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="edgecrew-probe-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        tier = SandboxTier("bwrap", "probe", ["bwrap", "rlimits", *(["uid-drop"] if os.geteuid() == 0 else [])])
        try:
            with Execution(tier, "shell", "exit 0", workdir, SandboxLimits(), _landlock_abi()) as ex:
                done = subprocess.run(ex.argv, env=ex.launch_env, capture_output=True, timeout=15, pass_fds=(ex.w,))
                status = read_status(ex.r)
        except (OSError, subprocess.SubprocessError, ToolError, ValueError) as exc:
            return str(exc)
        if done.returncode != 0 or json.loads(status or b"{}").get("exit_code") != 0:
            return (done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}")[:300]
    return None


# ---------------------------------------------------------------- one execution


def fresh_workdir(root: Path) -> Path:
    """A new empty directory under ``root`` for one execution."""
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"exec-{time.strftime('%Y%m%d-%H%M%S')}-", dir=root))
    # mkdtemp makes it 0700; once handed to the run uid, bwrap (root without DAC override) could not
    # enter it. Its privacy comes from the sandbox's namespaces, not from the mode.
    path.chmod(0o755)
    return path


def _resolve(tier: SandboxTier | TierName | None) -> SandboxTier:
    if isinstance(tier, SandboxTier):
        return tier
    tiers = available_tiers()
    if tier is None:
        return tiers[0]
    for candidate in tiers:
        if candidate.name == tier:
            return candidate
    raise ToolError(f"sandbox tier {tier!r} is not available here; available: {', '.join(t.name for t in tiers)}")


class _Capture:
    """One output stream: the first ``cap`` bytes kept (and told to the listener), the rest counted;
    survives cancellation."""

    def __init__(self, cap: int, name: Literal["stdout", "stderr"], listener: OutputListener | None) -> None:
        self.cap, self.kept, self.total = cap, bytearray(), 0
        self.name, self.listener = name, listener

    async def pump(self, stream: asyncio.StreamReader | None, flood: Callable[[str], None]) -> None:
        while stream is not None and (chunk := await stream.read(65536)):
            self.total += len(chunk)
            if len(self.kept) < self.cap:
                kept = chunk[: self.cap - len(self.kept)]
                self.kept += kept
                self._tell(kept)
            if self.total > self.cap * FLOOD_FACTOR:
                flood("output")

    def _tell(self, data: bytes) -> None:
        if self.listener is None:
            return
        try:
            self.listener(self.name, data)
        except Exception:
            # A listener that fails is not told again: the pipe must go on being drained (a full one
            # would block the code until the wall clock), and the result still holds the output.
            self.listener = None

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.total > len(self.kept):
            text += f"\n[edgecrew: output truncated, {self.total - len(self.kept)} more bytes not shown]\n"
        return text


async def _feed(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is None:
        return
    with contextlib.suppress(OSError):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def _watch_disk(ex: Execution, flood: Callable[[str], None]) -> None:
    roots = [ex.workdir, ex.tmpdir]
    base_bytes = sum(s.st_size for s in ex.before.values())
    base_files = len(ex.before)
    interval = 0.1
    while True:
        await asyncio.sleep(interval)
        started = time.monotonic()
        used, files = await asyncio.to_thread(usage, roots)
        interval = min(2.0, max(0.1, 4 * (time.monotonic() - started)))
        if used - base_bytes > ex.limits.disk_bytes:
            flood("disk")
        elif files - base_files > ex.limits.new_files:
            flood("files")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


async def _terminate(proc: asyncio.subprocess.Process, bwrap: bool) -> None:
    """Stop everything: bwrap's pid namespace dies with it; otherwise the launcher kills its subtree."""
    if not bwrap:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=1.0)
        with contextlib.suppress(Exception):
            import psutil

            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
    _kill_group(proc.pid)


def _describe(report: dict[str, Any], limits: SandboxLimits) -> tuple[int, str | None]:
    if "exit_code" in report:
        return int(report["exit_code"]), None
    if "signal" not in report:
        return -signal.SIGKILL, "supervisor lost"
    sig = int(report["signal"])
    if sig in (signal.SIGXCPU, signal.SIGKILL) and float(report.get("cpu_s", 0.0)) >= limits.cpu_s - 0.2:
        return -sig, "cpu"
    if sig == signal.SIGXFSZ:
        return -sig, "file_size"
    return -sig, f"signal {signal.Signals(sig).name}"


async def run_sandboxed(
    kind: Literal["python", "shell"],
    code: str,
    *,
    workdir: Path,
    limits: SandboxLimits = SandboxLimits(),
    stdin: str | None = None,
    tier: SandboxTier | TierName | None = None,
    on_output: OutputListener | None = None,
) -> SandboxResult:
    """Run ``code`` with ``python -I -S`` or ``/bin/sh`` in ``workdir`` under the best (or the named) tier;
    ``on_output`` is told the output as the code prints it (see ``OutputListener``)."""
    if kind not in ("python", "shell"):
        raise ToolError(f"unknown sandbox kind {kind!r}: use 'python' or 'shell'")
    chosen = await asyncio.to_thread(_resolve, tier)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ex = Execution(chosen, kind, code, workdir, limits, _landlock_abi() if "landlock-fs" in chosen.isolation else 0)
    await asyncio.to_thread(ex.__enter__)
    stopper = _Stopper()
    run = asyncio.ensure_future(_run(ex, stdin, stopper, on_output))
    try:
        return await asyncio.shield(run)
    except asyncio.CancelledError:
        # Cancelled from outside (a tool timeout): stop the code the normal way, then let the caller see it.
        stopper.request("cancelled")
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(run, timeout=limits.wall_s + 5)
        raise
    finally:
        await asyncio.to_thread(ex.__exit__, None, None, None)


class _Stopper:
    """The first reason to stop the code wins; setting it wakes the run."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = asyncio.Event()

    def request(self, why: str) -> None:
        if not self.reasons:
            self.reasons.append(why)
        self.event.set()


async def _run(
    ex: Execution, stdin: str | None, stopper: _Stopper, listener: OutputListener | None = None
) -> SandboxResult:
    limits, reasons, request_stop = ex.limits, stopper.reasons, stopper.request
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *ex.argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ex.launch_env,
        cwd=ex.rundir,
        start_new_session=True,
        pass_fds=(ex.w,),
    )
    os.close(ex.w)
    ex.w = -1
    out = _Capture(limits.output_bytes, "stdout", listener)
    err = _Capture(limits.output_bytes, "stderr", listener)
    readers = [
        asyncio.create_task(out.pump(proc.stdout, request_stop)),
        asyncio.create_task(err.pump(proc.stderr, request_stop)),
    ]
    helpers: list[asyncio.Task[None]] = [asyncio.create_task(_watch_disk(ex, request_stop))]
    if stdin is not None:
        helpers.append(asyncio.create_task(_feed(proc.stdin, stdin.encode())))
    waiter = asyncio.create_task(proc.wait())
    stopped = asyncio.create_task(stopper.event.wait())
    try:
        remaining = limits.wall_s - (time.monotonic() - started)
        await asyncio.wait({waiter, stopped}, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            request_stop("wall")
            await _terminate(proc, ex.bwrap)
            await asyncio.wait({waiter}, timeout=2.0)
        duration = time.monotonic() - started
        await asyncio.wait(readers, timeout=1.0)  # a pipe still held open past this is an escaped process
    finally:
        for task in (stopped, *helpers, *readers):
            task.cancel()
        if not waiter.done():
            _kill_group(proc.pid)
            waiter.cancel()
        # A pipe still open (readers cut short above) keeps the transport open past this run; closed later by the
        # garbage collector, after its event loop has ended, it raises "Event loop is closed". Close it here.
        proc._transport.close()  # type: ignore[attr-defined]  # asyncio.subprocess.Process has no public close
    report: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        report = json.loads(read_status(ex.r) or b"{}")
    exit_code, reason = _describe(report, limits)
    if reasons:
        exit_code, reason = (exit_code if "exit_code" in report else -signal.SIGKILL), reasons[0]
    elif proc.returncode not in (0, None) and not report:
        reason = "supervisor lost"
    await asyncio.to_thread(ex.restore_owners)
    return SandboxResult(
        stdout=out.text(),
        stderr=err.text(),
        exit_code=exit_code,
        duration_s=round(duration, 3),
        timed_out=reason == "wall",
        killed_reason=reason,
        truncated=out.total > len(out.kept) or err.total > len(err.kept),
        files_produced=await asyncio.to_thread(ex.produced),
        tier=ex.tier.name,
    )
