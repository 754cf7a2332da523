"""Speech to text with PocketSphinx and the US English model its PyPI wheel ships: no download.

One decoder per process, loaded on first use (about half a second) and used under a lock, since a
PocketSphinx decoder holds one utterance at a time. Audio is decoded and resampled to the model's
16 kHz mono here; the words come with their times (PocketSphinx counts 100 frames a second).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from edgecrew.voice.audio import Audio, decode, pcm16, resample
from edgecrew.voice.errors import UnsupportedAudio, VoiceEngineMissing

MODEL_RATE = 16_000
FRAMES_PER_S = 100
MAX_AUDIO_S = 600.0  # ten minutes: PocketSphinx takes roughly a fifth of real time on one core
LANGUAGES = ("en",)
DITHER, DITHER_SEED = 3 / 32768, 0  # about 3 steps of 16-bit audio (see ``recognise``)
INSTALL = "install it with `pip install 'edgecrew[voice]'` (PocketSphinx and its bundled English model)"


@dataclass(frozen=True)
class Word:
    """A recognised word and when it was said, in seconds from the start."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """What was said: the text, the words with their times, and how long the audio was."""

    text: str
    duration_s: float
    language: str = "en"
    words: list[Word] = field(default_factory=list)


_lock = threading.Lock()
_decoder: Any = None


def _get_decoder() -> Any:
    global _decoder
    if _decoder is None:
        try:
            from pocketsphinx import Decoder
        except (ImportError, OSError) as exc:  # not installed, or its native library does not load
            raise VoiceEngineMissing("PocketSphinx (speech recognition)", INSTALL) from exc
        _decoder = Decoder(samprate=MODEL_RATE, loglevel="FATAL")
    return _decoder


def available() -> bool:
    """Whether PocketSphinx can be imported here."""
    try:
        import pocketsphinx  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def transcribe(data: bytes, filename: str = "audio", language: str = "en") -> Transcript:
    """The English words in a WAV file (blocking: call it from a worker thread in async code)."""
    if language.lower() not in LANGUAGES:
        raise UnsupportedAudio(f"language {language!r} is not available offline; the recogniser has English (en) only")
    audio = decode(data, filename)
    if audio.duration_s > MAX_AUDIO_S:
        raise UnsupportedAudio(f"{filename} lasts {audio.duration_s:.0f} s; send at most {MAX_AUDIO_S:.0f} s")
    return recognise(resample(audio, MODEL_RATE))


def recognise(audio: Audio) -> Transcript:
    """Run the recogniser over 16 kHz mono audio.

    A faint, seeded noise is added first: stretches of digital silence (exact zeros, as synthesised
    speech has) give the feature extractor a log of zero and throw off its normalisation, which on
    espeak-ng's speech halves the words recognised. The same input always gives the same text, whatever
    was recognised before it."""
    import numpy as np

    if not len(audio.samples):  # nothing said (the decoder cannot take an empty buffer)
        return Transcript(text="", duration_s=0.0)
    noise = np.random.default_rng(DITHER_SEED).normal(0.0, DITHER, len(audio.samples))
    raw = pcm16(Audio(audio.samples + noise, audio.rate))
    with _lock:
        decoder = _get_decoder()
        # The feature extractor adapts its normalisation and noise estimates to what it heard; reset, so
        # an utterance is heard the same whatever came before it (the first after start-up included).
        decoder.reinit_feat()
        decoder.start_utt()
        try:
            decoder.process_raw(raw, full_utt=True)
        finally:  # a decoder left inside an utterance refuses every later one
            decoder.end_utt()
        hyp = decoder.hyp()
        segments = list(decoder.seg()) if hyp is not None else []
    words = [
        Word(_plain(s.word), s.start_frame / FRAMES_PER_S, (s.end_frame + 1) / FRAMES_PER_S)
        for s in segments
        if _spoken(s.word)
    ]
    text = hyp.hypstr.strip() if hyp is not None else ""
    return Transcript(text=text, duration_s=audio.duration_s, words=words)


def _spoken(token: str) -> bool:
    """A word, not a silence or filler marker (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``)."""
    return not (token.startswith("<") or token.startswith("["))


def _plain(token: str) -> str:
    """``read(2)`` (the dictionary's second pronunciation) is the word ``read``."""
    return token.split("(", 1)[0]
