"""Loading an official `.pth` checkpoint and checking its keys against the expected layout."""
from __future__ import annotations

from pathlib import Path

import torch

Shapes = dict[str, tuple[int, ...]]


def load_official_pth(path: str | Path, expected_name: str) -> dict[str, torch.Tensor]:
    """Plain tensors only (weights_only), memory-mapped so a 10 GB file costs no RAM up front."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (expected {expected_name})")
    try:
        return torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except Exception as error:  # torch raises several types for a damaged or foreign file
        raise ValueError(f"cannot read {path} as a PyTorch state dict: {error}".splitlines()[0]) from None


def describe_key_mismatch(sd: dict[str, torch.Tensor], expected: Shapes) -> str:
    """'' when `sd` has exactly the expected keys and shapes, else a one-line summary."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(sd) & set(expected) if tuple(sd[k].shape) != expected[k])
    return "; ".join(f"{len(names)} {what} (e.g. {names[0]})"
                     for what, names in (("missing keys", missing), ("unexpected keys", unexpected),
                                         ("keys with wrong shapes", wrong)) if names)
