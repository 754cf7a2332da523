"""BFCL: edgecrew's embedded models on the Berkeley Function Calling Leaderboard's non-live AST categories.

The data (``simple`` = ``simple_python``, ``multiple``, ``parallel``, ``parallel_multiple``,
``irrelevance``), the possible answers and the AST checker all come from the ``bfcl-eval`` package,
unchanged: each item's question goes to ``LlamaCppModel.request`` with the item's functions as tools,
the way the agent loop sends them; the reply's tool calls become BFCL's model output
(``[{func_name: {arg: value}}]``) and ``ast_checker`` judges it against the possible answers, as BFCL
does for every model on its board. An irrelevance item is right when the reply makes no tool call
(BFCL's rule: an output that does not decode into a call is no call, so a malformed reply counts as
one without a call there, while a call to an unknown tool or with bad arguments is a call).

BFCL's function docs use their own types (``dict``, ``float``, ``tuple``, ``any``); they become JSON
Schema through BFCL's own table (``GORILLA_TO_OPENAPI``, the one its OpenAI-style handlers use), with
``additionalProperties: false`` on the arguments (an argument the function does not have fails the
checker anyway). Function names keep their dots (``math.hypot``): edgecrew needs no renaming.

Three settings per model, interleaved item by item so drift on a shared machine hits all alike:

* ``unconstrained``: free decoding, the same prompt (the anchor);
* ``constrained``: edgecrew's grammar (``constrain=True``, its default);
* ``fewshot``: constrained, plus solved examples given as earlier chat turns (user request, then the
  assistant's reply in the adapter's own envelope: the tool call as ``to_chat`` renders it, or
  ``{"final": ...}``), plus tool retrieval (:func:`edgecrew.tools.retrieval.rank_tools`, BM25 over
  the question): the top ``--top-k`` functions are offered, and a function that shares no word with
  the question (score 0, ``--min-score``) is not offered at all, so a request no tool fits gets none.
  The examples are one no-tool answer (an ``irrelevance`` item answered ``{"final": ...}``) then
  ``--shots`` solved calls from the same category (from ``simple`` for ``irrelevance``): every
  category gets a prompt of the same shape, since examples of the same kind as the item would hand
  ``irrelevance`` its answer. They are drawn once per category (seeded) from the items outside the
  measured sample, so no measured item is ever its own example. ``--shots 0`` leaves the examples out
  (retrieval alone), ``--min-score -1`` the cut (every top-k function offered).

A reply holds one call (``{"tool": ..., "arguments": ...}``) or several (``{"tool_calls": [...]}``),
both in the grammar and in ``parse_reply``; every call of the reply goes to the checker, so the
``parallel`` and ``parallel_multiple`` items, which need several calls in one reply, are judged as
BFCL judges any model. Solved examples of those categories show the several-calls envelope.

Dependencies: ``bfcl-eval`` pins the SDKs of every provider on its board (torch, transformers,
anthropic, cohere, google-genai, qwen-agent...), so it is installed with ``pip install --no-deps
bfcl-eval``; what this bench uses of it (``bfcl_eval.utils`` to load the data, ``ast_checker``)
imports nothing else outside the standard library but ``filelock``. The checker imports
BFCL's table of models (``constants.model_config``), which imports every provider's handler; it reads
from it only whether a model's API renames ``.`` to ``_`` in function names, so this bench puts a
one-entry table in its place before importing the checker. ``BFCL_PROJECT_ROOT`` points BFCL's lock
files at a temporary directory instead of site-packages.

    .venv/bin/pip install --no-deps bfcl-eval==2026.3.23
    .venv/bin/python bench/bfcl.py [--model local,local-gemma] [--categories simple,multiple,...]
                                   [--settings unconstrained,constrained,fewshot] [--limit 8]
                                   [--top-k 2] [--shots 2] [--min-score 0] [--max-tokens 160]
                                   [--threads 1] [--progress] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference import gguf  # bench/ is on sys.path when run as a script

CATEGORIES = {  # our name -> BFCL's test category
    "simple": "simple_python",
    "multiple": "multiple",
    "parallel": "parallel",
    "parallel_multiple": "parallel_multiple",
    "irrelevance": "irrelevance",
}
SETTINGS = ("unconstrained", "constrained", "fewshot")
SYSTEM = (
    "You are a helpful assistant with tools. Call a tool when one of them does what the user asks, "
    "with the argument values taken from the request. If none of the tools fits, do not call one: answer instead."
)
NO_TOOL_ANSWER = "None of my tools can do that."
# BFCL's published overall accuracy on non-live simple (AST), for small models.
LEADERBOARD = {"Qwen3-0.6B": 64.2, "Hammer2.1-0.5B": 62.4, "Granite-4.0-350M": 61.7, "Llama-3.2-1B": 44.0}
CHECKER_MODEL = "edgecrew"  # the name our one-entry model table gives the checker


def load_bfcl(tmp: Path) -> Any:
    """bfcl_eval's data loaders and AST checker, importable without the SDKs of every provider."""
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(tmp))
    # ast_checker reads MODEL_CONFIG_MAPPING[model].underscore_to_dot and nothing else of it.
    table = types.ModuleType("bfcl_eval.constants.model_config")
    table.MODEL_CONFIG_MAPPING = {CHECKER_MODEL: types.SimpleNamespace(underscore_to_dot=False)}  # type: ignore[attr-defined]
    sys.modules.setdefault("bfcl_eval.constants.model_config", table)
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.utils import load_dataset_entry, load_ground_truth_entry

    return types.SimpleNamespace(
        load=load_dataset_entry,
        answers=load_ground_truth_entry,
        check=lambda functions, output, answer, category: ast_checker(
            functions, output, answer, Language.PYTHON, category, CHECKER_MODEL
        ),
        types=GORILLA_TO_OPENAPI,
    )


def json_schema(doc: dict[str, Any], types_: dict[str, str], *, top: bool = False) -> dict[str, Any]:
    """A BFCL parameter doc (``{"type": "dict", "properties": ...}``) as JSON Schema."""
    schema: dict[str, Any] = {"type": types_.get(str(doc.get("type", "string")), "string")}
    for key in ("description", "enum", "default", "minimum", "maximum", "minItems", "maxItems"):
        if key in doc:
            schema[key] = doc[key]
    if isinstance(doc.get("items"), dict):
        schema["items"] = json_schema(doc["items"], types_)
    if isinstance(doc.get("properties"), dict):
        props = doc["properties"]
        schema["properties"] = {name: json_schema(p, types_) for name, p in props.items()}
        schema["required"] = [r for r in doc.get("required", []) if r in props]
        if top:
            schema["additionalProperties"] = False
    elif top:
        schema.update(properties={}, additionalProperties=False)
    return schema


def tool_definitions(functions: list[dict[str, Any]], types_: dict[str, str]) -> tuple[Any, ...]:
    from edgecrew.domain.messages import ToolDefinition

    return tuple(
        ToolDefinition(f["name"], f["description"], json_schema(f["parameters"], types_, top=True)) for f in functions
    )


def solved_calls(ground_truth: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The first acceptable value of each argument of each expected call (optional ones left out)."""
    from edgecrew.domain.messages import ToolCall

    calls = []
    for position, call in enumerate(ground_truth):
        ((name, options),) = call.items()
        arguments = {arg: values[0] for arg, values in options.items() if values and values[0] != ""}
        calls.append(ToolCall(id=f"example_{position}", name=name, arguments=arguments))
    return tuple(calls)


@dataclass
class Item:
    category: str  # ours: simple, multiple, ...
    id: str
    question: list[dict[str, str]]
    functions: list[dict[str, Any]]
    answer: list[dict[str, Any]] | None  # BFCL's possible answer; None for irrelevance

    @property
    def query(self) -> str:
        return " ".join(m["content"] for m in self.question if m["role"] == "user")


def load_items(bfcl: Any, category: str) -> list[Item]:
    entries = bfcl.load(CATEGORIES[category])
    answers = (
        {} if category == "irrelevance" else {a["id"]: a["ground_truth"] for a in bfcl.answers(CATEGORIES[category])}
    )
    return [Item(category, e["id"], e["question"][0], e["function"], answers.get(e["id"])) for e in entries]


def example_turns(examples: list[Item]) -> list[Any]:
    """Solved items as earlier chat turns, in the adapter's envelope."""
    from edgecrew.domain.messages import Message

    turns: list[Any] = []
    for item in examples:
        turns += [Message(m["role"], m["content"]) for m in item.question]  # type: ignore[arg-type]
        if item.answer is None:
            turns.append(Message("assistant", json.dumps({"final": NO_TOOL_ANSWER})))
        else:
            turns.append(Message("assistant", tool_calls=solved_calls(item.answer)))
    return turns


def build_request(item: Item, setting: str, bfcl: Any, shots: list[Any], args: argparse.Namespace) -> Any:
    from edgecrew.domain.messages import Message, ModelRequest
    from edgecrew.tools.retrieval import rank_tools

    tools = tool_definitions(item.functions, bfcl.types)
    question = [Message(m["role"], m["content"]) for m in item.question]  # type: ignore[arg-type]
    history: list[Any] = []
    if setting == "fewshot":
        history = shots
        ranked = rank_tools(item.query, tools, args.top_k)
        tools = tuple(r.item for r in ranked if r.score > args.min_score)
    return ModelRequest(
        messages=(Message("system", SYSTEM), *history, *question), tools=tools, max_tokens=args.max_tokens
    )


def judge(item: Item, response: Any, error: str | None, bfcl: Any) -> tuple[bool, str, list[dict[str, Any]]]:
    """(right, verdict, BFCL model output) for one reply."""
    if response is None:
        # A call the reply names but cannot make is a call to BFCL; JSON that does not parse is none.
        called = error is not None and ("called unknown tool" in error or "arguments of its call to" in error)
        if item.answer is None:
            return not called, "malformed_call" if called else "malformed_no_call", []
        return False, "invalid_output", []
    output = [{c.name: c.arguments} for c in response.message.tool_calls]
    if item.answer is None:
        return not output, "no_call" if not output else "called", output
    if not output:
        return False, "no_call", output
    result = bfcl.check(item.functions, output, item.answer, CATEGORIES[item.category])
    return bool(result["valid"]), "right" if result["valid"] else str(result.get("error_type")), output


async def run_model(
    path: Path, name: str, items: list[Item], shots: dict[str, list[Any]], args: argparse.Namespace, bfcl: Any
) -> list[dict[str, Any]]:
    from edgecrew.errors import InvalidOutputError
    from edgecrew.models.llamacpp import LlamaCppModel

    settings = [s for s in SETTINGS if s in args.settings]
    free = LlamaCppModel(path, name=name, n_threads=args.threads, constrain=False)
    grammar = LlamaCppModel(path, name=name, n_threads=args.threads, constrain=True)
    rows: list[dict[str, Any]] = []
    try:
        for number, item in enumerate(items, 1):
            for setting in settings:
                model = free if setting == "unconstrained" else grammar
                req = build_request(item, setting, bfcl, shots[item.category], args)
                started = time.perf_counter()
                response, error = None, None
                try:
                    response = await model.request(req)
                except InvalidOutputError as exc:
                    error = str(exc)
                elapsed = time.perf_counter() - started
                right, verdict, output = judge(item, response, error, bfcl)
                rows.append(
                    {
                        "model": name,
                        "category": item.category,
                        "id": item.id,
                        "setting": setting,
                        "right": right,
                        "verdict": verdict,
                        "s": round(elapsed, 3),
                        "tools": len(req.tools),
                        "prompt_tokens": response.usage.prompt_tokens if response else None,
                        "output": output,
                        "reply": (error or (response.message.content if response else ""))[:300],
                    }
                )
            if args.progress:
                done = [r for r in rows if r["id"] == item.id]
                marks = " ".join(f"{r['setting'][:5]}={'ok' if r['right'] else r['verdict']}" for r in done)
                print(f"  [{name} {number}/{len(items)}] {item.id}: {marks}", file=sys.stderr, flush=True)
    finally:
        free.close()
        grammar.close()
    return rows


def sample(items: list[Item], limit: int, seed: int) -> tuple[list[Item], list[Item]]:
    """(the measured sample, the rest) of a category, seeded; the rest lends the few-shot examples."""
    chosen = set(random.Random(seed).sample(range(len(items)), min(limit, len(items))))
    return [it for i, it in enumerate(items) if i in chosen], [it for i, it in enumerate(items) if i not in chosen]


def few_shots(category: str, rest: dict[str, list[Item]], shots: int, seed: int) -> list[Any]:
    """A no-tool answer, then ``shots`` solved calls of the category (of ``simple`` for ``irrelevance``),
    drawn from outside the sample; the calls come last, next to the question."""
    if shots == 0:  # retrieval alone
        return []
    rng = random.Random(f"{seed}:{category}")
    calls = rest["simple" if category == "irrelevance" else category]
    return example_turns(rng.sample(rest["irrelevance"], 1) + rng.sample(calls, min(shots, len(calls))))


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        cell = table.setdefault(r["category"], {}).setdefault(
            r["setting"], {"n": 0, "right": 0, "s": 0.0, "verdicts": {}}
        )
        cell["n"] += 1
        cell["right"] += r["right"]
        cell["s"] += r["s"]
        cell["verdicts"][r["verdict"]] = cell["verdicts"].get(r["verdict"], 0) + 1
    for by_setting in table.values():
        for cell in by_setting.values():
            cell["accuracy"] = round(100 * cell["right"] / cell["n"], 1)
            cell["s_per_item"] = round(cell["s"] / cell["n"], 2)
            del cell["s"]
    return table


def print_table(model: str, file: str, stats: dict[str, dict[str, dict[str, Any]]], settings: list[str]) -> None:
    print(f"\n{model} ({file}): accuracy % (right / N), s per item")
    head = f"{'category':>18}" + "".join(f"  {s:>22}" for s in settings)
    print(head)
    print("-" * len(head))
    for category in CATEGORIES:
        if category not in stats:
            continue
        cells = []
        for s in settings:
            c = stats[category].get(s)
            cells.append(f"{c['accuracy']:5.1f}% ({c['right']:>3}/{c['n']:<3}) {c['s_per_item']:4.1f}s" if c else "")
        print(f"{category:>18}" + "".join(f"  {c:>22}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local,local-gemma", help="comma-separated: local, local-gemma, GGUF paths")
    parser.add_argument(
        "--categories", default=",".join(CATEGORIES), help="comma-separated, of: " + ", ".join(CATEGORIES)
    )
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, of: " + ", ".join(SETTINGS))
    # 8: both models x 3 settings x 5 categories in about 35 min on a busy 2-core VM (~9 s per item and setting).
    parser.add_argument("--limit", type=int, default=8, help="items per category, a seeded sample (8)")
    parser.add_argument("--seed", type=int, default=13, help="sample and few-shot seed (13)")
    parser.add_argument("--top-k", type=int, default=2, help="functions kept by retrieval in fewshot (2)")
    parser.add_argument(
        "--shots", type=int, default=2, help="solved calls of the same category in fewshot (2; 0: no examples at all)"
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.0,
        help="fewshot offers only functions scoring above this (0: a shared word)",
    )
    parser.add_argument("--max-tokens", type=int, default=160, help="max_tokens per reply (160)")
    parser.add_argument("--threads", type=int, default=1, help="n_threads (1: faster than 2 on a busy 2-core box)")
    parser.add_argument("--data-dir", type=Path, help="where local-gemma's GGUF is assembled (a temp dir)")
    parser.add_argument("--progress", action="store_true", help="print each item's verdicts to stderr")
    parser.add_argument("--json", action="store_true", help="print JSON (with every reply) instead of tables")
    args = parser.parse_args(argv)
    args.categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [c for c in args.categories if c not in CATEGORIES] + [s for s in args.settings if s not in SETTINGS]
    if unknown or args.limit < 1 or args.top_k < 1 or args.shots < 0 or args.threads < 1 or args.max_tokens < 16:
        parser.error(
            f"unknown {unknown}" if unknown else "--limit/--top-k/--threads >= 1, --shots >= 0, --max-tokens >= 16"
        )

    from importlib.metadata import version

    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgecrew-bfcl-") as tmp:
        bfcl = load_bfcl(Path(tmp))
        measured: list[Item] = []
        rest: dict[str, list[Item]] = {}
        # Every category is loaded: the few-shot prompts borrow from simple and irrelevance.
        for category in CATEGORIES:
            chosen, rest[category] = sample(load_items(bfcl, category), args.limit, args.seed)
            if category in args.categories:
                measured += chosen
        shots = {c: few_shots(c, rest, args.shots, args.seed) for c in args.categories}
        for model in (m.strip() for m in args.model.split(",") if m.strip()):
            path = gguf(model, args.data_dir or Path(tmp))
            model_started = time.perf_counter()
            rows = asyncio.run(run_model(path, model, measured, shots, args, bfcl))
            results[model] = {
                "file": path.name,
                "wall_s": round(time.perf_counter() - model_started, 1),
                "table": summarize(rows),
                "rows": rows,
            }
    meta = {
        "benchmark": "bfcl",
        "bfcl_eval": version("bfcl-eval"),
        "edgecrew": version("edgecrew"),
        "llama_cpp_python": version("llama_cpp_python"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "limit": args.limit,
        "seed": args.seed,
        "top_k": args.top_k,
        "shots": args.shots,
        "min_score": args.min_score,
        "max_tokens": args.max_tokens,
        "system": SYSTEM,
        "leaderboard_non_live_simple": LEADERBOARD,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": results}, indent=2))
        return 0
    print(
        f"edgecrew {meta['edgecrew']} on BFCL (bfcl-eval {meta['bfcl_eval']}), non-live AST, up to {args.limit} items "
        f"per category (seed {args.seed}), max_tokens {args.max_tokens}, {args.threads} thread(s), "
        f"fewshot = 1+{args.shots} examples + top-{args.top_k} retrieval above score {args.min_score:g}, "
        f"Python {meta['python']}"
    )
    for model, result in results.items():
        print_table(model, result["file"], result["table"], args.settings)
        print(f"  wall {result['wall_s']:.0f}s")
    print("\nBFCL leaderboard, non-live simple: " + ", ".join(f"{k} {v}" for k, v in LEADERBOARD.items()))
    print(f"wall {meta['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
