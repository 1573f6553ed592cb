"""The Wan VAE split across ranks in bands of rows, exact (no overlap-and-crop approximation).

The reference (xDiT's patch-parallel VAE) tiles the frames with a fixed halo and crops; that is not
exact, because the decoder's middle block attends over the whole frame and its convolutions reach
further than the halo. Here each rank holds one band, and every layer that looks across the band's
edge gets exactly what it needs at its own resolution: each 3x3 convolution receives its 1-row halo
from the neighbouring bands just before it runs (causal-cache frames included), the stride-2
downsampling receives the next band's first row, and the frame-wide attention of the middle block
gathers the whole (latent-resolution) frame. Everything else in the VAE (RMS norms over channels,
1x1 and temporal convolutions, nearest upsampling) is local to a band, so the result equals the
one-GPU VAE up to floating-point rounding; the cost is one small all-gather per convolution.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import (
    WanAttentionBlock,
    WanCausalConv3d,
    WanResample,
)
from torch import nn

from engine.flashtalk.parallel.spatial_bands import HEIGHT, SpatialBands

VAE_SPATIAL_STRIDE = 8  # pixels per latent along H and W


def _split_pad_index(dim: int) -> int:
    """Index of the split dim's 'before' entry in an F.pad list (the last dim comes first)."""
    return 2 if dim == HEIGHT else 0


class BandCausalConv3d(nn.Module):
    """A causal 3x3x3 convolution on one band: cache frames + input, halo rows, then the conv."""

    def __init__(self, conv: WanCausalConv3d, bands: SpatialBands):
        super().__init__()
        self.conv, self.bands = conv, bands

    def forward(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, T, H_band, W] (or W_band), cache_x [B, C, <=2, ...] -> [B, C', T, ...]."""
        pad = list(self.conv._padding)  # (w, w, h, h, 2 * t, 0) as diffusers keeps it
        if cache_x is not None and pad[4] > 0:
            x = torch.cat([cache_x.to(x.device), x], dim=2)
            pad[4] -= cache_x.shape[2]
        i = _split_pad_index(self.bands.dim)
        x = self.bands.with_halo(x, pad[i], pad[i + 1])
        pad[i] = pad[i + 1] = 0
        c = self.conv
        return F.conv3d(F.pad(x, pad), c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


class BandConv2d(nn.Module):
    """A stride-1 'same' 2-D convolution (after the upsampler) on one band."""

    def __init__(self, conv: nn.Conv2d, bands: SpatialBands):
        super().__init__()
        self.conv, self.bands = conv, bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H_band, W] -> [N, C', H_band, W]."""
        ph, pw = self.conv.padding
        split_pad, other_pad = (ph, pw) if self.bands.dim == HEIGHT else (pw, ph)
        x = self.bands.with_halo(x, split_pad, split_pad)
        widths = [other_pad, other_pad, 0, 0] if self.bands.dim == HEIGHT else [0, 0, other_pad, other_pad]
        c = self.conv
        return F.conv2d(F.pad(x, widths), c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


class BandDownsample(nn.Module):
    """ZeroPad2d((0, 1, 0, 1)) + 3x3 stride-2 conv on one band (bands hold an even row count)."""

    def __init__(self, conv: nn.Conv2d, bands: SpatialBands):
        super().__init__()
        self.conv, self.bands = conv, bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H_band, W] -> [N, C, H_band / 2, W / 2]."""
        x = self.bands.with_halo(x, 0, 1)  # the next band's first row; zeros below the frame
        widths = [0, 1, 0, 0] if self.bands.dim == HEIGHT else [0, 0, 0, 1]
        c = self.conv
        return F.conv2d(F.pad(x, widths), c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


class BandAttention(nn.Module):
    """The middle block's frame-wide attention: gather the frame, attend, keep this band."""

    def __init__(self, block: WanAttentionBlock, bands: SpatialBands):
        super().__init__()
        self.block, self.bands = block, bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, h_band, w] -> [B, C, T, h_band, w]."""
        local = x.shape[self.bands.dim]
        start = sum(self.bands.sizes_at(local)[:self.bands.rank])
        return self.block(self.bands.gather(x)).narrow(self.bands.dim, start, local)


def _spatial_kernel(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d | nn.Conv3d) and any(k > 1 for k in module.kernel_size[-2:])


def install_band_layers(model: nn.Module, bands: SpatialBands) -> None:
    """Replace, in place, every layer of a diffusers AutoencoderKLWan that looks across a band edge."""
    replacements = []
    for name, module in model.named_modules():
        if isinstance(module, WanCausalConv3d) and _spatial_kernel(module):
            replacements.append((name, BandCausalConv3d(module, bands)))
        elif isinstance(module, WanAttentionBlock):
            replacements.append((name, BandAttention(module, bands)))
        elif isinstance(module, WanResample) and module.mode.startswith("upsample"):
            replacements.append((f"{name}.resample.1", BandConv2d(module.resample[1], bands)))
        elif isinstance(module, WanResample) and module.mode.startswith("downsample"):
            replacements.append((f"{name}.resample", BandDownsample(module.resample[1], bands)))
    for name, layer in replacements:
        parent_name, _, child = name.rpartition(".")
        model.get_submodule(parent_name)._modules[child] = layer
    wrapped = (BandCausalConv3d, BandConv2d, BandDownsample, BandAttention)
    inner = {id(m) for w in model.modules() if isinstance(w, wrapped) for m in w.modules() if m is not w}
    missed = [n for n, m in model.named_modules() if _spatial_kernel(m) and id(m) not in inner]
    if missed:
        raise ValueError(f"VAE layers the band split does not handle: {', '.join(missed[:3])}")


class ParallelVAE:
    """A WanVAE (encode/decode, device, dtype, z_dim, model) whose every call runs in bands.

    Every rank calls encode/decode with the same full input and gets the same full output.
    """

    def __init__(self, vae, group: dist.ProcessGroup, rank: int, world_size: int):
        self.vae = vae
        self.bands = SpatialBands(group, rank, world_size)
        install_band_layers(vae.model, self.bands)
        self.model, self.device, self.dtype, self.z_dim = vae.model, vae.device, vae.dtype, vae.z_dim

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, F, H, W] in [-1, 1] -> latents [B, 16, 1 + (F-1)/4, H/8, W/8]."""
        latent_hw = (video.shape[-2] // VAE_SPATIAL_STRIDE, video.shape[-1] // VAE_SPATIAL_STRIDE)
        band = self.bands.split(video, latent_hw, VAE_SPATIAL_STRIDE)
        return self.bands.gather(self.vae.encode(band))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, 16, T, h, w] -> video [B, 3, 1 + 4(T-1), 8h, 8w] in [-1, 1]."""
        band = self.bands.split(latents, tuple(latents.shape[-2:]), 1)
        return self.bands.gather(self.vae.decode(band))
