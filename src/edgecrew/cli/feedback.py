"""`edgecrew runs rate` and `edgecrew feedback export`: rate a run's answer, export every rating as JSONL."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgecrew.cli.common import console, guard, runtime

feedback_app = typer.Typer(help="Ratings of runs' answers: export them for fine-tuning or few-shot examples.")
RATINGS = {"up": 1, "down": -1}


def rate(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    rating: Annotated[str, typer.Argument(help="up or down.")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="What was good or wrong.")] = "",
    correction: Annotated[str | None, typer.Option(help="The answer you wanted.")] = None,
) -> None:
    """Rate a run's answer (once it has ended): up or down, a comment, the answer you wanted."""
    from edgecrew.engine.service import RunService
    from edgecrew.errors import UserError

    def body() -> None:
        if rating not in RATINGS:
            raise UserError(f"rate a run up or down, not {rating!r}")
        svc = RunService(runtime())
        record = svc.rate(
            run, RATINGS[rating], comment=comment, correction=correction, author=getpass.getuser(), via="cli"
        )
        console.print(f"rated run {record.run_id} {rating} (feedback {record.id})")

    guard(body)


@feedback_app.command("export")
def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's runs.")] = None,
    rating: Annotated[str | None, typer.Option(help="Only up or only down.")] = None,
) -> None:
    """Every rating as JSON Lines (task, answer, rating, comment, correction, and chat `messages`)."""
    from edgecrew.engine.service import RunService
    from edgecrew.errors import UserError

    def body() -> int:
        if rating is not None and rating not in RATINGS:
            raise UserError(f"--rating is up or down, not {rating!r}")
        rows = RunService(runtime()).feedback_export(team=team, rating=RATINGS[rating] if rating else None)
        try:
            out = output.open("w", encoding="utf-8") if output else sys.stdout
        except OSError as exc:
            raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
        count = 0
        try:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        finally:
            if output:
                out.close()
        if output:
            console.print(f"wrote {count} rating(s) to {output}")
        return count

    guard(body)
