"""`edgecrew serve` and `edgecrew mcp serve --http` run side by side with their default ports."""

from __future__ import annotations

import inspect

from edgecrew.cli.mcp import serve as mcp_serve
from edgecrew.mcp_server import serve_http
from edgecrew.settings import Settings


def test_the_two_servers_default_to_different_ports() -> None:
    server_port = Settings().port
    mcp_port = inspect.signature(mcp_serve).parameters["port"].default
    assert server_port == 8765 and mcp_port == 8766
    assert inspect.signature(serve_http).parameters["port"].default == mcp_port
