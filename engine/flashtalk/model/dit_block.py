"""Building blocks of the FlashTalk DiT (Wan2.1-I2V block + InfiniteTalk audio cross-attention).

Parameter names match the official checkpoint. Precision follows the reference run in bf16:
norms compute in float32 and round back to the activation dtype; modulation, gated residuals,
the time embedding and the head run in float32 (the reference's `autocast(float32)` sections,
which upcast bf16 weights); attention runs in the activation dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.flashtalk.model.rope import apply_rope
from engine.flashtalk.parallel.sequence_parallel import AttentionFn, SequenceParallel

CLIP_TOKENS = 257  # image tokens at the front of the cross-attention context


def linear_fp32(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The layer computed in float32 with upcast weights (the reference's autocast(float32))."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


def _random_modulation(modulation: nn.Parameter) -> None:
    """N(0, 1/dim): shifts, scales and gates of a random model stay of order 1/sqrt(dim)."""
    with torch.no_grad():
        modulation.normal_(0.0, modulation.shape[-1] ** -0.5)


class RMSNorm(nn.Module):
    """RMS norm over the last dim in float32, rounded to the input dtype, then scaled."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


@dataclass(frozen=True)
class FrameSegment:
    """A run of local tokens that attend the same latent frames' audio tokens.

    `frames` consecutive latent frames starting at `first_frame`, `tokens` local tokens in all,
    split evenly between them (a partial frame or a padding tail is one frame).
    """

    first_frame: int
    frames: int
    tokens: int


def frame_segments(start: int, length: int, tokens_per_frame: int, num_frames: int) -> list[FrameSegment]:
    """Segments of the local token slice [start, start+length) of a [F*tokens_per_frame] sequence.

    Whole frames are grouped into one segment (one batched attention call); a partial frame at
    either end is its own segment; padding past the sequence end attends the last frame.
    """
    total = num_frames * tokens_per_frame
    end = min(start + length, total)
    segments: list[FrameSegment] = []
    pos = start
    while pos < end:
        frame, offset = divmod(pos, tokens_per_frame)
        whole = (end - pos) // tokens_per_frame if offset == 0 else 0
        if whole:
            segments.append(FrameSegment(frame, whole, whole * tokens_per_frame))
            pos += whole * tokens_per_frame
        else:
            count = min(tokens_per_frame - offset, end - pos)
            segments.append(FrameSegment(frame, 1, count))
            pos += count
    if start + length > max(end, start):
        segments.append(FrameSegment(num_frames - 1, 1, start + length - max(end, start)))
    return segments


class SelfAttention(nn.Module):
    """Full self-attention over all video tokens, q/k RMS-normed over the whole width, 3D RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, rope: torch.Tensor, parallel: SequenceParallel,
                attn: AttentionFn) -> torch.Tensor:
        """x [B, L, C] (this rank's tokens), rope [L, D/2, 2] -> [B, L, C]."""
        b, length, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, length, self.num_heads, -1)  # [B, L, H, D]
        k = self.norm_k(self.k(x)).view(b, length, self.num_heads, -1)
        v = self.v(x).view(b, length, self.num_heads, -1)
        q = apply_rope(q, rope).to(v.dtype)  # float64 rotation -> float32 -> compute dtype
        k = apply_rope(k, rope).to(v.dtype)
        out = parallel.self_attention(q, k, v, attn)  # [B, L, H, D]
        return self.o(out.flatten(2))


class ImageTextCrossAttention(nn.Module):
    """Video tokens attend the 512 text tokens (q/k/v) and the 257 image tokens (k_img/v_img).

    Both attentions share q; their outputs are summed before `o`. Padded text tokens are attended
    (the reference passes no lengths).
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.k_img = nn.Linear(dim, dim)
        self.v_img = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k_img = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor, attn: AttentionFn) -> torch.Tensor:
        """x [B, L, C], context [B, 257 + 512, C] -> [B, L, C]."""
        b, n = x.shape[0], self.num_heads
        image, text = context[:, :CLIP_TOKENS], context[:, CLIP_TOKENS:]
        q = self.norm_q(self.q(x)).view(b, -1, n, x.shape[-1] // n)  # [B, L, H, D]
        k = self.norm_k(self.k(text)).view(b, -1, n, q.shape[-1])  # [B, 512, H, D]
        v = self.v(text).view(b, -1, n, q.shape[-1])
        k_img = self.norm_k_img(self.k_img(image)).view(b, -1, n, q.shape[-1])  # [B, 257, H, D]
        v_img = self.v_img(image).view(b, -1, n, q.shape[-1])
        image_out = attn(q, k_img, v_img).flatten(2)
        text_out = attn(q, k, v).flatten(2)
        return self.o(text_out + image_out)


class AudioCrossAttention(nn.Module):
    """Each latent frame's video tokens attend only that frame's audio tokens (no norm, no RoPE)."""

    def __init__(self, dim: int, audio_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, segments: list[FrameSegment],
                attn: AttentionFn) -> torch.Tensor:
        """x [B, L, C] (local tokens), audio [B, F, T, A] tokens of every latent frame -> [B, L, C]."""
        b, length, dim = x.shape
        n = self.num_heads
        q = self.q_linear(x).view(b, length, n, dim // n)  # [B, L, H, D]
        kv = self.kv_linear(audio).view(*audio.shape[:3], 2, n, dim // n)  # [B, F, T, 2, H, D]
        outs, pos = [], 0
        for seg in segments:
            per_frame = seg.tokens // seg.frames
            q_seg = q[:, pos:pos + seg.tokens].reshape(b * seg.frames, per_frame, n, -1)  # [B*f, S, H, D]
            kv_seg = kv[:, seg.first_frame:seg.first_frame + seg.frames].flatten(0, 1)  # [B*f, T, 2, H, D]
            out = attn(q_seg, kv_seg[:, :, 0], kv_seg[:, :, 1])  # [B*f, S, H, D]
            outs.append(out.reshape(b, seg.tokens, n, -1))
            pos += seg.tokens
        return self.proj(torch.cat(outs, dim=1).flatten(2))


class DiTBlock(nn.Module):
    """x += g1*SelfAttn(mod(LN1 x)); x += CrossAttn(LN3 x); x += AudioAttn(LN_x x); x += g2*FFN(mod(LN2 x))."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, qk_norm: bool, cross_attn_norm: bool,
                 eps: float, audio_dim: int, norm_input_visual: bool):
        super().__init__()
        # 1. Self-attention (norm1 has no parameters)
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, num_heads, qk_norm, eps)
        # 2. Image + text cross-attention
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.cross_attn = ImageTextCrossAttention(dim, num_heads, qk_norm, eps)
        # 3. Audio cross-attention
        self.norm_x = FP32LayerNorm(dim, eps, elementwise_affine=True) if norm_input_visual else nn.Identity()
        self.audio_cross_attn = AudioCrossAttention(dim, audio_dim, num_heads)
        # 4. Feed-forward (norm2 has no parameters)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        # shift/scale/gate for self-attention, then for the FFN
        self.modulation = nn.Parameter(torch.empty(1, 6, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The block's own parameter (its layers reset their own)."""
        _random_modulation(self.modulation)

    def modulation_terms(self, e0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """e0 float32 [B, 6, C] -> six float32 [B, 1, C]: shift1, scale1, gate1, shift2, scale2, gate2."""
        return (self.modulation.float() + e0).chunk(6, dim=1)

    def forward(self, x: torch.Tensor, e0: torch.Tensor, rope: torch.Tensor, context: torch.Tensor,
                audio: torch.Tensor, segments: list[FrameSegment], parallel: SequenceParallel,
                attn: AttentionFn) -> torch.Tensor:
        """x [B, L, C] local tokens, e0 float32 [B, 6, C], context [B, 769, C], audio [B, F, T, A]."""
        dtype = x.dtype
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation_terms(e0)
        # 1. Self-attention, modulated and gated in float32
        h = (self.norm1(x).float() * (1 + scale1) + shift1).to(dtype)
        x = (x + self.self_attn(h, rope, parallel, attn) * gate1).to(dtype)
        # 2. Image + text cross-attention
        x = x + self.cross_attn(self.norm3(x), context, attn)
        # 3. Audio cross-attention
        x = x + self.audio_cross_attn(self.norm_x(x), audio, segments, attn)
        # 4. Feed-forward, modulated and gated in float32
        h = (self.norm2(x).float() * (1 + scale2) + shift2).to(dtype)
        return (x + self.ffn(h) * gate2).to(dtype)


class Head(nn.Module):
    """Final LN + (shift, scale) modulation + Linear to patch pixels, all in float32."""

    def __init__(self, dim: int, out_dim: int, patch_volume: int, eps: float):
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, patch_volume * out_dim)
        self.modulation = nn.Parameter(torch.empty(1, 2, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _random_modulation(self.modulation)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, L, C], e float32 [B, C] -> float32 [B, L, prod(patch) * out_dim]."""
        shift, scale = (self.modulation.float() + e[:, None]).chunk(2, dim=1)  # [B, 1, C] each
        return linear_fp32(self.head, self.norm(x) * (1 + scale) + shift)
