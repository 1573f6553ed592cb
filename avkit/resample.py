"""Audio of any rate and channel count -> mono float32 at the timeline rate.

Streams are resampled with state (libswresample through PyAV) so block boundaries leave no clicks.
Non-finite samples become silence and everything is clipped to [-1, 1]: a broken microphone
driver must not poison the model's input.
"""
from __future__ import annotations

import av
import numpy as np

from avkit.timeline import SAMPLE_RATE

MAX_INPUT_RATE = 768_000
MAX_CHANNELS = 64


def sanitize(pcm: np.ndarray) -> np.ndarray:
    out = np.nan_to_num(np.asarray(pcm, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(out, -1.0, 1.0, out=out)


def downmix(pcm: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved float32 [N*channels] or [N, channels] -> mono [N]."""
    pcm = np.asarray(pcm, dtype=np.float32)
    if channels == 1:
        return pcm.reshape(-1)
    frames = pcm.reshape(-1, channels)
    return frames.mean(axis=1, dtype=np.float32)


def check_format(rate: int, channels: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"audio has {channels} channels; 1 to {MAX_CHANNELS} are supported")
    if not 1 <= rate <= MAX_INPUT_RATE:
        raise ValueError(f"audio sample rate {rate} Hz is outside 1..{MAX_INPUT_RATE} Hz")


class StreamResampler:
    """Stateful converter for a live stream of blocks with a fixed input format."""

    def __init__(self, in_rate: int, channels: int = 1, out_rate: int = SAMPLE_RATE):
        check_format(in_rate, channels)
        self.in_rate, self.channels, self.out_rate = in_rate, channels, out_rate
        self._resampler = None
        if in_rate != out_rate:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)

    def push(self, block: np.ndarray) -> np.ndarray:
        mono = sanitize(downmix(block, self.channels))
        if self._resampler is None or mono.size == 0:
            return mono
        return self._run(mono)

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._collect(self._resampler.resample(None))

    def _run(self, mono: np.ndarray) -> np.ndarray:
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.in_rate
        return self._collect(self._resampler.resample(frame))

    @staticmethod
    def _collect(frames) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return sanitize(np.concatenate([f.to_ndarray().reshape(-1) for f in frames]))


def to_mono(pcm: np.ndarray, rate: int, channels: int = 1, out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Whole-buffer conversion (files, tests)."""
    res = StreamResampler(rate, channels, out_rate)
    head = res.push(pcm)
    return np.concatenate([head, res.flush()])
