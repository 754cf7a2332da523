"""`edgecrew serve` and `edgecrew mcp serve --http` run side by side with their default ports."""

from __future__ import annotations

import inspect
import socket
from pathlib import Path

from typer.testing import CliRunner

from edgecrew.cli import app
from edgecrew.cli.mcp import serve as mcp_serve
from edgecrew.mcp_server import serve_http
from edgecrew.settings import Settings


def test_the_two_servers_default_to_different_ports() -> None:
    server_port = Settings().port
    mcp_port = inspect.signature(mcp_serve).parameters["port"].default
    assert server_port == 8765 and mcp_port == 8766
    assert inspect.signature(serve_http).parameters["port"].default == mcp_port


def test_mcp_serve_http_on_a_port_in_use_says_so_before_serving(edgecrew_home: Path) -> None:
    """Before: uvicorn's "ERROR: [Errno 98] ..." after the banner, and exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["mcp", "serve", "--http", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}: another program is using it; pick another with --port" in (
        " ".join(result.output.split())
    )
    assert "MCP server on" not in result.output


def test_mcp_serve_refuses_a_workspace_that_is_a_file(edgecrew_home: Path, tmp_path: Path) -> None:
    """Before: it served, and every tool call failed with "FileExistsError: [Errno 17] File exists"."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(app, ["mcp", "serve", "--workspace", str(a_file)])
    assert result.exit_code == 2, result.output
    assert f"--workspace {a_file} is a file, not a folder; name a folder (it is made if missing)" in (
        " ".join(result.output.split())
    )
    assert a_file.read_text(encoding="utf-8") == "mine"
