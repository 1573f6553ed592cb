"""Hyper-parameters of both training stages, defined once.

The defaults are the 14B recipe as far as it is known (FLASHTALK_MODEL.md section 5: ~1,000
Stage 1 steps, ~200 Stage 2 steps, generator lr 2e-6, critic lr 4e-7, teacher CFG text 3 /
audio 4, K in 1..5). The toy run overrides what a 265k-parameter model on a CPU needs
(toy_run.TOY_*). Chunk geometry (size, frames, motion frames, 4 steps, shift 5) is the
inference StreamSettings, stored with the data cache so that training and serving agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConditionDropout:
    """Shares of Stage 1 samples trained without a condition, so the teacher can run CFG.

    The text condition is replaced by the empty prompt's embedding, the audio by zero wav2vec
    features (InfiniteTalk's null audio). The rest of the samples keep both.
    """

    text_only: float = 0.1  # null prompt, real audio (the "drop text" branch of CFG)
    audio_only: float = 0.1  # real prompt, zero audio
    both: float = 0.1  # null prompt and zero audio (the unconditional branch)


@dataclass(frozen=True)
class Guidance:
    """Teacher CFG: v = v_uncond + text * (v_cond - v_no_text) + audio * (v_no_text - v_uncond)."""

    text: float = 3.0
    audio: float = 4.0


@dataclass(frozen=True)
class Stage1Config:
    """Supervised flow matching at the inference resolution and chunk length."""

    steps: int = 1000
    batch: int = 1  # chunks per rank per step
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    shift: float = 5.0  # training sigmas are shifted like the sampler's: most weight at high noise
    first_chunk_share: float = 0.1  # samples that are a session's chunk 0 (motion = the portrait)
    dropout: ConditionDropout = field(default_factory=ConditionDropout)
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0


@dataclass(frozen=True)
class DistillConfig:
    """Self-correcting bidirectional distillation (DMD with K-chunk retrospective rollouts)."""

    steps: int = 200
    batch: int = 1  # rollouts per rank per step
    rollout_chunks: int = 1  # K: chunks rolled out on the generator's own motion latents
    generator_lr: float = 2e-6
    critic_lr: float = 4e-7
    critic_steps: int = 1  # critic updates per generator update
    grad_clip: float = 1.0
    guidance: Guidance = field(default_factory=Guidance)
    sigma_range: tuple[float, float] = (0.02, 0.98)  # DMD noise levels (before the shift)
    shift: float = 5.0
    first_chunk_share: float = 0.1
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
