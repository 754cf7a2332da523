"""WAV in and out with the standard library and numpy: decode any PCM or float WAV to mono
16-bit samples at the rate a recogniser wants, and write samples back as WAV or raw PCM.

WAV is parsed chunk by chunk here rather than with ``wave``: Python 3.11's ``wave`` refuses float
and WAVE_FORMAT_EXTENSIBLE files, and espeak-ng's streamed WAV states a bogus data length, so the
decoder trusts the bytes it has. Other containers (MP3, FLAC, Ogg, WebM, MP4) are recognised by their
magic bytes only to name them in the error: no decoder for them ships with a Debian or PyPI package
this server installs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgecrew.voice.errors import UnsupportedAudio

if TYPE_CHECKING:
    import numpy as np  # imported where used: a server that never hears audio never loads it
    import numpy.typing as npt

    Samples = npt.NDArray[np.float64]

PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
MAX_CHANNELS = 16
_OTHER_FORMATS = (  # magic bytes at offset 0 (or 4 for MP4), for the error message only
    (b"fLaC", "FLAC"),
    (b"ID3", "MP3"),
    (b"\xff\xfb", "MP3"),
    (b"\xff\xf3", "MP3"),
    (b"\xff\xf2", "MP3"),
    (b"OggS", "Ogg (Vorbis/Opus)"),
    (b"\x1aE\xdf\xa3", "WebM/Matroska"),
    (b"#!AMR", "AMR"),
    (b"FORM", "AIFF"),
)
SUPPORTED = "WAV (PCM 8/16/24/32-bit or 32/64-bit float, any rate, any channels)"


@dataclass(frozen=True)
class Audio:
    """Mono samples in [-1, 1] at ``rate`` Hz."""

    samples: Samples
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0


def sniff(data: bytes) -> str:
    """The container ``data`` seems to be in ("WAV", "MP3"...), or "unknown"."""
    if data[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return "WAV"
    if data[4:8] == b"ftyp":
        return "MP4/M4A"
    return next((name for magic, name in _OTHER_FORMATS if data.startswith(magic)), "unknown")


def decode(data: bytes, filename: str = "audio") -> Audio:
    """Decode a WAV file to mono float samples; anything else is an ``UnsupportedAudio`` naming what it saw."""
    kind = sniff(data)
    if kind != "WAV":
        seen = "not a recognised audio format" if kind == "unknown" else f"{kind}"
        raise UnsupportedAudio(f"{filename} is {seen}; this server decodes {SUPPORTED} only")
    if data[:4] != b"RIFF":
        raise UnsupportedAudio(f"{filename} is a {data[:4].decode()} WAV; send a little-endian RIFF WAV")
    fmt: tuple[int, int, int, int] | None = None
    payload = b""
    at = 12
    while at + 8 <= len(data):
        name, size = data[at : at + 4], struct.unpack_from("<I", data, at + 4)[0]
        body = data[at + 8 : at + 8 + size]
        if name == b"fmt ":
            fmt = _format(body, filename)
        elif name == b"data":
            payload = body  # a streamed WAV states a length past the end: keep what is there
            break
        at += 8 + size + (size & 1)
    if fmt is None:
        raise UnsupportedAudio(f"{filename}: the WAV has no 'fmt ' chunk before its data")
    tag, channels, rate, bits = fmt
    frames = _samples(payload, tag, bits, filename)
    usable = len(frames) - len(frames) % channels
    mono = frames[:usable].reshape(-1, channels).mean(axis=1) if channels > 1 else frames[:usable]
    return Audio(mono, rate)


def _format(body: bytes, filename: str) -> tuple[int, int, int, int]:
    if len(body) < 16:
        raise UnsupportedAudio(f"{filename}: the WAV's 'fmt ' chunk is truncated")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID's first two bytes
    if tag not in (PCM, FLOAT):
        raise UnsupportedAudio(f"{filename}: WAV encoding {tag:#x} is compressed; send PCM or float WAV")
    if not 1 <= channels <= MAX_CHANNELS or not 1_000 <= rate <= 384_000:
        raise UnsupportedAudio(f"{filename}: a WAV with {channels} channels at {rate} Hz is not audio this decodes")
    if (tag, bits) not in {(PCM, 8), (PCM, 16), (PCM, 24), (PCM, 32), (FLOAT, 32), (FLOAT, 64)}:
        kind = "float" if tag == FLOAT else "PCM"
        raise UnsupportedAudio(f"{filename}: {bits}-bit {kind} WAV is not supported; send 16-bit PCM")
    return tag, channels, rate, bits


def _samples(payload: bytes, tag: int, bits: int, filename: str) -> Samples:
    import numpy as np

    width = bits // 8
    payload = payload[: len(payload) - len(payload) % width]
    if tag == FLOAT:
        raw = np.frombuffer(payload, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
        return np.clip(np.nan_to_num(raw), -1.0, 1.0)
    if bits == 8:
        return (np.frombuffer(payload, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if bits == 24:
        triples = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float64) / float(1 << 23)
    dtype = "<i2" if bits == 16 else "<i4"
    return np.frombuffer(payload, dtype=dtype).astype(np.float64) / float(1 << (bits - 1))


def resample(audio: Audio, rate: int) -> Audio:
    """``audio`` at ``rate`` Hz, by linear interpolation after a band limit when going down (an FFT
    low-pass at the new Nyquist frequency keeps the recogniser from hearing aliases)."""
    import numpy as np

    if audio.rate == rate or len(audio.samples) == 0:
        return Audio(audio.samples, rate)
    samples = audio.samples
    if rate < audio.rate:
        spectrum = np.fft.rfft(samples)
        cutoff = int(len(spectrum) * rate / audio.rate)
        spectrum[cutoff:] = 0
        samples = np.fft.irfft(spectrum, len(samples))
    count = round(len(samples) * rate / audio.rate)
    positions = np.arange(count) * (audio.rate / rate)
    return Audio(np.interp(positions, np.arange(len(samples)), samples), rate)


def pcm16(audio: Audio) -> bytes:
    """Little-endian signed 16-bit mono samples."""
    import numpy as np

    return bytes(np.clip(np.round(audio.samples * 32767.0), -32768, 32767).astype("<i2").tobytes())


def wav(audio: Audio) -> bytes:
    """A 16-bit PCM mono WAV file whose header states the real lengths."""
    body = pcm16(audio)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        *(b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16, PCM, 1, audio.rate, audio.rate * 2, 2, 16, b"data"),
        len(body),
    )
    return header + body


def silence(rate: int = 16000) -> Audio:
    """No samples at all (what a text with no words says)."""
    import numpy as np

    return Audio(np.zeros(0), rate)
