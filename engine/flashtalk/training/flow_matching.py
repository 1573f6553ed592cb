"""Flow matching on chunks with clean motion latents: Stage 1, and the DMD critic's objective.

x_t = (1 - sigma) x0 + sigma eps with the motion latents imposed clean (the sampler's
`renoise`), the DiT at t = 1000 sigma predicts v = eps - x0 (so x0 = x_t - sigma v, the
sampler's step), and the loss is the mean squared error over the chunk's new latent frames only:
the motion frames are given, not generated. Sigmas are drawn uniformly and shifted with the
sampler's shift (`shift_timestep`), so training weights noise levels the way sampling visits them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.pipeline.sampler_step import renoise
from engine.flashtalk.pipeline.timesteps import NUM_TRAIN_TIMESTEPS, shift_timestep
from engine.flashtalk.training.chunk_batch import ChunkConditions, dit_velocity
from engine.flashtalk.training.train_config import ConditionDropout


def sample_sigmas(batch: int, shift: float, generator: torch.Generator,
                  low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """float32 [B] sigmas: u ~ U(low, high), shifted as the sampler's timesteps are."""
    u = low + (high - low) * torch.rand(batch, generator=generator, dtype=torch.float64)
    return torch.tensor([shift_timestep(float(x) * NUM_TRAIN_TIMESTEPS, shift) / NUM_TRAIN_TIMESTEPS for x in u],
                        dtype=torch.float32)


def per_sample(sigma: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, 1, 1, 1], to broadcast against latents."""
    return sigma.view(-1, 1, 1, 1, 1)


def new_frames_mse(prediction: torch.Tensor, target: torch.Tensor, motion_latents: int) -> torch.Tensor:
    """Mean squared error over latent frames [m:] of [B, 16, F, h, w] tensors, in float32."""
    return F.mse_loss(prediction[:, :, motion_latents:].float(), target[:, :, motion_latents:].float())


def flow_matching_loss(dit: FlashTalkDiT, x0: torch.Tensor, motion: torch.Tensor, cond: ChunkConditions,
                       sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x0 [B, 16, F, h, w] clean chunk latents, motion [B, 16, m, h, w], sigma [B] -> scalar loss."""
    x_t = renoise(x0, per_sample(sigma), noise, motion)
    velocity = dit_velocity(dit, x_t, sigma * NUM_TRAIN_TIMESTEPS, cond)
    return new_frames_mse(velocity, noise - x0, motion.shape[2])


def dropout_masks(batch: int, dropout: ConditionDropout,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep_text, keep_audio) bool [B]: each sample is conditioned on both, text only, audio only
    or neither, with the shares of `dropout`."""
    u = torch.rand(batch, generator=generator)
    no_text = u < dropout.text_only
    no_audio = (u >= dropout.text_only) & (u < dropout.text_only + dropout.audio_only)
    neither = (u >= dropout.text_only + dropout.audio_only) & (u < dropout.text_only + dropout.audio_only
                                                                  + dropout.both)
    return ~(no_text | neither), ~(no_audio | neither)
