"""Defaults and choices of the engine's start-up options that the studio needs too.

The engine's options (`BackendOptions`, its command line, the doctor) and the studio's engine
panel take them from here, the one module of the engine the studio may import.
"""
from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    """Weights and compute of the flashtalk DiT."""

    BF16 = "bf16"
    FP8 = "fp8"
    FP32 = "fp32"  # reference checks (sequence-parallel against one rank)


DEFAULT_PRECISION = Precision.BF16
DEFAULT_GPUS = 1  # GPUs for one session (flashtalk); more run the engine under torchrun
MIN_GPUS = 1
