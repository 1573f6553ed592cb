"""The flashtalk backend: the FlashTalk runtime (engine/flashtalk/runtime/) behind the Backend interface.

A thin adapter: it turns the session's SessionSettings into the pipeline's StreamSettings and the
runtime's errors into backend errors of the same meaning; assembly, precision, ranks and memory
errors are the runtime's.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from engine.backends.base import (
    AvatarStream,
    Backend,
    BackendError,
    BackendOptions,
    BackendUnavailable,
    ChunkResult,
    OutOfMemory,
    QualityProfile,
    SettingsError,
    StageCallback,
    StreamPlan,
)
from engine.flashtalk.pipeline.profiles import ChunkCost, Rung, ladder
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


def stream_settings(settings: SessionSettings, first_chunk_frames: int = 0) -> StreamSettings:
    """The session's choices over the official defaults (its top quality profile); SettingsError
    (one line) for impossible ones. A live session's first chunk makes `first_chunk_frames` new
    frames (the engine's --first-chunk-frames) when that is shorter than its other chunks; a file
    session's chunks are all full length, as the reference makes them."""
    motion = settings.motion_frames or StreamSettings.motion_frames
    try:
        top = StreamSettings().with_overrides(
            width=settings.width, height=settings.height, steps=settings.steps, seed=settings.seed,
            prompt=settings.prompt, motion_frames=settings.motion_frames,
            frame_num=settings.chunk_frames + motion if settings.chunk_frames else None,
            color_correction=settings.color_correction)
        if settings.mode == "live" and 0 < first_chunk_frames < top.new_frames:
            top = replace(top, first_chunk_frames=first_chunk_frames).validate()
        return top
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def stream_plan(top: StreamSettings, one_size: bool = False) -> StreamPlan:
    """The quality ladder below `top` (pipeline.profiles): fewer steps, then smaller sizes; with
    `one_size` (a compiled engine: a new size recompiles for minutes) fewer steps only."""
    rungs = ladder(top.width, top.height, top.steps, one_size=one_size)
    return StreamPlan(top.new_frames, tuple(QualityProfile(r.name, r.width, r.height, r.steps) for r in rungs))


class FlashTalkStream(AvatarStream):
    def __init__(self, runtime: FlashTalkRuntime, state: StreamState, plan: StreamPlan,
                 on_stage: StageCallback | None = None):
        s = state.settings
        self.runtime, self.state, self.plan, self.on_stage = runtime, state, plan, on_stage
        self.height, self.width = state.output_hw
        self.profile = plan.profile(Rung(s.width, s.height, s.steps).name)
        self.chunk_frames = s.new_frames
        self.context_samples = s.window_samples
        self.prepare_ms = sum(state.prepare_ms.values())

    @property
    def next_chunk_frames(self) -> int:
        return self.state.settings.new_frames_of_chunk(self.state.chunks)

    def generate(self, audio: np.ndarray, idle: bool = False) -> ChunkResult:
        with _as_backend_errors():
            frames, timings = self.runtime.generate(self.state, audio, on_stage=self.on_stage)
        return ChunkResult(frames, timings)

    def use_profile(self, name: str) -> None:
        profile = self.plan.profile(name)
        with _as_backend_errors():
            self.runtime.switch_profile(self.state, profile.width, profile.height, profile.steps)
        self.profile = profile

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
        self.chunk_costs: dict[tuple[int, int, int, int], ChunkCost] = {}  # measured, per size (_cost_key)

    def follow(self) -> None:
        with _as_backend_errors():
            self.runtime.follow()

    def memory_plan_report(self) -> dict:
        return self.memory_plan.as_dict()

    def start_report(self) -> dict:
        with _as_backend_errors():
            return self.runtime.start_report()

    def warm_up(self, settings: SessionSettings | None = None) -> float:
        """Two chunks of silence at the sessions' default size and prompt (FlashTalkRuntime.warm_up),
        then one measured chunk (two on a GPU) per size of its quality ladder, so a live session
        chooses its profile at once and finds every size's kernels (and graphs) ready."""
        t0 = time.perf_counter()
        top = self._stream_settings(settings or SessionSettings())
        with _as_backend_errors():
            self.runtime.warm_up(top)  # a short first chunk and full ones: both graphs with --compile
        for width, height in dict.fromkeys((p.width, p.height) for p in self._plan(top).profiles):
            self._measure_size(replace(top, width=width, height=height))
        return time.perf_counter() - t0

    def _plan(self, top: StreamSettings) -> StreamPlan:
        return stream_plan(top, one_size=self.options.compile)

    def _stream_settings(self, settings: SessionSettings) -> StreamSettings:
        return stream_settings(settings, self.options.first_chunk_frames)

    def plan(self, settings: SessionSettings) -> StreamPlan:
        return self._plan(self._stream_settings(settings))

    def open_stream(self, portrait: np.ndarray, settings: SessionSettings,
                    on_stage: StageCallback | None = None, profile: str | None = None) -> FlashTalkStream:
        top = self._stream_settings(settings)
        plan = self._plan(top)
        start = plan.profile(profile) if profile else plan.profiles[0]
        first = replace(top, width=start.width, height=start.height, steps=start.steps)
        with _as_backend_errors():
            state = self.runtime.open(portrait, first, on_stage=on_stage, output_hw=(top.height, top.width))
        return FlashTalkStream(self.runtime, state, plan, on_stage)

    # -- measured chunk times: what the governor predicts with -----------------------------------
    @staticmethod
    def _cost_key(s: StreamSettings) -> tuple[int, int, int, int]:
        return s.width, s.height, s.frame_num, s.motion_frames

    def known_chunk_seconds(self, settings: SessionSettings) -> dict[str, float]:
        top = stream_settings(settings)
        known = {}
        for p in self._plan(top).profiles:
            cost = self.chunk_costs.get(self._cost_key(replace(top, width=p.width, height=p.height)))
            if cost is not None:
                known[p.name] = cost.seconds(p.steps)
        return known

    def measure_profile(self, portrait: np.ndarray, settings: SessionSettings, profile: str) -> dict[str, float]:
        """One measured chunk at the profile's size on a timing state (no portrait to encode); it
        predicts every step count at that size. -> all that is known for these settings."""
        top = stream_settings(settings)
        p = self._plan(top).profile(profile)
        self._measure_size(replace(top, width=p.width, height=p.height, steps=p.steps))
        return self.known_chunk_seconds(settings)

    def _measure_size(self, s: StreamSettings) -> ChunkCost:
        """A GPU's first chunk at a new size also picks kernels (and compiles, with --compile): the
        second one is timed there; a CPU has nothing to pick, one chunk does."""
        with _as_backend_errors():
            wall, timings = self.runtime.time_chunks(s, 1 if self.runtime.device.type == "cpu" else 2)
        cost = self.chunk_costs[self._cost_key(s)] = ChunkCost.from_timings(wall, timings)
        return cost

    def close(self) -> None:
        self.runtime.close()
