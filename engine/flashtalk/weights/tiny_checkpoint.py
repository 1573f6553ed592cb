"""A tiny random FlashTalk checkpoint in exactly the official folder layout, for tests and demos.

`make_tiny(root)` writes `root/SoulX-FlashTalk-14B/` (DiT config.json, two bf16 safetensors
shards and their index, plus the tiny encoders, VAE and tokenizers) and
`root/chinese-wav2vec2-base/`. Everything that loads the official checkpoint loads this one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER, WAV2VEC_FOLDER
from engine.flashtalk.weights.dit_writer import write_dit
from engine.flashtalk.weights.tiny_encoders import random_state_dict, write_tiny_encoders

TINY_SHARDS = 2


def write_tiny_dit(model_dir: Path, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> None:
    """config.json + TINY_SHARDS safetensors shards + index json of a random tiny DiT."""
    config = FlashTalkDiT.tiny_config()
    with torch.device("meta"):
        model = FlashTalkDiT.from_config(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    write_dit(model_dir, config, random_state_dict(shapes, seed, dtype), dtype, shards=TINY_SHARDS)


def make_tiny(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a complete tiny checkpoint under `root`; -> (model_dir, wav2vec_dir)."""
    root = Path(root)
    model_dir, wav2vec_dir = root / MODEL_FOLDER, root / WAV2VEC_FOLDER
    write_tiny_dit(model_dir, seed)
    write_tiny_encoders(model_dir, wav2vec_dir, seed)
    return model_dir, wav2vec_dir
