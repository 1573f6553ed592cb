"""Write a DiT in the official folder layout: config.json, safetensors shards and their index.

The format diffusers' `ModelMixin.from_pretrained` reads and `load_dit` loads: shards named
diffusion_pytorch_model-0000i-of-0000n.safetensors, an index mapping every tensor to its shard.
Used for the tiny test checkpoint and for every checkpoint training exports.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.weights.checkpoint_layout import DIT_INDEX, dit_shard_name

MAX_SHARD_BYTES = 10 * 2**30  # diffusers' default shard size


def write_dit(model_dir: Path, config: dict, state: dict[str, torch.Tensor], dtype: torch.dtype,
              shards: int | None = None) -> None:
    """config.json + shards + index of `state` (a full FlashTalkDiT state dict) in `dtype`.

    `shards` fixes the shard count; by default shards hold at most MAX_SHARD_BYTES each.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        FlashTalkDiT.from_config(config).save_config(model_dir)
    names = list(state)
    total = sum(t.numel() * dtype.itemsize for t in state.values())
    count = shards or max(1, math.ceil(total / MAX_SHARD_BYTES))
    per_shard = -(-len(names) // count)
    weight_map = {}
    for i in range(count):
        filename = dit_shard_name(i + 1, count)
        part = {k: state[k].detach().to("cpu", dtype).contiguous() for k in names[i * per_shard:(i + 1) * per_shard]}
        save_file(part, str(model_dir / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, filename))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (model_dir / DIT_INDEX).write_text(json.dumps(index, indent=2), encoding="utf-8")
