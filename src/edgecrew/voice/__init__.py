"""Voice, offline: speech to text with PocketSphinx (its PyPI wheel ships an English model) and text
to speech with Debian's espeak-ng, so a voice client can talk to a team with no network.

Both engines are optional: each is looked up when first used, and a missing one raises
``VoiceEngineMissing`` that says how to install it (the API answers 503 with that message).
"""

from __future__ import annotations

from edgecrew.voice.audio import SUPPORTED, Audio, decode, sniff
from edgecrew.voice.errors import UnsupportedAudio, VoiceEngineMissing
from edgecrew.voice.stt import Transcript, Word, transcribe
from edgecrew.voice.tts import VOICES, speak, synthesize

__all__ = [
    "SUPPORTED",
    "VOICES",
    "Audio",
    "Transcript",
    "UnsupportedAudio",
    "VoiceEngineMissing",
    "Word",
    "decode",
    "sniff",
    "speak",
    "synthesize",
    "transcribe",
]
