"""Frames cut into bands of rows (or columns), one band per rank, with halo exchange and gather.

The bands are fixed per call in latent units along the longer latent side; every resolution inside
the VAE (8x the latent at the pixels, 2x/4x in between) scales them by the same factor, so a
layer can ask for every rank's band size from its own band's size.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

HEIGHT, WIDTH = -2, -1  # split dims of [..., H, W] tensors


def band_sizes(size: int, parts: int) -> list[int]:
    """Contiguous, balanced: the first `size % parts` bands get one row more."""
    if size < parts:
        raise ValueError(f"a latent side of {size} cannot be split across {parts} GPUs; use fewer GPUs "
                         "or a larger size")
    base, extra = divmod(size, parts)
    return [base + (i < extra) for i in range(parts)]


class SpatialBands:
    """One rank's band of every frame along `dim`; `split` sets the bands for one VAE call."""

    def __init__(self, group: dist.ProcessGroup, rank: int, world_size: int):
        self.group, self.rank, self.world_size = group, rank, world_size
        self.dim = HEIGHT
        self.sizes: list[int] = [1] * world_size  # band sizes in latent units, set by split()

    # -- per call --------------------------------------------------------------------------------
    def split(self, x: torch.Tensor, latent_hw: tuple[int, int], scale: int) -> torch.Tensor:
        """This rank's band of x [..., H, W] whose latent grid is latent_hw (H = scale * h)."""
        h, w = latent_hw
        self.dim = HEIGHT if h >= w else WIDTH
        self.sizes = band_sizes(h if self.dim == HEIGHT else w, self.world_size)
        start = sum(self.sizes[:self.rank])
        return x.narrow(self.dim, start * scale, self.sizes[self.rank] * scale).contiguous()

    def sizes_at(self, local: int) -> list[int]:
        """Every rank's band size at the resolution where this rank's band is `local` wide."""
        mine = self.sizes[self.rank]
        return [s * local // mine for s in self.sizes]

    # -- collectives -----------------------------------------------------------------------------
    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's band of x concatenated along the split dim (bands may differ by a row)."""
        sizes = self.sizes_at(x.shape[self.dim])
        longest = max(sizes)
        padded = _pad_end(x, self.dim, longest - x.shape[self.dim]).contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p.narrow(self.dim, 0, s) for p, s in zip(parts, sizes)], dim=self.dim)

    def with_halo(self, x: torch.Tensor, before: int, after: int) -> torch.Tensor:
        """x with the previous band's last `before` rows and the next band's first `after` rows.

        Zeros stand in beyond the frame's edges, as the layers' own zero padding would.
        """
        if not before and not after:
            return x
        k = max(before, after)
        if x.shape[self.dim] < k:
            raise ValueError(f"a band of {x.shape[self.dim]} rows is thinner than its {k}-row halo")
        edges = torch.cat([x.narrow(self.dim, 0, k), x.narrow(self.dim, x.shape[self.dim] - k, k)],
                          dim=self.dim).contiguous()  # first k rows || last k rows
        strips = [torch.empty_like(edges) for _ in range(self.world_size)]
        dist.all_gather(strips, edges, group=self.group)
        parts = []
        if before:
            prev = strips[self.rank - 1].narrow(self.dim, 2 * k - before, before) if self.rank > 0 else None
            parts.append(prev if prev is not None else _zeros_like_rows(x, self.dim, before))
        parts.append(x)
        if after:
            nxt = strips[self.rank + 1].narrow(self.dim, 0, after) if self.rank + 1 < self.world_size else None
            parts.append(nxt if nxt is not None else _zeros_like_rows(x, self.dim, after))
        return torch.cat(parts, dim=self.dim)


def _zeros_like_rows(x: torch.Tensor, dim: int, rows: int) -> torch.Tensor:
    shape = list(x.shape)
    shape[dim] = rows
    return x.new_zeros(shape)


def _pad_end(x: torch.Tensor, dim: int, amount: int) -> torch.Tensor:
    """Zero rows appended along dim (a negative dim counted from the end)."""
    if not amount:
        return x
    widths = [0, 0] * (-dim - 1) + [0, amount]  # F.pad lists the last dim first
    return F.pad(x, widths)
