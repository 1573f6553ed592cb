"""--precision: which one runs here, its weight dtype, and a refusal before loading for one that cannot."""
from __future__ import annotations

import torch

from engine.flashtalk.model.fp8_linear import scaled_mm_supported
from engine.flashtalk.runtime.errors import FlashTalkUnavailable
from engine.protocol.engine_options import Precision, default_precision

# DiT/VAE weight dtype per precision. fp32 is for reference checks (slow, twice the memory):
# bf16 rounding hides wiring bugs when comparing multi-rank against one rank. fp8 stores bf16
# weights and quantizes the DiT's linear layers after loading.
PRECISION_DTYPES = {Precision.BF16: torch.bfloat16, Precision.FP8: torch.bfloat16, Precision.FP32: torch.float32}


def resolve_precision(asked: str | None, device: torch.device) -> Precision:
    """The precision to run: the one asked for, else this device's default. Refuses, before
    loading 38 GB, one this device cannot run fast."""
    if asked is None:
        return default_precision(device.type)
    if asked not in PRECISION_DTYPES:
        raise FlashTalkUnavailable(f"unknown --precision {asked!r}: use one of {', '.join(PRECISION_DTYPES)}")
    if asked == Precision.FP8 and device.type == "cuda" and not scaled_mm_supported(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise FlashTalkUnavailable(f"--precision fp8 needs FP8 tensor cores (compute capability 8.9+: Ada, "
                                   f"Hopper); this GPU is {major}.{minor}: use --precision bf16")
    return Precision(asked)
