"""Life between words: blinks every few seconds, a slow head sway, breathing, small nods while
talking. Everything is a function of the session frame index and a seeded RNG, so a session
replays identically for the same seed however the audio was chunked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avkit.timeline import FPS


@dataclass(frozen=True)
class IdleMotionConfig:
    fps: int = FPS
    blink_interval_s: tuple[float, float] = (2.0, 6.0)  # uniform gap between blinks
    first_blink_s: tuple[float, float] = (0.8, 2.5)
    double_blink_chance: float = 0.15
    blink_shape: tuple[float, ...] = (0.5, 0.95, 1.0, 0.75, 0.45, 0.2, 0.06)  # lid closure by frame
    sway_components: int = 3  # sinusoids summed per head axis
    sway_hz: tuple[float, float] = (0.07, 0.35)
    roll_deg: float = 1.2  # head tilt amplitude
    shift: float = 0.015  # head translation amplitude, fraction of the face scale
    breath_hz: float = 0.22
    breath_scale: float = 0.004  # relative size change over a breath
    nod: float = 0.03  # downward head shift while talking loudly, fraction of the face scale
    nod_smoothing: float = 0.12  # one-pole rate per frame for the talking nod


@dataclass
class HeadPose:
    """Per-frame pose, each [N] float32."""

    roll_deg: np.ndarray
    shift_x: np.ndarray  # fraction of the face scale
    shift_y: np.ndarray
    scale: np.ndarray  # 1.0 = unchanged
    blink: np.ndarray  # 0 open .. 1 closed


class IdleMotion:
    def __init__(self, seed: int, config: IdleMotionConfig | None = None):
        self.config = config or IdleMotionConfig()
        c = self.config
        self._rng = np.random.default_rng(seed)
        # [3 axes (roll, x, y), components]: frequency (Hz), phase (rad), weight (sums to 1)
        shape = (3, c.sway_components)
        self._freq = self._rng.uniform(*c.sway_hz, size=shape)
        self._phase = self._rng.uniform(0, 2 * np.pi, size=shape)
        weight = self._rng.uniform(0.3, 1.0, size=shape)
        self._weight = weight / weight.sum(axis=1, keepdims=True)
        self._breath_phase = float(self._rng.uniform(0, 2 * np.pi))
        self._blink_starts: list[int] = []
        self._next_blink_s = self._rng.uniform(*c.first_blink_s)
        self._frame = 0
        self._nod = 0.0

    def advance(self, talking: np.ndarray) -> HeadPose:
        """talking: [N] in [0, 1] (e.g. the jaw drive) for the next N frames -> their HeadPose."""
        c = self.config
        n = talking.size
        frames = np.arange(self._frame, self._frame + n)
        pose = np.zeros((4, n), np.float32)  # roll, shift x, shift y, scale
        for i, frame in enumerate(frames):
            # scalar maths per frame: vectorised sin rounds differently with the array length,
            # and a frame must not depend on how the session chunked the stream
            t = frame / c.fps
            sway = [sum(w * math.sin(2 * math.pi * f * t + p) for f, p, w in zip(*axis))
                    for axis in zip(self._freq, self._phase, self._weight)]
            self._nod += c.nod_smoothing * (float(talking[i]) - self._nod)
            breath = math.sin(2 * math.pi * c.breath_hz * t + self._breath_phase)
            pose[:, i] = (c.roll_deg * sway[0], c.shift * sway[1], c.shift * sway[2] + c.nod * self._nod,
                          1.0 + c.breath_scale * breath)
        self._frame += n
        return HeadPose(roll_deg=pose[0], shift_x=pose[1], shift_y=pose[2], scale=pose[3],
                        blink=self._blinks(frames))

    def _blinks(self, frames: np.ndarray) -> np.ndarray:
        """Lid closure [N] for these session frames, from blink start times drawn lazily."""
        c = self.config
        last = int(frames[-1])
        while not self._blink_starts or self._blink_starts[-1] <= last:
            start = round(self._next_blink_s * c.fps)
            self._blink_starts.append(start)
            if self._rng.random() < c.double_blink_chance:
                self._blink_starts.append(start + len(c.blink_shape) + 1)
            self._next_blink_s += self._rng.uniform(*c.blink_interval_s)
        shape = np.asarray(c.blink_shape, np.float32)
        self._blink_starts = [s for s in self._blink_starts if s + shape.size > frames[0]]  # past ones
        closure = np.zeros(frames.size, np.float32)
        for start in self._blink_starts:
            offset = frames - start
            inside = (offset >= 0) & (offset < shape.size)
            if inside.any():
                closure[inside] = np.maximum(closure[inside], shape[offset[inside]])
        return closure
