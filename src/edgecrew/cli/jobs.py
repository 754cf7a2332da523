"""Stub: `edgecrew jobs ...`. TO BE FILLED."""

from __future__ import annotations

import typer

jobs_app = typer.Typer(help="jobs", no_args_is_help=True)
