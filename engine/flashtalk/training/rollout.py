"""The few-step generator run exactly as the streaming sampler runs it, chunk after chunk.

One chunk: noise with the motion latents imposed, then the distilled sampler's steps (timesteps
[1000, 937.5, 833.3, 625, 0] at 4 steps and shift 5), each the shared re-noising step with fresh
noise and the motion latents re-imposed; draws come from one generator in the streaming
sampler's order, so with the same seed a chunk equals `StreamingPipeline.denoise` (tested).
Full bidirectional attention inside the chunk: the DiT has no causal mask.

Retrospective self-correction: chunk k+1's motion latents are chunk k's own output, decoded,
colour-corrected and re-encoded exactly as in `StreamingPipeline.generate` - never ground truth.
Back-propagation is truncated stochastically: in each chunk one denoising step, drawn at random
(the "exit" step), runs with autograd on and yields that step's x0 estimate as the chunk's
training sample; the steps before it and every earlier chunk (through the motion latents) run
without a graph. Memory is one DiT forward's activations whatever K is, and every step of the
sampler learns to produce a clean chunk from its own previous steps.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.flashtalk.pipeline.color_correction import match_colors
from engine.flashtalk.pipeline.sampler_step import denoise_step, impose_motion, sampler_tensors
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.pipeline.timesteps import sampling_timesteps
from engine.flashtalk.training.chunk_batch import ChunkConditions, RolloutBatch
from engine.flashtalk.training.teacher_sampler import LATENT_CHANNELS

if TYPE_CHECKING:
    from engine.flashtalk.model.vae import WanVAE


# (latent [B, 16, F, h, w], t [B], conditions) -> float32 velocity: a DiT via chunk_batch.dit_velocity,
# or the CFG teacher via teacher_sampler.guided_velocity, bound with functools.partial.
VelocityFn = Callable[[torch.Tensor, torch.Tensor, ChunkConditions], torch.Tensor]


@dataclass(frozen=True)
class GeneratorSchedule:
    """The distilled sampler's per-step t and sigmas, as the streaming pipeline makes them."""

    t_steps: list[torch.Tensor]  # per step float32 [1]
    sigmas: torch.Tensor  # float32 [steps + 1]

    @classmethod
    def for_settings(cls, settings: StreamSettings, device: torch.device) -> GeneratorSchedule:
        return cls(*sampler_tensors(sampling_timesteps(settings.steps, settings.shift), device))

    @property
    def steps(self) -> int:
        return len(self.t_steps)


def generate_chunk(velocity_fn: VelocityFn, cond: ChunkConditions, motion: torch.Tensor,
                   latent_shape: tuple[int, ...], schedule: GeneratorSchedule, rng: torch.Generator,
                   exit_step: int | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One chunk of the streaming sampler -> (x0 at `exit_step` with autograd, or None; final latents).

    motion [B, 16, m, h, w], latent_shape (F, h, w). The final latents [B, 16, F, h, w] are
    detached (the sampler's output: x0 of the last step, motion imposed). `rng` lives on the
    latents' device, as the streaming sampler's generator does.
    """
    b, device = motion.shape[0], motion.device
    latent = torch.randn(b, LATENT_CHANNELS, *latent_shape, dtype=motion.dtype, device=device, generator=rng)
    latent = impose_motion(latent, motion)
    sample = None
    for i, t in enumerate(schedule.t_steps):
        with torch.set_grad_enabled(i == exit_step and torch.is_grad_enabled()):
            velocity = velocity_fn(latent, t.expand(b), cond)
            noise = torch.randn(velocity.shape, dtype=velocity.dtype, device=device, generator=rng)
            x0, latent = denoise_step(latent, velocity, schedule.sigmas[i], schedule.sigmas[i + 1], noise, motion)
        if i == exit_step:
            sample = x0
        latent = latent.detach()
    return sample, latent


@torch.no_grad()
def motion_from_chunk(vae: WanVAE, latents: torch.Tensor, reference: torch.Tensor,
                      settings: StreamSettings) -> torch.Tensor:
    """A chunk's latents [B, 16, F, h, w] -> the next chunk's motion latents [B, 16, 2, h, w].

    VAE-decode, colour-correct against the reference [B, 3, 1, H, W], re-encode the last
    `motion_frames` frames: the streaming pipeline's path between chunks.
    """
    video = vae.decode(latents)  # [B, 3, frame_num, H, W]
    video = match_colors(video, reference.to(video), settings.color_correction)
    return vae.encode(video[:, :, -settings.motion_frames:]).to(latents.dtype)


@dataclass
class ChunkSample:
    """One chunk of a rollout: its training sample and everything to score it."""

    chunk: int
    sample: torch.Tensor | None  # [B, 16, F, h, w] x0 at the exit step (autograd), None without one
    output: torch.Tensor  # [B, 16, F, h, w] the sampler's final latents (detached)
    motion: torch.Tensor  # [B, 16, m, h, w] the motion latents this chunk was conditioned on
    cond: ChunkConditions


def rollout(velocity_fn: VelocityFn, vae: WanVAE, batch: RolloutBatch, settings: StreamSettings,
            schedule: GeneratorSchedule, rng: torch.Generator,
            exit_steps: list[int] | None = None) -> Iterator[ChunkSample]:
    """Yield the K chunks of `batch` one by one, each conditioned on the previous chunk's output.

    exit_steps[k]: the step of chunk k that runs with autograd (None: no graph at all). The
    caller back-propagates each chunk's loss before asking for the next, so one graph at a time
    is alive. Chunk 0's motion is ground truth (batch.first_motion()).
    """
    latent_shape = tuple(batch.latents.shape[-3:])
    motion = batch.first_motion()
    for k in range(batch.chunks):
        cond = batch.conditions(k)
        exit_step = None if exit_steps is None else exit_steps[k]
        sample, output = generate_chunk(velocity_fn, cond, motion, latent_shape, schedule, rng, exit_step)
        yield ChunkSample(k, sample, output, motion, cond)
        if k + 1 < batch.chunks:
            motion = motion_from_chunk(vae, output, batch.reference, settings)
