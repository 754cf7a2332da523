"""Templates over a run's facts: the task and the latest output of each agent, rendered in Jinja2's sandbox.

``tool`` agents build their arguments with these templates and ``template`` agents render their
answer with one. A template sees two names: ``task`` (the run's task) and ``outputs`` (each agent's
latest output, e.g. ``outputs.facts.memory.available_bytes``). The one design decision: rendering
is a pure function of recorded outputs, sandboxed, with every undefined name an error, so a replayed
run renders exactly what it rendered the first time and a typo fails loudly instead of printing
nothing. An argument that is one ``{{ expression }}`` and nothing else keeps the expression's type (a
number stays a number); any other text renders to a string. Besides Jinja2's own filters there are
``human_bytes`` (``15032385536`` -> ``14.0 GiB``), ``size_mib`` (the first size a text mentions),
``duration_s`` (the first time span it mentions, in seconds) and ``regex(pattern, group=1)`` (a group of
the first match, "" when none), ``latest_message`` (a chat's newest message, out of the transcript a
chat run's task is; any other task as it is), ``code_block`` (the program in a model's reply),
``given_checks`` and ``without_checks`` (the ``Checks:`` a request writes, and the request without them;
see :mod:`edgecrew.domain.codetext`), and ``json_problem`` (why a text is not JSON, with its line and
column; "" when it is).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgecrew.domain.codetext import code_block, given_checks, without_checks
from edgecrew.domain.sizes import find_size, human_size
from edgecrew.domain.transcript import latest_message
from edgecrew.errors import UserError

if TYPE_CHECKING:
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "NAMES",
    "Reference",
    "TemplateProblem",
    "references",
    "render_arguments",
    "render_text",
    "render_value",
    "unguarded_outputs",
    "value_references",
]

NAMES = frozenset({"task", "outputs"})  # what a template may read
_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class TemplateProblem(UserError, ValueError):
    """A template that does not parse, or that failed while rendering (an undefined name, say)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line  # 1-based line inside the template, when known


@functools.cache
def _env() -> SandboxedEnvironment:
    """The one sandbox every template renders in, built (and Jinja2 imported) when a team first has a
    template: a run of model agents only never needs it."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["human_bytes"] = lambda n: _human_bytes(n)
    env.filters["size_mib"] = lambda text, default=None: _size_mib(text, default)
    env.filters["duration_s"] = lambda text, default=None: _duration_s(text, default)
    env.filters["regex"] = lambda text, pattern, group=1: _regex(text, pattern, group)
    env.filters["figures"] = lambda text: figures(str(text))
    env.filters["latest_message"] = lambda text: latest_message(str(text))
    env.filters["code_block"] = lambda text: code_block(str(text))
    env.filters["given_checks"] = lambda text: given_checks(str(text))
    env.filters["without_checks"] = lambda text: without_checks(str(text))
    env.filters["json_problem"] = lambda text: json_problem(str(text))
    return env


@dataclass(frozen=True)
class Reference:
    """``outputs.<agent>[.<field>]`` read by a template (``field`` is None when not read by name)."""

    agent: str
    field: str | None


def _human_bytes(value: Any) -> str:
    """``15032385536`` -> ``14.0 GiB`` (a filter, for answers people read)."""
    return human_size(float(value))


def _size_mib(text: Any, default: Any) -> Any:
    """The first size written with a unit in ``text``, in MiB (``"a 2 GB job" | size_mib(1024)`` -> 1907);
    ``default`` when there is none."""
    found = find_size(str(text))
    return default if found is None else round(found / 2**20)


_SPAN = re.compile(
    r"(?<![\w.,])(\d+(?:[.,]\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w)\b",
    re.IGNORECASE,
)
_SPAN_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration_s(text: Any, default: Any) -> Any:
    """Seconds of the first time span written with a number and a unit in ``text`` (``"in the last 2
    hours" | duration_s`` -> 7200; "30 minutes", "6h", "3 days" too); ``default`` when there is none."""
    match = _SPAN.search(str(text))
    if match is None:
        return default
    unit = match.group(2).lower()
    return float(match.group(1).replace(",", ".")) * _SPAN_S["m" if unit.startswith("mi") else unit[0]]


_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")


def figures(text: str) -> list[str]:
    """The numbers written in ``text`` ("4", "12.5"; a decimal comma becomes a point): a template can
    check that every figure of a model's answer is one of the facts' (``answer | figures``)."""
    return [m.group(0).replace(",", ".") for m in _NUMBER.finditer(text)]


def json_problem(text: str) -> str:
    """Why ``text`` is not JSON, where (``line 2, column 41: Expecting value``); "" when it is: a file a
    tool agent read that was meant to be JSON (a project's okr.json) reaches the answer as its problem."""
    try:
        json.loads(text)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        return str(exc)
    return ""


def _regex(text: Any, pattern: str, group: int | str) -> str:
    """The ``group`` of the first match of ``pattern`` in ``text`` ("" when none): exact words of a task
    (a project's name, a ticket number) reach a tool without passing through a model."""
    match = re.search(pattern, str(text))
    return (match.group(group) or "") if match is not None else ""


def _parse(source: str) -> nodes.Template:
    from jinja2 import TemplateSyntaxError

    try:
        return _env().parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno) from None


def references(source: str) -> tuple[set[str], list[Reference]]:
    """The top-level names a template reads beyond its own variables, and the agent outputs it reads.

    Raises :class:`TemplateProblem` when it does not parse.
    """
    from jinja2 import meta, nodes

    tree = _parse(source)

    names = set(meta.find_undeclared_variables(tree))
    found: list[Reference] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))  # what find_all was asked for
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "outputs":
            agent = _key(node)
            if agent is not None:
                found.append(Reference(agent, None))
        elif isinstance(target, (nodes.Getattr, nodes.Getitem)):
            inner = target.node
            agent = _key(target)
            if isinstance(inner, nodes.Name) and inner.name == "outputs" and agent is not None:
                found.append(Reference(agent, _key(node)))
    return names, list(dict.fromkeys(found))


def _key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def render_text(source: str, scope: Mapping[str, Any]) -> str:
    """``source`` rendered over ``scope`` (``task``, ``outputs``)."""
    from jinja2 import TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError

    try:
        return _env().from_string(source).render(**scope)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno) from None
    except (UndefinedError, SecurityError) as exc:
        raise _failed(_undefined(str(exc), source, scope), exc, source) from None
    except Exception as exc:  # a filter given the wrong kind of value, a division by zero...
        raise _failed(f"{type(exc).__name__}: {exc}", exc, source) from None


def _undefined(message: str, source: str, scope: Mapping[str, Any]) -> str:
    """Jinja's "'dict object' has no attribute 'critic'" said as what it means when the template reads
    the output of an agent that has not run yet in this run (``validate`` cannot know the path taken)."""
    outputs = scope.get("outputs")
    if not isinstance(outputs, Mapping):
        return message
    try:
        _, read = references(source)
    except TemplateProblem:
        return message
    for agent in dict.fromkeys(r.agent for r in read):
        if agent not in outputs and f"'{agent}'" in message:
            return (
                f"outputs.{agent} is undefined: agent '{agent}' has not run yet in this run (read it where it"
                f" has, or guard it: {{% if outputs.{agent} is defined %}}...{{% endif %}})"
            )
    return message


def _failed(message: str, exc: BaseException, source: str) -> TemplateProblem:
    """A rendering failure that names the template line it happened on (Jinja keeps it in the traceback)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    lines = source.splitlines()
    if line is None or not 0 < line <= len(lines):
        return TemplateProblem(message)
    shown = lines[line - 1].strip()
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return TemplateProblem(f"{message} (template line {line}: {shown})", line)


def render_value(value: Any, scope: Mapping[str, Any]) -> Any:
    """One argument: strings rendered (a lone ``{{ expr }}`` keeps its type), lists and mappings walked."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole is not None and "{{" not in whole.group("expr") and "}}" not in whole.group("expr"):
            from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
            from jinja2.exceptions import SecurityError

            try:
                result = _env().compile_expression(whole.group("expr"), undefined_to_none=False)(**scope)
            except TemplateSyntaxError as exc:
                raise TemplateProblem(f"template syntax error: {exc.message}") from None
            except (UndefinedError, SecurityError) as exc:
                raise TemplateProblem(f"{_undefined(str(exc), value, scope)} (in {value.strip()})") from None
            except Exception as exc:
                raise TemplateProblem(f"{type(exc).__name__}: {exc} (in {value.strip()})") from None
            if isinstance(result, StrictUndefined):
                raise TemplateProblem(f"{whole.group('expr').strip()} is undefined")
            return result
        return render_text(value, scope)
    if isinstance(value, Mapping):
        return {k: render_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, scope) for v in value]
    return value


def render_arguments(arguments: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, Any]:
    """A tool agent's arguments rendered over ``scope``; a problem names the argument."""
    rendered: dict[str, Any] = {}
    for name, value in arguments.items():
        try:
            rendered[name] = render_value(value, scope)
        except TemplateProblem as exc:
            raise TemplateProblem(f"argument '{name}': {exc}") from None
    return rendered


def unguarded_outputs(value: Any) -> set[str]:
    """The agents whose output a template (or every string inside an argument value) reads
    unconditionally: outside ``{% if %}``, ``x if c else y``, tests (``is defined``) and ``default``.
    Raises :class:`TemplateProblem` when a string does not parse."""
    from jinja2 import nodes

    if not isinstance(value, str):
        items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
        return set().union(*(unguarded_outputs(item) for item in items))
    found: set[str] = set()

    def walk(node: nodes.Node) -> None:
        if isinstance(node, (nodes.If, nodes.CondExpr, nodes.Test)):
            return
        if isinstance(node, nodes.Filter) and node.name == "default":
            return
        if isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Name):
            agent = _key(node)
            if node.node.name == "outputs" and agent is not None:
                found.add(agent)
        for child in node.iter_child_nodes():
            walk(child)

    walk(_parse(value))
    return found


def value_references(value: Any) -> tuple[set[str], list[Reference]]:
    """:func:`references` of every string inside an argument value."""
    names: set[str] = set()
    found: list[Reference] = []
    if isinstance(value, str):
        return references(value)
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
    for item in items:
        more_names, more = value_references(item)
        names |= more_names
        found += more
    return names, found
