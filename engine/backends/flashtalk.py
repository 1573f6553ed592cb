"""The flashtalk backend: the FlashTalk runtime (engine/flashtalk/runtime/) behind the Backend interface.

A thin adapter: it turns the session's SessionSettings into the pipeline's StreamSettings and the
runtime's errors into backend errors of the same meaning; assembly, precision, ranks and memory
errors are the runtime's.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from engine.backends.base import (
    AvatarStream,
    Backend,
    BackendError,
    BackendOptions,
    BackendUnavailable,
    ChunkResult,
    OutOfMemory,
    SettingsError,
    StageCallback,
)
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.pipeline.streaming import StreamState
from engine.flashtalk.runtime.errors import FlashTalkError, FlashTalkOutOfMemory, FlashTalkUnavailable
from engine.flashtalk.runtime.flashtalk_runtime import FlashTalkRuntime
from engine.protocol.backend_names import BackendName
from engine.protocol.messages import SessionSettings

BACKEND_ERRORS = {FlashTalkUnavailable: BackendUnavailable, FlashTalkOutOfMemory: OutOfMemory}


@contextmanager
def _as_backend_errors():
    """A runtime error leaves as the backend error of the same meaning (and wire code)."""
    try:
        yield
    except FlashTalkError as exc:
        raise BACKEND_ERRORS.get(type(exc), BackendError)(str(exc)) from None


def stream_settings(settings: SessionSettings) -> StreamSettings:
    """The session's choices over the official defaults; SettingsError (one line) for impossible ones."""
    motion = settings.motion_frames or StreamSettings.motion_frames
    try:
        return StreamSettings().with_overrides(
            width=settings.width, height=settings.height, steps=settings.steps, seed=settings.seed,
            prompt=settings.prompt, motion_frames=settings.motion_frames,
            frame_num=settings.chunk_frames + motion if settings.chunk_frames else None,
            color_correction=settings.color_correction)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


class FlashTalkStream(AvatarStream):
    def __init__(self, runtime: FlashTalkRuntime, state: StreamState, on_stage: StageCallback | None = None):
        s = state.settings
        self.runtime, self.state, self.on_stage = runtime, state, on_stage
        self.width, self.height = s.width, s.height
        self.chunk_frames = s.new_frames
        self.context_samples = s.window_samples
        self.prepare_ms = sum(state.prepare_ms.values())

    def generate(self, audio: np.ndarray, idle: bool = False) -> ChunkResult:
        with _as_backend_errors():
            frames, timings = self.runtime.generate(self.state, audio, on_stage=self.on_stage)
        return ChunkResult(frames, timings)

    def memory_report(self) -> dict:
        return self.runtime.memory_report()

    def close(self) -> None:
        self.runtime.release(self.state)
        self.state = None


class FlashTalkBackend(Backend):
    name = BackendName.FLASHTALK
    spans_ranks = True

    def __init__(self, options: BackendOptions):
        self.options = options
        with _as_backend_errors():
            self.runtime = FlashTalkRuntime(options)
        self.is_leader = self.runtime.is_leader
        self.gpus = options.gpus
        self.device_name = self.runtime.device_name
        self.precision = self.runtime.precision
        self.memory_plan = self.runtime.memory_plan  # what sits where on the GPU, and what it costs
        self.warms_up_by_default = self.runtime.device.type == "cuda"  # a CPU engine is for tests

    def follow(self) -> None:
        with _as_backend_errors():
            self.runtime.follow()

    def memory_plan_report(self) -> dict:
        return self.memory_plan.as_dict()

    def warm_up(self, settings: SessionSettings | None = None) -> float:
        """Two chunks of silence at the sessions' default size and prompt (see FlashTalkRuntime.warm_up)."""
        warm = stream_settings(settings or SessionSettings())
        with _as_backend_errors():
            return self.runtime.warm_up(warm)

    def open_stream(self, portrait: np.ndarray, settings: SessionSettings,
                    on_stage: StageCallback | None = None) -> FlashTalkStream:
        chosen = stream_settings(settings)
        with _as_backend_errors():
            state = self.runtime.open(portrait, chosen, on_stage=on_stage)
        return FlashTalkStream(self.runtime, state, on_stage)

    def close(self) -> None:
        self.runtime.close()
