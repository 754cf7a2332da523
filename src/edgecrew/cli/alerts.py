"""Stub: `edgecrew alerts ...`. TO BE FILLED."""

from __future__ import annotations

import typer

alerts_app = typer.Typer(help="alerts", no_args_is_help=True)
