"""`edgecrew mcp serve`: this project's tools and teams as an MCP server (stdio, or streamable HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecrew.cli.common import ProjectOpt, arun, err, guard, runtime
from edgecrew.cli.server import check_free

# One above `edgecrew serve`'s 8765, so both can run side by side with their defaults.
MCP_HTTP_PORT = 8766

mcp_app = typer.Typer(help="Model Context Protocol: serve this project's tools and teams.", no_args_is_help=True)


@mcp_app.command("serve")
def serve(
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP instead of stdio.")] = False,
    host: Annotated[str, typer.Option(help="Address to listen on with --http.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help=f"Port to listen on with --http (default {MCP_HTTP_PORT}).")
    ] = MCP_HTTP_PORT,
    workspace: Annotated[
        Path | None,
        typer.Option(help="Folder the served tools work in (default: a new one under $EDGECREW_HOME/workspaces)."),
    ] = None,
    allow_risky: Annotated[
        bool, typer.Option("--allow-risky", help="Also serve risky tools (MCP clients call them without approval).")
    ] = False,
    project: ProjectOpt = None,
) -> None:
    """Serve the project's tools, and each team as a tool team.<name>, to MCP clients.

    With stdio (the default) an MCP client starts this command itself, e.g. command
    `edgecrew mcp serve -p /path/to/project`. Team tools run the team to its end and return its output
    (a run that waits for a person's approval answers at once, with how to decide it).
    """
    from edgecrew.mcp_server import EdgecrewMcp, serve_http, serve_stdio

    if not 0 < port < 65536:
        err.print(f"[red]error:[/] --port {port} is not a port number (1-65535)")
        raise typer.Exit(2)
    if workspace is not None and workspace.exists() and not workspace.is_dir():
        # Every tool call would fail on it ("File exists"): say so once, before serving.
        err.print(
            f"[red]error:[/] --workspace {workspace} is a file, not a folder; name a folder (it is made if missing)"
        )
        raise typer.Exit(2)
    if http:  # before the banner: uvicorn would say "[Errno 98]" after it and exit 3
        guard(lambda: check_free(host, port))

    async def body() -> int:
        app = EdgecrewMcp(
            runtime(project, mcp=True), workspace=workspace.resolve() if workspace else None, allow_risky=allow_risky
        )
        if http:
            err.print(f"edgecrew MCP server on http://{host}:{port}/mcp · tools work in {app.workspace}")
            await serve_http(app, host=host, port=port)
        else:
            await serve_stdio(app)
        return 0

    raise typer.Exit(arun(body))
