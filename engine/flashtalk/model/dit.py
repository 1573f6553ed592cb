"""The FlashTalk DiT: Wan2.1-I2V-14B with InfiniteTalk audio cross-attention.

Loads the official SoulX-FlashTalk-14B `config.json` + safetensors shards by name, with no
renaming. One forward serves every sequence-parallel world size: the `parallel` argument splits
the video tokens after the patch embedding and gathers them before unpatchify.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import ClassVar

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from engine.flashtalk.model.attention import attention, choose_backend
from engine.flashtalk.model.audio_proj import AudioProjModel, select_frame_windows
from engine.flashtalk.model.dit_block import CLIP_TOKENS, DiTBlock, Head, frame_segments, linear_fp32
from engine.flashtalk.model.rope import rope_cos_sin, rope_pairs
from engine.flashtalk.model.tiny_sizes import TINY
from engine.flashtalk.parallel.sequence_parallel import NoParallel, SequenceParallel

SINUSOID_BASE = 10000.0
TINY_OVERRIDES = {  # a random model that runs a forward on the CPU in milliseconds
    "dim": 64, "ffn_dim": 128, "num_heads": 2, "num_layers": 2, "freq_dim": 32, "intermediate_dim": 32,
    "output_dim": 32, "context_tokens": 4,
    # encoder widths match the tiny encoder checkpoints
    "text_dim": TINY.t5_dim, "clip_dim": TINY.clip_dim, "audio_layers": TINY.wav2vec_layers,
    "audio_dim": TINY.wav2vec_dim,
}


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """t [B] -> float32 [B, dim] = cos || sin of t * base^(-i/half), computed in float64."""
    half = dim // 2
    position = t.to(torch.float64)
    freqs = torch.pow(SINUSOID_BASE, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(position, freqs)  # [B, half]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()


class ImageProjection(nn.Module):
    """CLIP tokens -> model width: LN, Linear, GELU, Linear, LN (keys img_emb.proj.{0,1,3,4})."""

    def __init__(self, clip_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(clip_dim), nn.Linear(clip_dim, clip_dim), nn.GELU(),
                                  nn.Linear(clip_dim, dim), nn.LayerNorm(dim))

    def forward(self, clip_fea: torch.Tensor) -> torch.Tensor:
        """[B, 257, clip_dim] -> [B, 257, dim]."""
        return self.proj(clip_fea)


class FlashTalkDiT(ModelMixin, ConfigMixin):
    """Video diffusion transformer predicting the flow velocity of [B, 16, F, H, W] latents.

    Defaults are the official 14B model; `config.json` from the checkpoint overrides any of them.
    `clip_dim`, `audio_layers` and `audio_dim` are fixed by the official encoders (not in its
    config); they exist so that tiny test models can shrink them.
    """

    _no_split_modules: ClassVar[list[str]] = ["DiTBlock"]

    @register_to_config
    def __init__(self, model_type: str = "i2v", patch_size: tuple[int, int, int] = (1, 2, 2),
                 text_len: int = 512, in_dim: int = 36, dim: int = 5120, ffn_dim: int = 13824,
                 freq_dim: int = 256, text_dim: int = 4096, out_dim: int = 16, num_heads: int = 40,
                 num_layers: int = 40, qk_norm: bool = True, cross_attn_norm: bool = True,
                 eps: float = 1e-6, audio_window: int = 5, intermediate_dim: int = 512,
                 output_dim: int = 768, context_tokens: int = 32, vae_scale: int = 4,
                 norm_input_visual: bool = True, norm_output_audio: bool = True, clip_dim: int = 1280,
                 audio_layers: int = 12, audio_dim: int = 768):
        super().__init__()
        if model_type != "i2v":
            raise ValueError(f"FlashTalk needs an image-to-video ('i2v') model, config says {model_type!r}")
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        rope_pairs(dim // num_heads)  # validates the head size for 3D RoPE
        self.patch = tuple(patch_size)
        self.attention_backend: str | None = None
        # 1. Embeddings of the video, the timestep and the context
        self.patch_embedding = nn.Conv3d(in_dim, dim, kernel_size=self.patch, stride=self.patch)
        self.text_embedding = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.img_emb = ImageProjection(clip_dim, dim)
        self.audio_proj = AudioProjModel(audio_window, vae_scale, audio_layers, audio_dim, intermediate_dim,
                                         output_dim, context_tokens, norm_output_audio)
        # 2. Transformer blocks
        self.blocks = nn.ModuleList([
            DiTBlock(dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps, output_dim, norm_input_visual)
            for _ in range(num_layers)
        ])
        # 3. Output head
        self.head = Head(dim, out_dim, math.prod(self.patch), eps)

    # -- configs ---------------------------------------------------------------------------------
    @classmethod
    def official_config(cls) -> dict:
        """The SoulX-FlashTalk-14B config (the constructor defaults)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    @classmethod
    def tiny_config(cls) -> dict:
        """A 2-layer, width-64 config with the same structure, for tests and the tiny checkpoint."""
        return {**cls.official_config(), **TINY_OVERRIDES}

    def set_attention_backend(self, name: str | None, compute_dtype: torch.dtype | None = None) -> str:
        """Pin the attention kernel for this model's device (None: the fastest that runs).

        `compute_dtype` is the dtype attention runs in when it differs from the stored weights'
        (training keeps float32 masters and computes in bf16: probing in float32 would rule out
        cuDNN, the fastest bf16 kernel on Hopper).
        """
        weight = self.patch_embedding.weight
        self.attention_backend = choose_backend(name, weight.device, compute_dtype or weight.dtype)
        return self.attention_backend

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, clip_fea: torch.Tensor,
                audio: torch.Tensor, parallel: SequenceParallel | None = None) -> torch.Tensor:
        """Flow velocity of the noisy latents.

        x [B, in_dim, F, H, W] = noise(16) || mask(4) || reference latents(16), t [B] in [0, 1000],
        context [B, <=text_len, text_dim] T5 tokens (zero-padded here to text_len and attended),
        clip_fea [B, 257, clip_dim], audio [B, 1 + vae_scale*(F-1), window, layers, audio_dim]
        wav2vec2 windows per video frame -> float32 [B, out_dim, F, H, W].
        """
        parallel = parallel or NoParallel()
        dtype = self.patch_embedding.weight.dtype
        attn = functools.partial(attention, backend=self.attention_backend)
        # 1. Patchify: [B, C, F, H, W] -> [B, dim, f, h, w] -> [B, L, dim]
        self._check_input(x, audio)
        tokens = self.patch_embedding(x.to(dtype))
        grid = tuple(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2)
        # 2. Conditions, replicated on every rank
        e, e0 = self._time_embedding(t)
        context = self._context(context, clip_fea).to(dtype)  # [B, 257 + text_len, dim]
        first, later = select_frame_windows(audio.to(dtype), self.config.vae_scale)
        audio_tokens = self.audio_proj(first, later).to(dtype)  # [B, F, tokens, output_dim]
        # 3. Split the sequence: tokens and their RoPE angles
        length = tokens.shape[1]
        rope = parallel.split(rope_cos_sin(grid, self.config.dim // self.config.num_heads, x.device), dim=0)
        tokens = parallel.split(tokens, dim=1)
        segments = frame_segments(*parallel.local_range(length), grid[1] * grid[2], grid[0])
        # 4. Blocks
        for block in self.blocks:
            tokens = block(tokens, e0, rope, context, audio_tokens, segments, parallel, attn)
        # 5. Head, gather, unpatchify
        out = parallel.gather(self.head(tokens, e), dim=1)  # float32 [B, L, prod(patch) * out_dim]
        return self._unpatchify(out, grid)

    def _check_input(self, x: torch.Tensor, audio: torch.Tensor) -> None:
        frames, height, width = x.shape[2:]
        pt, ph, pw = self.patch
        if frames % pt or height % ph or width % pw:
            raise ValueError(f"latent size {tuple(x.shape[2:])} is not a multiple of the patch {self.patch}")
        expected = 1 + self.config.vae_scale * (frames - 1)
        if audio.shape[1] != expected:
            raise ValueError(f"audio covers {audio.shape[1]} video frames; {frames} latent frames need {expected}")

    def _time_embedding(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t [B] -> (e float32 [B, dim], e0 float32 [B, 6, dim]), all in float32."""
        sinusoid = sinusoidal_embedding(self.config.freq_dim, t)
        first, _, second = self.time_embedding
        e = linear_fp32(second, torch.nn.functional.silu(linear_fp32(first, sinusoid)))
        e0 = linear_fp32(self.time_projection[1], torch.nn.functional.silu(e))
        return e, e0.unflatten(1, (6, self.config.dim))

    def _context(self, context: torch.Tensor, clip_fea: torch.Tensor) -> torch.Tensor:
        """T5 tokens [B, L<=text_len, text_dim] + CLIP tokens [B, 257, clip_dim] -> [B, 257 + text_len, dim]."""
        dtype = self.patch_embedding.weight.dtype
        missing = self.config.text_len - context.shape[1]
        if missing < 0:
            raise ValueError(f"{context.shape[1]} text tokens exceed text_len {self.config.text_len}")
        if clip_fea.shape[1] != CLIP_TOKENS:
            raise ValueError(f"expected {CLIP_TOKENS} CLIP tokens, got {clip_fea.shape[1]}")
        context = torch.nn.functional.pad(context.to(dtype), (0, 0, 0, missing))  # [B, text_len, text_dim]
        return torch.cat([self.img_emb(clip_fea.to(dtype)), self.text_embedding(context)], dim=1)

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B, f*h*w, pt*ph*pw*C] -> float32 [B, C, f*pt, h*ph, w*pw]."""
        b, (f, h, w), (pt, ph, pw) = x.shape[0], grid, self.patch
        c = self.config.out_dim
        x = x.view(b, f, h, w, pt, ph, pw, c)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, f, pt, h, ph, w, pw]
        return x.reshape(b, c, f * pt, h * ph, w * pw).float()
