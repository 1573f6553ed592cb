"""Stage 1, latency-aware spatiotemporal adaptation: flow matching at the inference chunk geometry.

The DiT learns single chunks at the resolution and chunk length the streaming sampler uses, from
ground-truth motion latents, with text and audio dropped for a share of the samples so the
result can serve as the CFG teacher of Stage 2. At toy scale this is how the teacher is made.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.flashtalk.training.checkpoint_io import (
    latest_checkpoint,
    load_checkpoint,
    rank_progress,
    restore_rank_progress,
    save_checkpoint,
)
from engine.flashtalk.training.chunk_batch import WindowSampler
from engine.flashtalk.training.flow_matching import dropout_masks, flow_matching_loss, sample_sigmas
from engine.flashtalk.training.fsdp_setup import TrainWorld
from engine.flashtalk.training.latent_cache import LatentCache
from engine.flashtalk.training.train_config import Stage1Config
from engine.flashtalk.training.training_run import (
    RunOptions,
    StageResult,
    TrainingLog,
    check_start_model,
    host_generator,
    load_for_training,
)

MODEL = "dit"


def train_stage1(cache: LatentCache, clips: list[int], init_dir: Path, wav2vec_dir: Path,
                 config: Stage1Config, options: RunOptions, world: TrainWorld) -> StageResult:
    """Train from the official-layout folder `init_dir` on `clips` of `cache`; -> the last checkpoint."""
    check_start_model(init_dir, wav2vec_dir, cache.widths)
    dit = load_for_training(init_dir, world, options, trainable=True)
    optimizer = torch.optim.AdamW(dit.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = WindowSampler(cache, clips, chunks=1, batch=config.batch,
                            first_chunk_share=config.first_chunk_share, seed=config.seed * 1000 + world.rank)
    rng = host_generator(config.seed, world.rank)
    trained = {MODEL: (dit, optimizer)}
    start, checkpoint = 0, None
    if options.resume and (checkpoint := latest_checkpoint(options.run_dir)):
        progress = load_checkpoint(checkpoint, trained)
        start = progress["step"]
        restore_rank_progress(progress, sampler, rng, world)
    log = TrainingLog(options.run_dir, world, config.steps, start, "stage 1 (flow matching)", options.progress)
    for step in range(start + 1, config.steps + 1):
        batch = sampler.draw().to(world.device)
        x0, motion = batch.latents[:, 0], batch.first_motion()
        keep_text, keep_audio = dropout_masks(config.batch, config.dropout, rng)
        cond = batch.conditions(0).where(keep_text.to(world.device), keep_audio.to(world.device), batch.null_text)
        sigma = sample_sigmas(config.batch, config.shift, rng).to(world.device)
        noise = torch.randn(x0.shape, generator=rng).to(world.device)
        loss = flow_matching_loss(dit, x0, motion, cond, sigma, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(dit.parameters(), config.grad_clip)
        optimizer.step()
        log.record(step, {"loss": loss.item(), "grad_norm": grad_norm.item()}, show=step % config.log_every == 0)
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint = save_checkpoint(options.run_dir, step, trained, dit, world, init_dir, wav2vec_dir,
                                         rank_progress(sampler, rng, world), options.export_torch_dtype)
    log.close()
    if checkpoint is None:
        raise ValueError(f"{options.run_dir}: no checkpoint - the run needs at least one step")
    return StageResult(checkpoint, log.history())

