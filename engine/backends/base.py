"""The one small interface every avatar backend implements.

The session owns the audio timeline and calls `AvatarStream.generate` once per chunk with the
audio window the backend asked for; the backend owns only its own visual state (motion latents,
blink timers, ...). That split keeps timeline, metrics and A/V sync identical for all backends.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.protocol.engine_options import BackendOptions
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

    def memory_report(self) -> dict:
        """Peak memory figures for reports (`flashtalk bench`); none by default."""
        return {}

    def close(self) -> None:
        """Free per-session resources (GPU buffers, caches)."""


StageCallback = Callable[[str], None]  # called with a stage's name as it starts


class Backend(ABC):
    """Made by the registry (engine/backends/__init__.py) from the engine's BackendOptions.

    Multi-rank: a backend whose engine may span several processes (`spans_ranks`, one per GPU
    under torchrun) has one leader, which serves sessions, and followers, which only `follow()`.
    """

    name: str
    options: BackendOptions
    spans_ranks = False  # True: `serve --gpus N` runs this backend as N torchrun processes
    is_leader = True  # False on a follower rank: its one call is follow()
    device_name: str | None = None  # what it computes on, for reports (None: nothing to name)

    @abstractmethod
    def open_stream(self, portrait: np.ndarray, settings: SessionSettings,
                    on_stage: StageCallback | None = None) -> AvatarStream:
        """portrait: uint8 RGB [H, W, 3]. Raises PortraitError/SettingsError with one line.

        A backend whose preparation or chunks take long calls `on_stage` as each of its stages
        starts (in `open_stream` and in every `generate` of the stream), so a waiting client
        sees progress instead of silence, and a session that is closing can stop between stages
        (the callback raises).
        """

    warms_up_by_default = False  # `serve` warms up before `ready` unless told otherwise
    gpus = 0  # GPUs a session computes on (the engine's welcome reports it)

    def memory_plan_report(self) -> dict | None:
        """What sits where in device memory and what it costs (benchmarks record it); None: no plan."""
        return None

    def warm_up(self, settings: SessionSettings | None = None) -> float:
        """Seconds spent making the first session as fast as later ones; nothing to do by default."""
        return 0.0

    def follow(self) -> None:
        """A follower rank: mirror the leader's calls until it shuts the engine down, then close."""
        raise RuntimeError(f"the {self.name} backend has no follower ranks")

    def close(self) -> None:
        """Release the backend (models, GPU memory)."""
