"""3D rotary position embedding of the DiT's video tokens, computed in float64 as the reference.

A head's D/2 rotation pairs are split over (time, height, width) as (c - 2*(c//3), c//3, c//3),
c = D/2: 22/21/21 at head_dim 128. Each axis has its own frequency ladder 1/θ^(2i/d_axis)
(θ = 1e4, d_axis = 2 * pairs). Positions start at 0 for every call: each streaming chunk restarts
its positions (frame 0 = first motion frame).
"""
from __future__ import annotations

import torch

ROPE_THETA = 10000.0


def rope_pairs(head_dim: int) -> tuple[int, int, int]:
    """Rotation pairs per axis (t, h, w) for a head of `head_dim` channels."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def _axis_angles(length: int, pairs: int, device: torch.device) -> torch.Tensor:
    """[length, pairs] float64 angles pos * θ^(-2i / (2*pairs))."""
    dim = 2 * pairs
    inv_freq = 1.0 / torch.pow(ROPE_THETA, torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
    positions = torch.arange(length, dtype=torch.float64, device=device)
    return torch.outer(positions, inv_freq)


def rope_cos_sin(grid: tuple[int, int, int], head_dim: int, device: torch.device) -> torch.Tensor:
    """grid (F, H, W) in patches -> float64 [F*H*W, D/2, 2] (cos, sin), tokens in (f, h, w) order."""
    f, h, w = grid
    pt, ph, pw = rope_pairs(head_dim)
    angles = torch.cat([
        _axis_angles(f, pt, device)[:, None, None].expand(f, h, w, pt),
        _axis_angles(h, ph, device)[None, :, None].expand(f, h, w, ph),
        _axis_angles(w, pw, device)[None, None, :].expand(f, h, w, pw),
    ], dim=-1).reshape(f * h * w, pt + ph + pw)  # [L, D/2]
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def apply_rope(x: torch.Tensor, cos_sin: torch.Tensor) -> torch.Tensor:
    """x [B, L, H, D], cos_sin [L, D/2, 2] float64 -> float32 [B, L, H, D].

    Adjacent channels (2i, 2i+1) form one complex number rotated in float64; the result is
    rounded to float32 as the reference does before attention casts it to the compute dtype.
    """
    b, length, heads, d = x.shape
    pairs = x.to(torch.float64).reshape(b, length, heads, d // 2, 2)  # [B, L, H, D/2, (re, im)]
    re, im = pairs.unbind(-1)
    cos = cos_sin[None, :, None, :, 0]  # [1, L, 1, D/2]
    sin = cos_sin[None, :, None, :, 1]
    rotated = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)  # [B, L, H, D/2, 2]
    return rotated.flatten(3).float()
