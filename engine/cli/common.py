"""Options and errors shared by the `flashtalk` sub-commands."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.backends import DEFAULT_BACKEND, backend_names
from engine.backends.base import BackendOptions
from engine.flashtalk.runtime.memory_plan import AUTO, OFFLOAD_CHOICES


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                        help="puppet: CPU, no weights; flashtalk: the diffusion model (GPU)")
    parser.add_argument("--model", type=Path, help="SoulX-FlashTalk-14B folder (flashtalk backend)")
    parser.add_argument("--wav2vec", type=Path,
                        help="chinese-wav2vec2-base folder (default: beside --model)")
    parser.add_argument("--device", help="torch device for flashtalk, e.g. cuda:0 or cpu")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs for one session (flashtalk)")
    parser.add_argument("--precision", choices=["bf16", "fp8", "fp32"], default="bf16")
    parser.add_argument("--offload", choices=OFFLOAD_CHOICES, default=BackendOptions.offload, nargs="?",
                        const=AUTO, help="flashtalk: what waits in host memory: none, encoders (umT5, CLIP), "
                        "blocks (+ DiT blocks stream), all (+ VAE, wav2vec2); auto (the default of a bare "
                        "--offload): the least that fits --gpu-memory")
    parser.add_argument("--gpu-memory", type=float, metavar="GB", dest="gpu_memory_gb",
                        help="flashtalk: GiB the engine may allocate per GPU (caps torch's allocator; "
                             "default: no cap)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT and VAE")
    parser.add_argument("--rank-timeout", type=float, default=BackendOptions.rank_timeout_s, metavar="S",
                        help="with --gpus N: end the engine when a rank hangs this many seconds")
    parser.add_argument("--attention", help="flashtalk attention kernel: cudnn, flash, efficient, "
                        "math, flash_attn (default: the fastest that runs here)")


def backend_options(args: argparse.Namespace) -> BackendOptions:
    if args.gpus < 1:
        raise UserError("--gpus must be at least 1")
    if not args.rank_timeout > 0:
        raise UserError("--rank-timeout must be a positive number of seconds")
    if args.gpu_memory_gb is not None and not args.gpu_memory_gb > 0:
        raise UserError("--gpu-memory must be a positive number of GiB, e.g. 22")
    return BackendOptions(model_dir=args.model, wav2vec_dir=args.wav2vec, device=args.device,
                          gpus=args.gpus, precision=args.precision, offload=args.offload,
                          gpu_memory_gb=args.gpu_memory_gb,
                          compile=args.compile, attention=args.attention,
                          random_weights=getattr(args, "random_weights", None),
                          rank_timeout_s=args.rank_timeout)


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT, e.g. 512x512") from None
    return w, h
