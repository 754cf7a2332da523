"""`edgecrew serve` (API, engine and model pool in one process) and `edgecrew keys create|list|revoke`."""

from __future__ import annotations

import errno
import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgecrew.cli.common import ProjectOpt, console, err, guard, runtime
from edgecrew.cli.render import when as _when
from edgecrew.errors import UserError

keys_app = typer.Typer(help="API keys for `edgecrew serve`.", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1: this machine only).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8765).", min=1, max=65535)] = None,
    project: ProjectOpt = None,
    allow_keyless_localhost: Annotated[
        bool, typer.Option("--allow-keyless-localhost", help="Let callers on 127.0.0.1 in without a key.")
    ] = False,
) -> None:
    """Serve the REST API, live events, /v1 (OpenAI-compatible) and /metrics; runs execute in this process."""
    import uvicorn

    from edgecrew.app import create_app
    from edgecrew.settings import get_settings

    update: dict[str, object] = {}
    if project is not None:
        update["project"] = project
    if host is not None:
        update["host"] = host
    if port is not None:
        update["port"] = port
    if allow_keyless_localhost:
        update["allow_keyless_localhost"] = True
    settings = get_settings().model_copy(update=update)
    guard(lambda: check_free(settings.host, settings.port))  # before the engine and its supervisor start
    app = guard(lambda: create_app(settings))
    if settings.host not in ("127.0.0.1", "::1", "localhost"):
        err.print(f"[yellow]note:[/] listening on {settings.host}: other machines can reach this server (keys apply)")
    console.print(f"edgecrew serving on http://{settings.host}:{settings.port}  (docs: /docs, Ctrl-C stops)")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
        proxy_headers=False,
    )


def check_free(host: str, port: int) -> None:
    """UserError when ``host:port`` cannot be listened on (another server has it, say)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            probe.bind(address)
        except OSError as exc:
            why = "another program is using it" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            raise UserError(f"cannot listen on {host}:{port}: {why}; pick another with --port") from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what will use the key, e.g. grafana or ci-bot.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, runs, approve, admin.")] = "read",
) -> None:
    """Create a key; it is printed once and never stored (only its SHA-256 is)."""
    from edgecrew.store.keys import parse_scopes

    store = guard(runtime).keys
    key, secret = guard(lambda: store.create(name, parse_scopes(scopes)))
    console.print(f"created key [bold]{key.id}[/] ({escape(key.name)}) with scopes {', '.join(key.scopes)}")
    console.print("store it now; it is not shown again:")
    print(secret)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List keys: id, name, display prefix, scopes, last use (never the secret)."""
    keys = guard(runtime).keys.list()
    if as_json:
        print(json.dumps([k.__dict__ for k in keys]))
        return
    if not keys:
        console.print("no API keys; create one with `edgecrew keys create NAME --scopes read,runs`")
        return
    table = Table("id", "name", "prefix", "scopes", "created", "last used", "state")
    for k in keys:
        table.add_row(
            k.id,
            escape(k.name),
            k.prefix + "…",
            ", ".join(k.scopes),
            _when(k.created_at),
            _when(k.last_used_at) if k.last_used_at else "never",
            "[green]active[/]" if k.active else "[red]revoked[/]",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="Key id or display prefix.")]) -> None:
    """Revoke a key; requests carrying it are refused from now on."""
    store = guard(runtime).keys
    revoked = guard(lambda: store.revoke(key))
    console.print(f"revoked {revoked.id} ({escape(revoked.name)})")
