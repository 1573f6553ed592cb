"""Per-frame mouth parameters from 16 kHz speech: loudness opens the jaw, spectral shape picks
wide ("ee", "s") versus rounded ("oo") lips, and a voice-activity gate closes the mouth in silence.

All state (noise floor, peak level, gate, smoothing) lives in `AudioDrive` and carries across
chunks, so the result for a frame depends only on the audio up to that frame and not on how the
session cut the stream into chunks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avkit.timeline import SAMPLE_RATE, Timeline


@dataclass(frozen=True)
class AudioDriveConfig:
    sample_rate: int = SAMPLE_RATE
    samples_per_frame: int = Timeline().samples_per_frame
    window: int = 1024  # analysis window ending at each frame's last sample (64 ms)
    silence_db: float = -52.0  # absolute level (dBFS, windowed RMS) below which nobody speaks
    gate_open_above_floor_db: float = 15.0  # the gate opens this far above the noise floor ...
    gate_close_above_floor_db: float = 9.0  # ... and closes below this (hysteresis)
    hangover_frames: int = 3  # keep the gate open this many frames after the level drops
    floor_rise_db_per_frame: float = 0.1  # noise floor follows quiet levels, rises slowly
    peak_fall_db_per_frame: float = 0.05  # speech peak follows loud levels, falls slowly
    initial_peak_db: float = -18.0
    dynamic_range_db: float = 28.0  # levels this far below the peak keep the mouth shut
    attack: float = 0.7  # one-pole smoothing per frame when a parameter rises ...
    release: float = 0.45  # ... and when it falls (mouths close a little slower than they open)
    spectrum_band_hz: tuple[float, float] = (80.0, 7_500.0)
    sibilant_above_hz: float = 3_500.0
    centroid_wide_hz: tuple[float, float] = (1_300.0, 2_600.0)  # centroid ramp to fully wide lips
    centroid_round_hz: tuple[float, float] = (850.0, 400.0)  # centroid ramp to fully round lips
    rest_below: float = 0.01  # parameters below this snap to exactly 0 (mouth fully at rest)


@dataclass
class MouthPose:
    """Per-frame targets in [0, 1], each [N] float32."""

    jaw: np.ndarray  # jaw drop (mouth opening)
    wide: np.ndarray  # lip stretch
    round: np.ndarray  # lip rounding / pucker


class AudioDrive:
    """Turns audio windows into smoothed MouthPose values, one per video frame."""

    def __init__(self, config: AudioDriveConfig | None = None):
        self.config = config or AudioDriveConfig()
        c = self.config
        self._taper = np.hanning(c.window).astype(np.float32)
        self._taper_power = float((self._taper ** 2).sum())
        freqs = np.fft.rfftfreq(c.window, 1.0 / c.sample_rate)
        self._band = (freqs >= c.spectrum_band_hz[0]) & (freqs <= c.spectrum_band_hz[1])
        self._band_freqs = freqs[self._band].astype(np.float32)
        self._sibilant = self._band_freqs >= c.sibilant_above_hz
        self.reset()

    @property
    def history_samples(self) -> int:
        """Samples before a chunk's first frame that the first window needs."""
        return self.config.window - self.config.samples_per_frame

    def reset(self) -> None:
        c = self.config
        self._floor_db = c.silence_db - c.gate_open_above_floor_db
        self._peak_db = c.initial_peak_db
        self._gate_open = False
        self._hangover = 0
        self._smoothed = np.zeros(3, np.float32)  # jaw, wide, round

    def process(self, audio: np.ndarray, frames: int) -> MouthPose:
        """audio: float32 [frames * samples_per_frame + history_samples], the chunk's last frames."""
        c = self.config
        need = frames * c.samples_per_frame + self.history_samples
        if audio.size < need:
            raise ValueError(f"audio drive needs {need} samples for {frames} frames, got {audio.size}")
        ends = audio.size - c.samples_per_frame * np.arange(frames - 1, -1, -1)
        out = np.zeros((3, frames), np.float32)  # jaw, wide, round
        for i, end in enumerate(ends):
            # one window at a time: batched FFTs round differently, and a frame must not depend
            # on how many frames share its chunk
            out[:, i] = self._step(*self._features(audio[end - c.window:end]))
        return MouthPose(jaw=out[0], wide=out[1], round=out[2])

    def _features(self, window: np.ndarray) -> tuple[float, float, float]:
        """window [window] -> level dBFS, spectral centroid Hz, sibilant share of the power."""
        tapered = window.astype(np.float32) * self._taper
        level_db = 10.0 * np.log10(float((tapered ** 2).sum()) / self._taper_power + 1e-12)
        power = np.abs(np.fft.rfft(tapered)[self._band]) ** 2  # [bins]
        total = float(power.sum()) + 1e-12
        centroid = float((power * self._band_freqs).sum()) / total
        sibilance = float(power[self._sibilant].sum()) / total
        return level_db, centroid, sibilance

    def _step(self, level_db: float, centroid: float, sibilance: float) -> tuple[float, ...]:
        """One frame: update floor/peak/gate, map features to targets, smooth them."""
        c = self.config
        self._floor_db = min(level_db, self._floor_db + c.floor_rise_db_per_frame)
        open_at = max(c.silence_db, self._floor_db + c.gate_open_above_floor_db)
        close_at = max(c.silence_db - 6.0, self._floor_db + c.gate_close_above_floor_db)
        if level_db >= open_at or (self._gate_open and level_db >= close_at):
            self._gate_open, self._hangover = True, c.hangover_frames
        elif self._hangover > 0:
            self._hangover -= 1
        else:
            self._gate_open = False
        if self._gate_open:
            self._peak_db = max(level_db, self._peak_db - c.peak_fall_db_per_frame, open_at + 6.0)
        target = np.zeros(3, np.float32)
        if self._gate_open:
            loud = np.clip((level_db - (self._peak_db - c.dynamic_range_db)) / c.dynamic_range_db, 0, 1)
            wide = _ramp(centroid, *c.centroid_wide_hz)
            rounded = _ramp(centroid, *c.centroid_round_hz) * loud
            hiss = float(np.clip(sibilance * 1.5, 0, 1))  # teeth come together for "s", "sh", "f"
            target[:] = (loud * (1.0 - 0.6 * hiss), max(wide, hiss) * (1 - rounded), rounded)
        rate = np.where(target > self._smoothed, c.attack, c.release)
        self._smoothed += rate * (target - self._smoothed)
        self._smoothed[self._smoothed < c.rest_below] = 0.0
        return tuple(self._smoothed)


def _ramp(value: float, start: float, end: float) -> float:
    """0 at `start`, 1 at `end` (either direction), linear between, clamped."""
    return float(np.clip((value - start) / (end - start), 0.0, 1.0))
