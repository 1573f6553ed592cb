"""Streaming settings of the FlashTalk pipeline: the official defaults, defined once."""
from __future__ import annotations

from dataclasses import dataclass, replace

from avkit.timeline import FPS, SAMPLE_RATE

DEFAULT_PROMPT = ("A person is talking. Only the foreground characters are moving, "
                  "the background remains static.")
VAE_STRIDE = (4, 8, 8)  # (t, h, w) latent stride of the Wan VAE
PATCH = (1, 2, 2)  # DiT patch size


@dataclass(frozen=True)
class StreamSettings:
    height: int = 768
    width: int = 448
    frame_num: int = 33  # frames generated per chunk, motion frames included
    motion_frames: int = 5  # frames carried over from the previous chunk
    steps: int = 4
    shift: float = 5.0
    color_correction: float = 1.0
    audio_cache_s: int = 8  # rolling audio window re-encoded each chunk
    seed: int = 9999
    prompt: str = DEFAULT_PROMPT
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    first_chunk_frames: int = 0  # new frames of the session's first chunk, fewer so they come sooner; 0: new_frames

    @property
    def new_frames(self) -> int:
        """Frames a chunk adds to the stream (28 by default)."""
        return self.frame_num - self.motion_frames

    def for_chunk(self, index: int) -> StreamSettings:
        """The settings chunk `index` (0: the session's first) is made with: a short first chunk
        generates first_chunk_frames + motion_frames frames, every later one frame_num."""
        if index == 0 and self.first_chunk_frames:
            return replace(self, frame_num=self.first_chunk_frames + self.motion_frames, first_chunk_frames=0)
        return self

    def new_frames_of_chunk(self, index: int) -> int:
        return self.for_chunk(index).new_frames

    @property
    def latent_frames(self) -> int:
        return (self.frame_num - 1) // VAE_STRIDE[0] + 1

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // VAE_STRIDE[1], self.width // VAE_STRIDE[2]

    @property
    def tokens(self) -> int:
        """DiT sequence length per chunk (12,096 at 768x448)."""
        lh, lw = self.latent_hw
        return self.latent_frames * (lh // PATCH[1]) * (lw // PATCH[2])

    @property
    def window_samples(self) -> int:
        return self.audio_cache_s * self.sample_rate

    def validate(self) -> StreamSettings:
        """Raise ValueError (one line) for settings the model cannot run."""
        mult = VAE_STRIDE[1] * PATCH[1]
        if self.height % mult or self.width % mult or min(self.height, self.width) < mult:
            raise ValueError(f"size {self.width}x{self.height} must be a multiple of {mult} on both sides")
        if (self.frame_num - 1) % VAE_STRIDE[0]:
            raise ValueError(f"chunk of {self.frame_num} frames must be 4k+1 frames (e.g. 33)")
        if not 1 <= self.motion_frames < self.frame_num:
            raise ValueError(f"motion frames must be between 1 and {self.frame_num - 1}")
        if (self.motion_frames - 1) % VAE_STRIDE[0]:
            raise ValueError("motion frames must be 4k+1 (1, 5, 9, ...) so they encode to whole latents")
        if not 1 <= self.steps <= 50:
            raise ValueError(f"steps must be 1..50, got {self.steps}")
        if not 0.0 <= self.color_correction <= 1.0:
            raise ValueError("colour-correction strength must be within 0..1")
        if self.first_chunk_frames and not (
                0 < self.first_chunk_frames < self.new_frames
                and (self.first_chunk_frames + self.motion_frames - 1) % VAE_STRIDE[0] == 0):
            raise ValueError(f"a first chunk of {self.first_chunk_frames} new frames must be shorter than the "
                             f"others ({self.new_frames}) and make 4k+1 frames with the {self.motion_frames} "
                             "motion frames (e.g. 4 or 8)")
        if self.audio_cache_s * self.fps < self.frame_num:
            raise ValueError("the audio window must cover at least one chunk")
        return self

    def with_overrides(self, **overrides) -> StreamSettings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).validate()
