"""The one small interface every avatar backend implements.

The session owns the audio timeline and calls `AvatarStream.generate` once per chunk with the
audio window the backend asked for; the backend owns only its own visual state (motion latents,
blink timers, ...). That split keeps timeline, metrics and A/V sync identical for all backends.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.protocol.messages import SessionSettings


class BackendError(RuntimeError):
    """A backend failure a person can act on; str() is one line. `code` goes on the wire."""

    code = "backend_error"


class PortraitError(BackendError):
    code = "bad_portrait"


class SettingsError(BackendError):
    code = "bad_settings"


class BackendUnavailable(BackendError):
    code = "backend_unavailable"


class OutOfMemory(BackendError):
    code = "out_of_memory"


@dataclass
class BackendOptions:
    """Engine-wide options fixed when the engine starts (not per session)."""

    model_dir: Path | None = None
    wav2vec_dir: Path | None = None
    device: str | None = None  # None: the backend picks (cuda if available)
    gpus: int = 1
    precision: str | None = None  # flashtalk: "bf16", "fp8", "fp32"; None: bf16 on a GPU, fp32 on a CPU
    offload: bool = False  # flashtalk: keep idle modules on the CPU (slower, fits 48 GB cards)
    compile: bool = False  # flashtalk: torch.compile the DiT and VAE
    attention: str | None = None  # flashtalk: attention kernel (None: fastest that runs here)
    random_weights: str | None = None  # flashtalk benchmarks: "14b" or "tiny" random model, no checkpoint
    rank_timeout_s: float = 120.0  # --gpus N: a rank that hangs this long ends the engine (compiles included)


@dataclass
class ChunkResult:
    frames: np.ndarray  # [N, H, W, 3] uint8, N == stream.chunk_frames
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds


class AvatarStream(ABC):
    """One session's generator. Created by `Backend.open_stream`, driven by the session."""

    width: int
    height: int
    chunk_frames: int  # new frames produced by each generate() call
    context_samples: int  # audio samples generate() wants, ending at the chunk's last sample
    prepare_ms: float = 0.0
    face_box: tuple[int, int, int, int] | None = None  # in portrait pixels

    @abstractmethod
    def generate(self, audio: np.ndarray, idle: bool = False) -> ChunkResult:
        """audio: float32 [context_samples] at 16 kHz, zero-padded before the session start.

        `idle` is True when live mode filled silence because no audio arrived in time.
        """

    def close(self) -> None:
        """Free per-session resources (GPU buffers, caches)."""


StageCallback = Callable[[str], None]  # called with a stage's name as it starts


class Backend(ABC):
    name: str

    @abstractmethod
    def open_stream(self, portrait: np.ndarray, settings: SessionSettings,
                    on_stage: StageCallback | None = None) -> AvatarStream:
        """portrait: uint8 RGB [H, W, 3]. Raises PortraitError/SettingsError with one line.

        A backend whose preparation or chunks take long calls `on_stage` as each of its stages
        starts (in `open_stream` and in every `generate` of the stream), so a waiting client
        sees progress instead of silence, and a session that is closing can stop between stages
        (the callback raises).
        """

    def check_portrait(self, portrait: np.ndarray) -> tuple[int, int, int, int] | None:
        """Would `portrait` (uint8 RGB [H, W, 3]) make a session? Raises PortraitError with one line
        when not; returns the face box (x0, y0, x1, y1) where the backend looks for one, else None.

        Runs on the server's checker thread while a session may be live: it must not touch the
        session's state. Backends that take any image keep this default.
        """
        return None

    warms_up_by_default = False  # `serve` warms up before `ready` unless told otherwise

    def warm_up(self, settings: SessionSettings | None = None) -> float:
        """Seconds spent making the first session as fast as later ones; nothing to do by default."""
        return 0.0

    def close(self) -> None:
        """Release the backend (models, GPU memory)."""
