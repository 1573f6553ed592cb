"""Model assembly: the networks one engine runs, built from its options once, at start-up.

In order: pin the attention kernel (a kernel that cannot run here fails in a second, before 38 GB
load), plan the memory and cap it (a --gpu-memory budget that cannot be kept fails before any
weight is read), load the checkpoint (or build random 14B weights) block by block into the plan's
places (FP8 quantisation happens as each block lands), spread the DiT and VAE over the ranks,
install the offload hooks, then compile. Quantizing comes before compiling so the graphs see the
FP8 layers.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.flashtalk.model.attention import AttentionBackendError, choose_backend
from engine.flashtalk.model.dit_compile import compile_dit_blocks
from engine.flashtalk.model.vae_compile import compile_vae
from engine.flashtalk.parallel.parallel_vae import ParallelVAE
from engine.flashtalk.parallel.process_group import RankWorld, sequence_parallel_groups
from engine.flashtalk.parallel.usp import UnifiedSequenceParallel
from engine.flashtalk.pipeline.models import FlashTalkModels
from engine.flashtalk.runtime.compile_cache import use_compile_cache
from engine.flashtalk.runtime.errors import FlashTalkUnavailable
from engine.flashtalk.runtime.memory_plan import MemoryPlan, MemoryPlanError, plan_engine_memory
from engine.flashtalk.runtime.offload import BlockPlacer, install_offload, limit_device_memory
from engine.flashtalk.runtime.out_of_memory import memory_errors_are_clear
from engine.flashtalk.runtime.precision import PRECISION_DTYPES
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER, T5_TOKENIZER, wav2vec_dir_for
from engine.flashtalk.weights.checkpoint_validation import CheckpointError, validate_model_dir
from engine.protocol.engine_options import BackendOptions, Precision


def assemble_models(options: BackendOptions, precision: Precision, device: torch.device,
                    world: RankWorld | None, plan: MemoryPlan) -> FlashTalkModels:
    """The engine's models on `device` placed as `plan` says, ready for the streaming pipeline."""
    kernel = pin_attention_kernel(options.attention, device, PRECISION_DTYPES[precision])
    placer = BlockPlacer(plan, device, fp8=precision == Precision.FP8)  # FP8 as each block lands, before compile
    models = load_models(options, PRECISION_DTYPES[precision], device, placer)
    if world is not None:
        models = parallelize(models, world)
    install_offload(models, plan, placer)
    models.dit.set_attention_backend(kernel)
    if options.compile:
        use_compile_cache()  # a restarted engine loads its kernels instead of compiling them
        compile_dit_blocks(models.dit)  # one block graph per chunk length serves all 40 blocks
        compile_vae(models.vae)  # per causal step: small graphs shared by every frame count
    return models


def plan_memory(options: BackendOptions, precision: Precision, device: torch.device, ranks: int) -> MemoryPlan:
    """Validate the folders, plan the memory and cap it, in seconds, before 50 GB of weights are read."""
    model_dir, wav2vec = model_folders(options)
    try:
        if not options.random_weights:
            validate_model_dir(model_dir, wav2vec)
        official = options.random_weights is not None  # random 14B: the official sizes, any folder
        plan = plan_engine_memory(None if official else model_dir, None if official else wav2vec, precision,
                                  options.offload, options.gpu_memory_gb, device, ranks)
        limit_device_memory(device, plan)
    except (CheckpointError, MemoryPlanError) as exc:
        raise FlashTalkUnavailable(str(exc)) from None
    return plan


def model_folders(options: BackendOptions) -> tuple[Path, Path]:
    """(--model, its wav2vec2 folder); FlashTalkUnavailable without --model or with an unknown random model."""
    if options.model_dir is None:
        raise FlashTalkUnavailable(f"the flashtalk backend needs --model DIR (the {MODEL_FOLDER} "
                                   "folder): get it with `flashtalk models download DIR`")
    if options.random_weights and options.random_weights != "14b":
        raise FlashTalkUnavailable("--random-weights supports only 14b (use `flashtalk models "
                                   "make-tiny` for a small model)")
    model_dir = Path(options.model_dir)
    return model_dir, wav2vec_dir_for(model_dir, options.wav2vec_dir)


def pin_attention_kernel(asked: str | None, device: torch.device, dtype: torch.dtype) -> str:
    """The attention kernel for a model in `dtype` on `device`: the one asked for if it runs here,
    else the fastest (probed in that dtype: cuDNN has no fp32 kernel, --precision fp32 gets another)."""
    try:
        return choose_backend(asked, device, dtype)
    except AttentionBackendError as exc:
        raise FlashTalkUnavailable(f"--attention: {exc}") from None


def load_models(options: BackendOptions, dtype: torch.dtype, device: torch.device,
                placer: BlockPlacer) -> FlashTalkModels:
    """The official checkpoint of --model (validated by plan_memory), or random 14B weights for benchmarks."""
    model_dir, wav2vec = model_folders(options)
    if options.random_weights:
        with memory_errors_are_clear(device):
            return FlashTalkModels.random_14b(model_dir / T5_TOKENIZER, device, dtype, place_block=placer)
    try:
        with memory_errors_are_clear(device):
            return FlashTalkModels.from_checkpoint(model_dir, wav2vec, device, dtype, place_block=placer)
    except (FileNotFoundError, ValueError) as exc:  # damaged files the validation could not see
        raise FlashTalkUnavailable(str(exc).splitlines()[0]) from None


def parallelize(models: FlashTalkModels, world: RankWorld) -> FlashTalkModels:
    """Give the models sequence-parallel attention and the band-parallel VAE over `world`."""
    groups = sequence_parallel_groups(world.compute, models.dit.config.num_heads)
    models.parallel = UnifiedSequenceParallel(groups)
    models.vae = ParallelVAE(models.vae, world.compute, world.rank, world.world_size)
    return models
