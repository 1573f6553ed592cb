"""Ring attention: local queries attend every rank's key/value block, passed around a ring.

Each step attends the block in hand while the next one travels (batched isend/irecv, so NCCL
runs the ring's sends and receives as one group), and merges the partial results exactly through
their log-sum-exp. Padded keys at the end of the sequence are cut from the block that holds them.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

FUSED_LSE_DTYPES = (torch.bfloat16, torch.float16)


def attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention that also returns the log-sum-exp of each query's scores.

    q [B, Lq, H, D], k/v [B, Lk, H, D] -> (out [B, Lq, H, D] in q's dtype, lse float32 [B, H, Lq]).
    CUDA half precision uses the fused flash kernel; otherwise the scores are formed in float32.
    """
    if q.is_cuda and q.dtype in FUSED_LSE_DTYPES:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))[:2]
        return out.transpose(1, 2), lse.float()  # [B, H, Lq, D] -> [B, Lq, H, D]
    scale = q.shape[-1] ** -0.5
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * scale  # [B, H, Lq, Lk]
    lse = scores.logsumexp(dim=-1)  # [B, H, Lq]
    probs = torch.exp(scores - lse[..., None])
    return torch.einsum("bhqk,bkhd->bqhd", probs, v.float()).to(q.dtype), lse


def merge_partials(out: torch.Tensor | None, lse: torch.Tensor | None, block_out: torch.Tensor,
                   block_lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two softmax-normalised partial attentions over disjoint key sets, in float32.

    out float32 [B, Lq, H, D] or None, lse float32 [B, H, Lq] -> the same for the union of keys.
    """
    block_out = block_out.float()
    if out is None:
        return block_out, block_lse
    merged = torch.logaddexp(lse, block_lse)  # [B, H, Lq]
    weight_old = torch.exp(lse - merged).transpose(1, 2)[..., None]  # [B, Lq, H, 1]
    weight_new = torch.exp(block_lse - merged).transpose(1, 2)[..., None]
    return out * weight_old + block_out * weight_new, merged


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: dist.ProcessGroup,
                   ring_ranks: tuple[int, ...], ring_rank: int, valid_keys: list[int]) -> torch.Tensor:
    """Attention of this rank's queries over the keys of every rank in the ring.

    q, k, v [B, S, H, D]: ring rank j holds block j of the sequence. valid_keys[j] is how many of
    block j's keys are real (the rest is padding). -> [B, S, H, D] in q's dtype.
    """
    size = len(ring_ranks)
    send_to, recv_from = ring_ranks[(ring_rank + 1) % size], ring_ranks[(ring_rank - 1) % size]
    kv = torch.stack([k, v]).contiguous()  # [2, B, S, H, D], travels as one message
    out = lse = None
    for step in range(size):
        pending, incoming = [], None
        if step < size - 1:  # start passing the block on before attending it
            incoming = torch.empty_like(kv)
            pending = dist.batch_isend_irecv([dist.P2POp(dist.isend, kv, send_to, group),
                                              dist.P2POp(dist.irecv, incoming, recv_from, group)])
        count = valid_keys[(ring_rank - step) % size]  # this block came from ring rank (me - step)
        if count:
            block_out, block_lse = attention_with_lse(q, kv[0, :, :count], kv[1, :, :count])
            out, lse = merge_partials(out, lse, block_out, block_lse)
        for work in pending:
            work.wait()
        if incoming is not None:
            kv = incoming
    return out.to(q.dtype)
