"""Whether a loop that keeps using the database (a worker's heartbeat, a server's periodic scans) reaches it.

The one design decision: an outage is said twice, not once a try. A loop that retries every half second
through a database outage logged a traceback each time (six a scan for the supervisor); :class:`Reach`
says once that the database is out of reach, with the driver's error on one line, and once that it is
back, after how long. Only errors that mean "out of reach" (:data:`OUT_OF_REACH`) count: any other
failure is a bug or a bad row, and its caller logs it with its traceback as before.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

__all__ = ["OUT_OF_REACH", "Reach", "said"]

# The errors that say the database cannot be reached (refused, cut, timed out, gone mid-query).
OUT_OF_REACH: tuple[type[Exception], ...] = (sa.exc.OperationalError, sa.exc.InterfaceError)


def said(error: BaseException) -> str:
    """The database driver's error on one line (SQLAlchemy's own text adds its SQL and a help link)."""
    return " ".join(str(getattr(error, "orig", None) or error).split())[:300]


class Reach:
    """Says once that ``who`` lost the database and once that it reached it again.

    ``meanwhile``: what ``who`` cannot do until the database is back (said with the loss); ``every_s``:
    how often it tries again."""

    def __init__(self, log: logging.Logger, who: str, every_s: float, meanwhile: str = "") -> None:
        self.log, self.who, self.every_s, self.meanwhile = log, who, every_s, meanwhile
        self.lost_at: float | None = None  # since when the database is out of reach (None: it is not)

    def lost(self, now: float, error: BaseException) -> None:
        """The database is out of reach at ``now``: say so (and why) unless already said."""
        if self.lost_at is not None:
            return
        self.lost_at = now
        meanwhile = f": {self.meanwhile};" if self.meanwhile else ";"
        self.log.warning(
            "%s lost the database (%s)%s it tries again every %gs and says when it is back",
            self.who,
            said(error),
            meanwhile,
            self.every_s,
        )

    def found(self, now: float) -> None:
        """The database answered at ``now``: say that it is back (and after how long) if it was lost."""
        if self.lost_at is None:
            return
        self.log.warning("%s reached the database again after %.0fs", self.who, now - self.lost_at)
        self.lost_at = None
