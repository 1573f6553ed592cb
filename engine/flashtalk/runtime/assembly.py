"""Model assembly: the networks one engine runs, built from its options once, at start-up.

In order: pin the attention kernel (a kernel that cannot run here fails in a second, before 38 GB
load), load the checkpoint (or build random 14B weights), spread the DiT and VAE over the ranks,
quantize the DiT's linear layers for fp8, then compile. Quantizing comes before compiling so the
graphs see the FP8 layers.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.flashtalk.model.attention import AttentionBackendError, choose_backend
from engine.flashtalk.model.fp8_linear import quantize_dit_linears
from engine.flashtalk.model.vae_compile import compile_vae
from engine.flashtalk.parallel.parallel_vae import ParallelVAE
from engine.flashtalk.parallel.process_group import RankWorld, sequence_parallel_groups
from engine.flashtalk.parallel.usp import UnifiedSequenceParallel
from engine.flashtalk.pipeline.models import FlashTalkModels
from engine.flashtalk.runtime.errors import FlashTalkUnavailable
from engine.flashtalk.runtime.out_of_memory import memory_errors_are_clear
from engine.flashtalk.runtime.precision import PRECISION_DTYPES
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER, T5_TOKENIZER, wav2vec_dir_for
from engine.flashtalk.weights.checkpoint_validation import CheckpointError, validate_model_dir
from engine.protocol.engine_options import BackendOptions, Precision


def assemble_models(options: BackendOptions, precision: Precision, device: torch.device,
                    world: RankWorld | None) -> FlashTalkModels:
    """The engine's models on `device`, ready for the streaming pipeline."""
    kernel = pin_attention_kernel(options.attention, device)
    models = load_models(options, PRECISION_DTYPES[precision], device)
    if world is not None:
        models = parallelize(models, world)
    models.dit.set_attention_backend(kernel)
    if precision == Precision.FP8:
        quantize_dit_linears(models.dit)
    if options.compile:
        models.dit = torch.compile(models.dit)
        compile_vae(models.vae)  # per causal step: small graphs shared by every frame count
    return models


def pin_attention_kernel(asked: str | None, device: torch.device) -> str:
    """The attention kernel for `device`: the one asked for if it runs here, else the fastest."""
    try:
        return choose_backend(asked, device)
    except AttentionBackendError as exc:
        raise FlashTalkUnavailable(f"--attention: {exc}") from None


def load_models(options: BackendOptions, dtype: torch.dtype, device: torch.device) -> FlashTalkModels:
    """The official checkpoint of --model (validated first), or random 14B weights for benchmarks."""
    if options.model_dir is None:
        raise FlashTalkUnavailable(f"the flashtalk backend needs --model DIR (the {MODEL_FOLDER} "
                                   "folder): get it with `flashtalk models download DIR`")
    model_dir = Path(options.model_dir)
    if options.random_weights:
        if options.random_weights != "14b":
            raise FlashTalkUnavailable("--random-weights supports only 14b (use `flashtalk models "
                                       "make-tiny` for a small model)")
        with memory_errors_are_clear(device):
            return FlashTalkModels.random_14b(model_dir / T5_TOKENIZER, device, dtype)
    wav2vec = wav2vec_dir_for(model_dir, options.wav2vec_dir)
    try:
        validate_model_dir(model_dir, wav2vec)
    except CheckpointError as exc:
        raise FlashTalkUnavailable(str(exc)) from None
    try:
        with memory_errors_are_clear(device):
            return FlashTalkModels.from_checkpoint(model_dir, wav2vec, device, dtype)
    except (FileNotFoundError, ValueError) as exc:  # damaged files the validation could not see
        raise FlashTalkUnavailable(str(exc).splitlines()[0]) from None


def parallelize(models: FlashTalkModels, world: RankWorld) -> FlashTalkModels:
    """Give the models sequence-parallel attention and the band-parallel VAE over `world`."""
    groups = sequence_parallel_groups(world.compute, models.dit.config.num_heads)
    models.parallel = UnifiedSequenceParallel(groups)
    models.vae = ParallelVAE(models.vae, world.compute, world.rank, world.world_size)
    return models
