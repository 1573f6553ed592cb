"""One DMD update: a K-chunk generator rollout scored chunk by chunk, then the critic's updates.

Kept apart from the training loop (distill.py) so that it imports nothing but the model and the
sampler math: scripts/gpu/train_step.py times exactly this step at 14B width.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.training.chunk_batch import RolloutBatch, dit_velocity
from engine.flashtalk.training.dmd import critic_loss, dmd_generator_loss
from engine.flashtalk.training.flow_matching import sample_sigmas
from engine.flashtalk.training.rollout import GeneratorSchedule, rollout
from engine.flashtalk.training.train_config import DistillConfig

GENERATOR, CRITIC = "generator", "critic"


def adam(params, lr: float) -> torch.optim.Optimizer:
    """DMD2's optimizer setting: no first-moment momentum, so the generator follows the current critic."""
    return torch.optim.AdamW(params, lr=lr, betas=(0.0, 0.999), weight_decay=0.0)


@dataclass
class DMDNetworks:
    teacher: FlashTalkDiT  # frozen real score (CFG)
    generator: FlashTalkDiT
    generator_opt: torch.optim.Optimizer
    critic: FlashTalkDiT  # fake score
    critic_opt: torch.optim.Optimizer


def dmd_step(nets: DMDNetworks, vae, batch: RolloutBatch, exit_steps: list[int], settings: StreamSettings,
             config: DistillConfig, schedule: GeneratorSchedule, rng: torch.Generator,
             sampler_rng: torch.Generator) -> dict[str, float]:
    """One generator update over a K-chunk rollout of `batch`, then `critic_steps` critic updates.

    vae: the WanVAE the motion latents go through between chunks (unused when K = 1).
    -> the step's scalars (DMD surrogate loss, normalised gradient RMS, real-fake gap, critic loss).
    """
    device, b, k = batch.latents.device, batch.latents.shape[0], batch.chunks
    low, high = config.sigma_range
    nets.generator_opt.zero_grad(set_to_none=True)
    samples, totals = [], {"dmd_loss": 0.0, "dmd_grad_rms": 0.0, "real_fake_gap": 0.0}
    velocity = functools.partial(dit_velocity, nets.generator)
    for chunk in rollout(velocity, vae, batch, settings, schedule, sampler_rng, exit_steps):
        sigma = sample_sigmas(b, config.shift, rng, low, high).to(device)
        noise = torch.randn(chunk.sample.shape, generator=rng).to(device)
        terms = dmd_generator_loss(chunk.sample, chunk.motion, chunk.cond, batch.null_text, nets.teacher,
                                   nets.critic, config.guidance, sigma, noise)
        (terms.loss / k).backward()  # this chunk's graph is freed before the next chunk runs
        samples.append((chunk.sample.detach(), chunk.motion, chunk.cond))
        for name, value in (("dmd_loss", terms.loss.detach().item()), ("dmd_grad_rms", terms.grad_norm),
                            ("real_fake_gap", terms.real_fake_gap)):
            totals[name] += value / k
    torch.nn.utils.clip_grad_norm_(nets.generator.parameters(), config.grad_clip)
    nets.generator_opt.step()
    totals["critic_loss"] = 0.0
    for _ in range(config.critic_steps):
        nets.critic_opt.zero_grad(set_to_none=True)
        for sample, motion, cond in samples:
            sigma = sample_sigmas(b, config.shift, rng).to(device)
            noise = torch.randn(sample.shape, generator=rng).to(device)
            loss = critic_loss(nets.critic, sample, motion, cond, sigma, noise) / len(samples)
            loss.backward()
            totals["critic_loss"] += loss.detach().item() / config.critic_steps
        torch.nn.utils.clip_grad_norm_(nets.critic.parameters(), config.grad_clip)
        nets.critic_opt.step()
    return totals
