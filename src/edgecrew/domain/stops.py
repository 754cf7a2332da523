"""Stop strings: a plain-text reply ends before the first of them, which it leaves out.

A provider that honours a request's ``stop`` cuts the reply itself; one that ignores it (some
OpenAI-compatible servers do) lets it run on. The one design decision: the cut is written once here
and applied again where every model's reply passes (model routing), so a reply reads the same
whichever provider wrote it; cutting an already cut reply changes nothing.
"""

from __future__ import annotations

from dataclasses import replace

from edgecrew.domain.messages import Message, ModelRequest

__all__ = ["TextStops", "cut_at_stop", "stopped_message"]


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """``text`` up to the first of ``stops`` (the whole of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def stopped_message(message: Message, req: ModelRequest) -> Message:
    """``message`` ended before the first of the request's stop strings, when it is a plain-text reply
    (a structured reply or a tool call ignores them: a stop string inside JSON would cut it in two)."""
    if not req.stop or req.output_schema is not None or message.tool_calls:
        return message
    content = cut_at_stop(message.content, req.stop)
    return message if content == message.content else replace(message, content=content)


class TextStops:
    """Ends a streamed reply at the first of its stop strings, which it leaves out.

    Text that may be the start of a stop string is held back until the next piece says whether it is.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.stopped = False
        self._held = ""

    def feed(self, piece: str) -> str:
        """The text of ``piece`` (and of what was held back) that can be shown now; nothing once stopped."""
        if not self.stops:
            return piece
        if self.stopped:
            return ""
        text = self._held + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._held = True, ""
            return text[:cut]
        keep = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What is still held back once the reply ended without a stop string."""
        held, self._held = self._held, ""
        return held
