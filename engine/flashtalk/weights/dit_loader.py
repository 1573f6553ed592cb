"""Load the DiT from the official folder straight onto its device, one shard at a time.

The model is built on the meta device (no memory), then every safetensors shard is opened with
its tensors placed directly on the target device and assigned into the model. No full host copy of the
38 GB checkpoint is made: safetensors maps each file and copies its tensors to the device.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.weights.checkpoint_validation import CheckpointError, dit_shard_files, meta_dit, validate_dit


def load_dit(model_dir: Path, device: torch.device | str, dtype: torch.dtype = torch.bfloat16,
             attention_backend: str | None = None) -> FlashTalkDiT:
    """The DiT of `model_dir` in eval mode on `device` in `dtype`, attention kernel pinned.

    Validates the folder's DiT files first (headers only), so a bad download fails in seconds
    with a CheckpointError naming the file.
    """
    model_dir, device = Path(model_dir), torch.device(device)
    validate_dit(model_dir)
    model = meta_dit(model_dir)
    for shard in dit_shard_files(model_dir):
        with safe_open(str(shard), framework="pt", device=str(device)) as f:
            tensors = {name: f.get_tensor(name).to(dtype) for name in f.keys()}  # noqa: SIM118
        model.load_state_dict(tensors, strict=False, assign=True)
        del tensors
    still_empty = [name for name, p in model.state_dict().items() if p.is_meta]
    if still_empty:
        raise CheckpointError(f"{model_dir}: {len(still_empty)} DiT tensors were not loaded "
                              f"(e.g. {still_empty[0]}) - download the folder again")
    model.eval().requires_grad_(False)
    model.set_attention_backend(attention_backend)
    return model
