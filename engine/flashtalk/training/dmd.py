"""Distribution matching distillation: the generator's loss from a real and a fake score.

At a generator sample x0 (new latent frames), noised to a random sigma: the frozen teacher's CFG
estimate x0_real and the critic's x0_fake. The gradient of KL(generator || teacher) with respect
to x0 points along x0_fake - x0_real; it is normalised per sample by mean |x0 - x0_real| (DMD's
scale-free weighting) and applied through the surrogate 0.5 * ||x0 - sg(x0 - grad)||^2, whose
gradient is exactly grad / N. CFG lives only in the teacher: the generator learns the guided
distribution and runs without guidance. The critic ("fake score") is the flow-matching objective
on the generator's own samples, so it tracks the generator's distribution as it moves.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.pipeline.sampler_step import renoise
from engine.flashtalk.pipeline.timesteps import NUM_TRAIN_TIMESTEPS
from engine.flashtalk.training.chunk_batch import ChunkConditions, dit_velocity
from engine.flashtalk.training.flow_matching import flow_matching_loss, per_sample
from engine.flashtalk.training.teacher_sampler import guided_velocity
from engine.flashtalk.training.train_config import Guidance

NORMALIZER_FLOOR = 1e-6


@dataclass(frozen=True)
class DMDTerms:
    loss: torch.Tensor  # scalar surrogate for the generator
    grad_norm: float  # RMS of the normalised DMD gradient (diagnostic)
    real_fake_gap: float  # mean |x0_fake - x0_real| before normalising (diagnostic)


def dmd_generator_loss(sample: torch.Tensor, motion: torch.Tensor, cond: ChunkConditions,
                       null_text: torch.Tensor, teacher: FlashTalkDiT, critic: FlashTalkDiT,
                       guidance: Guidance, sigma: torch.Tensor, noise: torch.Tensor) -> DMDTerms:
    """sample [B, 16, F, h, w] with autograd, motion [B, 16, m, h, w], sigma [B] -> DMDTerms."""
    m = motion.shape[2]
    with torch.no_grad():
        s = per_sample(sigma)
        x_t = renoise(sample.detach().float(), s, noise, motion.float())
        t = sigma * NUM_TRAIN_TIMESTEPS
        x0_real = x_t - s * guided_velocity(teacher, x_t, t, cond, null_text, guidance)
        x0_fake = x_t - s * dit_velocity(critic, x_t, t, cond)
        gap = (x0_fake - x0_real)[:, :, m:]
        normalizer = (sample.detach().float() - x0_real)[:, :, m:].abs().mean(dim=(1, 2, 3, 4), keepdim=True)
        grad = torch.nan_to_num(gap / normalizer.clamp_min(NORMALIZER_FLOOR))
    new = sample[:, :, m:].float()
    loss = 0.5 * F.mse_loss(new, (new - grad).detach())
    return DMDTerms(loss, float(grad.pow(2).mean().sqrt()), float(gap.abs().mean()))


def critic_loss(critic: FlashTalkDiT, sample: torch.Tensor, motion: torch.Tensor, cond: ChunkConditions,
                sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Flow matching of the critic on a detached generator sample [B, 16, F, h, w]."""
    return flow_matching_loss(critic, sample.detach().float(), motion.float(), cond, sigma, noise)
