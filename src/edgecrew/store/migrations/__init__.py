"""Alembic migrations of the store; ``HEAD`` names the newest (a test checks it against the scripts)."""

HEAD = "0023"
