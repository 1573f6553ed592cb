"""Batches of training chunks and the one way the training code calls a DiT on them.

A `RolloutBatch` is B windows of K consecutive chunks drawn from the cache; `ChunkConditions`
is what the DiT takes for one chunk besides the noisy latent (y, text, CLIP, audio). Chunk 0 of
a window starts from ground-truth motion latents: the segment's own leading latents (the frames
the previous chunk ended with), or for a session's first chunk the portrait's latent alone,
exactly the motion the streaming sampler starts a session with.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.pipeline.settings import VAE_STRIDE

if TYPE_CHECKING:  # the cache reads MP4s and safetensors; a training step needs neither
    from engine.flashtalk.training.latent_cache import LatentCache

MASK_CHANNELS = VAE_STRIDE[0]  # the y mask has one channel per frame of a latent's time stride


def motion_latent_count(motion_frames: int) -> int:
    """Causal VAE latents of `motion_frames` frames: the first alone, then one per 4 (5 -> 2)."""
    return 1 + (motion_frames - 1) // VAE_STRIDE[0]


@dataclass(frozen=True)
class ChunkConditions:
    y: torch.Tensor  # [B, 20, F_lat, h, w] = first-frame mask (4) || VAE(reference + zeros) (16)
    context: torch.Tensor  # [B, text_len, text_dim]
    clip: torch.Tensor  # [B, 257, clip_dim]
    audio: torch.Tensor  # [B, frame_num, 5, layers, dim]

    def where(self, keep_text: torch.Tensor, keep_audio: torch.Tensor, null_text: torch.Tensor) -> ChunkConditions:
        """Per sample, the prompt replaced by `null_text` where not keep_text, the audio by zeros where
        not keep_audio (bool [B] each): the dropped conditions of CFG."""
        text_mask = keep_text.view(-1, 1, 1)
        audio_mask = keep_audio.view(-1, 1, 1, 1, 1)
        return replace(self, context=torch.where(text_mask, self.context, null_text),
                       audio=torch.where(audio_mask, self.audio, torch.zeros_like(self.audio)))

    def repeat(self, times: int) -> ChunkConditions:
        """The batch repeated `times` along dim 0 (to run several CFG branches in one forward)."""
        return ChunkConditions(*(t.repeat(times, *[1] * (t.ndim - 1)) for t in
                                 (self.y, self.context, self.clip, self.audio)))


def dit_velocity(dit: FlashTalkDiT, latent: torch.Tensor, t: torch.Tensor, cond: ChunkConditions) -> torch.Tensor:
    """latent [B, 16, F, h, w], t [B] in [0, 1000] -> float32 velocity [B, 16, F, h, w]."""
    x = torch.cat([latent, cond.y.to(latent.dtype)], dim=1)  # [B, 36, F, h, w] = noise || mask || ref
    return dit(x, t, cond.context, cond.clip, cond.audio)


@dataclass(frozen=True)
class RolloutBatch:
    latents: torch.Tensor  # [B, K, 16, F_lat, h, w] ground truth
    audio: torch.Tensor  # [B, K, frame_num, 5, layers, dim]
    audio_rms: torch.Tensor  # [B, K, frame_num]
    y: torch.Tensor  # [B, 20, F_lat, h, w]
    ref_latent: torch.Tensor  # [B, 16, 1, h, w]
    reference: torch.Tensor  # [B, 3, 1, H, W] in [-1, 1]
    clip: torch.Tensor  # [B, 257, clip_dim]
    text: torch.Tensor  # [B, text_len, text_dim]
    null_text: torch.Tensor  # [B, text_len, text_dim]
    first_chunk: bool  # chunk 0 is a session's first: its motion is the portrait's latent alone
    motion_frames: int

    @property
    def chunks(self) -> int:
        return self.latents.shape[1]

    def conditions(self, chunk: int) -> ChunkConditions:
        return ChunkConditions(self.y, self.text, self.clip, self.audio[:, chunk])

    def first_motion(self) -> torch.Tensor:
        """[B, 16, m, h, w] ground-truth motion latents of chunk 0 (m = 1 for a first chunk, else 2)."""
        if self.first_chunk:
            return self.ref_latent
        return self.latents[:, 0, :, :motion_latent_count(self.motion_frames)]

    def rows(self, start: int, stop: int) -> RolloutBatch:
        """Samples [start, stop) of the batch."""
        return replace(self, **{k: v[start:stop] for k, v in vars(self).items() if isinstance(v, torch.Tensor)})

    def repeat(self, times: int) -> RolloutBatch:
        """The batch `times` over along dim 0 (the same windows with other noise draws)."""
        return replace(self, **{k: v.repeat(times, *[1] * (v.ndim - 1)) for k, v in vars(self).items()
                                if isinstance(v, torch.Tensor)})

    def to(self, device: torch.device) -> RolloutBatch:
        return replace(self, **{k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)})


def first_frame_mask(ref_cond: torch.Tensor) -> torch.Tensor:
    """ref_cond [16, F_lat, h, w] -> [4, F_lat, h, w]: ones on latent frame 0 (the reference)."""
    mask = torch.zeros(MASK_CHANNELS, *ref_cond.shape[1:], dtype=ref_cond.dtype)
    mask[:, 0] = 1
    return mask


class WindowSampler:
    """Draws RolloutBatches of K-chunk windows from a set of clips, reproducibly per seed.

    Each batch is either all first chunks (share `first_chunk_share`) or all later chunks, so
    every sample in it has the same number of motion latents.
    """

    def __init__(self, cache: LatentCache, clips: list[int], chunks: int, batch: int,
                 first_chunk_share: float, seed: int):
        self.cache, self.chunks, self.batch = cache, chunks, batch
        self.clips = [c for c in clips if cache.segments[c] >= chunks]
        if not self.clips:
            raise ValueError(f"no clip has the {chunks} chunks a rollout needs: use longer clips or a smaller K")
        self.first_chunk_share = first_chunk_share
        self.rng = random.Random(seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]  # JSON turned the tuples into lists
        self.rng.setstate((version, tuple(internal), gauss))

    def draw(self) -> RolloutBatch:
        first = self.rng.random() < self.first_chunk_share
        picks = []
        for _ in range(self.batch):
            clip = self.rng.choice(self.clips)
            start = 0 if first else self.rng.randrange(self.cache.segments[clip] - self.chunks + 1)
            picks.append((clip, start))
        return self.collate(picks, first)

    def collate(self, picks: list[tuple[int, int]], first_chunk: bool) -> RolloutBatch:
        windows = [self.cache.window(clip, start, self.chunks) for clip, start in picks]
        stack = lambda name: torch.stack([getattr(w, name) for w in windows])  # noqa: E731
        y = torch.stack([torch.cat([first_frame_mask(w.ref_cond), w.ref_cond]) for w in windows])
        null = self.cache.null_text.expand(len(windows), -1, -1)
        return RolloutBatch(latents=stack("latents"), audio=stack("audio"), audio_rms=stack("audio_rms"), y=y,
                            ref_latent=stack("ref_latent"), reference=stack("reference")[:, :, None],
                            clip=stack("clip_tokens"), text=stack("text"), null_text=null,
                            first_chunk=first_chunk, motion_frames=self.cache.settings.motion_frames)
