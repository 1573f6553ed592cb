"""Out of memory, however torch reports it, becomes one FlashTalkOutOfMemory with what to change."""
from __future__ import annotations

import re
import traceback
from contextlib import contextmanager

import torch

from engine.flashtalk.runtime.errors import FlashTalkError, FlashTalkOutOfMemory


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's RuntimeError and MemoryError all mean one thing.

    oneDNN (CPU convolutions) reports a failed scratchpad or JIT-code allocation only as "could
    not create a primitive": its implementation was already found (that step fails with "... a
    primitive descriptor ..."), so what is left to fail is memory.
    """
    if isinstance(exc, FlashTalkError):
        return False
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "ALLOC_FAILED" in text
                                              or text.strip() == "could not create a primitive")


def out_of_memory_error(exc: BaseException, device: torch.device) -> FlashTalkOutOfMemory:
    """One line with what to change. Drops the failed call's frames first, so the tensors they
    still hold are freed before the next session starts."""
    traceback.clear_frames(exc.__traceback__)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    size = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]?i?B|\d+ bytes)", str(exc))
    failed = f" ({readable_size(size.group(1))} could not be allocated)" if size else ""
    return FlashTalkOutOfMemory(f"out of {'GPU' if device.type == 'cuda' else 'CPU'} memory{failed}: lower the "
                                "resolution (--size, or the session's width and height), use --precision fp8 "
                                "or --offload auto (with --gpu-memory GB), or spread the model over more GPUs "
                                "(--gpus N)")


def readable_size(amount: str) -> str:
    """'12884901888 bytes' -> '12.0 GiB', '5242880 bytes' -> '5.0 MiB'; CUDA's '2.00 GiB' stays."""
    if not amount.endswith(" bytes"):
        return amount
    size = int(amount.split()[0])
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


@contextmanager
def memory_errors_are_clear(device: torch.device):
    """Out of memory anywhere inside becomes FlashTalkOutOfMemory, never an internal error."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise out_of_memory_error(exc, device) from None
