"""The CPU backend: one portrait, warped by audio-driven mouth motion plus idle life.

Per session: find the face once, frame the portrait to the output size, precompute the rig.
Per chunk (2 frames by default, 80 ms, for low latency): audio features -> mouth pose, idle
motion -> head pose and blinks, one warp of the face region per frame, mouth interior on top.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from avkit.timeline import FPS, SAMPLE_RATE
from engine.backends.base import (
    AvatarStream,
    Backend,
    BackendOptions,
    ChunkResult,
    PortraitError,
    QualityProfile,
    SettingsError,
    StageCallback,
    StreamPlan,
)
from engine.backends.puppet.audio_drive import AudioDrive, AudioDriveConfig
from engine.backends.puppet.face_landmarks import (
    detect_face_box,
    landmarks_in_box,
    load_face_models,
    smallest_face_px,
)
from engine.backends.puppet.face_rig import Expression, FaceRig
from engine.backends.puppet.idle_motion import IdleMotion
from engine.backends.puppet.mouth_interior import MouthInterior
from engine.backends.puppet.portrait_framing import apply_framing, choose_framing
from engine.protocol.backend_names import BackendName
from engine.protocol.messages import SessionSettings
from engine.protocol.stages import Stage


def no_face_message(width: int, height: int) -> str:
    """Why a portrait was refused, with the face size that counts in this picture (a large photo's
    face is not too small just because a small photo's would be)."""
    return (f"no face found in the portrait: use a well-lit photo of one face looking at the camera, "
            f"not stretched, turned or covered (in this {width}x{height} picture a face must be at least "
            f"{smallest_face_px(width, height)} pixels wide)")


@dataclass(frozen=True)
class PuppetDefaults:
    size: int = 512
    min_size: int = 64
    max_size: int = 2048
    chunk_frames: int = 2  # 80 ms per chunk: low latency, the puppet is cheap per call
    max_chunk_frames: int = 250
    seed: int = 0


DEFAULTS = PuppetDefaults()


class PuppetStream(AvatarStream):
    def __init__(self, portrait: np.ndarray, size: tuple[int, int], chunk_frames: int, seed: int):
        t0 = time.perf_counter()
        box = find_face(portrait)
        marks = landmarks_in_box(portrait, box)
        lo, hi = marks.min(axis=0), marks.max(axis=0)
        self.face_box = tuple(round(v) for v in (*lo, *hi))
        framing = choose_framing(portrait.shape[1::-1], self.face_box, size)
        self.background = apply_framing(portrait, framing)  # [H, W, 3] uint8
        self.landmarks = framing.to_output(marks)  # [68, 2] in output pixels
        self.width, self.height = size
        self.profile = only_profile(size)
        self.chunk_frames = chunk_frames
        self.rig = FaceRig(self.background, self.landmarks)
        self.interior = MouthInterior(self.background, self.landmarks)
        self.drive = AudioDrive(AudioDriveConfig(sample_rate=SAMPLE_RATE,
                                                 samples_per_frame=SAMPLE_RATE // FPS))
        self.motion = IdleMotion(seed)
        self.context_samples = chunk_frames * (SAMPLE_RATE // FPS) + self.drive.history_samples
        self.prepare_ms = (time.perf_counter() - t0) * 1e3

    def generate(self, audio: np.ndarray, idle: bool = False) -> ChunkResult:
        """audio: float32 [context_samples] ending at this chunk's last sample.

        `idle` needs no branch: idle audio is silence, the voice gate closes the mouth, and
        blinks and head sway go on as always.
        """
        n = self.chunk_frames
        t0 = time.perf_counter()
        pose = self.drive.process(np.asarray(audio, np.float32)[-self.context_samples:], n)
        head = self.motion.advance(pose.jaw)
        t1 = time.perf_counter()
        frames = np.empty((n, self.height, self.width, 3), np.uint8)
        frames[:] = self.background
        x0, y0, x1, y1 = self.rig.roi
        mouth_s = 0.0
        for i in range(n):
            expr = Expression(jaw=pose.jaw[i], wide=pose.wide[i], round=pose.round[i],
                              blink=head.blink[i], roll_deg=head.roll_deg[i], shift_x=head.shift_x[i],
                              shift_y=head.shift_y[i], scale=head.scale[i])
            pixels, gap = self.rig.warp(expr)
            tm = time.perf_counter()
            self.interior.draw(pixels, (x0, y0), gap)
            mouth_s += time.perf_counter() - tm
            frames[i, y0:y1, x0:x1] = pixels
        t2 = time.perf_counter()
        return ChunkResult(frames, {Stage.AUDIO_FEATURES: (t1 - t0) * 1e3,
                                    Stage.WARP: (t2 - t1 - mouth_s) * 1e3,
                                    Stage.MOUTH_INTERIOR: mouth_s * 1e3})


class PuppetBackend(Backend):
    name = BackendName.PUPPET

    def __init__(self, options: BackendOptions | None = None):
        self.options = options or BackendOptions()  # engine-wide GPU options do not apply here
        # The face models load here, before `serve` says ready: loading the 100 MB predictor holds
        # the GIL for seconds, which during a session (or a portrait check) would freeze the
        # server loop long enough for a client to think the engine hung.
        load_face_models()

    def check_portrait(self, portrait: np.ndarray) -> tuple[int, int, int, int]:
        _check_rgb(portrait)
        return find_face(portrait)

    def plan(self, settings: SessionSettings) -> StreamPlan:
        return StreamPlan(chunk_frames(settings), (only_profile(output_size(settings)),))

    def open_stream(self, portrait: np.ndarray, settings: SessionSettings,
                    on_stage: StageCallback | None = None,
                    profile: str | None = None) -> PuppetStream:  # prepares in ~0.1 s: no stages
        plan = self.plan(settings)
        if profile is not None:
            plan.profile(profile)  # one profile: anything else is a SettingsError
        _check_rgb(portrait)
        return PuppetStream(portrait, output_size(settings), plan.chunk_frames,
                            DEFAULTS.seed if settings.seed is None else int(settings.seed))


def only_profile(size: tuple[int, int]) -> QualityProfile:
    """The puppet's work per frame is one warp: it has no quality to trade, so one profile."""
    return QualityProfile(f"{size[0]}x{size[1]}", *size)


def find_face(portrait: np.ndarray) -> tuple[int, int, int, int]:
    """The face box (x0, y0, x1, y1) in portrait pixels; PortraitError when there is none."""
    box = detect_face_box(portrait)
    if box is None:
        raise PortraitError(no_face_message(portrait.shape[1], portrait.shape[0]))
    return box


def _check_rgb(portrait: np.ndarray) -> None:
    if not (isinstance(portrait, np.ndarray) and portrait.ndim == 3 and portrait.shape[2] == 3
            and portrait.dtype == np.uint8):
        raise PortraitError("the portrait must be an RGB image (8 bits per channel)")


def output_size(settings: SessionSettings) -> tuple[int, int]:
    """(width, height) from the settings; one given means a square; none means the default."""
    width = settings.width if settings.width is not None else settings.height
    height = settings.height if settings.height is not None else settings.width
    width, height = (width or DEFAULTS.size), (height or DEFAULTS.size)
    for value in (width, height):
        if int(value) != value or value % 2 or not DEFAULTS.min_size <= value <= DEFAULTS.max_size:
            raise SettingsError(f"output size {width}x{height} is not supported: use even sizes from "
                                f"{DEFAULTS.min_size} to {DEFAULTS.max_size} pixels, e.g. 512x512")
    return int(width), int(height)


def chunk_frames(settings: SessionSettings) -> int:
    frames = DEFAULTS.chunk_frames if settings.chunk_frames is None else settings.chunk_frames
    if int(frames) != frames or not 1 <= frames <= DEFAULTS.max_chunk_frames:
        raise SettingsError(f"chunk_frames {frames} is not supported by the puppet backend: "
                            f"use 1 to {DEFAULTS.max_chunk_frames} (default {DEFAULTS.chunk_frames})")
    return int(frames)
