"""The one small interface every avatar backend implements.

The session owns the audio timeline and calls `AvatarStream.generate` once per chunk with the
audio window the backend asked for; the backend owns only its own visual state (motion latents,
blink timers, ...). That split keeps timeline, metrics and A/V sync identical for all backends.
"""
from __future__ import annotations

import time
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


@dataclass(frozen=True)
class QualityProfile:
    """One rung of a backend's quality ladder: the work a chunk is made with.

    Whatever the profile, a stream's frames keep the size of its plan's first (top) profile, so
    recorders and virtual cameras never see the size change.
    """

    name: str  # on the wire (SessionOpened.profiles, SessionSettings.quality), e.g. "448x768/4"
    width: int  # the size the backend generates at
    height: int
    steps: int | None = None  # denoising steps; None for a backend without any


@dataclass(frozen=True)
class StreamPlan:
    """What a session's settings will give, known before any work: checked when the session opens."""

    chunk_frames: int
    profiles: tuple[QualityProfile, ...]  # best (most work) first; one for a backend with no choice

    def profile(self, name: str) -> QualityProfile:
        for p in self.profiles:
            if p.name == name:
                return p
        raise SettingsError(f"unknown quality profile {name!r}: use one of {', '.join(p.name for p in self.profiles)}")


@dataclass
class ChunkResult:
    frames: np.ndarray  # [N, H, W, 3] uint8, N == the stream's next_chunk_frames before the call
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds


class AvatarStream(ABC):
    """One session's generator. Created by `Backend.open_stream`, driven by the session."""

    width: int
    height: int
    chunk_frames: int  # new frames produced by each generate() call (the first may make fewer)
    context_samples: int  # audio samples generate() wants, ending at the chunk's last sample
    prepare_ms: float = 0.0
    face_box: tuple[int, int, int, int] | None = None  # in portrait pixels
    profile: QualityProfile  # the quality profile chunks are made with now

    @abstractmethod
    def generate(self, audio: np.ndarray, idle: bool = False) -> ChunkResult:
        """audio: float32 [context_samples] at 16 kHz, zero-padded before the session start.

        `idle` is True when live mode filled silence because no audio arrived in time.
        """

    @property
    def next_chunk_frames(self) -> int:
        """New frames the next generate() call makes: chunk_frames, except for a backend whose
        first chunk is shorter (its frames come sooner); the session cuts its timeline by it."""
        return self.chunk_frames

    def memory_report(self) -> dict:
        """Peak memory figures for reports (`flashtalk bench`); none by default."""
        return {}

    def use_profile(self, name: str) -> None:
        """Make the next chunks at another profile of this stream's plan (same output size).
        A backend with one profile has nothing to switch."""
        if name != self.profile.name:
            raise SettingsError(f"this stream has one quality profile, {self.profile.name}, not {name!r}")

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
    def plan(self, settings: SessionSettings) -> StreamPlan:
        """Chunk length and quality ladder for these settings, without any work; SettingsError
        (one line) for settings this backend cannot run."""

    @abstractmethod
    def open_stream(self, portrait: np.ndarray, settings: SessionSettings,
                    on_stage: StageCallback | None = None, profile: str | None = None) -> AvatarStream:
        """portrait: uint8 RGB [H, W, 3]. Raises PortraitError/SettingsError with one line.

        `profile` (a name from `plan(settings)`, default the top one) is what the first chunks are
        made with. A backend whose preparation or chunks take long calls `on_stage` as each of its
        stages starts (in `open_stream` and in every `generate` of the stream), so a waiting client
        sees progress instead of silence, and a session that is closing can stop between stages
        (the callback raises).
        """

    def known_chunk_seconds(self, settings: SessionSettings) -> dict[str, float]:
        """Profile name -> seconds one chunk took when this engine measured it (never measured: absent)."""
        plan = self.plan(settings)
        return {p.name: self._measured[(p, plan.chunk_frames)] for p in plan.profiles
                if (p, plan.chunk_frames) in self._measured}

    def measure_profile(self, portrait: np.ndarray, settings: SessionSettings, profile: str) -> dict[str, float]:
        """Time one silent chunk at `profile` on a throwaway stream; the engine remembers it.

        -> every profile name this measurement tells about (a backend may learn several at once).
        """
        plan = self.plan(settings)
        stream = self.open_stream(portrait, settings, profile=profile)
        try:
            silence = np.zeros(stream.context_samples, np.float32)
            t0 = time.perf_counter()
            stream.generate(silence, idle=True)
            seconds = time.perf_counter() - t0
        finally:
            stream.close()
        self._measured[(plan.profile(profile), plan.chunk_frames)] = seconds
        return {profile: seconds}

    @property
    def _measured(self) -> dict[tuple[QualityProfile, int], float]:
        """(profile, chunk frames) -> measured seconds per chunk, for this engine's lifetime."""
        return self.__dict__.setdefault("_measured_chunk_seconds", {})

    def check_portrait(self, portrait: np.ndarray) -> tuple[int, int, int, int] | None:
        """Would `portrait` (uint8 RGB [H, W, 3]) make a session? Raises PortraitError with one line
        when not; returns the face box (x0, y0, x1, y1) where the backend looks for one, else None.

        Runs on the server's checker thread while a session may be live: it must not touch the
        session's state. Backends that take any image keep this default.
        """
        return None

    warms_up_by_default = False  # `serve` warms up before `ready` unless told otherwise
    gpus = 0  # GPUs a session computes on (the engine's welcome reports it)

    def start_report(self) -> dict:
        """What starting this engine built or reused (benchmarks record it); nothing by default."""
        return {}

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
