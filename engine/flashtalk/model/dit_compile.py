"""torch.compile for the DiT: the whole model, or each block on its own (regional).

Whole: one graph for the forward (the fastest where nothing hooks into the blocks). Regional:
every block's `forward` is compiled; the 40 blocks share one code object and, with parameters as
graph inputs, one graph, so compiling costs one block's graph instead of the whole model's, and
block hooks (offload streaming) run eagerly around each compiled block. Measured on the CPU with
the tiny DiT: one graph for all blocks, no recompiles when a block's tensors are re-pointed
between host and device buffers.
"""
from __future__ import annotations

import torch

from engine.flashtalk.model.dit import FlashTalkDiT


def compile_dit_blocks(dit: FlashTalkDiT) -> None:
    """Compile each block's forward in place (hooks, names and state-dict keys unchanged)."""
    for block in dit.blocks:
        block.forward = torch.compile(block.forward, dynamic=False)  # static: one graph per chunk length


def dit_blocks_are_compiled(dit: FlashTalkDiT) -> bool:
    return all(hasattr(block.forward, "_torchdynamo_orig_callable") for block in dit.blocks)
