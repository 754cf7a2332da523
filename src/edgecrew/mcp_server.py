"""edgecrew as an MCP server: the project's tools, and each team as a tool ``team.<name>`` that runs it.

Built on the SDK's low-level ``Server`` rather than ``MCPServer``, because edgecrew's tools already carry
their JSON Schemas and validate their own arguments: the server only lists them and forwards calls. A
team tool starts a durable run through ``RunService`` and answers when the run ends, with its output and
run id (the run is in the store like any other: ``edgecrew runs show RUN``), or as soon as it waits for a
person's approval (an MCP client cannot give one): then with the pending calls and the commands that decide
them, and the run goes on in this process once they are decided.

Tools called over MCP have no run of their own, so they all act in one workspace per server process,
``$EDGECREW_HOME/workspaces/mcp-<id>`` unless ``--workspace`` names one. Forbidden tools are not served.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecrew.domain.runs import RunStatus
from edgecrew.errors import EdgecrewError, SpecError, ToolError, UserError
from edgecrew.tools.base import ToolContext, ToolSpec

if TYPE_CHECKING:
    from mcp.server import Server, ServerRequestContext
    from mcp.types import CallToolRequestParams, CallToolResult, ListToolsResult, PaginatedRequestParams, Tool

    from edgecrew.engine.runtime import Runtime

TEAM_PREFIX = "team."
TEAM_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"task": {"type": "string", "description": "What the team should do."}},
    "required": ["task"],
    "additionalProperties": False,
}
TEAM_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string"},
        "team": {"type": "string"},
        "status": {"type": "string"},
        "output": {},
        "error": {"type": ["string", "null"]},
        "workspace": {"type": ["string", "null"]},
        # While the run waits for a person (status waiting_approval): the calls waiting, and how to decide.
        "approvals": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "agent": {"type": "string"},
                    "tool": {"type": "string"},
                    "arguments": {"type": "object"},
                },
            },
        },
        "message": {"type": "string"},
    },
    "required": ["run_id", "team", "status", "output"],
}
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
logger = logging.getLogger(__name__)


class EdgecrewMcp:
    """What the MCP server serves: the runtime's tools and teams, and one workspace for tool calls."""

    def __init__(self, rt: Runtime, *, workspace: Path | None = None, allow_risky: bool = False) -> None:
        self.rt = rt
        self.allow_risky = allow_risky
        self.session_id = "mcp-" + uuid.uuid4().hex[:10]
        self.workspace = workspace or rt.settings.workspaces_dir / self.session_id
        self._unserved: set[str] = set()  # broken teams already reported

    # -- what is served --

    def served(self, spec: ToolSpec) -> bool:
        # MCP clients call tools directly, past the approval gate: risky tools only when asked for.
        return spec.risk == "safe" or (spec.risk == "risky" and self.allow_risky)

    def tools(self) -> list[ToolSpec]:
        return [spec for spec in self.rt.tools.specs() if self.served(spec)]

    def teams(self) -> dict[str, str]:
        """Tool name -> team name, for every team of the project (built-in ones included); the internal ones
        are not listed, and calling one is refused by name (:meth:`run_team`)."""
        teams: dict[str, str] = {}
        for name in sorted(self.rt.project.teams):
            teams[TEAM_PREFIX + (_NAME_CHARS.sub("-", name) or "team")] = name
        return teams

    async def list_tools(self) -> list[Tool]:
        from mcp.types import Tool, ToolAnnotations

        listed = [
            Tool(
                name=spec.name,
                description=spec.description,
                input_schema=spec.input_schema,
                output_schema=spec.result_schema if _is_object_schema(spec.result_schema) else None,
                annotations=ToolAnnotations(destructive_hint=spec.risk == "risky"),
            )
            for spec in self.tools()
        ]
        for tool_name, team in self.teams().items():
            try:
                spec = self.rt.load_team(team)
            except SpecError as exc:  # a broken team file is not served; the others are
                if team not in self._unserved:
                    self._unserved.add(team)
                    logger.warning("team '%s' is not served over MCP: %s", team, exc)
                continue
            if spec.internal:  # edgecrew starts it itself (the supervisor's): not a tool for a client
                continue
            agents = ", ".join(spec.agents)
            listed.append(
                Tool(
                    name=tool_name,
                    description=(spec.description + " " if spec.description else "")
                    + f"Runs the edgecrew team '{team}' (agents: {agents}) on a task until it ends; "
                    "returns its output and run id. A run that waits for a person's approval of a risky "
                    "call is answered at once (status waiting_approval), with the approvals and how to decide them.",
                    input_schema=TEAM_INPUT_SCHEMA,
                    output_schema=TEAM_OUTPUT_SCHEMA,
                    annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True),
                )
            )
        return listed

    def find(self, name: str) -> ToolSpec | None:
        canonical = self.rt.tools.canonical(name)
        return self.rt.tools.get(canonical) if canonical in self.rt.tools.names() else None

    # -- calls --

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Run a tool or a team; failures become ``is_error`` results carrying edgecrew's message."""
        from mcp import MCPError
        from mcp.types import INVALID_PARAMS

        team = self.teams().get(name)
        spec = None if team is not None else self.find(name)
        if team is None and (spec is None or spec.risk == "forbidden"):
            raise MCPError(INVALID_PARAMS, f"unknown tool '{name}'; see tools/list")
        if spec is not None and not self.served(spec):  # not listed, so not called either
            raise MCPError(
                INVALID_PARAMS,
                f"tool '{name}' is risky (in a run it waits for a person's approval), and this server does not "
                "serve risky tools; start it with `edgecrew mcp serve --allow-risky` to call them directly",
            )
        try:
            if team is not None:
                result = await self.run_team(team, arguments)
                # Waiting for a person is no failure: the answer says how to decide (see _waiting).
                return _result(result, is_error=result["status"] not in ("succeeded", "waiting_approval"))
            assert spec is not None
            return _result(await self.call_tool(spec, arguments))
        except EdgecrewError as exc:
            return _error(str(exc))
        except Exception as exc:  # a tool's own bug is the caller's error to see, not the server's end
            return _error(f"{name} failed: {type(exc).__name__}: {exc}")

    async def call_tool(self, spec: ToolSpec, arguments: dict[str, Any]) -> Any:
        self.workspace.mkdir(parents=True, exist_ok=True)
        ctx = ToolContext(run_id=self.session_id, agent="mcp", workspace=self.workspace, pool=self.rt.pool)
        return await spec.call(arguments, ctx)

    async def run_team(self, team: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Start a run of ``team`` on the task and wait for it to end."""
        from edgecrew.engine.chat import internal_team
        from edgecrew.engine.service import RunService, TeamName

        if why := internal_team(self.rt.load_team(team), "run over MCP"):
            raise UserError(f"{why}; tools/list lists the teams to run")
        task = arguments.get("task")
        if not isinstance(task, str) or set(arguments) - {"task"}:
            raise ToolError(f"team.{team} takes one argument, task (a string): what the team should do")
        # An MCP client has no way to approve: a run that waits for a person is answered at once.
        done = await RunService(self.rt).run(TeamName(team), task, stop_when_waiting=True)
        final = done.run
        result: dict[str, Any] = {
            "run_id": final.id,
            "team": final.team,
            "status": final.status.value,
            "output": final.output,
            "error": final.error,
            "workspace": final.workspace,
        }
        if final.status == RunStatus.WAITING_APPROVAL:
            result |= self._waiting(final.id)
        return result

    def _waiting(self, run_id: str) -> dict[str, Any]:
        """What a client is told of a run waiting for a person: the calls, and how to decide them."""
        from edgecrew.engine.approvals import ApprovalService

        waiting = ApprovalService(self.rt).waiting(run_id)
        goes_on = (
            f"this MCP server goes on with the run once it is decided (if it has stopped: edgecrew resume {run_id})"
        )
        return {"approvals": waiting.calls(), "message": waiting.message(goes_on)}


def _is_object_schema(schema: dict[str, Any] | None) -> bool:
    # Handshake-era protocol versions only allow object output schemas (and object structured content).
    return schema is not None and schema.get("type") == "object"


def _result(value: Any, *, is_error: bool = False) -> CallToolResult:
    from mcp.types import CallToolResult, TextContent

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return CallToolResult(
        content=[TextContent(text=text)],
        structured_content=value if isinstance(value, dict) else None,
        is_error=is_error,
    )


def _error(message: str) -> CallToolResult:
    from mcp.types import CallToolResult, TextContent

    return CallToolResult(content=[TextContent(text=message)], is_error=True)


def build_server(app: EdgecrewMcp) -> Server[Any]:
    """The SDK server answering tools/list and tools/call from ``app``."""
    from mcp.server import Server
    from mcp.types import ListToolsResult

    from edgecrew.version import __version__

    async def on_list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=await app.list_tools())

    async def on_call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        return await app.call(params.name, dict(params.arguments or {}))

    def input_schema(name: str) -> dict[str, Any] | None:
        if name in app.teams():
            return TEAM_INPUT_SCHEMA
        spec = app.find(name)
        return spec.input_schema if spec is not None else None

    return Server(
        "edgecrew",
        version=__version__,
        instructions="Tools of this edgecrew project, and its teams as team.<name> tools that run them.",
        get_tool_input_schema=input_schema,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


async def serve_stdio(app: EdgecrewMcp) -> None:
    """Serve over this process's stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(app)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_http(app: EdgecrewMcp, *, host: str = "127.0.0.1", port: int = 8766, path: str = "/mcp") -> None:
    """Serve streamable HTTP on ``host:port`` at ``path`` until interrupted."""
    import uvicorn

    server = build_server(app)
    asgi = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
