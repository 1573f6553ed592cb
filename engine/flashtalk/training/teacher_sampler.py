"""The teacher: the Stage 1 model run with text and audio classifier-free guidance.

Guidance is InfiniteTalk's three-branch form, one batched forward of 3B:
    v = v(null text, no audio) + text * (v(text, audio) - v(null text, audio))
                               + audio * (v(null text, audio) - v(null text, no audio)).
The sampler is the flow ODE's Euler method on the sampler's own shifted timestep grid: the shared
re-noising step with the model's noise estimate x + (1 - sigma) v in place of fresh noise. At 4
steps it visits exactly the distilled sampler's timesteps [1000, 937.5, 833.3, 625].
"""
from __future__ import annotations

import torch

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.pipeline.sampler_step import denoise_step, impose_motion, sampler_tensors
from engine.flashtalk.pipeline.timesteps import sampling_timesteps
from engine.flashtalk.training.chunk_batch import ChunkConditions, dit_velocity
from engine.flashtalk.training.train_config import Guidance

LATENT_CHANNELS = 16


def guided_velocity(teacher: FlashTalkDiT, latent: torch.Tensor, t: torch.Tensor, cond: ChunkConditions,
                    null_text: torch.Tensor, guidance: Guidance) -> torch.Tensor:
    """latent [B, 16, F, h, w], t [B] -> float32 CFG velocity [B, 16, F, h, w]."""
    b = latent.shape[0]
    keep = torch.tensor([True] * b + [False] * 2 * b, device=latent.device)  # text: cond, then 2x null
    keep_audio = torch.tensor([True] * 2 * b + [False] * b, device=latent.device)  # audio: 2x real, then none
    branches = cond.repeat(3).where(keep, keep_audio, null_text.repeat(3, 1, 1))
    v = dit_velocity(teacher, latent.repeat(3, 1, 1, 1, 1), t.repeat(3), branches)
    v_cond, v_no_text, v_uncond = v.chunk(3)
    return v_uncond + guidance.text * (v_cond - v_no_text) + guidance.audio * (v_no_text - v_uncond)


@torch.no_grad()
def sample_with_teacher(teacher: FlashTalkDiT, cond: ChunkConditions, null_text: torch.Tensor,
                        motion: torch.Tensor, latent_shape: tuple[int, ...], steps: int, shift: float,
                        guidance: Guidance, generator: torch.Generator) -> torch.Tensor:
    """Euler flow-ODE sampling with CFG -> float32 x0 [B, 16, F, h, w] (motion latents imposed).

    motion [B, 16, m, h, w]; latent_shape (F, h, w); the start noise comes from `generator`.
    """
    b, device = motion.shape[0], motion.device
    t_steps, sigmas = sampler_tensors(sampling_timesteps(steps, shift), device)
    noise = torch.randn(b, LATENT_CHANNELS, *latent_shape, generator=generator).to(device)
    latent = impose_motion(noise, motion)
    for i, t in enumerate(t_steps):
        velocity = guided_velocity(teacher, latent, t.expand(b), cond, null_text, guidance)
        noise_estimate = latent + (1 - sigmas[i]) * velocity
        _, latent = denoise_step(latent, velocity, sigmas[i], sigmas[i + 1], noise_estimate, motion)
    return latent
