"""Random weights for a module materialised from the meta device, stage by stage.

A network built on the meta device costs no memory; `materialize_random(stage, device)` gives one
stage (a block, an embedding) storage on `device` and the initial values its constructor would
draw, through every submodule's own `reset_parameters`. Random 14B benchmarks build their
networks this way one stage at a time, so a stage can move to host memory before the next exists.
"""
from __future__ import annotations

import torch
from torch import nn


def materialize_random(stage: nn.Module, device: torch.device | str) -> nn.Module:
    """Allocate `stage` on `device` (dtypes kept) and initialise it as its constructors do."""
    stage.to_empty(device=device)
    with torch.no_grad():
        for module in stage.modules():
            if not [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                continue
            reset = getattr(module, "reset_parameters", None)
            if reset is None:
                raise TypeError(f"{type(module).__name__} holds tensors but has no reset_parameters")
            reset()
    return stage
