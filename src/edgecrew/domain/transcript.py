"""A chat's task: earlier messages as a transcript, then the latest one, and the latest read back.

A chat run (the OpenAI-compatible API, a chat session) has one task: the conversation so far, one
``role: text`` line per message, then ``Reply to the user's latest message: <text>``. The one design
decision: the framing is written in one place and read back in one place, so a team that acts on a
request (a project's name said "called payments-api") reads it from the newest message, never from an
earlier turn of the transcript (templates: ``task | latest_message``).

A model that reads a transcript tends to write its next lines after its answer ("user: ...",
"assistant: ..."): :func:`reply_stops` gives the stop strings that end its reply where such a turn starts.
"""

from __future__ import annotations

__all__ = ["EARLIER", "LATEST", "TURN_STOPS", "latest_message", "reply_stops", "transcript_task"]

EARLIER = "Conversation so far:\n"
LATEST = "\n\nReply to the user's latest message: "
# A line that starts a new turn of the transcript, as written and as small models capitalise it (SmolLM2
# wrote "\nUser: ..."); four, the most stop strings OpenAI's API takes.
TURN_STOPS = ("\nuser:", "\nassistant:", "\nUser:", "\nAssistant:")


def transcript_task(earlier: list[tuple[str, str]], latest: str) -> str:
    """The task for ``latest`` after the ``(role, text)`` messages of ``earlier`` (``latest`` alone when none)."""
    if not earlier:
        return latest
    transcript = "\n".join(f"{role}: {text}" for role, text in earlier)
    return f"{EARLIER}{transcript}{LATEST}{latest}"


def latest_message(task: str) -> str:
    """The latest message of a chat's task; any other task as it is.

    The framing's last occurrence is the one :func:`transcript_task` wrote: every earlier message comes
    before it (an earlier answer that quotes a task included), so only the latest message's own text
    could repeat it after, and then what is read is still the latest message's end.
    """
    if not task.startswith(EARLIER):
        return task
    at = task.rfind(LATEST)
    return task if at < 0 else task[at + len(LATEST) :]


def reply_stops(text: str) -> tuple[str, ...]:
    """Where a plain reply to ``text`` ends: :data:`TURN_STOPS` when ``text`` holds a chat's transcript
    (a task of :func:`transcript_task`'s, wherever a template put it), none otherwise."""
    at = text.find(EARLIER)
    return TURN_STOPS if at >= 0 and text.find(LATEST, at) >= 0 else ()
