"""torch.compile for the DiT, block by block (regional compilation).

Every block's `forward` is compiled on its own. The 40 blocks share one code object and, with
parameters as graph inputs, one graph per chunk length: a cold start compiles one block instead of
the whole unrolled model (issue 14: the whole-model graph's cold warm-up had not finished after
380 s on one H200), the compile cache holds a few small graphs, and block hooks (offload
streaming) run eagerly around each compiled block. The embeddings and the head stay eager (well
under 1 % of a chunk). Static shapes (dynamic=False): a live session's short first chunk gets its
own graph, and no chunk length turns the sequence length symbolic (slower kernels, recompiles).
Measured on the CPU with the tiny DiT: one graph for all blocks, no recompiles when a block's
tensors are re-pointed between host and device buffers.
"""
from __future__ import annotations

import torch

from engine.flashtalk.model.dit import FlashTalkDiT


def compile_dit_blocks(dit: FlashTalkDiT) -> None:
    """Compile each block's forward in place (hooks, names and state-dict keys unchanged)."""
    for block in dit.blocks:
        block.forward = torch.compile(block.forward, dynamic=False)
