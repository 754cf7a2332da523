"""Model backends: the kinds of model an alias in ``edgecrew.yaml`` may name (``backend: llamacpp``).

A backend is a :class:`ModelBackend`: its name, a pydantic model of its own settings (a
:class:`BackendConfig`, unknown keys refused), and a factory that builds a :class:`ChatModel` from
them. The fields every alias has whatever its backend (memory, tags, fallbacks, slots...) are not the
backend's business: they stay in :class:`~edgecrew.models.registry.ModelDef`.

The one design decision: every backend is found the same way, through a lazy ``module:attribute``
reference. The built-ins come from :data:`BUILTIN_BACKENDS`, a third-party package declares its own in
the ``edgecrew.model_backends`` entry point group of its distribution::

    [project.entry-points."edgecrew.model_backends"]
    echo = "acme_models.echo:BACKEND"

so nothing is imported until a project names the backend (``import edgecrew`` stays light, a plugin
needs no change in edgecrew), and a backend's module imports its SDK only inside ``build``. Code that
embeds edgecrew (or a test) may also call :func:`register_backend`. Names are unique: a third-party
backend cannot take a built-in's name, and two that claim one name are an error naming both.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from edgecrew.errors import NotFoundError, UserError
from edgecrew.models.base import ChatModel

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
    "BackendConfig",
    "BuildContext",
    "ConfigProblem",
    "ModelBackend",
    "ModelBackends",
    "default_backends",
    "register_backend",
]

ENTRY_POINT_GROUP = "edgecrew.model_backends"
# Built-in backends, in the order an unknown backend's error lists them.
BUILTIN_BACKENDS: Mapping[str, str] = {
    "llamacpp": "edgecrew.models.builtin_backends:LLAMACPP",
    "litellm": "edgecrew.models.builtin_backends:LITELLM",
    "scripted": "edgecrew.models.builtin_backends:SCRIPTED",
}
_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


class BackendConfig(BaseModel):
    """A backend's own settings under an alias in ``edgecrew.yaml``; subclass it with your fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Settings left out of what `edgecrew models show` and the API display (long scripts, say).
    hidden: ClassVar[frozenset[str]] = frozenset()

    def describe(self) -> str:
        """One line for `edgecrew models list`: which file, provider or server backs the alias."""
        return ""

    def problems(self) -> list[ConfigProblem]:
        """What is wrong beyond the shape of the settings (a required choice left open...)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.hidden))


@dataclass(frozen=True)
class ConfigProblem:
    """A meaning problem in a backend's settings, reported at the alias's line."""

    message: str  # completes "model '<alias>' (<backend>) ...", e.g. "needs 'path' or 'package'"
    hint: str = ""


@dataclass(frozen=True)
class BuildContext:
    """What a factory knows besides its settings: the alias and where relative paths lead."""

    alias: str
    base_dir: Path  # the project directory: relative paths in the settings start here
    data_dir: Path  # edgecrew's data directory (files made on first use, such as joined GGUF chunks)


C = TypeVar("C", bound=BackendConfig)


@dataclass(frozen=True)
class ModelBackend(Generic[C]):
    """A kind of model: ``backend: <name>`` in edgecrew.yaml, its settings, and its factory."""

    name: str
    config: type[C]
    build: Callable[[BuildContext, C], ChatModel]  # a new, not yet loaded model


class ModelBackends:
    """The backends a process knows: built-ins, entry points (discovered once), registered in process."""

    def __init__(self, builtins: Mapping[str, str] = BUILTIN_BACKENDS, *, entry_points: bool = True) -> None:
        self._refs: dict[str, tuple[str, str]] = {name: (ref, "built in") for name, ref in builtins.items()}
        self._builtin = frozenset(builtins)
        self._loaded: dict[str, ModelBackend[Any]] = {}
        self._discover = entry_points
        self._lock = threading.RLock()

    def register(self, backend: ModelBackend[Any]) -> None:
        """Add a backend in process (an application embedding edgecrew, a test)."""
        _check_shape(backend, "registered in process")
        with self._lock:
            self._discovered()
            if backend.name in self._refs and self._loaded.get(backend.name) is not backend:
                raise UserError(f"model backend '{backend.name}' is already {self._origin(backend.name)}")
            self._refs.setdefault(backend.name, ("", "registered in process"))
            self._loaded[backend.name] = backend

    def names(self) -> list[str]:
        """Every backend name: built-ins first, then entry points (sorted), then those registered."""
        with self._lock:
            self._discovered()
            return list(self._refs)

    def get(self, name: str) -> ModelBackend[Any]:
        """The backend called ``name``, its module imported now if it was not yet."""
        with self._lock:
            if name not in self._builtin:
                self._discovered()
            if name not in self._refs:
                raise NotFoundError(f"unknown model backend '{name}'; known: {', '.join(self.names())}")
            if name not in self._loaded:
                ref, origin = self._refs[name]
                self._loaded[name] = _load(name, ref, origin)
            return self._loaded[name]

    def loadable(self) -> list[ModelBackend[Any]]:
        """Every backend that loads (for hints only: one that fails to load is left out)."""
        found = []
        for name in self.names():
            try:
                found.append(self.get(name))
            except UserError:
                continue
        return found

    def _origin(self, name: str) -> str:
        ref, origin = self._refs[name]
        return origin if not ref or origin == "built in" else f"{origin} ({ref})"

    def _discovered(self) -> None:
        if not self._discover:
            return
        claims: dict[str, tuple[str, str]] = {}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            origin = f"entry point of {ep.dist.name if ep.dist is not None else 'an unknown distribution'}"
            if ep.name in self._builtin:
                if ep.value != self._refs[ep.name][0]:  # edgecrew's own entry points name the same objects
                    raise UserError(
                        f"model backend '{ep.name}' ({origin}, {ep.value}) takes the name of a built-in "
                        "backend; give it another name"
                    )
                continue
            earlier = claims.get(ep.name)
            if earlier is not None and earlier[0] != ep.value:
                raise UserError(
                    f"model backend '{ep.name}' is claimed twice: {earlier[1]} ({earlier[0]}) and "
                    f"{origin} ({ep.value}); uninstall one of them"
                )
            claims[ep.name] = (ep.value, origin)
        self._refs.update(claims)
        self._discover = False  # only once it succeeded: a clash is reported every time it matters


def _load(name: str, ref: str, origin: str) -> ModelBackend[Any]:
    module_name, _, attribute = ref.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            found = getattr(found, part)
    except Exception as exc:  # a plugin's import may fail any way at all: name it, never a traceback
        raise UserError(
            f"model backend '{name}' ({origin}, {ref}) cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(found, ModelBackend) or found.name != name:
        raise UserError(
            f"model backend '{name}' ({origin}) must point at a ModelBackend named '{name}', but {ref} is {found!r}"
        )
    _check_shape(found, origin)
    return found


def _check_shape(backend: ModelBackend[Any], origin: str) -> None:
    if not _NAME.match(backend.name):
        raise UserError(f"model backend name '{backend.name}' ({origin}) must be lowercase: letters, digits, _ . -")
    if not (isinstance(backend.config, type) and issubclass(backend.config, BackendConfig)):
        raise UserError(f"model backend '{backend.name}' ({origin}): its config must subclass BackendConfig")


_DEFAULT: ModelBackends | None = None
_DEFAULT_LOCK = threading.Lock()


def default_backends() -> ModelBackends:
    """The process-wide backends; entry points are read the first time a name outside the built-ins
    is needed."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = ModelBackends()
        return _DEFAULT


def register_backend(backend: ModelBackend[Any]) -> ModelBackend[Any]:
    """Register ``backend`` in this process (the entry point group is the way for installed packages)."""
    default_backends().register(backend)
    return backend
