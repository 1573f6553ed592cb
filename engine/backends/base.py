"""The one small interface every avatar backend implements.

The session owns the audio timeline and calls `AvatarStream.generate` once per chunk with the
audio window the backend asked for; the backend owns only its own visual state (motion latents,
blink timers, ...). That split keeps timeline, metrics and A/V sync identical for all backends.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
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
    precision: str = "bf16"  # flashtalk: "bf16", "fp8" or "fp32" (reference checks)
    offload: str = "none"  # flashtalk: none|encoders|blocks|all|auto (runtime.memory_plan.OFFLOAD_CHOICES)
    gpu_memory_gb: float | None = None  # flashtalk: GiB the engine may allocate per GPU (None: no cap)
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


class Backend(ABC):
    name: str

    @abstractmethod
    def open_stream(self, portrait: np.ndarray, settings: SessionSettings) -> AvatarStream:
        """portrait: uint8 RGB [H, W, 3]. Raises PortraitError/SettingsError with one line."""

    warms_up_by_default = False  # `serve` warms up before `ready` unless told otherwise

    def warm_up(self, settings: SessionSettings | None = None) -> float:
        """Seconds spent making the first session as fast as later ones; nothing to do by default."""
        return 0.0

    def close(self) -> None:
        """Release the backend (models, GPU memory)."""
