"""The Wan VAE in channels_last_3d (NDHWC) against contiguous NCDHW on one GPU: time and error.

Run on the GPU machine: `python3 scripts/gpu/vae_layout_check.py --out $OUT/vae_layout.json`;
`--tiny --device cpu` runs the same procedure on the tiny test VAE at 64x48 (a smoke test).
The VAE is built at the 14B model's config (base_dim 96, z_dim 16) with diffusers' random
initialisation, once in float32, then cast to bf16; the same weights run in both layouts (the
layout is re-applied in place). Per layout, eager, median of --repeats after --warmups:
- decode of one 33-frame chunk's latents at 448x768 (width x height): [1, 16, 9, 96, 56];
- encode of the 5 motion frames: [1, 3, 5, 768, 448].
Errors are relative L2 of channels_last_3d against contiguous (both bf16); for scale, bf16
contiguous against float32 contiguous (the bf16 rounding the VAE has anyway). One untimed pass
with hooks counts the convolutions whose input arrives with channels not innermost in the
channels_last_3d run (each such input costs cuDNN a transpose) and names them.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.flashtalk.model.tiny_sizes import TINY  # noqa: E402
from engine.flashtalk.model.vae import WanVAE, WanVAEConfig, build_diffusers_vae  # noqa: E402

DTYPE = torch.bfloat16
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
CHUNK_FRAMES, MOTION_FRAMES = 33, 5
FULL_HW, TINY_HW = (768, 448), (64, 48)  # (height, width) in pixels
SPATIAL_STRIDE, TEMPORAL_STRIDE = 8, 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON report file")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="the tiny test VAE at 64x48 (smoke test)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmups", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def inputs(tiny: bool, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents [1, 16, 9, h, w] of one chunk, motion video [1, 3, 5, H, W] in [-1, 1])."""
    height, width = TINY_HW if tiny else FULL_HW
    g = torch.Generator(device=device).manual_seed(seed)
    latent_frames = 1 + (CHUNK_FRAMES - 1) // TEMPORAL_STRIDE
    latents = torch.randn(1, 16, latent_frames, height // SPATIAL_STRIDE, width // SPATIAL_STRIDE,
                          generator=g, device=device)
    motion = torch.rand(1, 3, MOTION_FRAMES, height, width, generator=g, device=device) * 2 - 1
    return latents, motion


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, warmups: int, repeats: int) -> tuple[float, list[float]]:
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), [round(t, 2) for t in times]


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def ncdhw_conv_inputs(vae: WanVAE, latents: torch.Tensor, motion: torch.Tensor) -> tuple[Counter, int]:
    """Convolution calls (by module name) whose input has channels not innermost, and all calls."""
    drops, calls = Counter(), [0]

    def hook(name):
        def check(module, args):
            x = args[0]
            calls[0] += 1
            if x.shape[1] > 1 and x.stride(1) != 1:
                drops[name] += 1
        return check

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in vae.model.named_modules()
               if isinstance(m, torch.nn.Conv3d | torch.nn.Conv2d)]
    try:
        vae.decode(latents)
        vae.encode(motion)
    finally:
        for h in handles:
            h.remove()
    return drops, calls[0]


def measure_layout(vae: WanVAE, latents, motion, args, device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    decode_ms, decode_all = median_ms(lambda: vae.decode(latents), device, args.warmups, args.repeats)
    encode_ms, encode_all = median_ms(lambda: vae.encode(motion), device, args.warmups, args.repeats)
    report = {"decode_ms": round(decode_ms, 2), "encode_ms": round(encode_ms, 2),
              "decode_ms_all": decode_all, "encode_ms_all": encode_all}
    if device.type == "cuda":
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    return report, vae.decode(latents), vae.encode(motion)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    config = WanVAEConfig(base_dim=TINY.vae_base_dim) if args.tiny else WanVAEConfig()
    with torch.device(device):
        fp32_model = build_diffusers_vae(config)
    model = copy.deepcopy(fp32_model).to(DTYPE)
    latents, motion = inputs(args.tiny, device, args.seed)

    reference = WanVAE(fp32_model, device, torch.contiguous_format)
    fp32_video, fp32_latents = reference.decode(latents), reference.encode(motion)
    del reference, fp32_model

    layouts, outputs = {}, {}
    for name, memory_format in LAYOUTS.items():
        vae = WanVAE(model, device, memory_format)  # lays the shared weights out in place
        layouts[name], video, latent = measure_layout(vae, latents, motion, args, device)
        outputs[name] = (video, latent)
    drops, calls = ncdhw_conv_inputs(vae, latents, motion)  # vae: the channels_last_3d one

    (plain_video, plain_latents), (nd_video, nd_latents) = outputs["contiguous"], outputs["channels_last_3d"]
    contiguous_ms, nd_ms = layouts["contiguous"], layouts["channels_last_3d"]
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "vae_config": {"base_dim": config.base_dim, "z_dim": config.z_dim}, "dtype": str(DTYPE),
        "decode_latents": list(latents.shape), "encode_video": list(motion.shape),
        "warmups": args.warmups, "repeats": args.repeats,
        "layouts": layouts,
        "decode_speedup": round(contiguous_ms["decode_ms"] / nd_ms["decode_ms"], 3),
        "encode_speedup": round(contiguous_ms["encode_ms"] / nd_ms["encode_ms"], 3),
        "decode_rel_l2_channels_last_vs_contiguous": rel_l2(nd_video, plain_video),
        "encode_rel_l2_channels_last_vs_contiguous": rel_l2(nd_latents, plain_latents),
        "decode_rel_l2_bf16_vs_fp32": rel_l2(plain_video, fp32_video),
        "encode_rel_l2_bf16_vs_fp32": rel_l2(plain_latents, fp32_latents),
        "decoded_fraction_clamped": float((plain_video.abs() >= 1).float().mean()),
        "channels_last_conv_calls": calls,
        "channels_last_ncdhw_conv_inputs": dict(drops.most_common()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "channels_last_ncdhw_conv_inputs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
