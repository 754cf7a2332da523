"""python.run and shell.run: generated code in the sandbox, never in edgecrew's own process.

Each execution gets a fresh folder under the run workspace's ``sandbox/`` (so files it produces can
be read with files.read afterwards), no network, and the limits of :class:`SandboxLimits` as the
``EDGECREW_SANDBOX_*`` settings set them (read at each call). ``shell.run`` is risky (it waits for
approval unless the team's policy says otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from edgecrew.settings import get_settings
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function
from edgecrew.tools.sandbox import SandboxLimits, fresh_workdir, run_sandboxed

SANDBOX_MARGIN_S = 10  # the tool's timeout is above the sandbox's own wall clock, so its result comes back


def sandbox_limits() -> SandboxLimits:
    """The limits of one execution, from the EDGECREW_SANDBOX_* settings."""
    settings = get_settings()
    return SandboxLimits(
        cpu_s=settings.sandbox_cpu_s,
        wall_s=settings.sandbox_wall_s,
        memory_bytes=settings.sandbox_memory_bytes,
        disk_bytes=settings.sandbox_disk_bytes,
        processes=settings.sandbox_processes,
    )


async def _run(kind: Literal["python", "shell"], code: str, ctx: ToolContext, stdin: str | None) -> dict[str, Any]:
    workspace = Path(ctx.workspace).resolve()
    workdir = fresh_workdir(workspace / "sandbox")
    result = await run_sandboxed(kind, code, workdir=workdir, limits=sandbox_limits(), stdin=stdin)
    relative = workdir.relative_to(workspace)
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "duration_s": round(result.duration_s, 3),
        "timed_out": result.timed_out,
        "killed": result.killed_reason,
        "truncated": result.truncated,
        "files": [str(relative / f) for f in result.files_produced],
        "sandbox": result.tier,
    }


async def python_run(code: str, ctx: ToolContext, stdin: str | None = None) -> dict[str, Any]:
    """Run Python code in a sandbox (stdlib only, no network, limited time and memory); returns its output."""
    return await _run("python", code, ctx, stdin)


async def shell_run(command: str, ctx: ToolContext, stdin: str | None = None) -> dict[str, Any]:
    """Run a shell script in a sandbox (no network, limited time and memory); returns its output."""
    return await _run("shell", command, ctx, stdin)


def register(registry: ToolRegistry) -> None:
    timeout_s = get_settings().sandbox_wall_s + SANDBOX_MARGIN_S
    registry.register(spec_from_function(python_run, name="python.run", timeout_s=timeout_s))
    registry.register(spec_from_function(shell_run, name="shell.run", timeout_s=timeout_s, risk="risky"))
