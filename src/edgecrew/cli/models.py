"""`edgecrew models list|show|status|bench`: the registry, what is resident, and how fast a model is."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgecrew.cli.common import ProjectOpt, console, guard, runtime
from edgecrew.models.probe import mib

models_app = typer.Typer(help="Model aliases, residency and speed.", no_args_is_help=True)


def _mib(n: int | None) -> str:
    return "measured at load" if n is None else mib(n)


@models_app.command("list")
def models_list(project: ProjectOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List model aliases (built-in and the project's) with backend, tags and fallbacks."""
    rt = guard(lambda: runtime(project))
    defs = rt.models.definitions()
    if as_json:
        print(json.dumps([d.to_dict() for d in defs]))
        return
    table = Table("alias", "backend", "source", "tags", "fallbacks", "memory")
    for d in defs:
        table.add_row(
            escape(d.alias),
            d.backend,
            escape(d.describe()),
            escape(", ".join(d.tags)),
            escape(" → ".join(d.fallbacks)),
            _mib(d.memory_bytes),
        )
    console.print(table)


@models_app.command("show")
def models_show(alias: str, project: ProjectOpt = None) -> None:
    """Show everything about one alias."""
    rt = guard(lambda: runtime(project))
    d = guard(lambda: rt.models.definition(alias))
    console.print_json(json.dumps(d.to_dict()))
    console.print(f"tries, in order: {escape(' → '.join(guard(lambda: rt.models.candidates(alias))))}")


@models_app.command("status")
def models_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What the model pools of running edgecrew processes hold: resident models, memory, queue."""
    from edgecrew.engine.runtime import published_pool_states

    rt = guard(runtime)
    states = published_pool_states(rt.settings.home)
    if as_json:
        print(json.dumps(states))
        return
    if not states:
        console.print(
            "no edgecrew process holds models right now (pools live inside `edgecrew run` and "
            "`edgecrew serve` processes)"
        )
        return
    for state in states:
        console.print(
            f"[bold]{state['executor']}[/] · memory {mib(state['used_bytes'])} of "
            f"{mib(state['budget_bytes'])} · queue {state['queue_depth']} · "
            f"loads {state['loads']} · evictions {state['evictions']} · waits {state['waits']}"
        )
        table = Table("alias", "memory", "active/slots", "pinned", "idle s", "loads")
        for m in state["resident"]:
            table.add_row(
                m["alias"],
                _mib(m["memory_bytes"]),
                f"{m['active']}/{m['slots']}",
                "yes" if m["pinned"] else "",
                f"{m['idle_s']:.0f}",
                str(m["loads"]),
            )
        console.print(table)


@models_app.command("bench")
def models_bench(
    alias: Annotated[str, typer.Argument(help="Model alias to measure.")] = "local",
    runs: Annotated[int, typer.Option(help="Timed calls.", min=1, max=1000)] = 5,
    max_tokens: Annotated[int, typer.Option(help="Tokens per call.", min=1, max=100_000)] = 64,
    project: ProjectOpt = None,
) -> None:
    """Measure load time, time to first token and tokens/s of one model on this machine."""
    from edgecrew.domain.messages import Message, ModelRequest

    rt = guard(lambda: runtime(project))
    definition = guard(lambda: rt.models.definition(alias))
    prompt = "Write a few sentences about small computers running language models."

    async def body() -> dict[str, Any]:
        started = time.perf_counter()
        async with rt.pool.use(alias) as model:
            load_s = time.perf_counter() - started
            results = []
            for i in range(runs + 1):  # the first call warms up
                request = ModelRequest(messages=(Message("user", f"{prompt} ({i})"),), max_tokens=max_tokens)
                response = await model.request(request)
                if i:
                    results.append(response)
        footprint = next((m.memory_bytes for m in rt.pool.state().resident if m.alias == alias), None)
        await rt.pool.aclose()
        return {
            "alias": alias,
            "backend": definition.backend,
            "load_s": round(load_s, 3),
            "memory_bytes": footprint,
            "runs": runs,
            "ttft_s_p50": round(statistics.median(r.time_to_first_token_s or 0 for r in results), 4),
            "tokens_per_s_p50": round(statistics.median(r.tokens_per_second for r in results), 2),
            "completion_tokens_mean": round(statistics.mean(r.usage.completion_tokens for r in results), 1),
        }

    with console.status(f"measuring {escape(alias)}…"):
        figures = guard(lambda: asyncio.run(body()))
    table = Table("figure", "value")
    for key, value in figures.items():
        table.add_row(key, _mib(value) if key == "memory_bytes" else escape(str(value)))
    console.print(table)
