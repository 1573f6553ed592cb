"""Options and errors shared by the `flashtalk` sub-commands."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.backends import DEFAULT_BACKEND, backend_names
from engine.backends.base import BackendOptions


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
    parser.add_argument("--precision", choices=["bf16", "fp8", "fp32"], default=BackendOptions.precision,
                        help="flashtalk weights and compute (default: bf16 on a GPU, fp32 on a CPU)")
    parser.add_argument("--offload", action="store_true",
                        help="keep idle flashtalk modules on the CPU (fits 48 GB cards, slower)")
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
    return BackendOptions(model_dir=args.model, wav2vec_dir=args.wav2vec, device=args.device,
                          gpus=args.gpus, precision=args.precision, offload=args.offload,
                          compile=args.compile, attention=args.attention,
                          random_weights=getattr(args, "random_weights", None),
                          rank_timeout_s=args.rank_timeout)


MAX_SIDE = 16384  # pixels: beyond every backend's limit, and far inside what the wire's integers carry


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT, e.g. 512x512") from None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise UserError(f"--size {text}: width and height must be 1 to {MAX_SIDE} pixels, e.g. 512x512")
    return w, h
