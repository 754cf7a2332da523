"""The server's logs: one JSON object a line (ISO time, level, logger, message, request id), redacted.

Every stdlib logger (edgecrew's own, uvicorn's, libraries') goes through one handler on the root
logger whose structlog ProcessorFormatter adds the request id of the work in progress (and the trace
and span ids when tracing is on), renders the exception, scrubs secrets and writes JSON. Structlog
loggers are routed through the same handler. Scrubbing is a processor, so no call site has to
remember it: values under secret-sounding keys (authorization, x-api-key, token, password, cookie...),
strings shaped like an edgecrew key (``ec_`` + 43 characters), a Bearer token or a URL's password,
and the values of the environment variables that models read their API keys from (``api_key_env``).

``configure_logging`` returns a handle whose ``close`` puts logging back as it found it, so an app
started in a test leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog

from edgecrew.context import request_id as current_request_id

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"(^|_)(authorization|proxy_authorization|api_?key|apikey|token|password|passwd|secret|cookie|"
    r"set_cookie|credentials?|private_key)$"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![A-Za-z0-9])ec_[A-Za-z0-9_-]{43}"), "ec_" + REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)
_MIN_SECRET_CHARS = 6  # shorter environment values would scrub ordinary words
_OUR_HANDLER = "_edgecrew_handler"


def secret_key(name: str) -> bool:
    """Whether a field called ``name`` holds a secret (``X-API-Key``, ``access_token``, ``password``...)."""
    return bool(_SECRET_KEY.search(re.sub(r"[^a-z0-9]+", "_", name.lower())))


class Redactor:
    """A structlog processor that scrubs secrets from every value of an event, however deeply nested."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        """Scrub these literal values too (e.g. the API keys models read from the environment)."""
        self._secrets.update(s for s in secrets if s and len(s) >= _MIN_SECRET_CHARS)

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = REDACTED if secret_key(str(key)) and value else self.scrub(value)
        return event_dict

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, bytes):
            return self.scrub_text(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {k: REDACTED if secret_key(str(k)) and v else self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            # A (name, value) pair such as an ASGI header: the name says whether the value is secret.
            if len(items) == 2 and isinstance(items[0], str | bytes) and secret_key(_text(items[0])) and items[1]:
                return [self.scrub(items[0]), REDACTED]
            return [self.scrub(v) for v in items]
        return value

    def scrub_text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def add_context(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the request id of the work in progress, and the current trace and span when tracing."""
    if "request_id" not in event_dict and (rid := current_request_id.get()) is not None:
        event_dict["request_id"] = rid
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
            event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


@dataclass
class LogSetup:
    """What ``configure_logging`` changed, to undo it."""

    handler: logging.Handler
    redactor: Redactor
    _saved: list[tuple[logging.Logger, int, list[logging.Handler], bool]] = field(default_factory=list)

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for logger, level, handlers, propagate in reversed(self._saved):
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        self._saved.clear()


def formatter(redactor: Redactor, *, fmt: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every line: stdlib records and structlog events alike."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_context,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            structlog.processors.EventRenamer("message"),
            renderer,
        ],
    )


def configure_logging(
    *, level: str = "INFO", fmt: str = "json", stream: TextIO | None = None, redactor: Redactor | None = None
) -> LogSetup:
    """Route all logging through one redacting JSON (or ``console``) handler writing to ``stream``."""
    redactor = redactor or Redactor()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OUR_HANDLER, False)]:
        root.removeHandler(old)  # an app started before in this process, never closed
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _OUR_HANDLER, True)
    handler.setFormatter(formatter(redactor, fmt=fmt))
    setup = LogSetup(handler, redactor)
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        _change(setup, root, level=logging.WARNING)  # libraries' warnings, not their chatter
    _change(setup, logging.getLogger("edgecrew"), level=logging.getLevelName(level.upper()))
    # uvicorn's own handlers print plain text: its lines go to ours instead (directly, not through
    # the root, where an embedding program's handlers would see them twice), and its access log is
    # replaced by the middleware's (which knows the route, the key id and the request id).
    _change(setup, logging.getLogger("uvicorn"), handlers=[handler], propagate=False)
    _change(setup, logging.getLogger("uvicorn.error"), handlers=[], propagate=True)  # on to "uvicorn"
    _change(setup, logging.getLogger("uvicorn.access"), level=logging.WARNING, handlers=[handler], propagate=False)
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_context,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return setup


def _change(
    setup: LogSetup,
    logger: logging.Logger,
    *,
    level: int | None = None,
    handlers: list[logging.Handler] | None = None,
    propagate: bool | None = None,
) -> None:
    setup._saved.append((logger, logger.level, list(logger.handlers), logger.propagate))
    if level is not None:
        logger.setLevel(level)
    if handlers is not None:
        logger.handlers[:] = handlers
    if propagate is not None:
        logger.propagate = propagate
