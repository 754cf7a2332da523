"""The voice package's errors: a missing engine (the server answers 503) and bad audio (400).

::

    EdgecrewError
    ├── UserError
    │   └── UnsupportedAudio   the upload is not audio this package decodes (names the format it saw)
    └── VoiceEngineMissing     a local engine (PocketSphinx, espeak-ng) is not installed: how to install it
"""

from __future__ import annotations

from edgecrew.errors import EdgecrewError, UserError


class UnsupportedAudio(UserError):
    """Audio this package cannot decode, or text it will not speak: the message says what and what to send."""


class VoiceEngineMissing(EdgecrewError):
    """A local speech engine is not installed; the message says how to install it."""

    def __init__(self, engine: str, install: str) -> None:
        super().__init__(f"{engine} is not installed on this server; {install}")
        self.engine = engine
