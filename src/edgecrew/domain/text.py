"""Text shown on a terminal: its control characters made visible.

Text from programs, models and other people (a task's output, a reply, a case file) must not move the
cursor, clear the screen or retitle the user's terminal. Tab and newline stay (CRLF as a newline); C0
codes and DEL become their Unicode control pictures (ESC is "␛"), C1 codes "\\ufffd". The CLI's consoles
and the TUI show every string through this.
"""

from __future__ import annotations

_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}
_CONTROLS |= dict.fromkeys(range(0x80, 0xA0), 0xFFFD)


def terminal_text(text: str) -> str:
    """``text`` safe to write to a terminal: its control characters made visible."""
    return text.replace("\r\n", "\n").translate(_CONTROLS)  # a CRLF file's line ends are plain ends


def with_article(noun: str) -> str:
    """``noun`` after its indefinite article: "a run", "an execution"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def counted(n: float, noun: str) -> str:
    """``n`` and ``noun``, plural unless one: "1 agent", "3 edges", "0 runs"."""
    return f"{n:g} {noun}" if n == 1 else f"{n:g} {noun}s"
