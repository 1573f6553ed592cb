"""Evaluation of a teacher and its distilled students on held-out clips (metrics.py says how).

Single chunks (every chunk of every held-out clip, ground-truth motion latents): the reference
set is the teacher's many-step CFG samples; each 4-step sampler's samples are compared with it
by Fréchet distance. Long rollouts (each held-out clip from a session start, 20 chunks, every
chunk on the previous chunk's own output, exactly the streaming path): per chunk, the distance
of the emitted latents' statistics from the training data's (drift), and the lip-sync score.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.vae import WanVAE
from engine.flashtalk.training.chunk_batch import RolloutBatch, WindowSampler, dit_velocity, motion_latent_count
from engine.flashtalk.training.latent_cache import LatentCache
from engine.flashtalk.training.metrics import FD_POOL, ChannelStats, LipSyncProbe, frechet_distance, pooled_frames
from engine.flashtalk.training.rollout import GeneratorSchedule, VelocityFn, generate_chunk, rollout
from engine.flashtalk.training.teacher_sampler import guided_velocity, sample_with_teacher
from engine.flashtalk.training.train_config import Guidance


@dataclass(frozen=True)
class EvalConfig:
    reference_steps: int = 32  # the teacher's many-step reference sampler
    fd_draws: int = 2  # noise draws per held-out chunk for the Fréchet sets
    rollout_chunks: int = 20
    rollout_draws: int = 2  # rollouts per held-out clip (other noise)
    probe_ridge: float = 0.1  # best held-out r on the synthetic set (0.65 vs 0.56 at 0.01, 0.58 at 1)
    batch: int = 96  # chunks per DiT call
    seed: int = 1234


class Evaluator:
    """Fixed held-out conditions, reference samples, data statistics and lip-sync probe, made once."""

    def __init__(self, cache: LatentCache, train_clips: list[int], eval_clips: list[int], teacher: FlashTalkDiT,
                 vae: WanVAE, guidance: Guidance, config: EvalConfig, device: torch.device):
        self.cache, self.teacher, self.vae, self.guidance, self.config = cache, teacher, vae, guidance, config
        self.device = device
        self.emitted = motion_latent_count(cache.settings.motion_frames)  # frames after the motion latents
        self.schedule = GeneratorSchedule.for_settings(cache.settings, device)
        chunks = WindowSampler(cache, eval_clips, 1, 1, 0.0, 0)
        picks = [(c, s) for c in eval_clips for s in range(cache.segments[c])]
        self.chunks = chunks.collate(picks, first_chunk=False).repeat(config.fd_draws)
        long = WindowSampler(cache, eval_clips, config.rollout_chunks, 1, 0.0, 0)
        self.sessions = long.collate([(c, 0) for c in long.clips], first_chunk=True).repeat(config.rollout_draws)
        train = WindowSampler(cache, train_clips, 1, 1, 0.0, 0)
        data = train.collate([(c, s) for c in train.clips for s in range(cache.segments[c])], first_chunk=False)
        self.data_stats = ChannelStats.of(data.latents[:, 0], self.emitted)
        self.probe = LipSyncProbe(data.latents[:, 0], data.audio_rms[:, 0], self.emitted, config.probe_ridge)
        self.reference = self.teacher_samples(config.reference_steps)

    def _generator(self, offset: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.config.seed + offset)

    def _in_batches(self, sample_fn) -> torch.Tensor:
        """sample_fn(RolloutBatch on the device) -> latents, over self.chunks in slices of config.batch."""
        n = self.chunks.latents.shape[0]
        return torch.cat([sample_fn(self.chunks.rows(i, i + self.config.batch).to(self.device)).cpu()
                          for i in range(0, n, self.config.batch)])

    @torch.no_grad()
    def teacher_samples(self, steps: int) -> torch.Tensor:
        """The teacher's own CFG Euler sampler at `steps` steps on every held-out chunk."""
        rng = torch.Generator().manual_seed(self.config.seed + steps)
        shape = tuple(self.chunks.latents.shape[-3:])
        return self._in_batches(lambda b: sample_with_teacher(
            self.teacher, b.conditions(0), b.null_text, b.first_motion(), shape, steps,
            self.cache.settings.shift, self.guidance, rng))

    @torch.no_grad()
    def streaming_samples(self, velocity_fn: VelocityFn, offset: int) -> torch.Tensor:
        """The 4-step streaming sampler on every held-out chunk."""
        rng, shape = self._generator(offset), tuple(self.chunks.latents.shape[-3:])
        return self._in_batches(lambda b: generate_chunk(velocity_fn, b.conditions(0), b.first_motion(), shape,
                                                         self.schedule, rng)[1])

    def reference_halves_fd(self) -> float:
        """FD between the reference's first and second noise draws (half the samples each): what
        "as good as the reference" looks like, biased upwards by the smaller sets."""
        if self.config.fd_draws < 2:
            raise ValueError("the reference needs fd_draws >= 2 to be split into two draws")
        n = self.reference.shape[0] // self.config.fd_draws
        return frechet_distance(pooled_frames(self.reference[:n], self.emitted, FD_POOL),
                                pooled_frames(self.reference[n:2 * n], self.emitted, FD_POOL))

    def fd_to_reference(self, samples: torch.Tensor) -> float:
        return frechet_distance(pooled_frames(samples, self.emitted, FD_POOL),
                                pooled_frames(self.reference, self.emitted, FD_POOL))

    @torch.no_grad()
    def session_rollout(self, velocity_fn: VelocityFn, offset: int) -> dict:
        """20-chunk rollouts from a session start -> per-chunk drift and the lip-sync score."""
        batch: RolloutBatch = self.sessions.to(self.device)
        drift, outputs = [], []
        for chunk in rollout(velocity_fn, self.vae, batch, self.cache.settings, self.schedule,
                             self._generator(offset)):
            outputs.append(chunk.output.cpu())
            drift.append(ChannelStats.of(chunk.output.cpu(), self.emitted).distance(self.data_stats))
        latents = torch.cat(outputs)  # [K * B, 16, F, h, w], chunk-major
        rms = batch.audio_rms.cpu().transpose(0, 1).flatten(0, 1)  # [B, K, frames] -> [K * B, frames]
        return {"drift_per_chunk": drift, "lipsync": self.probe.correlation(latents, rms)}

    def data_drift(self) -> list[float]:
        """Per chunk, the held-out clips' own ground truth against the training data's statistics:
        the distance a generator that never drifted would still show (other clips, other speech)."""
        sessions = self.sessions.latents  # [B, K, 16, F, h, w]
        return [ChannelStats.of(sessions[:, k], self.emitted).distance(self.data_stats)
                for k in range(sessions.shape[1])]

    def data_lipsync(self) -> float:
        """The probe on the held-out clips' ground truth: the score a perfect generator would get."""
        return self.probe.correlation(self.sessions.latents.flatten(0, 1), self.sessions.audio_rms.flatten(0, 1))

    def velocity(self, dit: FlashTalkDiT) -> VelocityFn:
        return functools.partial(dit_velocity, dit)

    def teacher_velocity(self) -> VelocityFn:
        """The CFG teacher as a plain velocity, for running it through the streaming sampler."""
        null = self.chunks.null_text[:1].to(self.device)

        def velocity(latent: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
            return guided_velocity(self.teacher, latent, t, cond, null.expand(latent.shape[0], -1, -1),
                                   self.guidance)
        return velocity
