"""Measures of generated chunks, all in the VAE's latent space (at toy scale the VAE is random).

- Fréchet distance: each emitted latent frame (the chunk's frames after its motion latents)
  average-pooled to 2x2 -> a 64-dim vector (16 channels x 2 x 2); Gaussians fitted to two sets
  of vectors, FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
- Statistics distance: per-channel mean and std of emitted latents vs the data's; the
  2-Wasserstein distance between the per-channel Gaussian fits, sqrt(sum_c dmu^2 + dsigma^2).
- Lip sync: a ridge probe, fitted once on the training clips' ground-truth latent frames (the
  whole frame, 16 x h x w values), reads the speech loudness off a latent frame; the score is
  Pearson's r between its reading of generated frames and the driving speech's loudness over the
  same frames (mean log-RMS over the latent frame's video frames).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

FD_POOL = 2  # pooled latent side for the Fréchet features
LOUDNESS_FLOOR = 1e-4  # RMS added before the log: silence is -9.2, not -inf
VIDEO_FRAMES_PER_LATENT = 4


def latent_frames(latents: torch.Tensor, first: int) -> torch.Tensor:
    """latents [N, 16, F, h, w] -> float64 [N * (F - first), 16, h, w], frames [first:], chunk-major."""
    return latents[:, :, first:].double().transpose(1, 2).flatten(0, 1)


def pooled_frames(latents: torch.Tensor, first: int, side: int) -> torch.Tensor:
    """latents [N, 16, F, h, w] -> float64 [N * (F - first), 16 * side * side], frames [first:]."""
    return F.adaptive_avg_pool2d(latent_frames(latents, first), side).flatten(1)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of feature sets a [n, d] and b [m, d]."""
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


@dataclass(frozen=True)
class ChannelStats:
    mean: torch.Tensor  # [16]
    std: torch.Tensor  # [16]

    @classmethod
    def of(cls, latents: torch.Tensor, first: int) -> ChannelStats:
        """Per-channel statistics of latents [N, 16, F, h, w] over frames [first:]."""
        x = latents[:, :, first:].double().transpose(0, 1).flatten(1)  # [16, everything]
        return cls(x.mean(1), x.std(1))

    def distance(self, other: ChannelStats) -> float:
        return float(((self.mean - other.mean) ** 2 + (self.std - other.std) ** 2).sum().sqrt())


def latent_loudness(audio_rms: torch.Tensor, first: int, latent_frames: int) -> torch.Tensor:
    """audio_rms [N, frame_num] per video frame -> float64 [N * (F - first)] mean log-RMS per latent frame.

    Latent frame j >= 1 covers video frames 4j-3 .. 4j (frame 0 covers video frame 0 alone).
    """
    log_rms = torch.log(audio_rms.double() + LOUDNESS_FLOOR)
    per_latent = [log_rms[:, :1].mean(1)] + [
        log_rms[:, 1 + VIDEO_FRAMES_PER_LATENT * (j - 1):1 + VIDEO_FRAMES_PER_LATENT * j].mean(1)
        for j in range(1, latent_frames)]
    return torch.stack(per_latent[first:], dim=1).flatten()  # [N, F'] -> [N * F'], frame-major per chunk


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


class LipSyncProbe:
    """Ridge regression latent frame -> loudness, fitted on ground truth and then frozen."""

    def __init__(self, latents: torch.Tensor, audio_rms: torch.Tensor, first: int, ridge: float):
        """latents [N, 16, F, h, w] ground-truth chunks, audio_rms [N, frame_num], frames [first:]."""
        x = latent_frames(latents, first).flatten(1)
        y = latent_loudness(audio_rms, first, latents.shape[2])
        self.first = first
        self.x_mean, self.x_std = x.mean(0), x.std(0).clamp_min(1e-8)
        z = (x - self.x_mean) / self.x_std
        self.y_mean = y.mean()
        gram = z.T @ z + ridge * len(z) * torch.eye(z.shape[1], dtype=z.dtype)
        self.weights = torch.linalg.solve(gram, z.T @ (y - self.y_mean))

    def read(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [N, 16, F, h, w] -> the probe's loudness reading per frame [N * (F - first)]."""
        z = (latent_frames(latents, self.first).flatten(1) - self.x_mean) / self.x_std
        return z @ self.weights + self.y_mean

    def correlation(self, latents: torch.Tensor, audio_rms: torch.Tensor) -> float:
        """Pearson r between the reading of `latents` and the loudness of their driving audio."""
        return pearson(self.read(latents), latent_loudness(audio_rms, self.first, latents.shape[2]))
