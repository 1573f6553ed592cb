"""Sequence parallelism as seen by the DiT: split tokens in, attend, gather tokens out.

The DiT has one forward for every world size. It splits the video tokens (and their RoPE
angles) after the patch embedding, runs self-attention through `self_attention` (the only op that
needs other ranks' tokens: Ulysses/ring implementations live beside this file), keeps text/image
and audio cross-attention local (their context is replicated), and gathers before unpatchify.

Splitting is contiguous: every rank gets ceil(L / world) tokens, the last rank zero-padded when L
does not divide. Implementations must keep padded keys out of every real query's attention; the
reference never runs such a length (12096 tokens divide by 1..8 ranks), so padding is only for
other resolutions.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class SequenceParallel(ABC):
    """One rank's view of a sequence-parallel group of `world_size` ranks."""

    def __init__(self, world_size: int, rank: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.world_size = world_size
        self.rank = rank
        self.full_length: int | None = None  # sequence length before the last split's padding

    def chunk_length(self, length: int) -> int:
        """Tokens per rank for a sequence of `length` (the last rank's include the padding)."""
        return math.ceil(length / self.world_size)

    def local_range(self, length: int) -> tuple[int, int]:
        """(start, count) of this rank's slice of a `length`-token sequence; may run past its end."""
        chunk = self.chunk_length(length)
        return self.rank * chunk, chunk

    @property
    def pad(self) -> int:
        """Zero tokens appended by the last split (0 when the length divides)."""
        if self.full_length is None:
            return 0
        return self.chunk_length(self.full_length) * self.world_size - self.full_length

    def split(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's contiguous slice of x along `dim`, zero-padding the end to divide evenly."""
        length = x.shape[dim]
        self.full_length = length
        start, chunk = self.local_range(length)
        pad = chunk * self.world_size - length
        if pad:
            dim = dim % x.dim()
            widths = [0, 0] * (x.dim() - 1 - dim) + [0, pad]  # F.pad lists the last dim first
            x = F.pad(x, widths)
        return x.narrow(dim, start, chunk)

    def gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """All ranks' slices concatenated along `dim`, without the padding of the last split."""
        full = self._all_gather(x, dim)
        if self.full_length is None:
            return full
        return full.narrow(dim, 0, self.full_length)

    @abstractmethod
    def _all_gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Concatenate every rank's x along `dim` (same shape on every rank)."""

    @abstractmethod
    def self_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       attn_fn: AttentionFn) -> torch.Tensor:
        """Attention of local queries over the whole sequence's keys.

        q, k, v [B, L/world, H, D] (this rank's tokens) -> [B, L/world, H, D]; `attn_fn` is the
        local kernel taking [B, L, H, D] tensors.
        """


class NoParallel(SequenceParallel):
    """A world of one: split and gather are identities, attention is local."""

    def __init__(self):
        super().__init__(world_size=1, rank=0)

    def _all_gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return x

    def self_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       attn_fn: AttentionFn) -> torch.Tensor:
        return attn_fn(q, k, v)
