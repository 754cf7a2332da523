"""MCP both ways, against the official SDK: its servers feed edgecrew tools, its client drives `edgecrew mcp serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgecrew.engine import durable
from edgecrew.errors import SpecError, ToolError
from edgecrew.specs.project import load_project
from edgecrew.tools.base import ToolContext, ToolSpec
from edgecrew.tools.mcp import close_mcp, load_mcp_tools
from tests.conftest import write
from tests.teams import TRIO

pytest.importorskip("mcp")


@asynccontextmanager
async def served_over_stdio(project_dir: Path, edgecrew_home: Path, tmp_path: Path) -> AsyncIterator[Any]:
    """An MCP client session with `edgecrew mcp serve -p PROJECT` over stdio; the server's log is printed
    when the body fails."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {"EDGECREW_HOME": str(edgecrew_home)} | {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "edgecrew", "mcp", "serve", "-p", str(project_dir)], env=env
    )
    log = tmp_path / "serve.log"
    async with AsyncExitStack() as stack:
        errlog = stack.enter_context(log.open("w"))
        client = await stack.enter_async_context(Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60))
        try:
            yield client
        except BaseException:
            print(log.read_text())
            raise


SERVER = """
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("calc")


@server.tool()
def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b


@server.tool()
def greet(name: str) -> str:
    \"\"\"Greet someone.\"\"\"
    return f"{os.environ.get('GREETING', 'hello')} {name}"


@server.tool()
def divide(a: float, b: float) -> float:
    \"\"\"Divide a by b.\"\"\"
    if b == 0:
        raise ToolError("cannot divide by zero")
    return a / b


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
"""

CTX = ToolContext(run_id="test", agent="test", workspace=Path("."))


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    close_mcp()
    durable.shutdown()


def _python() -> list[str]:
    return [sys.executable.replace("\\", "/")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _text(result: Any) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


def _by_name(specs: list[ToolSpec]) -> dict[str, ToolSpec]:
    return {s.name: s for s in specs}


async def _check_calc_tools(specs: list[ToolSpec], server: str) -> None:
    tools = _by_name(specs)
    assert set(tools) == {f"{server}.add", f"{server}.greet", f"{server}.divide"}
    add = tools[f"{server}.add"]
    assert add.description == "Add two integers."
    assert add.input_schema["required"] == ["a", "b"]
    assert await add.call({"a": 2, "b": 3}, CTX) == {"result": 5}
    with pytest.raises(ToolError, match="cannot divide by zero"):
        await tools[f"{server}.divide"].call({"a": 1, "b": 0}, CTX)
    with pytest.raises(ToolError, match="invalid arguments"):  # checked against the server's schema first
        await add.call({"a": "two", "b": 3}, CTX)
    assert await add.call({"a": 1, "b": 1}, CTX) == {"result": 2}  # the session survived the errors


async def test_stdio_server_declared_in_edgecrew_yaml_contributes_tools(project_dir: Path) -> None:
    write(project_dir / "calc_server.py", SERVER)
    write(
        project_dir / "edgecrew.yaml",
        f"""
        mcp_servers:
          calc:
            command: {json.dumps([*_python(), "calc_server.py"])}
            env: {{GREETING: hi}}
            timeout_s: 20
        """,
    )
    project = load_project(project_dir)
    specs = await load_mcp_tools(project.mcp_servers, base_dir=project.dir, log_dir=project_dir / "logs")
    await _check_calc_tools(specs, "calc")
    assert await _by_name(specs)["calc.greet"].call({"name": "edge"}, CTX) == {"result": "hi edge"}
    assert {s.risk for s in specs} == {"risky"}  # unannotated tools of a server wait for approval by default


async def test_streamable_http_server_contributes_tools(project_dir: Path, tmp_path: Path) -> None:
    server_file = write(tmp_path / "calc_server.py", SERVER)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(server_file), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the HTTP MCP server did not start"
                time.sleep(0.1)
        write(
            project_dir / "edgecrew.yaml",
            f"""
            mcp_servers:
              remote: {{url: "http://127.0.0.1:{port}/mcp", headers: {{X-Test: "1"}}, risk: safe}}
            """,
        )
        project = load_project(project_dir)
        specs = await load_mcp_tools(project.mcp_servers)
        await _check_calc_tools(specs, "remote")
        assert {s.risk for s in specs} == {"safe"}
    finally:
        close_mcp()
        proc.terminate()
        proc.wait(10)


def test_bad_mcp_server_declarations_are_spec_errors_with_lines(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """
        mcp_servers:
          both: {command: [python, s.py], url: "http://127.0.0.1:1/mcp"}
          nothing: {timeout_s: 3}
          "bad name": {url: "http://127.0.0.1:1/mcp"}
          ftp: {url: "ftp://example/mcp"}
        """,
    )
    with pytest.raises(SpecError) as caught:
        load_project(project_dir)
    text = str(caught.value)
    assert "not both" in text and "not neither" in text and "must start with http://" in text
    assert "bad name" in text
    assert all(issue.line for issue in caught.value.issues)


def test_an_agent_calls_an_mcp_tool_in_a_durable_run(project_dir: Path) -> None:
    """The whole path: edgecrew.yaml → registry → an agent's tool call in a DBOS step → the MCP server."""
    from edgecrew.cli import app

    write(project_dir / "calc_server.py", SERVER)
    write(
        project_dir / "edgecrew.yaml",
        f"""
        mcp_servers:
          calc: {{command: {json.dumps([*_python(), "calc_server.py"])}, risk: safe}}
        models:
          fake:
            backend: scripted
            replies_by_agent:
              solver: [{{tool: calc.add, args: {{a: 20, b: 22}}}}, "the sum is 42"]
        teams:
          - name: solve
            agents:
              solver: {{model: fake, system: solve, tools: [calc.add]}}
            graph: {{start: solver, edges: [{{from: solver, to: end}}]}}
        """,
    )
    result = CliRunner().invoke(app, ["run", "solve", "add 20 and 22", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["status"] == "succeeded" and data["output"] == {"text": "the sum is 42"}
    events = CliRunner().invoke(app, ["runs", "events", data["run_id"], "--json"])
    calls = [e["data"] for e in map(json.loads, events.output.splitlines()) if e["type"] == "tool_called"]
    assert [(c["tool"], c["is_error"], json.loads(c["result"])) for c in calls] == [("calc.add", False, {"result": 42})]


async def test_edgecrew_mcp_serve_exposes_tools_and_teams(
    project_dir: Path, edgecrew_home: Path, tmp_path: Path
) -> None:
    from mcp import MCPError

    from edgecrew.bootstrap import bootstrap

    write(
        project_dir / "edgecrew.yaml",
        """
        models:
          fake:
            backend: scripted
            replies_by_agent:
              planner: [{json: {steps: ["outline", "write"]}}]
              writer: ["A short answer."]
              critic: [{json: {verdict: approve, notes: fine}}]
        """,
    )
    write(project_dir / "teams" / "trio.yaml", TRIO)
    async with served_over_stdio(project_dir, edgecrew_home, tmp_path) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert {"files.read", "files.write", "files.list", "team.trio", "team.plan-write-review"} <= set(listed)
        assert listed["team.trio"].input_schema["required"] == ["task"]

        wrote = await client.call_tool("files.write", {"path": "notes/a.md", "content": "hello"})
        assert not wrote.is_error, wrote.content
        read = await client.call_tool("files.read", {"path": "notes/a.md"})
        assert not read.is_error and _text(read) == "hello"
        missing = await client.call_tool("files.read", {"path": "nope.md"})
        assert missing.is_error and "no such file" in _text(missing)
        escape = await client.call_tool("files.read", {"path": "../../secret"})
        assert escape.is_error and "outside the workspace" in _text(escape)
        with pytest.raises(MCPError, match="unknown tool"):
            await client.call_tool("nope.nothing", {})

        ran = await client.call_tool("team.trio", {"task": "Explain durability"})
        assert not ran.is_error, ran.content
        result: dict[str, Any] = ran.structured_content
        assert result["status"] == "succeeded" and result["team"] == "trio"
        assert result["output"] == {"verdict": "approve", "notes": "fine"}

    [workspace] = (edgecrew_home / "workspaces").glob("mcp-*")
    assert (workspace / "notes" / "a.md").read_text() == "hello"
    run = bootstrap().store.get_run(result["run_id"])  # an ordinary run, in the store like any other
    assert run.status.value == "succeeded" and run.task == "Explain durability"


async def test_an_internal_team_is_no_tool_and_calling_it_is_refused_by_name(project_dir: Path) -> None:
    # Before: the supervisor's own team (internal: true) was listed as team.supervisor-action, and a call ran it.
    from edgecrew.bootstrap import bootstrap
    from edgecrew.mcp_server import EdgecrewMcp

    app = EdgecrewMcp(bootstrap())
    teams = {t.name for t in await app.list_tools() if t.name.startswith("team.")}
    assert "team.plan-write-review" in teams and "team.supervisor-action" not in teams, teams
    refused = await app.call("team.supervisor-action", {"task": "restart the worker"})
    assert refused.is_error and _text(refused).startswith("team 'supervisor-action' is internal"), refused.content
    assert "tools/list" in _text(refused)
    assert bootstrap().store.list_runs() == []  # nothing was started


async def test_a_team_tool_whose_run_waits_for_an_approval_answers_at_once_with_how_to_approve(
    project_dir: Path, edgecrew_home: Path, tmp_path: Path
) -> None:
    """An MCP client cannot approve: team.X answers as the run starts waiting (its id, the approval, the
    commands that decide it) instead of blocking until a person decides, and the run goes on in the server."""
    import anyio

    from edgecrew.bootstrap import bootstrap
    from edgecrew.engine.approvals import ApprovalService

    write(
        project_dir / "tools.py",
        """
        from edgecrew import tool

        @tool(risk="risky")
        def deploy(target: str) -> str:
            \"\"\"Deploy to a target.\"\"\"
            return "deployed " + target
        """,
    )
    write(project_dir / "edgecrew.yaml", "plugins: [tools.py]\n")
    write(
        project_dir / "teams" / "ship.yaml",
        """
        name: ship
        agents:
          deploy: {tool: deploy, arguments: {target: staging}}
        graph: {start: deploy, edges: [{from: deploy, to: end}]}
        """,
    )
    async with served_over_stdio(project_dir, edgecrew_home, tmp_path) as client:
        with anyio.fail_after(40):  # before: no answer until a person decided
            ran = await client.call_tool("team.ship", {"task": "ship it"})
        assert not ran.is_error, ran.content
        result: dict[str, Any] = ran.structured_content
        run_id = result["run_id"]
        assert result["status"] == "waiting_approval" and result["output"] is None
        [approval] = result["approvals"]
        assert approval["tool"] == "deploy" and approval["arguments"] == {"target": "staging"}
        text = _text(ran)
        for said in (run_id, f"edgecrew approvals approve {approval['id']}", f"edgecrew runs show {run_id}"):
            assert said in text and said in result["message"], (said, text)

        # A person decides elsewhere; the run goes on in the MCP server's process.
        ApprovalService(bootstrap()).approve(approval["id"])
        store = bootstrap().store
        with anyio.fail_after(45):
            while (run := store.get_run(run_id)).status.value != "succeeded":
                assert not run.status.terminal, run
                await anyio.sleep(0.2)
        assert run.output == {"text": "deployed staging"}


async def test_a_risky_tool_is_not_called_over_mcp_without_allow_risky(
    project_dir: Path, edgecrew_home: Path, tmp_path: Path
) -> None:
    """tools/list leaves risky tools out unless --allow-risky; tools/call ran them all the same (an MCP
    client could run k8s.apply, past every approval, by its name)."""
    from mcp import MCPError

    from edgecrew.bootstrap import bootstrap
    from edgecrew.mcp_server import EdgecrewMcp

    ran = tmp_path / "deployed.txt"
    write(
        project_dir / "tools.py",
        f"""
        from pathlib import Path
        from edgecrew import tool

        @tool(risk="risky")
        def deploy(target: str) -> str:
            \"\"\"Deploy to a target.\"\"\"
            Path({str(ran)!r}).write_text(target)
            return "deployed " + target
        """,
    )
    write(project_dir / "edgecrew.yaml", "plugins: [tools.py]\n")
    rt = bootstrap()
    guarded = EdgecrewMcp(rt)
    assert "deploy" not in {t.name for t in await guarded.list_tools()}
    with pytest.raises(MCPError) as refused:
        await guarded.call("deploy", {"target": "prod"})
    assert str(refused.value) == (
        "tool 'deploy' is risky (in a run it waits for a person's approval), and this server does not serve "
        "risky tools; start it with `edgecrew mcp serve --allow-risky` to call them directly"
    )
    assert not ran.exists()

    allowed = EdgecrewMcp(rt, allow_risky=True)
    assert "deploy" in {t.name for t in await allowed.list_tools()}
    result = await allowed.call("deploy", {"target": "prod"})
    assert not result.is_error and ran.read_text() == "prod"
