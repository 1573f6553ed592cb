"""Load the DiT from the official folder onto its device, one block at a time.

The model is built on the meta device (no memory); the shards are memory-mapped once, and their
tensors are copied to the device part by part: first everything outside the blocks, then each
block, which `place_block` may then convert (FP8) or send to host memory (offload) before the
next one is read. So no full host copy of the 38 GB checkpoint is made, and the device never
holds more than the resident part plus one block.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.weights.checkpoint_validation import CheckpointError, dit_shard_files, meta_dit, validate_dit

BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
PlaceBlock = Callable[[int, nn.Module], None]  # (block index, block now on the device)


def load_dit(model_dir: Path, device: torch.device | str, dtype: torch.dtype = torch.bfloat16,
             attention_backend: str | None = None, place_block: PlaceBlock | None = None) -> FlashTalkDiT:
    """The DiT of `model_dir` in eval mode on `device` in `dtype`, attention kernel pinned.

    Validates the folder's DiT files first (headers only), so a bad download fails in seconds
    with a CheckpointError naming the file.
    """
    model_dir, device = Path(model_dir), torch.device(device)
    validate_dit(model_dir)
    model = meta_dit(model_dir)
    with ExitStack() as stack:
        files = [stack.enter_context(safe_open(str(shard), framework="pt", device="cpu"))
                 for shard in dit_shard_files(model_dir)]
        outside: dict[str, tuple] = {}
        per_block: dict[int, dict[str, tuple]] = {}
        for f in files:
            for name in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                match = BLOCK_KEY.fullmatch(name)
                target = per_block.setdefault(int(match[1]), {}) if match else outside
                target[match[2] if match else name] = (f, name)

        def read(names: dict[str, tuple]) -> dict[str, torch.Tensor]:
            return {key: f.get_tensor(name).to(device, dtype) for key, (f, name) in names.items()}

        model.load_state_dict(read(outside), strict=False, assign=True)
        for index, block in enumerate(model.blocks):
            block.load_state_dict(read(per_block.pop(index, {})), strict=False, assign=True)
            _check_loaded(model_dir, block, f"blocks.{index}.")
            block.eval().requires_grad_(False)
            if place_block is not None:
                place_block(index, block)
    _check_loaded(model_dir, model)
    model.eval().requires_grad_(False)
    model.set_attention_backend(attention_backend)
    return model


def _check_loaded(model_dir: Path, module: nn.Module, prefix: str = "") -> None:
    still_empty = [prefix + name for name, p in module.state_dict().items() if p.is_meta]
    if still_empty:
        raise CheckpointError(f"{model_dir}: {len(still_empty)} DiT tensors were not loaded "
                              f"(e.g. {still_empty[0]}) - download the folder again")
