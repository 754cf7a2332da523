"""Voice, offline: real audio round-tripped through ``/v1/audio/speech`` (espeak-ng) and
``/v1/audio/transcriptions`` (PocketSphinx), over HTTP and with the official ``openai`` client
against a real uvicorn server on 127.0.0.1.

PocketSphinx's general English model hears espeak-ng's formant voice imperfectly, so the round trip
asserts what it reliably gets (observed: "hello world" comes back exactly; the other sentences keep
most of their words), plus human speech from Debian's pocketsphinx-testdata where it is installed.
A test whose engine is missing here is skipped with the reason; `make` installs both.
"""

from __future__ import annotations

import io
import shutil
import struct
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgecrew import voice
from edgecrew.api.problems import PROBLEM_JSON
from edgecrew.app import create_app
from edgecrew.store.keys import ApiKeyStore
from edgecrew.voice import stt, tts
from edgecrew.voice.audio import Audio, decode, resample, wav
from tests.api.live import serve_in_thread, server_settings, write_project

needs_espeak = pytest.mark.skipif(not tts.available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
needs_sphinx = pytest.mark.skipif(
    not stt.available(), reason="PocketSphinx is not installed (pip install 'edgecrew[voice]')"
)
# Human speech with its transcript, from Debian's pocketsphinx-testdata (LibriVox, public domain).
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
HUMAN = {
    "sense_and_sensibility_01_austen_64kb-0920.wav": (
        "had he married a more amiable woman he might have been made still more respectable than he was"
    ),
    "sense_and_sensibility_01_austen_64kb-0930.wav": "he might even have been made amiable himself",
}
# Sentences for the round trip, and how many of their words must come back (observed in the comment).
ROUND_TRIP = {
    "hello world": 2,  # "hello world"
    "the quick brown fox jumps over the lazy dog": 5,  # "a quick brown fox jumped over the lazy dog"
    "please open the pod bay doors": 1,  # "he's opened up on the dorms"
    "good morning how are you today": 3,  # "what morning so are you today"
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real server (no run engine: the audio routes need none) and a key with the ``runs`` scope."""
    root = tmp_path_factory.mktemp("audio")
    write_project(root / "project")
    with serve_in_thread(create_app(server_settings(root), start_engine=False)) as served:
        key = ApiKeyStore(served.app.state.rt.store).create("voice", ("runs",))[1]
        yield served.url, key


def _speech(url: str, key: str, text: str, **extra: object) -> httpx.Response:
    body = {"model": "tts-1", "input": text, "voice": "alloy"} | extra
    return httpx.post(f"{url}/v1/audio/speech", json=body, headers={"X-API-Key": key}, timeout=120)


def _transcribe(url: str, key: str, audio: bytes, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": ("speech.wav", audio, "audio/wav")},
        data={"model": "whisper-1", **fields},
        headers={"X-API-Key": key},
        timeout=120,
    )


def _overlap(said: str, heard: str) -> int:
    return len(set(said.split()) & set(heard.lower().split()))


# -- the audio codec, no engine ---------------------------------------------------------------------


def _riff(fmt_tag: int, channels: int, rate: int, bits: int, payload: bytes, stated: int | None = None) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    chunks = [b"WAVE", b"fmt ", struct.pack("<I", len(fmt)), fmt, b"data"]
    chunks += [struct.pack("<I", len(payload) if stated is None else stated), payload]
    body = b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_decodes_every_pcm_and_float_width_to_the_same_tone() -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(4410) / 44_100) * 0.5
    stereo = np.repeat(tone, 2)  # the same tone in both channels
    payloads = {
        (1, 8): (np.round(stereo * 127) + 128).astype(np.uint8).tobytes(),
        (1, 16): np.round(stereo * 32767).astype("<i2").tobytes(),
        (1, 24): b"".join(int(v).to_bytes(3, "little", signed=True) for v in np.round(stereo * 8_388_607)),
        (1, 32): np.round(stereo * 2_147_483_647).astype("<i4").tobytes(),
        (3, 32): stereo.astype("<f4").tobytes(),
        (3, 64): stereo.astype("<f8").tobytes(),
    }
    for (tag, bits), payload in payloads.items():
        audio = decode(_riff(tag, 2, 44_100, bits, payload))
        assert audio.rate == 44_100 and len(audio.samples) == len(tone), (tag, bits)
        assert np.max(np.abs(audio.samples - tone)) < 0.01, (tag, bits)
    streamed = _riff(1, 2, 44_100, 16, payloads[(1, 16)], stated=0x7FFFF000)  # espeak-ng's header, say
    assert len(decode(streamed).samples) == len(tone)


def test_resampling_keeps_the_tone_and_the_duration() -> None:
    tone = Audio(np.sin(2 * np.pi * 440 * np.arange(44_100) / 44_100), 44_100)
    down = resample(tone, 16_000)
    assert len(down.samples) == 16_000 and down.duration_s == pytest.approx(1.0)
    peak = np.argmax(np.abs(np.fft.rfft(down.samples)))  # bins are 1 Hz apart over one second
    assert peak == 440
    again = decode(wav(down))
    assert again.rate == 16_000 and np.max(np.abs(again.samples - down.samples)) < 1e-4


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"ID3\x04" + b"\0" * 64, "MP3"),
        (b"fLaC" + b"\0" * 64, "FLAC"),
        (b"OggS" + b"\0" * 64, "Ogg"),
        (b"\0\0\0\x20ftypM4A " + b"\0" * 64, "MP4"),
        (b"just some text", "not a recognised audio format"),
        (_riff(2, 1, 8000, 4, b"\0" * 64), "compressed"),
        (_riff(1, 1, 8000, 12, b"\0" * 64), "12-bit PCM"),
    ],
)
def test_unsupported_audio_is_named(data: bytes, named: str) -> None:
    with pytest.raises(voice.UnsupportedAudio, match=named) as raised:
        decode(data, "clip.bin")
    assert "clip.bin" in str(raised.value)


def test_missing_engines_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(voice.VoiceEngineMissing, match="apt-get install espeak-ng"):
        voice.speak("hello")
    monkeypatch.setattr(stt, "_decoder", None)
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import fails as if not installed
    with pytest.raises(voice.VoiceEngineMissing, match=r"edgecrew\[voice\]"):
        voice.transcribe(wav(Audio(np.zeros(1600), 16_000)))


def test_every_api_voice_is_an_espeak_voice() -> None:
    from edgecrew.api.routers.audio import Voice

    assert set(Voice.__args__) == set(voice.VOICES)


# -- the engines, in process --------------------------------------------------------------------------


@needs_espeak
@needs_sphinx
@pytest.mark.skipif(not LIBRIVOX.is_dir(), reason="human test speech: apt-get install pocketsphinx-testdata")
@pytest.mark.parametrize("name", sorted(HUMAN))
def test_human_speech_is_transcribed(name: str) -> None:
    said = HUMAN[name]
    heard = voice.transcribe((LIBRIVOX / name).read_bytes(), name).text
    assert _overlap(said, heard) >= 0.7 * len(set(said.split())), heard


@needs_espeak
@needs_sphinx
def test_human_speech_survives_resampling_and_stereo() -> None:
    """The same recording at 44.1 kHz in two channels, as a phone would send it, reads the same."""
    name = "sense_and_sensibility_01_austen_64kb-0930.wav"
    if not (LIBRIVOX / name).exists():
        pytest.skip("human test speech: apt-get install pocketsphinx-testdata")
    audio = resample(decode((LIBRIVOX / name).read_bytes()), 44_100)
    stereo = np.repeat(np.round(audio.samples * 32767).astype("<i2"), 2).tobytes()
    heard = voice.transcribe(_riff(1, 2, 44_100, 16, stereo)).text
    assert _overlap(HUMAN[name], heard) >= 5, heard


@needs_espeak
@needs_sphinx
def test_an_utterance_is_heard_the_same_whatever_came_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recogniser's normalisation adapts to what it hears; each utterance starts from the same state,
    so the first request after start-up and a later one give the same text."""
    monkeypatch.setattr(stt, "_decoder", None)  # as after start-up
    pod_bay, fox = tts.speak("please open the pod bay doors"), tts.speak("the quick brown fox jumps over the lazy dog")
    first = voice.transcribe(pod_bay).words
    voice.transcribe(fox)
    assert voice.transcribe(pod_bay).words == first and first


# -- over HTTP ----------------------------------------------------------------------------------------


@needs_espeak
def test_speech_is_a_real_wav(server: tuple[str, str]) -> None:
    url, key = server
    response = _speech(url, key, "hello world")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    data = response.content
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as w:  # the header states the real length, so the stdlib reads it
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        duration = w.getnframes() / w.getframerate()
    assert 0.3 < duration < 5, duration
    assert np.abs(decode(data).samples).max() > 0.1  # not silence


@needs_espeak
def test_speech_as_raw_pcm_and_faster(server: tuple[str, str]) -> None:
    url, key = server
    normal = _speech(url, key, "the quick brown fox jumps over the lazy dog", response_format="pcm")
    fast = _speech(url, key, "the quick brown fox jumps over the lazy dog", response_format="pcm", speed=2.0)
    assert normal.status_code == fast.status_code == 200
    assert normal.headers["content-type"] == "audio/pcm" and not normal.content.startswith(b"RIFF")
    seconds = len(normal.content) / 2 / tts.PCM_RATE
    assert 1.5 < seconds < 6
    assert len(fast.content) < 0.7 * len(normal.content)


@needs_espeak
@needs_sphinx
@pytest.mark.parametrize("sentence", sorted(ROUND_TRIP))
def test_round_trip_through_both_endpoints(sentence: str, server: tuple[str, str]) -> None:
    url, key = server
    spoken = _speech(url, key, sentence)
    assert spoken.status_code == 200, spoken.text
    heard = _transcribe(url, key, spoken.content)
    assert heard.status_code == 200, heard.text
    text = heard.json()["text"]
    assert _overlap(sentence, text) >= ROUND_TRIP[sentence], f"{sentence!r} came back as {text!r}"


@needs_espeak
@needs_sphinx
def test_an_empty_wav_is_silence_and_the_next_request_is_heard(server: tuple[str, str]) -> None:
    url, key = server
    empty = _transcribe(url, key, _riff(1, 1, 16_000, 16, b""))
    assert empty.status_code == 200 and empty.json()["text"] == "", empty.text
    heard = _transcribe(url, key, _speech(url, key, "hello world").content)
    assert heard.status_code == 200 and heard.json()["text"] == "hello world", heard.text


@needs_espeak
@needs_sphinx
def test_transcription_formats(server: tuple[str, str]) -> None:
    url, key = server
    audio = _speech(url, key, "hello world").content
    plain = _transcribe(url, key, audio, response_format="text")
    assert plain.headers["content-type"].startswith("text/plain") and plain.text.strip() == "hello world"
    verbose = _transcribe(url, key, audio, response_format="verbose_json", **{"timestamp_granularities[]": "word"})
    body = verbose.json()
    assert body["task"] == "transcribe" and body["language"] == "english" and body["text"] == "hello world"
    assert 0.3 < body["duration"] < 5
    assert [w["word"] for w in body["words"]] == ["hello", "world"]
    assert 0 <= body["words"][0]["start"] < body["words"][0]["end"] <= body["words"][1]["start"] < body["duration"]
    srt = _transcribe(url, key, audio, response_format="srt").text
    assert srt.startswith("1\n00:00:00,") and "-->" in srt and srt.rstrip().endswith("hello world")
    vtt = _transcribe(url, key, audio, response_format="vtt").text
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and vtt.rstrip().endswith("hello world")


@needs_sphinx
def test_silence_transcribes_to_nothing(server: tuple[str, str]) -> None:
    url, key = server
    heard = _transcribe(url, key, wav(Audio(np.zeros(16_000), 16_000)))
    assert heard.status_code == 200 and heard.json() == {"text": ""}


def test_refusals_are_problems_with_an_openai_error(server: tuple[str, str]) -> None:
    url, key = server
    mp3 = _transcribe(url, key, b"ID3\x04" + b"\0" * 256)
    assert mp3.status_code == 400 and mp3.headers["content-type"].startswith(PROBLEM_JSON)
    assert "MP3" in mp3.json()["detail"] and "WAV" in mp3.json()["error"]["message"]
    german = _transcribe(url, key, b"RIFF", language="de")
    assert german.status_code == 422 and german.json()["error"]["type"] == "invalid_request_error"
    too_long = _speech(url, key, "a" * (tts.MAX_CHARS + 1))
    assert too_long.status_code == 422 and "input" in too_long.json()["detail"]
    mp3_out = _speech(url, key, "hi", response_format="mp3")
    assert mp3_out.status_code == 422 and "response_format" in mp3_out.json()["detail"]
    no_key = httpx.post(f"{url}/v1/audio/speech", json={"model": "tts-1", "input": "hi"}, timeout=30)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"


def test_missing_engine_is_a_503_that_says_how_to_install(
    server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key = server
    monkeypatch.setattr(shutil, "which", lambda _name: None)  # the server runs in this process
    response = _speech(url, key, "hello")
    assert response.status_code == 503 and response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "apt-get install espeak-ng" in response.json()["detail"]
    assert response.json()["error"]["type"] == "server_error"


# -- the official OpenAI client -------------------------------------------------------------------------


@needs_espeak
@needs_sphinx
def test_openai_client_round_trip(server: tuple[str, str], tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    url, key = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
    try:
        speech = client.audio.speech.create(model="tts-1", voice="alloy", input="hello world", response_format="wav")
        path = tmp_path / "hello.wav"
        speech.write_to_file(path)
        assert path.read_bytes()[:4] == b"RIFF"
        with path.open("rb") as audio:
            text = client.audio.transcriptions.create(model="whisper-1", file=audio, language="en")
        assert text.text == "hello world"
        with path.open("rb") as audio:
            verbose = client.audio.transcriptions.create(
                model="whisper-1", file=audio, response_format="verbose_json", timestamp_granularities=["word"]
            )
        assert verbose.duration > 0.3 and [w.word for w in verbose.words or []] == ["hello", "world"]
        with path.open("rb") as audio:
            plain = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
        assert str(plain).strip() == "hello world"
        with pytest.raises(openai.BadRequestError, match="MP3"):
            client.audio.transcriptions.create(model="whisper-1", file=("clip.mp3", b"ID3\x04" + b"\0" * 256))
    finally:
        client.close()


def test_public_api_is_curated() -> None:
    names = {"SUPPORTED", "VOICES", "Audio", "Transcript", "UnsupportedAudio", "VoiceEngineMissing", "Word"}
    assert set(voice.__all__) == names | {"decode", "sniff", "speak", "synthesize", "transcribe"}
    for name in voice.__all__:
        assert hasattr(voice, name), name
