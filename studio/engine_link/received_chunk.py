"""One engine `Frames` message as the studio receives it: decoded, with the time it arrived."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReceivedChunk:
    """Decoded on the engine worker thread; read by playout, stats and outputs on the UI thread."""

    first_frame: int
    frames: np.ndarray  # [N, H, W, 3] uint8
    audio: np.ndarray  # [N * spf] float32: the samples these frames present
    capture_t0: float  # monotonic capture time of the first of those samples
    idle: bool
    timings: dict  # stage (engine.protocol.stages) -> ms
    received_t: float  # monotonic time the studio received it
    sent_t: float  # the engine's monotonic time when it sent it (same host only)

    @property
    def end_frame(self) -> int:
        return self.first_frame + len(self.frames)
