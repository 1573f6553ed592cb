"""Per-frame colour matching to the portrait in Lab space, so long streams keep their colours.

Each frame's L, a, b mean and (population) std are matched to the reference image's, then blended
with the original by `strength`. Runs in the video's dtype (bf16 on the GPU, as the reference).
"""
from __future__ import annotations

import torch

_RGB_TO_XYZ = [[0.4124564, 0.3575761, 0.1804375],
               [0.2126729, 0.7151522, 0.0721750],
               [0.0193339, 0.1191920, 0.9503041]]
_XYZ_TO_RGB = [[3.2404542, -1.5371385, -0.4985314],
               [-0.9692660, 1.8760108, 0.0415560],
               [0.0556434, -0.2040259, 1.0572252]]
_D65 = [0.95047, 1.0, 1.08883]
_EPS, _KAPPA = 0.008856, 903.3


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """rgb in [0,1], channels last [..., 3] -> Lab [..., 3]."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device).T
    xyz = (xyz / torch.tensor(_D65, dtype=rgb.dtype, device=rgb.device)).clamp(1e-8, 1.0)
    f = torch.where(xyz > _EPS, xyz ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return torch.stack([lightness, a, b], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab [..., 3] -> rgb in [0,1] [..., 3]."""
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (lightness + 16) / 116
    fx, fz = a / 500 + fy, fy - b / 200
    x = torch.where(fx ** 3 > _EPS, fx ** 3, (116 * fx - 16) / _KAPPA)
    y = torch.where(lightness > _KAPPA * _EPS, fy ** 3, lightness / _KAPPA)
    z = torch.where(fz ** 3 > _EPS, fz ** 3, (116 * fz - 16) / _KAPPA)
    xyz = torch.stack([x, y, z], dim=-1) * torch.tensor(_D65, dtype=lab.dtype, device=lab.device)
    linear = xyz @ torch.tensor(_XYZ_TO_RGB, dtype=lab.dtype, device=lab.device).T
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=0) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def match_colors(video: torch.Tensor, reference: torch.Tensor, strength: float) -> torch.Tensor:
    """video [B,3,T,H,W] and reference [B,3,1,H,W] in [-1,1] -> corrected video, same dtype."""
    if strength <= 0.0:
        return video
    src = ((video + 1) / 2).permute(0, 2, 3, 4, 1)  # [B,T,H,W,3]
    ref = ((reference.to(video) + 1) / 2).permute(0, 2, 3, 4, 1)  # [B,1,H,W,3]
    src_lab, ref_lab = rgb_to_lab(src), rgb_to_lab(ref)
    ref_mean = ref_lab.mean(dim=(2, 3), keepdim=True)
    ref_std = ref_lab.std(dim=(2, 3), keepdim=True, unbiased=False)
    src_mean = src_lab.mean(dim=(2, 3), keepdim=True)
    src_std = src_lab.std(dim=(2, 3), keepdim=True, unbiased=False)
    src_std = torch.where(src_std < 1e-8, torch.ones_like(src_std), src_std)
    corrected = lab_to_rgb((src_lab - src_mean) * (ref_std / src_std) + ref_mean)
    blended = (1 - strength) * src + strength * corrected
    return (blended.permute(0, 4, 1, 2, 3) * 2 - 1).contiguous()
