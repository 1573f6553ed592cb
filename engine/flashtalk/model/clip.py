"""CLIP ViT-H/14 vision tower of `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`.

FlashTalk conditions on the image tokens after the first 31 of the 32 transformer blocks (no
post-norm, no head): [B, 257, 1280]. Module names follow the official checkpoint's `visual.*` keys,
so its tensors load without renaming; the file's text tower (`textual.*`, `log_scale`) is unused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.flashtalk.model.state_dict_check import Shapes, describe_key_mismatch, load_official_pth

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_HEAD_DIM = 80      # ViT-H/14: 1280 / 16 heads; the head count is read back as dim / 80
LAYER_NORM_EPS = 1e-5
VISUAL_PREFIX = "visual."
CLIP_CHECKPOINT_NAME = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"


@dataclass(frozen=True)
class CLIPVisualConfig:
    dim: int = 1280
    layers: int = 32
    mlp_dim: int = 5120
    patch_size: int = 14
    image_size: int = 224
    embed_dim: int = 1024   # CLIP joint embedding width (shape of `visual.head`)

    @property
    def heads(self) -> int:
        return self.dim // CLIP_HEAD_DIM

    @property
    def tokens(self) -> int:
        return 1 + (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class CLIPTextualConfig:
    """XLM-RoBERTa-large text tower sizes; only used to check and to write the checkpoint layout."""
    vocab: int = 250002
    max_len: int = 514
    dim: int = 1024
    layers: int = 24
    embed_dim: int = 1024


def official_clip_visual_key_shapes(config: CLIPVisualConfig = CLIPVisualConfig()) -> Shapes:
    """Every `visual.*` key of the official CLIP checkpoint -> its tensor shape."""
    d, p = config.dim, config.patch_size
    out: Shapes = {
        "visual.patch_embedding.weight": (d, 3, p, p),
        "visual.cls_embedding": (1, 1, d),
        "visual.pos_embedding": (1, config.tokens, d),
        "visual.head": (d, config.embed_dim),
    }
    for norm in ("pre_norm", "post_norm"):
        out[f"visual.{norm}.weight"] = out[f"visual.{norm}.bias"] = (d,)
    for i in range(config.layers):
        b = f"visual.transformer.{i}"
        for name, (rows, cols) in {"attn.to_qkv": (3 * d, d), "attn.proj": (d, d),
                                   "mlp.0": (config.mlp_dim, d), "mlp.2": (d, config.mlp_dim)}.items():
            out[f"{b}.{name}.weight"], out[f"{b}.{name}.bias"] = (rows, cols), (rows,)
        for norm in ("norm1", "norm2"):
            out[f"{b}.{norm}.weight"] = out[f"{b}.{norm}.bias"] = (d,)
    return out


def official_clip_textual_key_shapes(config: CLIPTextualConfig = CLIPTextualConfig()) -> Shapes:
    """The `textual.*` and `log_scale` keys of the official CLIP checkpoint -> shapes."""
    d = config.dim
    mid = (d + config.embed_dim) // 2
    out: Shapes = {
        "log_scale": (),
        "textual.token_embedding.weight": (config.vocab, d),
        "textual.type_embedding.weight": (1, d),
        "textual.pos_embedding.weight": (config.max_len, d),
        "textual.norm.weight": (d,), "textual.norm.bias": (d,),
        "textual.head.0.weight": (mid, d), "textual.head.2.weight": (config.embed_dim, mid),
    }
    for i in range(config.layers):
        b = f"textual.blocks.{i}"
        for name, (rows, cols) in {"attn.q": (d, d), "attn.k": (d, d), "attn.v": (d, d),
                                   "attn.o": (d, d), "ffn.0": (4 * d, d), "ffn.2": (d, 4 * d)}.items():
            out[f"{b}.{name}.weight"], out[f"{b}.{name}.bias"] = (rows, cols), (rows,)
        for norm in ("norm1", "norm2"):
            out[f"{b}.{norm}.weight"] = out[f"{b}.{norm}.bias"] = (d,)
    return out


def clip_visual_config_from_state_dict(sd: dict[str, torch.Tensor]) -> CLIPVisualConfig:
    """Read the vision tower's sizes back from the checkpoint's tensor shapes."""
    try:
        dim, _, patch, _ = sd["visual.patch_embedding.weight"].shape
        tokens = sd["visual.pos_embedding"].shape[1]
        mlp_dim = sd["visual.transformer.0.mlp.0.weight"].shape[0]
        embed_dim = sd["visual.head"].shape[1]
    except KeyError as missing:
        raise ValueError(f"not a CLIP checkpoint: no {missing.args[0]}") from None
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("visual.transformer."))
    grid = math.isqrt(tokens - 1)
    return CLIPVisualConfig(dim=dim, layers=layers, mlp_dim=mlp_dim, patch_size=patch,
                            image_size=grid * patch, embed_dim=embed_dim)


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input dtype (as the reference does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(),
                            self.bias.float(), self.eps).type_as(x)


class CLIPSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, C] -> [B, L, C]."""
        b, n, c = x.shape
        # [B, L, 3C] -> [3, B, H, L, C/H]
        qkv = self.to_qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))  # [B, H, L, C/H] -> [B, L, C]


class CLIPBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = CLIPSelfAttention(dim, heads)
        self.norm2 = FP32LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CLIPVisual(nn.Module):
    """Patch embedding + class token + pre-norm + all transformer blocks but the last."""

    def __init__(self, config: CLIPVisualConfig = CLIPVisualConfig()):
        super().__init__()
        self.config = config
        d = config.dim
        self.patch_embedding = nn.Conv2d(3, d, config.patch_size, stride=config.patch_size, bias=False)
        self.cls_embedding = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = nn.Parameter(torch.zeros(1, config.tokens, d))
        self.pre_norm = FP32LayerNorm(d, eps=LAYER_NORM_EPS)
        self.transformer = nn.ModuleList(
            CLIPBlock(d, config.heads, config.mlp_dim) for _ in range(config.layers - 1))

    @classmethod
    def from_official(cls, path: str | Path, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float16) -> CLIPVisual:
        sd = load_official_pth(path, CLIP_CHECKPOINT_NAME)
        return cls.from_state_dict(sd, device, dtype, source=str(path))

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float16, source: str = "CLIP state dict") -> CLIPVisual:
        config = clip_visual_config_from_state_dict(sd)
        problem = _describe_clip_mismatch(sd, config)
        if problem:
            raise ValueError(f"{source} is not an open-clip XLM-RoBERTa ViT-H/14 checkpoint: {problem}")
        last = f"{VISUAL_PREFIX}transformer.{config.layers - 1}."
        unused = (last, "visual.post_norm.", "visual.head")
        visual = {k[len(VISUAL_PREFIX):]: v.to(dtype) for k, v in sd.items()
                  if k.startswith(VISUAL_PREFIX) and not k.startswith(unused)}
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(visual, strict=True, assign=True)
        return model.eval().requires_grad_(False).to(device)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1] -> [B, 3, 224, 224] CLIP-normalised, in the input dtype."""
        size = (self.config.image_size,) * 2
        x = F.interpolate(image, size=size, mode="bicubic", align_corners=False)  # squash, no crop
        x = x * 0.5 + 0.5
        mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1] -> tokens [B, 257, dim] in the tower's dtype."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W], got {tuple(image.shape)}")
        weight = self.patch_embedding.weight
        x = self.preprocess(image.to(weight.device)).to(weight.dtype)
        x = self.patch_embedding(x).flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]
        x = torch.cat([self.cls_embedding.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pre_norm(x + self.pos_embedding)
        for block in self.transformer:
            x = block(x)
        return x


def _describe_clip_mismatch(sd: dict[str, torch.Tensor], config: CLIPVisualConfig) -> str:
    """'' when the visual keys match exactly and the text tower keys are present."""
    visual = {k: v for k, v in sd.items() if k.startswith(VISUAL_PREFIX)}
    problem = describe_key_mismatch(visual, official_clip_visual_key_shapes(config))
    problems = [problem] if problem else []
    if "log_scale" not in sd or not any(k.startswith("textual.") for k in sd):
        problems.append("no text tower (textual.*, log_scale)")
    if config.dim % CLIP_HEAD_DIM:
        problems.append(f"width {config.dim} is not a multiple of the head width {CLIP_HEAD_DIM}")
    return "; ".join(problems)
