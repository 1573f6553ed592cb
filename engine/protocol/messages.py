"""Every message that crosses the engine socket, as typed dataclasses.

The studio imports this package and nothing else of the engine, so it stays free of torch, numpy
tensors and backend code. Large byte fields (portrait, PCM, RGB frames) travel as separate
zero-copy message parts; everything else goes into one msgpack header.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

from avkit.timeline import FPS, SAMPLE_RATE

PROTOCOL_VERSION = 3  # 2: check_portrait / portrait_checked; 3: the token is in ZeroMQ's handshake (PLAIN)

# Upper bounds a peer enforces before decoding anything (bytes).
MAX_HEADER_BYTES = 64 * 1024
MAX_PORTRAIT_BYTES = 32 * 1024 * 1024
MAX_AUDIO_BLOCK_BYTES = 8 * 1024 * 1024
MAX_FRAMES_BYTES = 512 * 1024 * 1024
MAX_INBOUND_MESSAGE_BYTES = MAX_PORTRAIT_BYTES + MAX_HEADER_BYTES  # what the server accepts
MAX_PROMPT_CHARS = 4096  # even in 4-byte UTF-8 well inside the header; the text encoder reads far less


def frames_per_message(width: int, height: int, samples_per_frame: int) -> int:
    """The most frames of this size one Frames message may carry: its RGB24 pixels and its float32
    audio each within MAX_FRAMES_BYTES (a peer refuses more). A session's chunk must fit."""
    return min(MAX_FRAMES_BYTES // (width * height * 3), MAX_FRAMES_BYTES // (samples_per_frame * 4))


# Session quality (SessionSettings.quality): besides these two, the name of one of the session's
# profiles (SessionOpened.profiles) fixes that profile.
QUALITY_AUTO = "auto"  # keep up: the engine picks the best profile that runs in real time, and switches
QUALITY_FIXED = "fixed"  # quality first: the top profile (the size and steps asked for), never switched
TARGET_LATENCY_MARGIN_S = 0.5  # default target live latency = one chunk's audio + this


@dataclass
class Message:
    """Envelope shared by all messages: type tag, session id, sequence number, monotonic time."""

    TYPE: ClassVar[str] = ""
    BLOBS: ClassVar[tuple[str, ...]] = ()  # bytes fields sent as their own message parts

    session: str = ""
    seq: int = 0
    t: float = field(default_factory=time.monotonic)


@dataclass
class SessionSettings:
    """What the studio may ask of a session. None means "the backend's default"."""

    backend: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    seed: int | None = None
    prompt: str | None = None
    chunk_frames: int | None = None
    motion_frames: int | None = None
    color_correction: float | None = None
    mode: str = "live"  # "live": idle when audio stops; "file": end_of_audio flushes the tail
    quality: str | None = None  # QUALITY_AUTO (live default), QUALITY_FIXED (file default) or a profile name
    target_latency_s: float | None = None  # live: capture -> presented; default one chunk + TARGET_LATENCY_MARGIN_S


# --- client -> engine ---------------------------------------------------------------------------


@dataclass
class Hello(Message):
    TYPE: ClassVar[str] = "hello"
    version: int = PROTOCOL_VERSION
    client: str = ""


@dataclass
class OpenSession(Message):
    TYPE: ClassVar[str] = "open_session"
    BLOBS: ClassVar[tuple[str, ...]] = ("portrait",)
    portrait: bytes = b""
    settings: dict = field(default_factory=dict)  # SessionSettings as a dict (see settings_from_dict)


@dataclass
class CheckPortrait(Message):
    """Would this portrait make a session? Answered by `portrait_checked`; an open session goes on."""

    TYPE: ClassVar[str] = "check_portrait"
    BLOBS: ClassVar[tuple[str, ...]] = ("portrait",)
    request: int = 0  # echoed in the answer
    portrait: bytes = b""


@dataclass
class Audio(Message):
    """A block of audio: float32 interleaved PCM at any rate/channel count, with capture time."""

    TYPE: ClassVar[str] = "audio"
    BLOBS: ClassVar[tuple[str, ...]] = ("pcm",)
    capture_t: float = 0.0
    sample_rate: int = SAMPLE_RATE
    channels: int = 1
    pcm: bytes = b""


@dataclass
class EndOfAudio(Message):
    TYPE: ClassVar[str] = "end_of_audio"


@dataclass
class CloseSession(Message):
    TYPE: ClassVar[str] = "close_session"


@dataclass
class Heartbeat(Message):
    TYPE: ClassVar[str] = "heartbeat"
    nonce: int = 0


# --- engine -> client ---------------------------------------------------------------------------


@dataclass
class Welcome(Message):
    TYPE: ClassVar[str] = "welcome"
    version: int = PROTOCOL_VERSION
    engine: str = ""
    backends: list = field(default_factory=list)
    default_backend: str = ""
    sample_rate: int = SAMPLE_RATE
    fps: int = FPS
    gpus: int = 0


@dataclass
class SessionOpened(Message):
    TYPE: ClassVar[str] = "session_opened"
    backend: str = ""
    width: int = 0
    height: int = 0
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    chunk_frames: int = 0
    prepare_ms: float = 0.0
    face_box: list = field(default_factory=list)  # [x0, y0, x1, y1] in portrait pixels, or []
    quality: str = ""  # QUALITY_AUTO: the engine switches profiles to keep up; QUALITY_FIXED: it never does
    profile: str = ""  # the quality profile the session starts with
    profiles: list = field(default_factory=list)  # every profile of this session, best first
    predicted_rtf: float = 0.0  # video seconds per compute second at `profile`; 0.0: not measured
    target_latency_s: float = 0.0  # the target live latency in force (capture -> presented)


@dataclass
class PortraitChecked(Message):
    TYPE: ClassVar[str] = "portrait_checked"
    request: int = 0
    ok: bool = False
    code: str = ""  # why not (as `error` codes: "bad_portrait"), "" when ok
    message: str = ""  # one line a person can act on, "" when ok
    width: int = 0  # the portrait's size in pixels
    height: int = 0
    face_box: list = field(default_factory=list)  # [x0, y0, x1, y1] where the backend found the face, or []


@dataclass
class Frames(Message):
    """`count` RGB24 frames starting at session frame `first_frame`, plus the audio they show.

    Frame k presents audio samples [k*spf, (k+1)*spf); `audio` holds exactly those samples for the
    frames carried here (float32 mono at the session rate), so playout and recording need no other
    source of truth. `capture_t0` is when the first of those samples was captured (monotonic).
    """

    TYPE: ClassVar[str] = "frames"
    BLOBS: ClassVar[tuple[str, ...]] = ("rgb", "audio")
    chunk: int = 0
    first_frame: int = 0
    count: int = 0
    width: int = 0
    height: int = 0
    capture_t0: float = 0.0
    idle: bool = False  # generated without fresh audio (live mode kept the avatar alive)
    timings: dict = field(default_factory=dict)  # stage name -> milliseconds
    rgb: bytes = b""
    audio: bytes = b""


@dataclass
class Metrics(Message):
    TYPE: ClassVar[str] = "metrics"
    values: dict = field(default_factory=dict)


@dataclass
class Event(Message):
    TYPE: ClassVar[str] = "event"
    kind: str = ""  # e.g. "state", "warning", "session_ended"
    message: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Error(Message):
    TYPE: ClassVar[str] = "error"
    code: str = ""  # machine-readable, e.g. "auth", "version", "busy", "bad_portrait"
    message: str = ""  # one line a person can act on
    fatal: bool = False  # the session (if any) is over


@dataclass
class HeartbeatAck(Message):
    TYPE: ClassVar[str] = "heartbeat_ack"
    nonce: int = 0


ALL_MESSAGES: tuple[type[Message], ...] = (
    Hello, OpenSession, CheckPortrait, Audio, EndOfAudio, CloseSession, Heartbeat,
    Welcome, SessionOpened, PortraitChecked, Frames, Metrics, Event, Error, HeartbeatAck,
)
MESSAGE_TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in ALL_MESSAGES}


def settings_to_dict(settings: SessionSettings) -> dict:
    return {k: v for k, v in settings.__dict__.items() if v is not None}


def settings_from_dict(data: dict) -> SessionSettings:
    """Build settings from a peer's dict; unknown keys or wrong types raise ValueError."""
    known = SessionSettings.__dataclass_fields__
    kinds = {"prompt": str, "backend": str, "mode": str, "quality": str, "color_correction": (int, float),
             "target_latency_s": (int, float)}
    out = SessionSettings()
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"unknown session setting {key!r}")
        if value is None:
            continue
        want = kinds.get(key, int)
        if isinstance(value, bool) or not isinstance(value, want):
            raise ValueError(f"session setting {key!r} has the wrong type {type(value).__name__}")
        setattr(out, key, float(value) if key in ("color_correction", "target_latency_s") else value)
    if out.prompt is not None and len(out.prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(out.prompt)} characters: shorten the prompt to at most "
                         f"{MAX_PROMPT_CHARS} characters")
    if out.mode not in ("live", "file"):
        raise ValueError(f"session mode must be 'live' or 'file', not {out.mode!r}")
    if out.quality is not None and not out.quality.strip():
        raise ValueError(f"session setting 'quality' must be {QUALITY_AUTO!r}, {QUALITY_FIXED!r} or a profile name")
    if out.target_latency_s is not None and not 0 < out.target_latency_s < float("inf"):
        raise ValueError(f"session setting 'target_latency_s' must be a positive number of seconds, "
                         f"not {out.target_latency_s}")
    if out.seed is not None and out.seed < 0:  # the puppet's numpy RNG failed on it mid-session
        raise ValueError(f"session setting 'seed' must be 0 or more, not {out.seed}")
    for key in ("width", "height", "steps", "chunk_frames", "motion_frames"):
        value = getattr(out, key)
        if value is not None and value < 1:  # 0 would read as "the default" in `x or default`
            raise ValueError(f"session setting {key!r} must be 1 or more (or left out), not {value}")
    return out
