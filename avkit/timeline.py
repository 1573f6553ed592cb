"""The one timeline every part of the product shares.

Frame k of a session presents audio samples [k*spf, (k+1)*spf) where spf = sample_rate / fps.
Engine, studio playout, virtual camera and recorder all index time this way, so lips, voice and
files cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16_000  # Hz, mono float32: what wav2vec2 and the puppet consume
FPS = 25  # frames per second of every generated stream


@dataclass(frozen=True)
class Timeline:
    sample_rate: int = SAMPLE_RATE
    fps: int = FPS

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps:
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of fps {self.fps}")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    def frame_start_sample(self, frame: int) -> int:
        """The first audio sample frame `frame` presents."""
        return frame * self.samples_per_frame

    def frames_covering(self, samples: int) -> int:
        """Frames needed so the video covers `samples` of audio (a partial frame counts)."""
        return -(-samples // self.samples_per_frame)

    def seconds(self, samples: int) -> float:
        return samples / self.sample_rate
