"""A tiny random FlashTalk checkpoint in exactly the official folder layout, for tests and demos.

`make_tiny(root)` writes `root/SoulX-FlashTalk-14B/` (DiT config.json, two bf16 safetensors
shards and their index, plus the tiny encoders, VAE and tokenizers) and
`root/chinese-wav2vec2-base/`. Everything that loads the official checkpoint loads this one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.weights.checkpoint_layout import DIT_INDEX, MODEL_FOLDER, WAV2VEC_FOLDER, dit_shard_name
from engine.flashtalk.weights.tiny_encoders import random_state_dict, write_tiny_encoders

TINY_SHARDS = 2


def write_tiny_dit(model_dir: Path, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> None:
    """config.json + TINY_SHARDS safetensors shards + index json of a random tiny DiT."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        model = FlashTalkDiT.from_config(FlashTalkDiT.tiny_config())
    model.save_config(model_dir)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = random_state_dict(shapes, seed, dtype)
    names = list(state)
    per_shard = -(-len(names) // TINY_SHARDS)
    weight_map = {}
    for i in range(TINY_SHARDS):
        filename = dit_shard_name(i + 1, TINY_SHARDS)
        part = {k: state[k].contiguous() for k in names[i * per_shard:(i + 1) * per_shard]}
        save_file(part, str(model_dir / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, filename))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (model_dir / DIT_INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")


def make_tiny(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a complete tiny checkpoint under `root`; -> (model_dir, wav2vec_dir)."""
    root = Path(root)
    model_dir, wav2vec_dir = root / MODEL_FOLDER, root / WAV2VEC_FOLDER
    write_tiny_dit(model_dir, seed)
    write_tiny_encoders(model_dir, wav2vec_dir, seed)
    return model_dir, wav2vec_dir
