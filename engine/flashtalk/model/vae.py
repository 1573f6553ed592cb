"""Wan2.1 causal 3D VAE: the official `Wan2.1_VAE.pth` loaded into diffusers' `AutoencoderKLWan`.

diffusers runs the same causal-cache streaming as the Wan reference (encode frame 0 then groups of
4 frames, decode one latent frame at a time, CACHE_T = 2 frames per causal conv). The one numeric
difference: diffusers' RMS norm normalises bf16 activations in float32, the reference in bf16.

Memory layout (issue 14, lever 3): cuDNN runs 3-D convolutions in NDHWC; fed NCDHW it transposes
every input and output around each kernel (about 75 ms of a 448x768 chunk's VAE on one H200). On
CUDA the VAE therefore keeps its convolution weights and activations in channels_last_3d (2-D
convolution weights in channels_last): every op of diffusers' Wan VAE between two convolutions
(cache slices and clones, concatenation, padding, RMS norm, the 2-D resample views, the middle
attention's reshapes) keeps that layout, except ten places (the temporal upsamplers' frame
interleave, a `torch.stack`; the middle attention's residual; the encoder's zero padding and time
convs). There a pre-hook hands the convolution its input in the layout, so its output stays in it;
the upsamplers get theirs before the 2x nearest upsample, where it costs a quarter of the copy.
`conv_memory_format` is the one place the layout is chosen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanUpsample

from engine.flashtalk.model.state_dict_check import Shapes, describe_key_mismatch, load_official_pth

# Per-channel statistics of Wan2.1 latents: normalised latent = (mu - mean) / std.
LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
               0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
              3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
DIM_MULT = (1, 2, 4, 4)
NUM_RES_BLOCKS = 2
TEMPORAL_DOWNSAMPLE = (False, True, True)
TEMPORAL_STRIDE = 4
SPATIAL_STRIDE = 8
RGB = 3


def conv_memory_format(device: torch.device) -> torch.memory_format:
    """The layout the VAE computes in on `device`: NDHWC for cuDNN; the CPU keeps contiguous NCDHW."""
    return torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format


def planar_format(memory_format: torch.memory_format) -> torch.memory_format:
    """The 2-D counterpart of a 3-D layout (the resamplers' Conv2d and their inputs)."""
    return torch.channels_last if memory_format == torch.channels_last_3d else memory_format


@dataclass(frozen=True)
class WanVAEConfig:
    base_dim: int = 96
    z_dim: int = len(LATENT_MEAN)


# 1. The official key layout ------------------------------------------------------------------

def _conv_shapes(out: Shapes, prefix: str, cin: int, cout: int, kernel: tuple[int, ...]) -> None:
    out[f"{prefix}.weight"] = (cout, cin, *kernel)
    out[f"{prefix}.bias"] = (cout,)


def _residual_shapes(out: Shapes, prefix: str, cin: int, cout: int) -> None:
    """ResidualBlock: residual = [RMS_norm, SiLU, conv, RMS_norm, SiLU, Dropout, conv] + shortcut."""
    out[f"{prefix}.residual.0.gamma"] = (cin, 1, 1, 1)
    _conv_shapes(out, f"{prefix}.residual.2", cin, cout, (3, 3, 3))
    out[f"{prefix}.residual.3.gamma"] = (cout, 1, 1, 1)
    _conv_shapes(out, f"{prefix}.residual.6", cout, cout, (3, 3, 3))
    if cin != cout:
        _conv_shapes(out, f"{prefix}.shortcut", cin, cout, (1, 1, 1))


def _attention_shapes(out: Shapes, prefix: str, dim: int) -> None:
    out[f"{prefix}.norm.gamma"] = (dim, 1, 1)
    _conv_shapes(out, f"{prefix}.to_qkv", dim, 3 * dim, (1, 1))
    _conv_shapes(out, f"{prefix}.proj", dim, dim, (1, 1))


def _resample_shapes(out: Shapes, prefix: str, dim: int, mode: str) -> None:
    """Resample: `resample.1` is the 2-D conv, `time_conv` the causal temporal conv (3-D modes)."""
    cout = dim // 2 if mode.startswith("upsample") else dim
    _conv_shapes(out, f"{prefix}.resample.1", dim, cout, (3, 3))
    if mode == "downsample3d":
        _conv_shapes(out, f"{prefix}.time_conv", dim, dim, (3, 1, 1))
    elif mode == "upsample3d":
        _conv_shapes(out, f"{prefix}.time_conv", dim, 2 * dim, (3, 1, 1))


def _middle_shapes(out: Shapes, side: str, dim: int) -> None:
    """middle = [ResidualBlock, AttentionBlock, ResidualBlock] at the deepest width."""
    _residual_shapes(out, f"{side}.middle.0", dim, dim)
    _attention_shapes(out, f"{side}.middle.1", dim)
    _residual_shapes(out, f"{side}.middle.2", dim, dim)


def _encoder_shapes(out: Shapes, base_dim: int, z_dim: int) -> None:
    dims = [base_dim * m for m in (1, *DIM_MULT)]
    _conv_shapes(out, "encoder.conv1", RGB, dims[0], (3, 3, 3))
    idx = 0
    for stage, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(NUM_RES_BLOCKS):
            _residual_shapes(out, f"encoder.downsamples.{idx}", cin, cout)
            cin, idx = cout, idx + 1
        if stage != len(DIM_MULT) - 1:
            mode = "downsample3d" if TEMPORAL_DOWNSAMPLE[stage] else "downsample2d"
            _resample_shapes(out, f"encoder.downsamples.{idx}", cout, mode)
            idx += 1
    _middle_shapes(out, "encoder", dims[-1])
    out["encoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    _conv_shapes(out, "encoder.head.2", dims[-1], 2 * z_dim, (3, 3, 3))


def _decoder_shapes(out: Shapes, base_dim: int, z_dim: int) -> None:
    dims = [base_dim * m for m in (DIM_MULT[-1], *DIM_MULT[::-1])]
    temporal_upsample = TEMPORAL_DOWNSAMPLE[::-1]
    _conv_shapes(out, "decoder.conv1", z_dim, dims[0], (3, 3, 3))
    _middle_shapes(out, "decoder", dims[0])
    idx = 0
    for stage, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        if stage > 0:
            cin //= 2  # the previous stage's upsampler halved the channels
        for _ in range(NUM_RES_BLOCKS + 1):
            _residual_shapes(out, f"decoder.upsamples.{idx}", cin, cout)
            cin, idx = cout, idx + 1
        if stage != len(DIM_MULT) - 1:
            mode = "upsample3d" if temporal_upsample[stage] else "upsample2d"
            _resample_shapes(out, f"decoder.upsamples.{idx}", cout, mode)
            idx += 1
    out["decoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    _conv_shapes(out, "decoder.head.2", dims[-1], RGB, (3, 3, 3))


def official_vae_key_shapes(z_dim: int = 16, base_dim: int = 96) -> Shapes:
    """Every key of an official Wan2.1 VAE checkpoint -> its tensor shape."""
    out: Shapes = {}
    _encoder_shapes(out, base_dim, z_dim)
    _conv_shapes(out, "conv1", 2 * z_dim, 2 * z_dim, (1, 1, 1))
    _conv_shapes(out, "conv2", z_dim, z_dim, (1, 1, 1))
    _decoder_shapes(out, base_dim, z_dim)
    return out


# 2. Official names -> diffusers names --------------------------------------------------------

_RESIDUAL_PARTS = {"residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2",
                   "residual.6": "conv2", "shortcut": "conv_shortcut"}
_MIDDLE_PARTS = {"0": "mid_block.resnets.0", "1": "mid_block.attentions.0", "2": "mid_block.resnets.1"}
_HEAD_PARTS = {"0": "norm_out", "2": "conv_out"}
_TOP_LEVEL = {"conv1": "quant_conv", "conv2": "post_quant_conv"}


def _rename_block_tail(tail: list[str]) -> list[str]:
    """`residual.N.*` / `shortcut.*` inside a residual block -> diffusers' flat names."""
    if len(tail) >= 2 and f"{tail[0]}.{tail[1]}" in _RESIDUAL_PARTS:
        return [_RESIDUAL_PARTS[f"{tail[0]}.{tail[1]}"], *tail[2:]]
    if tail and tail[0] in _RESIDUAL_PARTS:
        return [_RESIDUAL_PARTS[tail[0]], *tail[1:]]
    return tail


def _official_to_diffusers_key(key: str) -> str:
    parts = key.split(".")
    if parts[0] in _TOP_LEVEL:
        return ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
    side, block = parts[0], parts[1] if len(parts) > 1 else ""
    if side not in ("encoder", "decoder"):
        raise ValueError(f"unexpected Wan2.1 VAE key {key!r}")
    if block == "conv1":
        return ".".join([side, "conv_in", *parts[2:]])
    if block == "head" and parts[2] in _HEAD_PARTS:
        return ".".join([side, _HEAD_PARTS[parts[2]], *parts[3:]])
    if block == "middle" and parts[2] in _MIDDLE_PARTS:
        return ".".join([side, _MIDDLE_PARTS[parts[2]], *_rename_block_tail(parts[3:])])
    if block == "downsamples":
        return ".".join([side, "down_blocks", parts[2], *_rename_block_tail(parts[3:])])
    if block == "upsamples":
        # Each decoder stage is NUM_RES_BLOCKS + 1 residual blocks then one upsampler.
        stage, slot = divmod(int(parts[2]), NUM_RES_BLOCKS + 2)
        inner = f"resnets.{slot}" if slot <= NUM_RES_BLOCKS else "upsamplers.0"
        return ".".join([side, "up_blocks", str(stage), inner, *_rename_block_tail(parts[3:])])
    raise ValueError(f"unexpected Wan2.1 VAE key {key!r}")


def convert_official_vae_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official `Wan2.1_VAE.pth` state dict -> `AutoencoderKLWan` state dict (same tensors)."""
    return {_official_to_diffusers_key(k): v for k, v in sd.items()}


# 3. Loading ----------------------------------------------------------------------------------

def vae_config_from_state_dict(sd: dict[str, torch.Tensor]) -> WanVAEConfig:
    """Read base_dim and z_dim back from an official VAE state dict's tensor shapes."""
    if "encoder.conv1.weight" not in sd or "conv2.weight" not in sd:
        raise ValueError("not a Wan2.1 VAE state dict: no encoder.conv1.weight / conv2.weight")
    return WanVAEConfig(base_dim=sd["encoder.conv1.weight"].shape[0], z_dim=sd["conv2.weight"].shape[0])


def build_diffusers_vae(config: WanVAEConfig) -> AutoencoderKLWan:
    return AutoencoderKLWan(base_dim=config.base_dim, z_dim=config.z_dim, dim_mult=list(DIM_MULT),
                            num_res_blocks=NUM_RES_BLOCKS,
                            temperal_downsample=list(TEMPORAL_DOWNSAMPLE),
                            latents_mean=list(LATENT_MEAN), latents_std=list(LATENT_STD))


class WanVAE:
    """Encode [-1, 1] video to normalised latents and back; every call starts with an empty cache."""

    def __init__(self, model: AutoencoderKLWan, device: str | torch.device,
                 memory_format: torch.memory_format | None = None):
        """`model` already holds its weights in the dtype the VAE runs in; `memory_format` overrides
        the device's layout (conv_memory_format), for comparing the two."""
        self.model = model.eval().requires_grad_(False).to(device=device)
        self.device, self.dtype = torch.device(device), next(model.parameters()).dtype
        self.memory_format = conv_memory_format(self.device) if memory_format is None else memory_format
        lay_out_conv_weights(self.model, self.memory_format)
        keep_conv_inputs_in_layout(self.model, self.memory_format)
        self.z_dim = model.config.z_dim
        # The reference keeps mean and 1/std in the VAE dtype and normalises in that dtype.
        stats = dict(dtype=self.dtype, device=self.device)
        self.mean = torch.tensor(LATENT_MEAN, **stats).view(1, -1, 1, 1, 1)
        self.inv_std = (1.0 / torch.tensor(LATENT_STD, **stats)).view(1, -1, 1, 1, 1)

    @classmethod
    def from_official(cls, path: str | Path, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.bfloat16) -> WanVAE:
        sd = load_official_pth(path, "Wan2.1_VAE.pth")
        return cls.from_state_dict(sd, device, dtype, source=str(path))

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.bfloat16, source: str = "VAE state dict") -> WanVAE:
        config = vae_config_from_state_dict(sd)
        if config.z_dim != len(LATENT_MEAN):
            raise ValueError(f"{source}: z_dim {config.z_dim}, but the Wan2.1 VAE has z_dim 16")
        problem = describe_key_mismatch(sd, official_vae_key_shapes(config.z_dim, config.base_dim))
        if problem:
            raise ValueError(f"{source} is not a Wan2.1 VAE checkpoint: {problem}")
        with torch.device("meta"):
            model = build_diffusers_vae(config)
        weights = {k: v.to(dtype) for k, v in convert_official_vae_state_dict(sd).items()}
        model.load_state_dict(weights, strict=True, assign=True)
        return cls(model, device)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, F, H, W] in [-1, 1], F = 1 + 4k -> latents [B, 16, 1 + k, H/8, W/8]."""
        _check_video(video)
        self.model.clear_cache()  # no causal state crosses calls (diffusers clears it too)
        x = video.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        mu = self.model.encode(x).latent_dist.mode()
        return ((mu - self.mean) * self.inv_std).contiguous()  # latents go to the DiT in plain NCDHW

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, 16, T, h, w] -> video [B, 3, 1 + 4(T-1), 8h, 8w] clamped to [-1, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.z_dim:
            raise ValueError(f"latents must be [B, {self.z_dim}, T, h, w], got {tuple(latents.shape)}")
        self.model.clear_cache()
        z = latents.to(self.device, self.dtype) / self.inv_std + self.mean
        # The video keeps the VAE's layout: its consumers (colour match, resize, uint8 frames)
        # permute and reshape, and [B, 3, F, H, W] in NDHWC is already [F, H, W, 3] in memory.
        return self.model.decode(z.contiguous(memory_format=self.memory_format)).sample


def lay_out_conv_weights(model: torch.nn.Module, memory_format: torch.memory_format) -> None:
    """Every Conv3d weight in `memory_format`, every Conv2d weight in its 2-D counterpart, in place."""
    planar = planar_format(memory_format)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d | torch.nn.Conv2d):
            layout = memory_format if isinstance(module, torch.nn.Conv3d) else planar
            module.weight.data = module.weight.data.contiguous(memory_format=layout)


LAYOUT_HOOKS = "_flashtalk_layout_hooks"  # the model attribute holding keep_conv_inputs_in_layout's handles


def keep_conv_inputs_in_layout(model: torch.nn.Module, memory_format: torch.memory_format) -> None:
    """Convolutions (and the 2x upsamplers in front of them) receive their input in `memory_format`
    (2-D ones in its planar counterpart); a contiguous layout needs no hooks. Replaces any hooks an
    earlier call installed on `model`."""
    for handle in getattr(model, LAYOUT_HOOKS, ()):
        handle.remove()
    handles = []
    if memory_format != torch.contiguous_format:
        hook = _input_in_layout(memory_format)
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d | torch.nn.Conv2d | WanUpsample):
                handles.append(module.register_forward_pre_hook(hook))
    setattr(model, LAYOUT_HOOKS, handles)


def _input_in_layout(memory_format: torch.memory_format):
    planar = planar_format(memory_format)

    def hook(_module: torch.nn.Module, args: tuple) -> tuple | None:
        x, *rest = args
        layout = memory_format if x.ndim == 5 else planar
        if x.is_contiguous(memory_format=layout):
            return None
        return (x.contiguous(memory_format=layout), *rest)
    return hook


def _check_video(video: torch.Tensor) -> None:
    if video.ndim != 5 or video.shape[1] != RGB:
        raise ValueError(f"video must be [B, 3, F, H, W], got {tuple(video.shape)}")
    frames, height, width = video.shape[2:]
    if (frames - 1) % TEMPORAL_STRIDE or height % SPATIAL_STRIDE or width % SPATIAL_STRIDE:
        raise ValueError(f"video of {frames} frames {height}x{width}: need 1 + 4k frames and "
                         f"sides divisible by {SPATIAL_STRIDE}")
