"""Stub: `edgecrew routines ...`. TO BE FILLED."""

from __future__ import annotations

import typer

routines_app = typer.Typer(help="routines", no_args_is_help=True)
