"""Unified sequence parallelism (xDiT's USP): Ulysses inside groups of ranks, ring across them.

With u = gcd(world, heads) the self-attention is pure Ulysses whenever the head count divides the
world (2, 4, 5, 8 GPUs for 40 heads), pure ring when they share no factor (3 GPUs), and both
otherwise (6 GPUs: Ulysses over 2, ring over 3). All other layers see only this rank's tokens.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from engine.flashtalk.parallel.process_group import SequenceParallelGroups
from engine.flashtalk.parallel.ring_attention import ring_attention
from engine.flashtalk.parallel.sequence_parallel import AttentionFn, SequenceParallel
from engine.flashtalk.parallel.ulysses import heads_to_sequence, sequence_to_heads


class UnifiedSequenceParallel(SequenceParallel):
    """Sequence parallelism over `groups.world`: split in, one attention op, gather out."""

    def __init__(self, groups: SequenceParallelGroups):
        super().__init__(world_size=groups.world_size, rank=groups.rank)
        self.groups = groups

    def _all_gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous(), group=self.groups.world)
        return torch.cat(parts, dim=dim)

    def self_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       attn_fn: AttentionFn) -> torch.Tensor:
        """q, k, v [B, L/world, H, D] -> [B, L/world, H, D]; padded keys never attended."""
        g = self.groups
        batch = q.shape[0]
        if g.ulysses_degree > 1:  # one all-to-all for q, k and v: [3B, L/world, H, D] -> [3B, L/ring, H/u, D]
            q, k, v = sequence_to_heads(torch.cat([q, k, v]), g.ulysses, g.ulysses_degree).split(batch)
        block = q.shape[1]  # tokens per ring block
        valid = [min(max(self._length(block) - j * block, 0), block) for j in range(g.ring_degree)]
        if g.ring_degree > 1:
            out = ring_attention(q, k, v, g.ring, g.ring_ranks, g.ring_rank, valid)
        else:
            out = attn_fn(q, k[:, :valid[0]], v[:, :valid[0]])  # [B, L, H/u, D]
        if g.ulysses_degree > 1:
            out = heads_to_sequence(out, g.ulysses, g.ulysses_degree)  # -> [B, L/world, H, D]
        return out

    def _length(self, block: int) -> int:
        """Real (unpadded) sequence length; the whole padded length if split was not used."""
        return self.full_length if self.full_length is not None else block * self.groups.ring_degree
