"""The re-noising sampler's step math, shared by the streaming sampler and the training rollouts.

One step at sigma (= t / 1000) turns the DiT's velocity into a clean estimate x0 = x - sigma * v,
re-noises it to the next sigma with a given noise, and re-imposes the motion latents on the
leading latent frames. The streaming sampler passes fresh Gaussian noise; the training package
passes the same (its differentiable rollout is this step with autograd on), or the model's own
noise estimate x + (1 - sigma) * v, which makes the step the Euler step of the flow ODE (the
teacher's many-step sampler). Latents are [..., 16, F, h, w]: frames are dim -3, with or
without a batch dim.
"""
from __future__ import annotations

import torch

from engine.flashtalk.pipeline.timesteps import NUM_TRAIN_TIMESTEPS


def sampler_tensors(timesteps: list[float], device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """timesteps [steps + 1] -> (per step t float32 [1], sigma float32 [steps + 1]) on `device`.

    Made on the host in float32 exactly as the per-step scalars they replace, then copied once.
    Each t is its own allocation (not a view at an offset), so a compiled DiT sees the same
    kind of input, aligned, at every step.
    """
    ts = torch.tensor(timesteps, dtype=torch.float32)
    t_steps = [torch.tensor([t], dtype=torch.float32, device=device) for t in timesteps[:-1]]
    return t_steps, (ts / NUM_TRAIN_TIMESTEPS).to(device)


def impose_motion(latent: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Overwrite latent frames [:m] with the motion latents, in place; returns `latent`.

    latent [..., C, F, h, w], motion [..., C, m, h, w] (m <= F).
    """
    latent[..., :motion.shape[-3], :, :] = motion
    return latent


def renoise(x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """The flow-matching interpolation (1 - sigma) x0 + sigma noise, motion latents imposed (clean).

    sigma: a 0-d tensor, or one per sample broadcasting against x0 (e.g. [B, 1, 1, 1, 1]).
    """
    return impose_motion((1 - sigma) * x0 + sigma * noise, motion)


def denoise_step(latent: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
                 noise: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: -> (x0 = latent - sigma * v, next latent = renoise(x0, sigma', noise, motion)).

    At the last step sigma' = 0, so the next latent is x0 with the motion latents imposed.
    """
    x0 = latent - velocity * sigma
    return x0, renoise(x0, sigma_next, noise, motion)
