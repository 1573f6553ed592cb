"""torch.compile for the Wan VAE, per causal step rather than per call, with one graph per cache state.

diffusers' `AutoencoderKLWan.decode` loops over latent frames in Python (one decoder pass per
frame, a list of cached activations in between); `encode` loops over frame 0 then groups of 4.
Compiling `decode`/`encode` whole unrolls that loop: one large graph per distinct frame count.
Compiling the encoder and decoder modules instead gives one small graph per cache state: the
first pass (no cache), the second (caches of one frame) and the steady state (two frames).

Two things made those graphs recompile for every new chunk length (measured on the CPU with the
tiny VAE and TORCH_LOGS=recompiles, before this module fixed them: encode(33), encode(1),
decode(3), encode(5), decode(9) built 12 graphs, 4 of them inside decode(9)):
- Strides. Each pass gets a slice of the whole clip (`x[:, :, i:i+1]`) and caches clones of
  slices of permuted activations, so a tensor's strides, the batch stride of a size-1 batch too,
  depend on how many frames the call holds; dynamo guards on every stride. Each pass's input and
  caches are therefore given the plain strides of the VAE's memory layout first (contiguous, or
  channels_last_3d on CUDA: a free restride where the tensor already is in that layout, a copy of
  a cache-sized tensor where it is not).
- Automatic dynamic shapes. After one shape mismatch dynamo recompiles with the frame count
  symbolic; inductor's convolutions at symbolic sizes are slower or fail to lower. Compiling with
  dynamic=False keeps every graph static.
With both: 6 graphs (3 cache states x encoder/decoder) serve every frame count, outputs equal to
eager.
"""
from __future__ import annotations

import torch

from engine.flashtalk.model.vae import WanVAE

COMPILED_MARK = "_flashtalk_compiled_step"  # set on the encoder/decoder modules compile_vae wrapped


def compile_vae(vae: WanVAE) -> None:
    """Compile the VAE's encoder and decoder in place (state-dict keys unchanged)."""
    for module in (vae.model.encoder, vae.model.decoder):
        _compile_causal_step(module, vae.memory_format)


def vae_is_compiled(vae: WanVAE) -> bool:
    return getattr(vae.model.decoder, COMPILED_MARK, False)


def plain_strides(tensor: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """The same values with the dense strides of `memory_format`, size-1 dimensions included
    (channels_last_3d applies to 5-D tensors; any other rank gets row-major strides)."""
    if memory_format == torch.channels_last_3d and tensor.ndim != 5:
        memory_format = torch.contiguous_format
    if not tensor.is_contiguous(memory_format=memory_format):
        tensor = tensor.contiguous(memory_format=memory_format)
    # Innermost dimension first: W, H, T, C, N for NCDHW; C, W, H, T, N for NDHWC.
    order = (1, 4, 3, 2, 0) if memory_format == torch.channels_last_3d else range(tensor.ndim - 1, -1, -1)
    strides, step = [0] * tensor.ndim, 1
    for dim in order:
        strides[dim] = step
        step *= tensor.shape[dim]
    strides = tuple(strides)
    return tensor if tensor.stride() == strides else tensor.as_strided(tensor.shape, strides)


def _compile_causal_step(module: torch.nn.Module, memory_format: torch.memory_format) -> None:
    compiled = torch.compile(module.forward, dynamic=False)

    def forward(x: torch.Tensor, *args, feat_cache: list | None = None, **kwargs):
        if feat_cache is not None:
            for i, cached in enumerate(feat_cache):
                if isinstance(cached, torch.Tensor):
                    feat_cache[i] = plain_strides(cached, memory_format)
        return compiled(plain_strides(x, memory_format), *args, feat_cache=feat_cache, **kwargs)

    module.forward = forward
    setattr(module, COMPILED_MARK, True)
