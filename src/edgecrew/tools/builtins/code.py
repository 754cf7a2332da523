"""python.run and shell.run: generated code in the sandbox, never in edgecrew's own process.

Each execution gets a fresh folder under the run workspace's ``sandbox/`` (so files it produces can
be read with files.read afterwards), no network, and the limits of :class:`SandboxLimits` as the
``EDGECREW_SANDBOX_*`` settings set them (read at each call). ``shell.run`` is risky (it waits for
approval unless the team's policy says otherwise).

``python.run`` shows the value of a last bare expression as a REPL does (small models write ``17*23``
and expect to see 391): the code is parsed here, never run here, and only that expression is rewritten
in place, so every other line and column is the model's own in a traceback.
"""

from __future__ import annotations

import ast
import re
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


def echo_last_expression(code: str) -> str:
    """``code`` with its last statement, when that is a bare expression, passed to ``sys.displayhook``
    (the REPL's: prints the repr, nothing for None); any other code, or code that does not parse, as is."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code  # the sandbox reports the error, on the code as written
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr) or last.end_lineno is None or last.end_col_offset is None:
        return code
    start = _char_offset(code, last.lineno, last.col_offset)
    end = _char_offset(code, last.end_lineno, last.end_col_offset)
    # Two parentheses: a bare tuple (`1, 2`) stays one argument; `__import__`, since the code may not import sys.
    return f'{code[:start]}__import__("sys").displayhook(({code[start:end]})){code[end:]}'


_NEWLINE = re.compile(r"\r\n|\r|\n")  # the line ends Python's tokenizer counts (not str.splitlines's)


def _char_offset(code: str, lineno: int, byte_col: int) -> int:
    """The index in ``code`` of an ``ast`` position (1-based line, column in UTF-8 bytes)."""
    line_start = 0
    for _ in range(lineno - 1):
        found = _NEWLINE.search(code, line_start)
        if found is None:
            break
        line_start = found.end()
    found = _NEWLINE.search(code, line_start)
    line = code[line_start : found.start() if found else len(code)]
    return line_start + len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))


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
    """Run Python code in a sandbox (stdlib only, no network, limited time and memory); returns its output.
    As in a REPL, a last line that is an expression (such as `17*23`) has its value printed."""
    return await _run("python", echo_last_expression(code), ctx, stdin)


async def shell_run(command: str, ctx: ToolContext, stdin: str | None = None) -> dict[str, Any]:
    """Run a shell script in a sandbox (no network, limited time and memory); returns its output."""
    return await _run("shell", command, ctx, stdin)


def register(registry: ToolRegistry) -> None:
    timeout_s = get_settings().sandbox_wall_s + SANDBOX_MARGIN_S
    registry.register(spec_from_function(python_run, name="python.run", timeout_s=timeout_s))
    registry.register(spec_from_function(shell_run, name="shell.run", timeout_s=timeout_s, risk="risky"))
