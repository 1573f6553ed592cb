"""The one attention entry point of the DiT, with the kernel chosen explicitly once.

Every attention call (self, text/image cross, audio) goes through `attention(q, k, v, backend=)`.
Backends: the PyTorch SDPA kernels by name ("cudnn", "flash", "efficient", "math") and the
flash-attn package ("flash_attn": FA3's `flash_attn_interface` if installed, else FA2). On Hopper
the SDPA cuDNN kernel is the fastest we measured (610 TFLOP/s at L=12096, flash 355, efficient
178), so it is the CUDA default; the CPU default is "math". Probing runs on first use, never at
import time.
"""
from __future__ import annotations

import functools
import importlib
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SDPA_BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
FLASH_ATTN = "flash_attn"
BACKENDS = (*SDPA_BACKENDS, FLASH_ATTN)
CUDA_PREFERENCE = ("cudnn", "flash", "efficient", "math")  # fastest first (measured on H100)
CPU_DEFAULT = "math"


class AttentionBackendError(ValueError):
    """An attention backend that does not exist or does not run here; str() is one line."""


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """Unmasked softmax attention, scale 1/sqrt(D).

    q [B, Lq, H, D], k/v [B, Lk, H, D] -> [B, Lq, H, D] in q's dtype. backend=None lets PyTorch
    pick an SDPA kernel (use `choose_backend` once and pass its result for pinned kernels).
    """
    if backend == FLASH_ATTN:
        return _flash_attn_func()(q, k, v)
    context = nullcontext() if backend is None else sdpa_kernel(SDPA_BACKENDS[backend])
    with context:
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)  # [B, H, Lq, D] -> [B, Lq, H, D]


@functools.cache
def _flash_attn_func():
    """flash_attn_func taking [B, L, H, D]: FA3 (Hopper) if installed, else FA2."""
    for module_name in ("flash_attn_interface", "flash_attn"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        func = module.flash_attn_func
        if module_name == "flash_attn_interface":
            return lambda q, k, v: _first(func(q, k, v))
        return func
    raise AttentionBackendError("attention backend 'flash_attn' needs the flash-attn package: "
                                "pip install 'flashtalk-studio[cuda]', or pick another backend")


def _first(result):
    """Some FA3 releases return (out, softmax_lse); others only out."""
    return result[0] if isinstance(result, tuple) else result


def default_dtype(device: torch.device) -> torch.dtype:
    """The dtype a model runs in on `device` when none is given: bf16 on a GPU, fp32 on a CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@functools.cache
def _backend_runs(name: str, device_type: str, device_index: int | None, dtype: torch.dtype) -> bool:
    """Run a tiny attention in `dtype` with the backend pinned; False if the kernel does not run.

    The probe runs in the model's own dtype: cuDNN runs bf16 but has no fp32 kernel. Any failure of
    a candidate (a missing kernel, an old or foreign flash-attn build without flash_attn_func, ...)
    means "not here", never an error of its own.
    """
    device = torch.device(device_type, device_index) if device_index is not None else torch.device(device_type)
    q = torch.randn(1, 16, 2, 64, device=device, dtype=dtype)
    try:
        attention(q, q, q, backend=name)
    except Exception:  # noqa: BLE001 - whatever a candidate raises, it does not run here
        return False
    return True


def available_backends(device: torch.device | str, dtype: torch.dtype | None = None) -> list[str]:
    """Backends that run on `device` in `dtype` (default: default_dtype), in preference order."""
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    names = CUDA_PREFERENCE + (FLASH_ATTN,) if device.type == "cuda" else (CPU_DEFAULT, "flash", "efficient")
    return [n for n in names if _backend_runs(n, device.type, device.index, dtype)]


def choose_backend(name: str | None, device: torch.device | str, dtype: torch.dtype | None = None) -> str:
    """The backend to pin for a model in `dtype` on `device`: `name` if it runs there, else the
    fastest that does.

    Raises AttentionBackendError (one line) for an unknown name or one that cannot run here.
    """
    device = torch.device(device)
    if name is not None and name not in BACKENDS:
        raise AttentionBackendError(f"unknown attention backend {name!r}: choose one of {', '.join(BACKENDS)}")
    runnable = available_backends(device, dtype)
    if name is None:
        if not runnable:
            raise AttentionBackendError(f"no attention kernel runs on {device}")
        return runnable[0]
    if name not in runnable:
        raise AttentionBackendError(f"attention backend {name!r} does not run on {device} in "
                                    f"{str(dtype or default_dtype(device)).removeprefix('torch.')}: "
                                    f"available here: {', '.join(runnable) or 'none'}")
    return name
