"""Tools from MCP servers: each server under ``mcp_servers:`` in edgecrew.yaml adds its tools as ``server.tool``.

The one design decision: every MCP session lives on one background thread with its own event loop. The
SDK's sessions are anyio task groups bound to the task that opened them, while the engine calls tools
from DBOS steps on whatever loop or thread runs them. So each session is held open by one task on that
loop for the process lifetime, a tool's function hands its call to the loop and awaits the answer from
its own loop, and everything is closed at exit (or by ``close_mcp()``). A session that dropped (the
server died) is reopened by the next call.

The ``mcp`` SDK is imported lazily: a project without ``mcp_servers`` never needs it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import re
import shlex
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO, TypeAlias, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from edgecrew.errors import ToolError, UserError
from edgecrew.tools.base import Risk, ToolParameters, ToolRegistry, ToolSpec

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult, ContentBlock, Tool

T = TypeVar("T")

__all__ = [
    "McpConnections",
    "McpServerConfig",
    "McpServers",
    "close_mcp",
    "load_mcp_tools",
    "mcp_connections",
    "register_mcp_tools",
    "result_value",
]


class McpServerConfig(BaseModel):
    """One MCP server: a command to start (stdio) or a URL to reach (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # stdio: the command line as a list (``[python, srv.py]``) or one string (split like a shell would).
    command: list[str] | str | None = None
    args: list[str] = []
    env: dict[str, str] = {}  # added to a minimal inherited environment (PATH, HOME, ...)
    cwd: Path | None = None  # relative to the project directory; default: the project directory
    # streamable HTTP
    url: str | None = None
    headers: dict[str, str] = {}
    # both
    timeout_s: float = Field(30.0, gt=0)  # per tool call
    connect_timeout_s: float = Field(30.0, gt=0)  # start (or reach), handshake and tool listing
    tools: list[str] | None = None  # only these of the server's tools (default: all)
    risk: Risk | None = None  # default: "safe" for tools the server marks read-only, else "risky"

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | str | None) -> list[str] | str | None:
        if value is not None and not (shlex.split(value) if isinstance(value, str) else value):
            raise ValueError("command is empty; give the program to start, e.g. [python, server.py]")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"url '{value}' must start with http:// or https:// (e.g. http://127.0.0.1:8000/mcp)")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "give either command (a server started over stdio) or url (a streamable HTTP server), not "
                + ("both" if self.command is not None else "neither")
            )
        if self.url is not None and (self.args or self.env or self.cwd is not None):
            raise ValueError("args, env and cwd only apply to a command (stdio) server, not to a url")
        if self.command is not None and self.headers:
            raise ValueError("headers only apply to a url (HTTP) server, not to a command")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    def argv(self) -> list[str]:
        """The whole command line of a stdio server."""
        command = self.command or []
        return [*(shlex.split(command) if isinstance(command, str) else command), *self.args]

    def describe(self) -> str:
        return self.url if self.url is not None else "command: " + shlex.join(self.argv())


def _server_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(
            f"server name '{name}' may only use letters, digits, '-' and '_' (it prefixes its tools: '{name}.tool')"
        )
    return name


ServerName = Annotated[str, AfterValidator(_server_name)]
McpServers: TypeAlias = dict[ServerName, McpServerConfig]
"""The ``mcp_servers:`` section of edgecrew.yaml: names (letters, digits, ``-``, ``_``) to servers."""


# -- connections -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    """One server's session, owned by the task that holds it open (on the background loop)."""

    name: str
    config: McpServerConfig
    cwd: Path | None
    log_file: Path | None
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Future[list[Tool]] | None = None
    task: asyncio.Task[None] | None = None
    client: Client | None = None
    tools: list[Tool] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.client is not None and not self.closing.is_set() and self.task is not None and not self.task.done()


class McpConnections:
    """The MCP sessions of this process, held on one background thread with its own event loop.

    Every public method may be called from any thread or event loop (except from that loop's own thread,
    for the blocking ones).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sessions: dict[str, _Session] = {}  # touched only on the background loop
        self._opening: dict[str, asyncio.Lock] = {}  # one opener per server at a time (on the loop)
        self._atexit = False

    # -- the background loop --

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                started = threading.Event()
                loop.call_soon(started.set)
                thread = threading.Thread(target=loop.run_forever, name="edgecrew-mcp", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
                if not self._atexit:
                    atexit.register(self.close)
                    self._atexit = True
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the background loop."""
        return asyncio.run_coroutine_threadsafe(coro, self._running_loop())

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await a coroutine run on the background loop from any other loop (cancelling it cancels it)."""
        return await asyncio.wrap_future(self.submit(coro))

    # -- public API --

    async def connect(
        self, name: str, config: McpServerConfig, *, base_dir: Path | None = None, log_dir: Path | None = None
    ) -> list[Tool]:
        """Open (or reuse) the session of server ``name`` and return its tools."""
        cwd = (base_dir / config.cwd if config.cwd is not None else base_dir) if base_dir else config.cwd
        log_file = log_dir / f"mcp-{name}.log" if log_dir is not None and config.transport == "stdio" else None
        return await self._on_loop(self._open(name, config, cwd, log_file))

    async def call(self, server: str, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        """Call ``tool`` on ``server``; returns its result as text or JSON, raises ToolError on failure."""
        return await self._on_loop(self._call(server, tool, arguments, timeout_s))

    def owns_current_thread(self) -> bool:
        """Whether the caller runs on the background loop's thread (where blocking would deadlock)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def servers(self) -> list[str]:
        """Names of the servers with an open session."""
        return sorted(name for name, s in list(self._sessions.items()) if s.alive)

    def close(self, timeout_s: float = 15.0) -> None:
        """Close every session (stopping stdio servers) and the background loop; a later call starts over."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("McpConnections.close() cannot run on its own event loop thread")
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout_s)
            # Whatever the close left running (a server that would not stop in time) is cancelled on
            # its loop, so no subprocess transport outlives the loop for the garbage collector to find.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(5.0)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()
        self._sessions, self._opening = {}, {}  # their tasks and locks belonged to that loop

    # -- on the background loop --

    async def _open(self, name: str, config: McpServerConfig, cwd: Path | None, log_file: Path | None) -> list[Tool]:
        async with self._opening.setdefault(name, asyncio.Lock()):
            return await self._open_now(name, config, cwd, log_file)

    async def _open_now(
        self, name: str, config: McpServerConfig, cwd: Path | None, log_file: Path | None
    ) -> list[Tool]:
        existing = self._sessions.get(name)
        if existing is not None:
            if existing.alive and existing.config == config and existing.cwd == cwd:
                return existing.tools
            await self._shut(existing)
        session = _Session(name, config, cwd, log_file)
        session.ready = asyncio.get_running_loop().create_future()
        session.task = asyncio.create_task(self._hold(session), name=f"mcp-{name}")
        try:
            tools = await asyncio.wait_for(asyncio.shield(session.ready), config.connect_timeout_s)
        except TimeoutError:
            await self._shut(session)
            raise UserError(
                f"MCP server '{name}' ({config.describe()}) did not answer within {config.connect_timeout_s:g}s"
                f"{_log_hint(log_file)}; check that it starts, or raise connect_timeout_s"
            ) from None
        except Exception as exc:
            await self._shut(session)
            raise UserError(
                f"MCP server '{name}' ({config.describe()}) could not be "
                f"{'started' if config.transport == 'stdio' else 'reached'}: {_reason(exc)}{_log_hint(log_file)}"
            ) from None
        self._sessions[name] = session
        return tools

    async def _hold(self, session: _Session) -> None:
        """Open the session, list its tools, then keep it open until asked to close."""
        from mcp import Client

        assert session.ready is not None
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await _transport(session, stack)
                # The read timeout bounds start-up requests; each tool call passes its own.
                client = await stack.enter_async_context(
                    Client(transport, read_timeout_seconds=session.config.connect_timeout_s)
                )
                tools = await _list_tools(client)
                session.client, session.tools = client, tools
                session.ready.set_result(tools)
                await session.closing.wait()
        except BaseException as exc:
            if not session.ready.done():
                if isinstance(exc, Exception):
                    session.ready.set_exception(exc)
                else:
                    session.ready.cancel()
            if not isinstance(exc, Exception):
                raise
        finally:
            session.client = None

    async def _shut(self, session: _Session) -> None:
        session.closing.set()
        if session.task is not None and not session.task.done():
            # stdio shutdown closes stdin, waits, then terminates: bounded by the SDK (about 6 s).
            done, _ = await asyncio.wait({session.task}, timeout=10)
            if not done:
                session.task.cancel()
                with contextlib.suppress(BaseException):
                    await session.task
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]

    async def _close_all(self) -> None:
        await asyncio.gather(*(self._shut(s) for s in list(self._sessions.values())), return_exceptions=True)

    async def _call(self, server: str, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT
        from pydantic import ValidationError

        session = self._sessions.get(server)
        if session is None:
            raise ToolError(f"MCP server '{server}' is not connected")
        if not session.alive:  # it dropped since: reopen it once for this call
            try:
                await self._open(server, session.config, session.cwd, session.log_file)
            except UserError as exc:
                raise ToolError(str(exc)) from None
            session = self._sessions[server]
        client = session.client
        assert client is not None
        name = f"{server}.{tool}"
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout_s)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ToolError(f"{name} timed out after {timeout_s:g}s") from None
            if exc.code == CONNECTION_CLOSED:
                session.closing.set()  # reopened by the next call
                raise ToolError(
                    f"MCP server '{server}' closed the connection during {name}{_log_hint(session.log_file)}; "
                    "it is restarted on the next call"
                ) from None
            raise ToolError(f"{name} failed: {exc.message}") from None
        except ValidationError as exc:
            raise ToolError(f"{name} returned a result that does not match its schema: {exc}") from None
        except Exception as exc:  # transport failures (HTTP errors, broken pipes)
            raise ToolError(f"{name} failed: MCP server '{server}' is unreachable: {_reason(exc)}") from None
        if result.is_error:
            raise ToolError(f"{name} failed: {_content_text(result.content) or 'the server gave no reason'}")
        return result_value(result)


async def _transport(session: _Session, stack: contextlib.AsyncExitStack) -> Any:
    """The SDK transport for a session: a subprocess over stdio, or streamable HTTP."""
    config = session.config
    if config.url is not None:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=config.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        )
        return streamable_http_client(config.url, http_client=http)

    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    argv = config.argv()
    params = StdioServerParameters(
        command=argv[0], args=argv[1:], env=dict(config.env) or None, cwd=session.cwd or config.cwd
    )
    errlog: TextIO | None = None
    if session.log_file is not None:
        session.log_file.parent.mkdir(parents=True, exist_ok=True)
        errlog = stack.enter_context(session.log_file.open("a", encoding="utf-8"))
        errlog.write(f"{_SESSION_MARK} {time.strftime('%Y-%m-%d %H:%M:%S')}: {config.describe()}\n")
        errlog.flush()
    return stdio_client(params, errlog=errlog) if errlog is not None else stdio_client(params)


async def _list_tools(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose pages never end cannot hang start-up
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _reason(exc: BaseException) -> str:
    """The innermost useful message of an exception (anyio wraps task failures in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, UserError | ToolError) else f"{type(exc).__name__}: {text}"


_SESSION_MARK = "--- edgecrew started this server"


def _log_hint(log_file: Path | None) -> str:
    """Where a stdio server's stderr is, with the last lines its latest session wrote there."""
    if log_file is None or not log_file.exists():
        return ""
    text = log_file.read_text(encoding="utf-8", errors="replace")
    tail = [line.strip() for line in text.rsplit(_SESSION_MARK, 1)[-1].splitlines()[1:] if line.strip()][-5:]
    return f" (its stderr is in {log_file}" + (": " + " | ".join(tail) if tail else "") + ")"


# -- results ---------------------------------------------------------------------------------------


def result_value(result: CallToolResult) -> Any:
    """A tool result as edgecrew passes it on: the structured content when there is any, else the text."""
    if result.structured_content is not None:
        return result.structured_content
    return _content_text(result.content)


def _content_text(blocks: list[ContentBlock]) -> str:
    return "\n".join(_block_text(b) for b in blocks)


def _block_text(block: ContentBlock) -> str:
    from mcp.types import (
        AudioContent,
        BlobResourceContents,
        EmbeddedResource,
        ImageContent,
        ResourceLink,
        TextContent,
    )

    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent | AudioContent):
        return f"[{block.type} {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
    if isinstance(block, ResourceLink):
        return f"[resource {block.name}: {block.uri}]"
    if isinstance(block, EmbeddedResource):
        if isinstance(block.resource, BlobResourceContents):
            return f"[resource {block.resource.uri} ({block.resource.mime_type or 'binary'})]"
        return block.resource.text
    return str(block)


# -- tools -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class McpToolCall:
    """A ToolSpec's function for one MCP tool: forwards the call to its server."""

    connections: McpConnections
    server: str
    tool: str
    timeout_s: float

    async def __call__(self, **arguments: Any) -> Any:
        return await self.connections.call(self.server, self.tool, arguments, self.timeout_s)


def tool_spec(server: str, config: McpServerConfig, tool: Tool, connections: McpConnections) -> ToolSpec:
    """The ToolSpec of one MCP tool, named ``server.tool``."""
    schema = {k: v for k, v in tool.input_schema.items() if k != "title"}
    schema["properties"] = {
        name: {k: v for k, v in prop.items() if k != "title"} if isinstance(prop, dict) else prop
        for name, prop in schema.get("properties", {}).items()
    }
    schema.setdefault("type", "object")
    read_only = tool.annotations is not None and tool.annotations.read_only_hint is True
    return ToolSpec(
        name=f"{server}.{tool.name}",
        description=tool.description or tool.title or f"{tool.name} (from MCP server '{server}')",
        parameters=ToolParameters(schema),
        # The SDK already checks structured results against the tool's output schema.
        fn=McpToolCall(connections, server, tool.name, config.timeout_s),
        timeout_s=config.timeout_s,
        risk=config.risk or ("safe" if read_only else "risky"),
    )


async def load_mcp_tools(
    servers: Mapping[str, McpServerConfig],
    *,
    base_dir: Path | None = None,
    log_dir: Path | None = None,
    connections: McpConnections | None = None,
) -> list[ToolSpec]:
    """Connect to every server (in parallel) and return their tools as ToolSpecs named ``server.tool``.

    Sessions stay open in ``connections`` (default: the process's) until it is closed. ``base_dir`` is
    where stdio servers start (and what a relative ``cwd`` is relative to); ``log_dir`` receives each
    stdio server's stderr as ``mcp-<server>.log``. A server that cannot be started, reached or listed
    raises UserError naming it.
    """
    if not servers:
        return []
    _require_sdk()
    conns = connections or mcp_connections()
    names = list(servers)
    listed = await asyncio.gather(
        *(conns.connect(n, servers[n], base_dir=base_dir, log_dir=log_dir) for n in names), return_exceptions=True
    )
    failures = [r for r in listed if isinstance(r, BaseException)]
    if failures:
        if len(failures) == 1 and isinstance(failures[0], UserError):
            raise failures[0]
        raise UserError("; ".join(_reason(f) for f in failures))
    specs: list[ToolSpec] = []
    for name, tools in zip(names, listed, strict=True):
        assert not isinstance(tools, BaseException)
        config = servers[name]
        by_name = {t.name: t for t in tools}
        if config.tools is not None:
            missing = [t for t in config.tools if t not in by_name]
            if missing:
                raise UserError(
                    f"MCP server '{name}' has no tool {', '.join(repr(m) for m in missing)} "
                    f"(it has: {', '.join(sorted(by_name)) or 'none'}); fix mcp_servers.{name}.tools"
                )
            tools = [by_name[t] for t in config.tools]
        specs += [tool_spec(name, config, t, conns) for t in tools]
    return specs


def register_mcp_tools(
    registry: ToolRegistry,
    servers: Mapping[str, McpServerConfig],
    *,
    base_dir: Path | None = None,
    log_dir: Path | None = None,
    connections: McpConnections | None = None,
) -> list[ToolSpec]:
    """Blocking form of ``load_mcp_tools`` for synchronous start-up code; registers the tools in ``registry``.

    A tool name already taken by a built-in or plugin tool is a UserError (rename the server).
    """
    if not servers:
        return []
    conns = connections or mcp_connections()
    if conns.owns_current_thread():
        raise RuntimeError("register_mcp_tools() blocks; on the MCP loop itself, await load_mcp_tools() instead")
    future = conns.submit(load_mcp_tools(servers, base_dir=base_dir, log_dir=log_dir, connections=conns))
    specs = future.result()
    for spec in specs:
        taken = registry.canonical(spec.name)
        if taken in registry.names() and not isinstance(registry.get(taken).fn, McpToolCall):
            server = spec.name.split(".", 1)[0]
            raise UserError(
                f"MCP server '{server}' offers '{spec.name}', which is already the name of a built-in or plugin "
                f"tool; rename the server under mcp_servers (e.g. '{server}-mcp')"
            )
        registry.register(spec)
    return specs


def _require_sdk() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise UserError(
            "mcp_servers needs the MCP SDK: pip install 'mcp>=2.3' (or edgecrew[litellm], which brings it)"
        ) from None


_CONNECTIONS: McpConnections | None = None


def mcp_connections() -> McpConnections:
    """The process's MCP sessions (closed at exit)."""
    global _CONNECTIONS
    if _CONNECTIONS is None:
        _CONNECTIONS = McpConnections()
    return _CONNECTIONS


def close_mcp() -> None:
    """Close the process's MCP sessions now (they reopen when tools are loaded again)."""
    if _CONNECTIONS is not None:
        _CONNECTIONS.close()


async def _cancel_the_rest() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
