"""umT5-XXL text encoder as Wan runs it, loading `models_t5_umt5-xxl-enc-bf16.pth` unchanged.

A compact encoder written to reproduce the reference op by op: per-layer bidirectional relative
position buckets (32, max distance 128), no attention scaling, gated GELU-tanh feed-forward,
RMS norm (eps 1e-6) computed in float32. Padded prompt tokens are masked inside the encoder; its
outputs past each prompt's true length are replaced by zeros, which is what the DiT receives.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import ftfy
import regex
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer

from engine.flashtalk.model.state_dict_check import Shapes, describe_key_mismatch, load_official_pth

TEXT_LEN = 512
RMS_EPS = 1e-6
MAX_DISTANCE = 128
T5_CHECKPOINT_NAME = "models_t5_umt5-xxl-enc-bf16.pth"


@dataclass(frozen=True)
class UMT5Config:
    vocab: int = 256384
    dim: int = 4096
    attn_dim: int = 4096
    ffn_dim: int = 10240
    heads: int = 64
    layers: int = 24
    buckets: int = 32


def official_t5_key_shapes(config: UMT5Config = UMT5Config()) -> Shapes:
    """Every key of the official umT5 encoder checkpoint -> its tensor shape."""
    d, a, f = config.dim, config.attn_dim, config.ffn_dim
    out: Shapes = {"token_embedding.weight": (config.vocab, d), "norm.weight": (d,)}
    for i in range(config.layers):
        b = f"blocks.{i}"
        out[f"{b}.norm1.weight"] = out[f"{b}.norm2.weight"] = (d,)
        for name in ("q", "k", "v"):
            out[f"{b}.attn.{name}.weight"] = (a, d)
        out[f"{b}.attn.o.weight"] = (d, a)
        out[f"{b}.ffn.gate.0.weight"] = out[f"{b}.ffn.fc1.weight"] = (f, d)
        out[f"{b}.ffn.fc2.weight"] = (d, f)
        out[f"{b}.pos_embedding.embedding.weight"] = (config.buckets, config.heads)
    return out


def t5_config_from_state_dict(sd: dict[str, torch.Tensor]) -> UMT5Config:
    try:
        vocab, dim = sd["token_embedding.weight"].shape
        attn_dim = sd["blocks.0.attn.q.weight"].shape[0]
        ffn_dim = sd["blocks.0.ffn.fc1.weight"].shape[0]
        buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    except KeyError as missing:
        raise ValueError(f"not a umT5 encoder checkpoint: no {missing.args[0]}") from None
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    return UMT5Config(vocab=vocab, dim=dim, attn_dim=attn_dim, ffn_dim=ffn_dim, heads=heads,
                      layers=layers, buckets=buckets)


class T5RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + RMS_EPS)  # float32
        return self.weight * x.type_as(self.weight)


class TanhGELU(nn.Module):
    """GELU, tanh approximation, written out as the reference does (same bf16 rounding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5RelativeBias(nn.Module):
    """Bidirectional relative-position bucket -> per-head attention bias."""

    def __init__(self, buckets: int, heads: int):
        super().__init__()
        self.buckets = buckets
        self.embedding = nn.Embedding(buckets, heads)

    def bucket(self, rel_pos: torch.Tensor) -> torch.Tensor:
        half = self.buckets // 2                     # one half per direction
        offset = (rel_pos > 0).long() * half
        distance = rel_pos.abs()
        exact = half // 2                            # distances below this get their own bucket
        log_ratio = torch.log(distance.float() / exact) / math.log(MAX_DISTANCE / exact)
        far = exact + (log_ratio * (half - exact)).long()
        far = torch.minimum(far, torch.full_like(far, half - 1))
        return offset + torch.where(distance < exact, distance, far)

    def forward(self, length: int) -> torch.Tensor:
        """-> [1, heads, L, L]."""
        pos = torch.arange(length, device=self.embedding.weight.device)
        rel_pos = pos.unsqueeze(0) - pos.unsqueeze(1)  # key - query
        return self.embedding(self.bucket(rel_pos)).permute(2, 0, 1).unsqueeze(0)


class T5Attention(nn.Module):
    def __init__(self, dim: int, attn_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, attn_dim, bias=False)
        self.k = nn.Linear(dim, attn_dim, bias=False)
        self.v = nn.Linear(dim, attn_dim, bias=False)
        self.o = nn.Linear(attn_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, C], mask [B, L] (1 = token), pos_bias [1, N, L, L] -> [B, L, C]."""
        b, n = x.shape[0], self.heads
        q, k, v = (proj(x).view(b, -1, n, proj.out_features // n) for proj in (self.q, self.k, self.v))
        bias = x.new_zeros(b, n, q.shape[1], k.shape[1]) + pos_bias
        bias = bias.masked_fill(mask.view(b, 1, 1, -1) == 0, torch.finfo(x.dtype).min)
        attn = torch.einsum("binc,bjnc->bnij", q, k) + bias  # T5 has no 1/sqrt(d) scaling
        attn = F.softmax(attn.float(), dim=-1).type_as(attn)
        x = torch.einsum("bnij,bjnc->binc", attn, v)
        return self.o(x.reshape(b, -1, n * x.shape[-1]))


class T5FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, ffn_dim, bias=False), TanhGELU())
        self.fc1 = nn.Linear(dim, ffn_dim, bias=False)
        self.fc2 = nn.Linear(ffn_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5Block(nn.Module):
    def __init__(self, config: UMT5Config):
        super().__init__()
        self.norm1 = T5RMSNorm(config.dim)
        self.attn = T5Attention(config.dim, config.attn_dim, config.heads)
        self.norm2 = T5RMSNorm(config.dim)
        self.ffn = T5FeedForward(config.dim, config.ffn_dim)
        self.pos_embedding = T5RelativeBias(config.buckets, config.heads)  # one per layer (umT5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask, self.pos_embedding(x.shape[1]))
        return x + self.ffn(self.norm2(x))


class UMT5Encoder(nn.Module):
    def __init__(self, config: UMT5Config = UMT5Config()):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab, config.dim)
        self.blocks = nn.ModuleList(T5Block(config) for _ in range(config.layers))
        self.norm = T5RMSNorm(config.dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask [B, L] -> hidden states [B, L, dim]."""
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning: ftfy, double HTML unescape, collapse whitespace."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip()


class T5TextEncoder:
    """Prompts -> [B, text_len, dim] umT5 states, zero past each prompt's true token count."""

    def __init__(self, model: UMT5Encoder, tokenizer, text_len: int = TEXT_LEN):
        self.model, self.tokenizer, self.text_len = model, tokenizer, text_len

    @classmethod
    def from_official(cls, pth: str | Path, tokenizer_dir: str | Path,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.bfloat16,
                      text_len: int = TEXT_LEN) -> T5TextEncoder:
        sd = load_official_pth(pth, T5_CHECKPOINT_NAME)
        model = build_umt5(sd, device, dtype, source=str(pth))
        if not Path(tokenizer_dir).is_dir():
            raise FileNotFoundError(f"umT5 tokenizer folder not found: {tokenizer_dir} "
                                    "(expected google/umt5-xxl/ beside the checkpoint)")
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        return cls(model, tokenizer, text_len)

    @torch.no_grad()
    def encode(self, prompts: list[str], device: torch.device | None = None) -> torch.Tensor:
        """-> [B, text_len, dim] on `device` (default: the embedding's; give it when the layers
        visit the device one at a time and wait on the CPU in between)."""
        device = device or self.model.token_embedding.weight.device
        batch = self.tokenizer([clean_prompt(p) for p in prompts], padding="max_length",
                               truncation=True, max_length=self.text_len, return_tensors="pt",
                               add_special_tokens=True)
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        states = self.model(ids, mask)
        # The reference trims each prompt to its true length and the DiT pads it back with zeros.
        return states.masked_fill(mask.unsqueeze(-1) == 0, 0.0)


def build_umt5(sd: dict[str, torch.Tensor], device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.bfloat16, source: str = "umT5 state dict") -> UMT5Encoder:
    config = t5_config_from_state_dict(sd)
    problem = describe_key_mismatch(sd, official_t5_key_shapes(config))
    if problem:
        raise ValueError(f"{source} is not a umT5 encoder checkpoint: {problem}")
    with torch.device("meta"):
        model = UMT5Encoder(config)
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False).to(device)
