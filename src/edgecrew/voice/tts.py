"""Text to speech with espeak-ng, Debian's formant synthesiser: no model, no network.

espeak-ng runs as a child process (no shell) with the text on its standard input, so no text can
be read as an option, and under a time limit. The OpenAI voice names map to espeak-ng's English
voices and variants; the output is re-encoded here (espeak-ng's streamed WAV states no real length).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from typing import Literal

from edgecrew.voice.audio import Audio, decode, pcm16, resample, silence, wav
from edgecrew.voice.errors import UnsupportedAudio, VoiceEngineMissing

MAX_CHARS = 4096  # OpenAI's limit for one request
TIMEOUT_S = 60.0
BASE_WPM = 175  # espeak-ng's default speed, which OpenAI's speed 1.0 stands for
MIN_WPM, MAX_WPM = 80, 450  # what espeak-ng accepts
NATIVE_RATE = 22_050  # espeak-ng's output rate
PCM_RATE = 24_000  # OpenAI's `pcm`: raw 16-bit little-endian mono at 24 kHz
INSTALL = "install it with `apt-get install espeak-ng` (Debian) and restart the server"

# OpenAI's voice names, each an espeak-ng English voice (+ a variant): distinct, not look-alikes.
VOICES: dict[str, str] = {
    "alloy": "en-us",
    "ash": "en-us+m1",
    "ballad": "en-gb-x-rp",
    "cedar": "en-us+m4",
    "coral": "en-us+f2",
    "echo": "en-us+m3",
    "fable": "en-gb",
    "marin": "en-us+f5",
    "nova": "en-us+f3",
    "onyx": "en-us+m7",
    "sage": "en-us+f1",
    "shimmer": "en-us+f4",
    "verse": "en-us+m2",
}
Format = Literal["wav", "pcm"]
_running = threading.BoundedSemaphore(max(1, (os.cpu_count() or 1)))  # one synthesiser per core at most
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def available() -> bool:
    """Whether espeak-ng is on PATH."""
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str = "alloy", response_format: Format = "wav", speed: float = 1.0) -> bytes:
    """``text`` spoken as a WAV file, or as OpenAI's raw ``pcm`` (blocking: call it from a worker thread)."""
    audio = synthesize(text, voice, speed)
    if response_format == "pcm":
        return pcm16(resample(audio, PCM_RATE))
    return wav(audio)


def synthesize(text: str, voice: str = "alloy", speed: float = 1.0) -> Audio:
    """``text`` spoken by espeak-ng, as mono samples at its native rate (22,050 Hz)."""
    if len(text) > MAX_CHARS:
        raise UnsupportedAudio(f"the input has {len(text)} characters; send at most {MAX_CHARS} per request")
    if voice not in VOICES:
        raise UnsupportedAudio(f"unknown voice {voice!r}; choose one of {', '.join(VOICES)}")
    if not 0.25 <= speed <= 4.0:
        raise UnsupportedAudio(f"speed {speed} is outside 0.25 to 4.0")
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise VoiceEngineMissing("espeak-ng (speech synthesis)", INSTALL)
    if not text.strip():
        return silence(NATIVE_RATE)  # espeak-ng writes nothing at all for no words
    wpm = min(MAX_WPM, max(MIN_WPM, round(BASE_WPM * speed)))
    command = [binary, "-v", VOICES[voice], "-s", str(wpm), "-b", "1", "--stdout", "--stdin"]
    try:
        with _running:
            done = subprocess.run(
                command,
                input=_CONTROL.sub(" ", text).encode("utf-8", "replace"),
                capture_output=True,
                timeout=TIMEOUT_S,
                check=False,
            )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"espeak-ng took more than {TIMEOUT_S:.0f} s for {len(text)} characters") from exc
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip()[:300] or f"exit status {done.returncode}"
        raise RuntimeError(f"espeak-ng failed with voice {VOICES[voice]!r}: {why}")
    if not done.stdout:  # nothing it could say (punctuation only, say): silence, not an error
        return silence(NATIVE_RATE)
    return decode(done.stdout, "espeak-ng output")
