"""ToolSpec, the ``@tool`` decorator and the registry that every tool call resolves through.

Schemas are derived from type hints with pydantic. Names are looked up normalized (case, and
``-``/``_``/``.`` treated alike) and through declared aliases, because small models misspell them.
Plugins declare tools with the ``@tool`` decorator (kept in :func:`declared_tools` until a runtime
registers them); the built-ins build the same :class:`ToolSpec` with :func:`spec_from_function` and
register it in the registry the runtime passes them (``edgecrew.tools.builtins.builtin_registry``).
Each runtime has its own registry, so a project's settings (a Prometheus URL, MCP servers) never leak
into another runtime of the same process.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, create_model

from edgecrew.domain.messages import ToolDefinition
from edgecrew.errors import NotFoundError, ToolError, UserError, validation_problem

if TYPE_CHECKING:
    from edgecrew.models.pool import ModelPool
    from edgecrew.tools.filepolicy import FilePolicy

Risk = Literal["safe", "risky", "forbidden"]
ToolFunction = Callable[..., Any]


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves, and what the runtime lends it (typed fields)."""

    run_id: str
    agent: str
    workspace: Path  # the run's workspace
    files: FilePolicy | None = None  # the agent's file policy (None: everything inside the workspace)
    pool: ModelPool | None = None  # this process's model pool (None: no models here)
    # Folders outside the workspace that a run sees at a top-level name: a project's files at project/
    # (edgecrew.projects). File tools resolve such paths under the folder and check policies on "project/...".
    mounts: tuple[tuple[str, Path], ...] = ()


class ToolParameters:
    """A tool's arguments: a JSON Schema given as it is (an MCP server's tools), or read from a function's
    signature and type hints, with a pydantic model that validates and coerces them. A function's model
    and schema are built on first use: building them for the ~90 built-in tools took ~150 ms of every
    command's start, for tools most runs never offer. ``then`` rewrites the schema once built."""

    def __init__(
        self,
        schema: dict[str, Any] | None = None,
        *,
        function: ToolFunction | None = None,
        then: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if (schema is None) == (function is None):
            raise ValueError("ToolParameters takes a schema or a function")
        self._schema, self._function, self._then = schema, function, then
        self._model: type[BaseModel] | None = None

    def rewritten(self, then: Callable[[dict[str, Any]], dict[str, Any]]) -> ToolParameters:
        """The same parameters, their schema passed through ``then`` (also on first use)."""
        if self._function is None:
            assert self._schema is not None
            return ToolParameters(then(self._schema))
        first = self._then
        return ToolParameters(function=self._function, then=then if first is None else lambda s: then(first(s)))

    @property
    def schema(self) -> dict[str, Any]:
        if self._schema is None:
            self._build()
        assert self._schema is not None
        return self._schema

    @property
    def model(self) -> type[BaseModel] | None:
        """The pydantic model of a function's arguments (None for a given schema)."""
        if self._function is not None and self._model is None:
            self._build()
        return self._model

    def _build(self) -> None:
        assert self._function is not None
        hints = get_type_hints(self._function, include_extras=True)  # keep Annotated[..., Field(...)] limits
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(self._function).parameters.items():
            if pname == "ctx":
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hints.get(pname, Any), default)
        model = create_model(f"{self._function.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        self._model, self._schema = model, (self._then(schema) if self._then is not None else schema)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToolParameters) and self.schema == other.schema

    __hash__ = None  # type: ignore[assignment]  # as the dict it stands for

    def __repr__(self) -> str:
        return f"ToolParameters({self._schema!r})" if self._function is None else f"ToolParameters({self._function!r})"


@dataclass(frozen=True)
class ToolSpec:
    """A callable tool with JSON Schemas for its input and output."""

    name: str
    description: str
    parameters: ToolParameters
    fn: Callable[..., Awaitable[Any]]
    output_schema: dict[str, Any] | None = None
    timeout_s: float = 30.0
    aliases: tuple[str, ...] = ()
    risk: Risk = "safe"
    wants_context: bool = False
    # The result's pydantic model, its JSON Schema built on first use (instead of ``output_schema``).
    output_model: type[BaseModel] | None = None

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.parameters.schema

    @property
    def result_schema(self) -> dict[str, Any] | None:
        """The JSON Schema results are checked against: ``output_schema``, or ``output_model``'s."""
        if self.output_schema is None and self.output_model is not None:
            return _model_schema(self.output_model)
        return self.output_schema

    def definition(self) -> ToolDefinition:
        return ToolDefinition(name=self.name, description=self.description, parameters=self.input_schema)

    def validate_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Return the arguments coerced by the schema, or raise ToolError naming what is wrong."""
        odd = _non_finite(arguments)
        if odd is not None:  # JSON has no NaN or infinity: stored, they would come back as null
            raise ToolError(f"invalid arguments for {self.name}: {odd or 'arguments'}: must be a finite number")
        model = self.parameters.model
        if model is not None:
            from pydantic import ValidationError

            try:
                return model.model_validate(arguments).model_dump()
            except ValidationError as exc:
                problems = "; ".join(validation_problem(e, "arguments") for e in exc.errors())
                raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        import jsonschema  # here, not at the top: most runs never check a schema-only tool's arguments

        errors = sorted(jsonschema.Draft202012Validator(self.input_schema).iter_errors(arguments), key=str)
        if errors:
            raise ToolError(f"invalid arguments for {self.name}: " + "; ".join(e.message for e in errors))
        return arguments

    async def call(self, arguments: dict[str, Any], context: ToolContext, budget_s: float | None = None) -> Any:
        """Validate the arguments and run the tool within its own timeout, or within ``budget_s``
        (what is left of the calling agent's time) when that is shorter: the one place tool time is bounded."""
        args = self.validate_arguments(arguments)
        if self.wants_context:
            args = {**args, "ctx": context}
        agent_bound = budget_s is not None and budget_s < self.timeout_s
        limit = max(budget_s, 0.001) if budget_s is not None and agent_bound else self.timeout_s
        try:
            result = await asyncio.wait_for(self.fn(**args), timeout=limit)
        except TimeoutError:
            if agent_bound:
                raise ToolError(f"tool '{self.name}' ran past the agent's time limit") from None
            raise ToolError(f"{self.name} timed out after {self.timeout_s:g}s") from None
        checked = self.result_schema
        if checked is not None:
            import jsonschema

            errors = list(jsonschema.Draft202012Validator(checked).iter_errors(result))
            if errors:
                raise ToolError(f"{self.name} returned invalid output: {errors[0].message}")
        return result


@functools.cache
def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def normalize(name: str) -> str:
    return re.sub(r"[-_.\s]+", ".", name.strip().lower())


F = TypeVar("F", bound=ToolFunction)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 30.0,
    aliases: Iterable[str] = (),
    risk: Risk = "safe",
    registry: ToolRegistry | None = None,
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 30.0,
    aliases: Iterable[str] = (),
    risk: Risk = "safe",
    registry: ToolRegistry | None = None,
) -> F | Callable[[F], F]:
    """Register a function as a tool; its schema comes from its type hints and docstring."""

    def register(func: F) -> F:
        spec = spec_from_function(
            func, name=name, description=description, timeout_s=timeout_s, aliases=tuple(aliases), risk=risk
        )
        (registry or _DECLARED).register(spec)
        return func

    return register(fn) if fn is not None else register


def spec_from_function(
    func: ToolFunction,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 30.0,
    aliases: tuple[str, ...] = (),
    risk: Risk = "safe",
) -> ToolSpec:
    wants_context = "ctx" in inspect.signature(func).parameters
    if inspect.iscoroutinefunction(func):
        afn = func
    else:

        async def afn(**kwargs: Any) -> Any:
            return await asyncio.to_thread(func, **kwargs)

    doc = inspect.getdoc(func) or ""
    return ToolSpec(
        name=name or func.__name__,
        description=description or doc.split("\n\n")[0].replace("\n", " ") or (name or func.__name__),
        parameters=ToolParameters(function=func),
        fn=afn,
        timeout_s=timeout_s,
        aliases=aliases,
        risk=risk,
        wants_context=wants_context,
    )


class ToolRegistry:
    """Tools by normalized name and alias."""

    def __init__(self) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self._index: dict[str, str] = {}

    def register(self, spec: ToolSpec) -> None:
        for key in (spec.name, *spec.aliases):
            owner = self._index.get(normalize(key))
            if owner is not None and owner != spec.name:
                raise UserError(f"tool name '{key}' of '{spec.name}' is already used by tool '{owner}'")
        self._specs[spec.name] = spec
        for key in (spec.name, *spec.aliases):
            self._index[normalize(key)] = spec.name

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` (normalized, aliases resolved); the input if unknown."""
        return self._index.get(normalize(name), name)

    def find(self, name: str) -> ToolSpec | None:
        canonical = self._index.get(normalize(name))
        return self._specs[canonical] if canonical is not None else None

    def get(self, name: str) -> ToolSpec:
        canonical = self._index.get(normalize(name))
        if canonical is None:
            raise NotFoundError(f"unknown tool '{name}'")
        return self._specs[canonical]

    def names(self) -> frozenset[str]:
        return frozenset(self._specs)

    def specs(self) -> list[ToolSpec]:
        return [self._specs[n] for n in sorted(self._specs)]


_DECLARED = ToolRegistry()  # tools that `@tool` declared with no registry named (plugins), checked for clashes


def declared_tools() -> list[ToolSpec]:
    """The tools plugins declared with ``@tool`` (no registry named); every runtime registers them."""
    return _DECLARED.specs()


@contextmanager
def as_tool_errors() -> Iterator[None]:
    """A service's UserError inside a tool becomes the ToolError the calling agent reads."""
    from edgecrew.errors import ToolError, UserError

    try:
        yield
    except ToolError:
        raise
    except UserError as exc:
        raise ToolError(str(exc)) from None


def _non_finite(value: Any, where: str = "") -> str | None:
    """Where in ``value`` a NaN or infinite number is (dotted, "" for the whole), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in children:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None
