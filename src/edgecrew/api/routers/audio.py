"""OpenAI's audio endpoints, offline: ``POST /v1/audio/transcriptions`` (PocketSphinx) and
``POST /v1/audio/speech`` (espeak-ng), so a voice client talks to a team with no network.

The shapes are OpenAI's, so its clients work unchanged; what the local engines cannot do is
refused by the schema rather than half-done (English only, WAV in, WAV or raw PCM out). The engines
block, so each request runs in a worker thread; one that is not installed is a 503 saying how to
install it. Errors are problems with OpenAI's ``error`` member, as on the other /v1 routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from edgecrew.api.deps import StartRuns
from edgecrew.api.problems import PROBLEM_RESPONSES, problem_response
from edgecrew.api.routers.openai_compat import OpenAIErrorRoute
from edgecrew.voice import Transcript, VoiceEngineMissing, speak, transcribe
from edgecrew.voice.audio import SUPPORTED
from edgecrew.voice.tts import MAX_CHARS

MAX_AUDIO_BYTES = 25 * 1024 * 1024  # OpenAI's limit; the server's body limit (EDGECREW_MAX_BODY_BYTES) may be lower
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: problem_response(503, "The local speech engine is not installed here; the detail says how.")
}

router = APIRouter(
    prefix="/v1/audio",
    tags=["openai", "voice"],
    responses=PROBLEM_RESPONSES | _UNAVAILABLE,
    route_class=OpenAIErrorRoute,
)


# -- speech to text -------------------------------------------------------------------------------


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    """One segment in OpenAI's verbose shape (the recogniser gives one per request)."""

    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 1.0
    no_speech_prob: float = 0.0


class TranscriptionOut(BaseModel):
    """What was said (``response_format=json``)."""

    text: str


class TranscriptionVerboseOut(BaseModel):
    """What was said, with the duration, the language and the words' times (``verbose_json``)."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None

    @classmethod
    def of(cls, t: Transcript, granularities: Sequence[str]) -> TranscriptionVerboseOut:
        words = [TranscriptionWord(word=w.word, start=w.start, end=w.end) for w in t.words]
        end = words[-1].end if words else t.duration_s
        segment = TranscriptionSegment(id=0, start=words[0].start if words else 0.0, end=end, text=t.text)
        return cls(
            language="english",
            duration=round(t.duration_s, 3),
            text=t.text,
            segments=[segment] if t.text and "segment" in granularities else None,
            words=words if "word" in granularities else None,
        )


Granularity = Literal["word", "segment"]


@router.post(
    "/transcriptions",
    response_model=None,
    responses={
        200: {
            "description": "The text: JSON for json and verbose_json, plain text for text, srt and vtt.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "model": TranscriptionOut | TranscriptionVerboseOut,
        },
        400: problem_response(400, f"The file is not audio this server decodes ({SUPPORTED})."),
    },
)
async def create_transcription(
    _: StartRuns,
    file: Annotated[UploadFile, File(description=f"The audio: {SUPPORTED}.")],
    model: Annotated[str, Form(min_length=1, max_length=200, description="Any name (whisper-1...): one engine.")],
    # No field may be null: a multipart form has no null, and a client would send the text "null".
    language: Annotated[Literal["en"], Form(description="English is the one language offline.")] = "en",
    prompt: Annotated[str, Form(max_length=4096, description="Accepted and not used.")] = "",
    response_format: Annotated[Literal["json", "text", "verbose_json", "srt", "vtt"], Form()] = "json",
    temperature: Annotated[float, Form(ge=0, le=1, description="Accepted and not used.")] = 0.0,
    timestamp_granularities: Annotated[
        list[Granularity],
        Form(alias="timestamp_granularities[]", max_length=2, description="verbose_json: word and/or segment times."),
    ] = [],  # noqa: B006 (FastAPI copies a default; a form list cannot default to None without being nullable)
) -> Response:
    """Transcribe English speech with PocketSphinx (OpenAI's ``audio.transcriptions.create``)."""
    data = await file.read(MAX_AUDIO_BYTES + 1)
    if len(data) > MAX_AUDIO_BYTES:
        raise HTTPException(413, f"the audio is over {MAX_AUDIO_BYTES // (1024 * 1024)} MiB")
    name = file.filename or "the file"
    try:
        t = await asyncio.to_thread(transcribe, data, name, language)
    except VoiceEngineMissing as exc:
        raise HTTPException(503, str(exc)) from exc
    if response_format == "json":
        return JSONResponse(TranscriptionOut(text=t.text).model_dump())
    if response_format == "verbose_json":
        out = TranscriptionVerboseOut.of(t, timestamp_granularities or ["segment"])
        return JSONResponse(out.model_dump(exclude_none=True))
    if response_format == "text":
        return PlainTextResponse(t.text + "\n")
    return PlainTextResponse(_subtitles(t, vtt=response_format == "vtt"))


def _subtitles(t: Transcript, vtt: bool) -> str:
    """The transcript as one SubRip or WebVTT cue over the spoken part."""
    start = t.words[0].start if t.words else 0.0
    end = t.words[-1].end if t.words else t.duration_s
    sep = "." if vtt else ","

    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"

    cue = f"{stamp(start)} --> {stamp(end)}\n{t.text}\n" if t.text else ""
    return f"WEBVTT\n\n{cue}" if vtt else (f"1\n{cue}" if cue else "")


# -- text to speech -------------------------------------------------------------------------------

Voice = Literal[
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer", "verse"
]
_MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm"}


class SpeechRequest(BaseModel):
    """OpenAI's speech request; the voices are espeak-ng's English voices under OpenAI's names."""

    model: str = Field(min_length=1, max_length=200, description="Any name (tts-1, gpt-4o-mini-tts...): one engine.")
    input: str = Field(min_length=1, max_length=MAX_CHARS, description="The text to say.")
    voice: Voice = "alloy"
    response_format: Literal["wav", "pcm"] = Field(
        default="wav", description="wav (16-bit mono at 22,050 Hz) or pcm (raw 16-bit little-endian mono, 24 kHz)."
    )
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(default=None, max_length=4096, description="Accepted and not used.")


_AUDIO: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The speech, as the response_format asks.",
        "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in _MEDIA_TYPES.values()},
    }
}


@router.post("/speech", response_class=Response, responses=_AUDIO)
async def create_speech(body: SpeechRequest, _: StartRuns) -> Response:
    """Say the input with espeak-ng (OpenAI's ``audio.speech.create``)."""
    try:
        audio = await asyncio.to_thread(speak, body.input, body.voice, body.response_format, body.speed)
    except VoiceEngineMissing as exc:
        raise HTTPException(503, str(exc)) from exc
    return Response(audio, media_type=_MEDIA_TYPES[body.response_format])
