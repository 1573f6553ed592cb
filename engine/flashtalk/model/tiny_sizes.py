"""Sizes of the tiny random encoder checkpoints, in one place so the tiny DiT config can match them.

The tiny files keep the official layout (same key names, same file names); every loader reads its
sizes back from the tensors' shapes, so only the sizes the DiT consumes must agree with its config.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinySizes:
    # CLIP vision tower: the DiT's img_emb takes [B, clip_tokens, clip_dim].
    clip_dim: int = 160            # 2 heads of 80 (the ViT-H/14 head width, see clip.CLIP_HEAD_DIM)
    clip_layers: int = 3           # the encoder uses the output of the first clip_layers - 1 blocks
    clip_tokens: int = 257         # 1 class token + (224 / 14)^2 patches, as in the 14B model
    clip_embed_dim: int = 32       # CLIP joint embedding (head / textual tower output; unused by FlashTalk)
    clip_text_dim: int = 32
    clip_text_layers: int = 1
    clip_text_max_len: int = 514
    # umT5 encoder: the DiT's text_embedding takes [B, text_len, t5_dim].
    t5_dim: int = 64
    t5_heads: int = 4
    t5_ffn_dim: int = 128
    t5_layers: int = 2
    t5_vocab: int = 256            # >= the tiny tokenizer's vocabulary
    text_len: int = 512            # prompts are padded to this many tokens (same as the 14B model)
    # wav2vec2: the DiT's audio_proj takes windows of [5, wav2vec_layers, wav2vec_dim].
    wav2vec_layers: int = 2
    wav2vec_dim: int = 32
    wav2vec_heads: int = 2
    wav2vec_ffn_dim: int = 64
    wav2vec_conv_dim: int = 16
    # VAE: z_dim is fixed at 16 by the DiT's in_dim 36 = 16 noise + 4 mask + 16 condition.
    vae_base_dim: int = 8
    vae_z_dim: int = 16


TINY = TinySizes()
