"""Stage 2, self-correcting bidirectional distillation: a 4-step generator trained by DMD.

Three networks start from the Stage 1 model: the frozen teacher (real score, with text and
audio CFG), the critic (fake score, trained to denoise the generator's samples) and the
generator (the streaming 4-step sampler's DiT, no CFG). Each step rolls the generator out over
K consecutive chunks on its own motion latents (rollout.py), applies the DMD loss to every
chunk's sample as soon as it exists (one autograd graph alive at a time), updates the generator,
then updates the critic on the same samples at fresh noise levels.
"""
from __future__ import annotations

import random
from pathlib import Path

from engine.flashtalk.model.vae import WanVAE
from engine.flashtalk.training.checkpoint_io import (
    latest_checkpoint,
    load_checkpoint,
    rank_progress,
    restore_rank_progress,
    save_checkpoint,
)
from engine.flashtalk.training.chunk_batch import WindowSampler
from engine.flashtalk.training.dmd_step import CRITIC, GENERATOR, DMDNetworks, adam, dmd_step
from engine.flashtalk.training.fsdp_setup import PRECISIONS, TrainWorld
from engine.flashtalk.training.latent_cache import LatentCache
from engine.flashtalk.training.rollout import GeneratorSchedule
from engine.flashtalk.training.train_config import DistillConfig
from engine.flashtalk.training.training_run import (
    RunOptions,
    StageResult,
    TrainingLog,
    check_start_model,
    device_generator,
    host_generator,
    load_for_training,
)
from engine.flashtalk.weights.checkpoint_layout import VAE_CHECKPOINT


def distill(cache: LatentCache, clips: list[int], teacher_dir: Path, wav2vec_dir: Path, config: DistillConfig,
            options: RunOptions, world: TrainWorld) -> StageResult:
    """Distil the Stage 1 model in `teacher_dir` into a 4-step generator; -> its last checkpoint."""
    check_start_model(teacher_dir, wav2vec_dir, cache.widths)
    teacher = load_for_training(teacher_dir, world, options, trainable=False)
    generator = load_for_training(teacher_dir, world, options, trainable=True)
    critic = load_for_training(teacher_dir, world, options, trainable=True)
    vae_dtype = PRECISIONS[options.precision]
    vae = WanVAE.from_official(Path(teacher_dir) / VAE_CHECKPOINT, device=world.device, dtype=vae_dtype)
    trained = {GENERATOR: (generator, adam(generator.parameters(), config.generator_lr)),
               CRITIC: (critic, adam(critic.parameters(), config.critic_lr))}
    sampler = WindowSampler(cache, clips, chunks=config.rollout_chunks, batch=config.batch,
                            first_chunk_share=config.first_chunk_share, seed=config.seed * 1000 + world.rank)
    rng = host_generator(config.seed, world.rank)
    sampler_rng = device_generator(config.seed, world.rank, world.device)
    exit_rng = random.Random(config.seed * 1000 + world.rank)
    start, checkpoint = 0, None
    if options.resume and (checkpoint := latest_checkpoint(options.run_dir)):
        progress = load_checkpoint(checkpoint, trained)
        start = progress["step"]
        restore_rank_progress(progress, sampler, rng, world)
        sampler_rng.manual_seed(config.seed * 1000 + world.rank + 500 + start)
        exit_rng.seed(config.seed * 1000 + world.rank + start)
    schedule = GeneratorSchedule.for_settings(cache.settings, world.device)
    log = TrainingLog(options.run_dir, world, config.steps, start,
                      f"stage 2 (DMD, K={config.rollout_chunks})", options.progress)
    networks = DMDNetworks(teacher, generator, trained[GENERATOR][1], critic, trained[CRITIC][1])
    for step in range(start + 1, config.steps + 1):
        exits = [exit_rng.randrange(schedule.steps) for _ in range(config.rollout_chunks)]
        values = dmd_step(networks, vae, sampler.draw().to(world.device), exits, cache.settings, config,
                          schedule, rng, sampler_rng)
        log.record(step, values, show=step % config.log_every == 0)
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint = save_checkpoint(options.run_dir, step, trained, generator, world, teacher_dir,
                                         wav2vec_dir, rank_progress(sampler, rng, world),
                                         options.export_torch_dtype)
    log.close()
    if checkpoint is None:
        raise ValueError(f"{options.run_dir}: no checkpoint - the run needs at least one step")
    return StageResult(checkpoint, log.history())
