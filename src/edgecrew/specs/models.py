"""The ``models:`` section of ``edgecrew.yaml`` → ModelDef objects, with file:line errors.

An alias's keys are the common ones (:class:`ModelDoc`'s fields: memory, tags, fallbacks, slots...)
and those of its backend's settings model (:mod:`edgecrew.models.backends`). The one design decision:
the choice of backend happens inside pydantic's validation of the entry, so every shape error keeps
its path (``models.<alias>.<key>``) and so its file:line: ``backend`` is read first, then the whole
entry is validated against the common fields joined with that backend's settings. An unknown backend
is an error that lists the registered ones; a key of another backend is named as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from edgecrew.domain.sizes import parse_size
from edgecrew.errors import SpecIssue, UserError
from edgecrew.models.backends import ModelBackend, ModelBackends, default_backends
from edgecrew.models.registry import BUILTIN_MODELS, DEFAULT_CAPABILITIES, ModelDef
from edgecrew.specs.yamlsrc import line_of


class ModelDoc(BaseModel):
    """One alias under ``models:``; validating it yields the subclass made for its backend."""

    model_config = ConfigDict(extra="forbid")
    backend: str
    memory: str | int | None = None  # "900MiB", "1.5GB" or bytes; measured at load when absent
    capabilities: list[Literal["tools", "json_schema"]] | None = None
    tags: list[str] = []
    fallbacks: list[str] = []
    pinned: bool = False
    slots: int = Field(1, ge=1, le=64)

    @model_validator(mode="wrap")
    @classmethod
    def _by_backend(cls, data: Any, handler: ModelWrapValidatorHandler[ModelDoc]) -> ModelDoc:
        if cls is not ModelDoc or not isinstance(data, dict):
            return handler(data)
        backends = default_backends()
        name, names = data.get("backend"), backends.names()
        if not isinstance(name, str) or name not in names:
            return _any_backend(tuple(names)).model_validate(data)  # fails on 'backend', listing the names
        try:
            backend = backends.get(name)
            doc = _doc_class(backend)
        except UserError as exc:  # a plugin's backend that does not load: reported at the alias
            raise PydanticCustomError("backend_unavailable", str(exc)) from None
        try:
            return doc.model_validate(data)
        except ValidationError as exc:
            raise _explained(exc, backend, backends) from None


class _AnyBackend(ModelDoc):
    # The other keys cannot be judged before the backend is known: only the common fields are checked.
    model_config = ConfigDict(extra="ignore")


@lru_cache(maxsize=8)
def _any_backend(names: tuple[str, ...]) -> type[ModelDoc]:
    choice: Any = Literal.__getitem__(names)
    return cast(type[ModelDoc], create_model("ModelDoc", __base__=_AnyBackend, backend=(choice, ...)))


@lru_cache(maxsize=64)
def _doc_class(backend: ModelBackend[Any]) -> type[ModelDoc]:
    """The common fields joined with ``backend``'s settings, as one pydantic model."""
    clash = sorted(set(backend.config.model_fields) & set(ModelDoc.model_fields))
    if clash:
        raise UserError(
            f"model backend '{backend.name}' declares {', '.join(clash)}, which every alias has; "
            "its settings model must use other names"
        )
    choice: Any = Literal.__getitem__(backend.name)
    made = create_model("ModelDoc", __base__=(ModelDoc, backend.config), backend=(choice, ...))
    return cast(type[ModelDoc], made)


def _explained(exc: ValidationError, backend: ModelBackend[Any], backends: ModelBackends) -> ValidationError:
    """``exc`` with each unknown key that another backend takes said to be that backend's."""
    errors = exc.errors()
    strays = {e["loc"][0] for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1}
    owners: dict[Any, list[str]] = {}
    for other in backends.loadable() if strays else ():
        for field in strays & set(other.config.model_fields) - {"backend"}:
            owners.setdefault(field, []).append(f"'{other.name}'")
    if not owners:
        return exc
    own = ", ".join(sorted(backend.config.model_fields)) or "none"
    details: list[InitErrorDetails] = []
    for e in errors:
        key = e["loc"][0] if len(e["loc"]) == 1 and e["type"] == "extra_forbidden" else None
        message = e["msg"]
        if key in owners:
            message = f"a field of backend {' and '.join(owners[key])}, not of '{backend.name}' (its own fields: {own})"
        details.append({"type": PydanticCustomError(e["type"], message), "loc": e["loc"], "input": e["input"]})
    return ValidationError.from_exception_data(exc.title, details)


def build_models(
    docs: Mapping[str, ModelDoc], doc: Any, file: str, base_dir: Path
) -> tuple[dict[str, ModelDef], list[SpecIssue]]:
    """ModelDefs for the project's aliases, and every problem found in them."""
    issues: list[SpecIssue] = []
    known = set(BUILTIN_MODELS) | set(docs)

    def issue(loc: tuple[Any, ...], message: str, hint: str = "") -> None:
        issues.append(SpecIssue(file, line_of(doc, ("models", *loc)), message, hint))

    defs: dict[str, ModelDef] = {}
    for alias, m in docs.items():
        backend = default_backends().get(m.backend)
        config = backend.config.model_validate(m.model_dump(include=set(backend.config.model_fields)))
        for problem in config.problems():
            issue((alias,), f"model '{alias}' ({m.backend}) {problem.message}", problem.hint)
        for i, fallback in enumerate(m.fallbacks):
            if fallback not in known:
                issue(
                    (alias, "fallbacks", i),
                    f"model '{alias}' falls back to unknown model '{fallback}'",
                    "known: " + ", ".join(sorted(known)),
                )
            elif fallback == alias:
                issue((alias, "fallbacks", i), f"model '{alias}' lists itself as a fallback")
        try:
            memory = parse_size(m.memory)
        except ValueError as exc:
            issue((alias, "memory"), str(exc))
            memory = None
        defs[alias] = ModelDef(
            alias,
            m.backend,
            config=config,
            memory_bytes=memory,
            capabilities=frozenset(m.capabilities) if m.capabilities is not None else DEFAULT_CAPABILITIES,
            tags=tuple(m.tags),
            fallbacks=tuple(m.fallbacks),
            pinned=m.pinned,
            slots=m.slots,
            base_dir=base_dir,
            source=file,
        )
    return defs, issues
