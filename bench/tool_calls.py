"""Tool calls: how often a small model (SmolLM2 by default) emits a schema-valid tool call, constrained vs not.

Twelve realistic tools (weather, calculator, file read/write, web search, calendar, email, unit
conversion, timer, translation, stock price, directions) with JSON-Schema parameters, and 120 prompts
that each clearly call for one of them. Every prompt goes to ``LlamaCppModel.request`` with all twelve
tools offered, the way the agent loop sends them (the adapter puts the tool list first in the system
prompt), once with ``constrain=True`` (decoding constrained by the grammar built from the tool-call
envelope) and once with ``constrain=False`` (the anchor: the same prompt, free decoding). A third
mode, ``full_grammar``, constrains with ``lazy_grammar=False``: the grammar filters the whole
vocabulary for every token (llama-cpp-python's way) instead of checking the chosen token first; its
replies must be identical to ``constrained``'s (greedy), and its time shows what the check saves.

A reply counts as a valid tool call when it has the right shape (``{"tool": ..., "arguments": {...}}``),
names one of the offered tools, and its arguments satisfy that tool's schema (checked here again with
jsonschema, independently of the adapter). A ``{"final": ...}`` answer is not a tool call, so it is
not a valid one; an ``InvalidOutputError`` (malformed JSON, cut off at max_tokens, unknown tool, bad
arguments) is invalid. How often the chosen tool is the intended one is reported too (informational:
it measures the model, not the decoding), and so is what the agent loop would end up with: a
constrained reply that raised ``InvalidOutputError`` is retried once with the error fed back, as
``run_turn`` does, and counted if the retry is valid (informational; the target is on the first reply).
The replies holding ``<`` or ``>`` are counted too, in tool-call argument values, in final answers and
in the raw text of unusable replies: no prompt asks for either, so one there is a placeholder of the
prompt's instructions copied as a value.

Prompts alternate between the two models (constrained, then unconstrained, then the next prompt), so
drift on a shared machine hits both alike. Both keep their prefix cache on (the default): the tool
list is the same for every prompt, so its KV state is computed once and only each prompt's own
tokens are evaluated.

    .venv/bin/python bench/tool_calls.py [--prompts 120] [--max-tokens 96] [--threads 1]
                                         [--model local|local-gemma|PATH] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from inference import gguf  # bench/ is on sys.path when run as a script

SYSTEM = "You are a helpful assistant. Use a tool when the request needs one."

_DATE = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "YYYY-MM-DD"}
_TIME = {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$", "description": "HH:MM, 24-hour"}


def _params(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


# name -> (description, JSON Schema of the arguments)
TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "get_weather": (
        "Current weather and forecast for a city.",
        _params(
            ["city"],
            city={"type": "string"},
            days={"type": "integer", "minimum": 1, "maximum": 7},
            units={"enum": ["celsius", "fahrenheit"]},
        ),
    ),
    "calculate": (
        "Evaluate an arithmetic expression.",
        _params(["expression"], expression={"type": "string"}),
    ),
    "read_file": (
        "Read a text file from the workspace.",
        _params(["path"], path={"type": "string"}),
    ),
    "write_file": (
        "Write text to a file in the workspace.",
        _params(["path", "content"], path={"type": "string"}, content={"type": "string"}),
    ),
    "web_search": (
        "Search the web.",
        _params(
            ["query"],
            query={"type": "string"},
            max_results={"type": "integer", "minimum": 1, "maximum": 10},
        ),
    ),
    "create_event": (
        "Add an event to the calendar.",
        _params(
            ["title", "date"],
            title={"type": "string"},
            date=_DATE,
            time=_TIME,
            duration_minutes={"type": "integer", "minimum": 1},
        ),
    ),
    "send_email": (
        "Send an email.",
        _params(
            ["to", "subject", "body"],
            to={"type": "string"},
            subject={"type": "string"},
            body={"type": "string"},
        ),
    ),
    "convert_units": (
        "Convert a quantity from one unit to another.",
        _params(
            ["value", "from_unit", "to_unit"],
            value={"type": "number"},
            from_unit={"type": "string"},
            to_unit={"type": "string"},
        ),
    ),
    "set_timer": (
        "Start a countdown timer.",
        _params(["minutes"], minutes={"type": "integer", "minimum": 1, "maximum": 1440}, label={"type": "string"}),
    ),
    "translate": (
        "Translate text into another language.",
        _params(["text", "target_language"], text={"type": "string"}, target_language={"type": "string"}),
    ),
    "get_stock_price": (
        "Latest price of a stock by its ticker symbol.",
        _params(["symbol"], symbol={"type": "string"}),
    ),
    "get_directions": (
        "Route between two places.",
        _params(
            ["origin", "destination"],
            origin={"type": "string"},
            destination={"type": "string"},
            mode={"enum": ["driving", "walking", "cycling", "transit"]},
        ),
    ),
}

# (intended tool, prompt): ten per tool, each clearly calling for it.
PROMPTS: list[tuple[str, str]] = [
    ("get_weather", "What's the weather like in Paris right now?"),
    ("get_weather", "Will it rain in Seattle tomorrow?"),
    ("get_weather", "Give me the 5-day forecast for Tokyo in celsius."),
    ("get_weather", "How hot is it in Phoenix today, in fahrenheit?"),
    ("get_weather", "Is it snowing in Oslo?"),
    ("get_weather", "Check the weather in Cape Town for this weekend."),
    ("get_weather", "Do I need an umbrella in London today?"),
    ("get_weather", "What's the temperature in Berlin?"),
    ("get_weather", "Weather forecast for Mumbai for the next 3 days, please."),
    ("get_weather", "How windy is it in Chicago at the moment?"),
    ("calculate", "What is 1234 times 5678?"),
    ("calculate", "Calculate 15% of 240."),
    ("calculate", "What's the square root of 1764?"),
    ("calculate", "Compute (17 + 25) * 3 - 8."),
    ("calculate", "How much is 2 to the power of 16?"),
    ("calculate", "Divide 987654 by 321."),
    ("calculate", "What is 3.14 * 12.5 * 12.5?"),
    ("calculate", "Add 45.99, 12.50 and 7.25 together."),
    ("calculate", "What's 1000 minus 372 plus 58?"),
    ("calculate", "Work out 18 factorial divided by 16 factorial."),
    ("read_file", "Open notes.txt and show me what it says."),
    ("read_file", "Read the file report.md."),
    ("read_file", "What's inside config.yaml?"),
    ("read_file", "Show me the contents of data/sales.csv."),
    ("read_file", "Read todo.txt for me."),
    ("read_file", "Can you load README.md and print it?"),
    ("read_file", "Display the file logs/error.log."),
    ("read_file", "Read the draft in letters/cover_letter.txt."),
    ("read_file", "Show what's written in ideas.md."),
    ("read_file", "Open recipes/pancakes.txt."),
    ("write_file", "Save the text 'Meeting moved to Friday' to a file called notice.txt."),
    ("write_file", "Write 'hello world' into hello.txt."),
    ("write_file", "Create a file shopping.txt containing: milk, eggs, bread."),
    ("write_file", "Store my note 'call the plumber at 5pm' in reminders.txt."),
    ("write_file", "Write a file called poem.txt with the line 'Roses are red'."),
    ("write_file", "Save 'version 2.1 released' to changelog.md."),
    ("write_file", "Put the text 'TODO: fix login bug' into tasks.txt."),
    ("write_file", "Create summary.txt with the content 'Q3 revenue grew 12%'."),
    ("write_file", "Write 'backup completed' to status.log."),
    ("write_file", "Save the address '42 Elm Street' in address.txt."),
    ("web_search", "Search the web for the latest news about the Mars rover."),
    ("web_search", "Find articles about electric car battery recycling."),
    ("web_search", "Look up who won the 2022 World Cup."),
    ("web_search", "Search for the best hiking trails near Denver."),
    ("web_search", "Find reviews of the new Pixel phone online."),
    ("web_search", "Search the internet for easy vegan dessert recipes."),
    ("web_search", "Look up the opening hours of the Louvre museum."),
    ("web_search", "Find the top 3 results for 'learn Rust programming'."),
    ("web_search", "Search online for the history of the printing press."),
    ("web_search", "Google the population of Canada."),
    ("create_event", "Add a dentist appointment to my calendar on 2025-03-14 at 09:30."),
    ("create_event", "Schedule a team meeting on 2025-06-02 at 14:00 for 60 minutes."),
    ("create_event", "Put 'Mom's birthday' in my calendar for 2025-08-21."),
    ("create_event", "Create a calendar event 'Project deadline' on 2025-11-30."),
    ("create_event", "Book 'Yoga class' in my calendar on 2025-04-05 at 18:00."),
    ("create_event", "Add 'Flight to Rome' to the calendar on 2025-07-19 at 06:45."),
    ("create_event", "Schedule a call with Sarah on 2025-02-10 at 11:00 for 30 minutes."),
    ("create_event", "Add the event 'Car service' on 2025-09-03 to my calendar."),
    ("create_event", "Put a 'Quarterly review' meeting on 2025-10-01 at 10:00 in my calendar."),
    ("create_event", "Create an event called 'Concert' on 2025-12-12 at 20:00."),
    ("send_email", "Email bob@example.com with subject 'Lunch' saying 'Are you free at noon?'."),
    ("send_email", "Send an email to alice@example.com: subject 'Report', body 'The report is attached.'"),
    ("send_email", "Write an email to team@example.com with subject 'Standup' and body 'Standup moved to 10am.'"),
    ("send_email", "Send hr@example.com an email titled 'Vacation' saying 'I will be off next week.'"),
    ("send_email", "Email my landlord at landlord@example.com, subject 'Rent', body 'Rent is paid.'"),
    ("send_email", "Send an email to support@example.com with subject 'Bug' and body 'The app crashes on start.'"),
    ("send_email", "Email dad@example.com subject 'Dinner' body 'See you Sunday at 7.'"),
    ("send_email", "Send sales@example.com an email, subject 'Quote', asking 'Can you send a price quote?'"),
    ("send_email", "Email jane@example.com with the subject 'Thanks' and the body 'Thank you for your help!'"),
    ("send_email", "Send an email to it@example.com, subject 'Password', body 'Please reset my password.'"),
    ("convert_units", "Convert 5 miles to kilometers."),
    ("convert_units", "How many pounds is 70 kilograms?"),
    ("convert_units", "Convert 100 fahrenheit to celsius."),
    ("convert_units", "What is 3 liters in gallons?"),
    ("convert_units", "Convert 12 inches to centimeters."),
    ("convert_units", "How many meters are in 500 feet?"),
    ("convert_units", "Convert 2.5 cups to milliliters."),
    ("convert_units", "How many ounces is 250 grams?"),
    ("convert_units", "Convert 60 miles per hour to kilometers per hour."),
    ("convert_units", "What is 1 acre in square meters?"),
    ("set_timer", "Set a timer for 10 minutes."),
    ("set_timer", "Start a 25 minute timer labeled 'focus'."),
    ("set_timer", "Set a timer for 3 minutes for the eggs."),
    ("set_timer", "Remind me in 45 minutes with a timer."),
    ("set_timer", "Start a countdown of 90 minutes."),
    ("set_timer", "Set a 5 minute timer called 'tea'."),
    ("set_timer", "Timer for 15 minutes, please."),
    ("set_timer", "Set a one hour timer for the laundry."),
    ("set_timer", "Start a 20 minute timer named 'nap'."),
    ("set_timer", "Set a 7 minute timer for the pasta."),
    ("translate", "Translate 'good morning' into Spanish."),
    ("translate", "How do you say 'thank you very much' in Japanese?"),
    ("translate", "Translate 'where is the train station?' to German."),
    ("translate", "Put 'I love this city' into French."),
    ("translate", "Translate the sentence 'the meeting is cancelled' into Italian."),
    ("translate", "What is 'happy birthday' in Portuguese?"),
    ("translate", "Translate 'please close the door' to Dutch."),
    ("translate", "Say 'how much does this cost?' in Chinese."),
    ("translate", "Translate 'see you tomorrow' into Korean."),
    ("translate", "Translate 'the food was delicious' to Russian."),
    ("get_stock_price", "What's Apple's stock price (AAPL)?"),
    ("get_stock_price", "How is TSLA trading right now?"),
    ("get_stock_price", "Get the current price of MSFT."),
    ("get_stock_price", "What's the latest quote for NVDA?"),
    ("get_stock_price", "Check the stock price of Amazon, ticker AMZN."),
    ("get_stock_price", "How much is one share of GOOGL?"),
    ("get_stock_price", "Look up the share price of IBM."),
    ("get_stock_price", "What is Netflix (NFLX) trading at?"),
    ("get_stock_price", "Current stock price for Coca-Cola, KO?"),
    ("get_stock_price", "Get me the price of the ticker META."),
    ("get_directions", "How do I get from the Eiffel Tower to the Louvre on foot?"),
    ("get_directions", "Directions from Boston to New York by car."),
    ("get_directions", "What's the best transit route from Brooklyn to JFK airport?"),
    ("get_directions", "Give me cycling directions from Amsterdam Centraal to Vondelpark."),
    ("get_directions", "How do I drive from San Francisco to Los Angeles?"),
    ("get_directions", "Route from my hotel on Main Street to the central station, walking."),
    ("get_directions", "Directions from Madrid to Barcelona."),
    ("get_directions", "How can I get from Heathrow to King's Cross by train?"),
    ("get_directions", "Show me the way from the office to the gym by bike."),
    ("get_directions", "Navigate from Berlin Hauptbahnhof to Alexanderplatz."),
]


def tool_definitions() -> tuple[Any, ...]:
    from edgecrew.domain.messages import ToolDefinition

    return tuple(ToolDefinition(name, description, params) for name, (description, params) in TOOLS.items())


def judge(response: Any, error: str | None) -> tuple[str, str | None]:
    """(verdict, chosen tool): verdict is valid | final | invalid_output | bad_shape | bad_name | bad_args."""
    import jsonschema

    if response is None:
        return "invalid_output", None
    message = response.message
    if not message.tool_calls:
        return "final", None
    if len(message.tool_calls) != 1:
        return "bad_shape", None
    call = message.tool_calls[0]
    if call.name not in TOOLS:
        return "bad_name", call.name
    if not isinstance(call.arguments, dict):
        return "bad_shape", call.name
    schema = TOOLS[call.name][1]
    if any(True for _ in jsonschema.Draft202012Validator(schema).iter_errors(call.arguments)):
        return "bad_args", call.name
    return "valid", call.name


def angle_brackets(response: Any, raw: str) -> tuple[bool, bool, bool]:
    """Whether '<' or '>' is in (a tool call's argument values, a final answer, an unusable reply's text).

    None of the prompts asks for either character, so one there is a copied template placeholder
    such as ``"<tool name>"`` or ``"<your answer>"``. An unusable reply (cut off, malformed) has no
    message: its raw text is searched (the envelope's JSON has no '<' of its own).
    """
    if response is None:
        return False, False, "<" in raw or ">" in raw
    message = response.message
    values = [v for c in message.tool_calls for v in _strings(c.arguments)]
    return any("<" in v or ">" in v for v in values), "<" in message.content or ">" in message.content, False


def record_raw_replies() -> dict[str, str]:
    """The raw text of each model's last reply by its name, caught on its way to the reply parser.

    An unusable reply raises before it becomes a message; this is the only way to read what it said.
    """
    from edgecrew.models import llamacpp

    last: dict[str, str] = {}
    parse = llamacpp.parse_reply

    def recording(text: str, req: Any, *, truncated: bool = False, who: str = "model") -> Any:
        last[who] = text
        return parse(text, req, truncated=truncated, who=who)

    llamacpp.parse_reply = recording  # the adapter calls it through its module's global
    return last


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


async def retried(model: Any, req: Any, error: str) -> str:
    """The verdict after the one retry the agent loop makes on an unusable reply (the same message it sends)."""
    from edgecrew.domain.messages import Message
    from edgecrew.errors import InvalidOutputError

    again = replace(
        req, messages=(*req.messages, Message("user", f"Your last reply was not usable: {error}. Try again."))
    )
    try:
        return judge(await model.request(again), None)[0]
    except InvalidOutputError as exc:
        return judge(None, str(exc))[0]


async def measure(prompts: list[tuple[str, str]], max_tokens: int, threads: int, path: Path) -> dict[str, Any]:
    from edgecrew.domain.messages import Message, ModelRequest
    from edgecrew.errors import InvalidOutputError
    from edgecrew.models.llamacpp import LlamaCppModel

    models = {
        "constrained": LlamaCppModel(path, name="constrained", n_threads=threads, constrain=True),
        # The grammar filtering every candidate for every token (llama-cpp-python's own way): the same
        # greedy replies, more time; shows what checking the chosen token first saves.
        "full_grammar": LlamaCppModel(path, name="full_grammar", n_threads=threads, lazy_grammar=False),
        "required": LlamaCppModel(path, name="required", n_threads=threads, constrain=True),
        "unconstrained": LlamaCppModel(path, name="unconstrained", n_threads=threads, constrain=False),
    }
    for model in models.values():
        model.load()
    raw = record_raw_replies()
    tools = tool_definitions()
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in models}
    try:
        for intended, prompt in prompts:
            req = ModelRequest(
                messages=(Message("system", SYSTEM), Message("user", prompt)), tools=tools, max_tokens=max_tokens
            )
            for kind, model in models.items():
                started = time.perf_counter()
                response, error = None, None
                # "required": tool_choice=required, the grammar has no {"final": ...} branch.
                call = replace(req, tool_choice="required") if kind == "required" else req
                try:
                    response = await model.request(call)
                except InvalidOutputError as exc:
                    # Without the mode's name, so equal failures of two modes compare equal below.
                    error = str(exc).replace(f"model '{kind}'", "the model")
                elapsed = time.perf_counter() - started  # the first reply only, not the retry below
                verdict, chosen = judge(response, error)
                angle_args, angle_final, angle_unusable = angle_brackets(response, raw.get(f"model '{kind}'", ""))
                retry = None
                if error is not None and kind not in ("unconstrained", "full_grammar"):
                    retry = await retried(model, call, error)
                results[kind].append(
                    {
                        "intended": intended,
                        "prompt": prompt,
                        "verdict": verdict,
                        "chosen": chosen,
                        "retry_verdict": retry,
                        "angle_in_arguments": angle_args,
                        "angle_in_final": angle_final,
                        "angle_in_unusable": angle_unusable,
                        "s": elapsed,
                        "completion_tokens": response.usage.completion_tokens if response else None,
                        "reply": (
                            error
                            if response is None
                            else response.message.content
                            or json.dumps(
                                [{"tool": c.name, "arguments": c.arguments} for c in response.message.tool_calls]
                            )
                        )[:300],
                    }
                )
    finally:
        for model in models.values():
            model.close()
    return results


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    verdicts = Counter(r["verdict"] for r in rows)
    right = sum(1 for r in rows if r["verdict"] == "valid" and r["chosen"] == r["intended"])
    chose = sum(1 for r in rows if r["chosen"] == r["intended"])
    return {
        "prompts": n,
        "valid": verdicts["valid"],
        "valid_rate": round(verdicts["valid"] / n, 4),
        "verdicts": dict(verdicts),
        "intended_tool": chose,
        "intended_rate": round(chose / n, 4),
        "valid_and_intended_rate": round(right / n, 4),
        # What the agent loop ends up with: an unusable reply is retried once with the error.
        "valid_after_retry": verdicts["valid"] + sum(1 for r in rows if r.get("retry_verdict") == "valid"),
        # Replies holding '<' or '>' (a copied placeholder): in tool-call argument values, in final answers.
        "angle_in_arguments": sum(1 for r in rows if r["angle_in_arguments"]),
        "angle_in_final": sum(1 for r in rows if r["angle_in_final"]),
        "angle_in_unusable": sum(1 for r in rows if r["angle_in_unusable"]),
        "s_per_prompt": round(sum(r["s"] for r in rows) / n, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help=f"prompts to run, 1..{len(PROMPTS)}")
    parser.add_argument("--max-tokens", type=int, default=96, help="max_tokens per reply (96)")
    parser.add_argument("--threads", type=int, default=1, help="n_threads (1)")
    parser.add_argument("--model", default="local", help="local (SmolLM2-135M), local-gemma, or a GGUF path")
    parser.add_argument("--data-dir", type=Path, help="where local-gemma's GGUF is assembled (a temp dir)")
    parser.add_argument("--examples", type=int, default=3, help="invalid replies to show per mode (3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not 1 <= args.prompts <= len(PROMPTS) or args.max_tokens < 8 or args.threads < 1:
        parser.error(f"--prompts 1..{len(PROMPTS)}, --max-tokens >= 8, --threads >= 1")
    # Spread a shortened run over every tool: take every k-th prompt.
    step = len(PROMPTS) / args.prompts
    prompts = [PROMPTS[int(i * step)] for i in range(args.prompts)]

    from importlib.metadata import version

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecrew-bench-") as tmp:
        path = gguf(args.model, args.data_dir or Path(tmp))
        results = asyncio.run(measure(prompts, args.max_tokens, args.threads, path))
    wall = time.perf_counter() - started
    stats = {kind: summarize(rows) for kind, rows in results.items()}
    meta = {
        "benchmark": "tool_calls",
        "anchor": "the same model and prompts, constrain=False",
        "model": path.name,
        "tools": len(TOOLS),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "edgecrew": version("edgecrew"),
        "llama_cpp_python": version("llama_cpp_python"),
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "target": "constrained valid_rate >= 0.995",
        "wall_s": round(wall, 1),
    }
    if args.json:
        print(json.dumps({**meta, "results": stats, "calls": results}, indent=2))
        return 0
    print(
        f"edgecrew {meta['edgecrew']} tool calls, {meta['model']}, {len(prompts)} prompts over {len(TOOLS)} tools, "
        f"max_tokens {args.max_tokens}, {args.threads} thread(s), Python {meta['python']}"
    )
    head = (
        f"{'mode':>13}  {'valid calls':>13}  {'rate':>7}  {'intended tool':>13}  {'<> args':>7}  {'<> final':>8}  "
        f"{'<> unusable':>11}  {'s/prompt':>8}  verdicts"
    )
    print(head)
    print("-" * len(head))
    for kind, s in stats.items():
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items()))
        print(
            f"{kind:>13}  {s['valid']:>6} / {s['prompts']:<4}  {100 * s['valid_rate']:>6.1f}%  "
            f"{100 * s['intended_rate']:>12.1f}%  {s['angle_in_arguments']:>7}  {s['angle_in_final']:>8}  "
            f"{s['angle_in_unusable']:>11}  {s['s_per_prompt']:>8.2f}  {verdicts}"
        )
    c, u = stats["constrained"]["valid_rate"], stats["unconstrained"]["valid_rate"]
    print(
        f"constrained, counting the agent loop's retry of an unusable reply: "
        f"{stats['constrained']['valid_after_retry']} / {stats['constrained']['prompts']} valid"
    )
    same = sum(a["reply"] == b["reply"] for a, b in zip(results["constrained"], results["full_grammar"], strict=True))
    speed = stats["full_grammar"]["s_per_prompt"] / stats["constrained"]["s_per_prompt"]
    print(
        f"grammar checked on the chosen token first (constrained) vs filtering the whole vocabulary for "
        f"every token (full_grammar): {speed:.2f}x the speed, {same} / {len(prompts)} replies identical"
    )
    r = stats["required"]["valid_rate"]
    print(
        f"constrained {100 * c:.1f}% valid, with tool_choice=required {100 * r:.1f}% (target >= 99.5%) "
        f"vs unconstrained {100 * u:.1f}%; "
        f"intended tool = chosen tool is the one the prompt asks for (informational); wall {wall:.1f}s"
    )
    for kind, rows in results.items():
        bad = [r for r in rows if r["verdict"] != "valid"][: args.examples]
        for r in bad:
            print(f"  {kind} {r['verdict']}: {r['prompt']!r} -> {r['reply'][:160]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
