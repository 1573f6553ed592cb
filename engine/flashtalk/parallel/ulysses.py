"""Ulysses all-to-all: trade a sequence split for a head split and back (DeepSpeed-Ulysses).

Before attention each of the u ranks holds S/u tokens of all H heads; after `sequence_to_heads` it
holds all S tokens of H/u heads, attends locally, and `heads_to_sequence` returns to the token split.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def sequence_to_heads(x: torch.Tensor, group: dist.ProcessGroup, degree: int) -> torch.Tensor:
    """[B, S/u, H, D] (this rank's tokens) -> [B, S, H/u, D] (this rank's heads), u = degree."""
    b, s, h, d = x.shape
    if h % degree:
        raise ValueError(f"{h} heads do not split over {degree} Ulysses ranks")
    x = x.reshape(b, s, degree, h // degree, d).permute(2, 0, 1, 3, 4).contiguous()  # [u, B, S/u, H/u, D]
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)  # out[i]: rank i's tokens of my heads
    return out.permute(1, 0, 2, 3, 4).reshape(b, degree * s, h // degree, d)  # [B, S, H/u, D]


def heads_to_sequence(x: torch.Tensor, group: dist.ProcessGroup, degree: int) -> torch.Tensor:
    """[B, S, H/u, D] (this rank's heads) -> [B, S/u, H, D] (this rank's tokens)."""
    b, s, h_local, d = x.shape
    x = x.reshape(b, degree, s // degree, h_local, d).permute(1, 0, 2, 3, 4).contiguous()  # [u, B, S/u, H/u, D]
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)  # out[i]: my tokens of rank i's heads
    return out.permute(1, 2, 0, 3, 4).reshape(b, s // degree, degree * h_local, d)  # [B, S/u, H, D]
