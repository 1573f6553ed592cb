"""Multi-GPU check: one 14B-shaped DiT forward on 1 GPU vs N GPUs, and per-chunk DiT / VAE times.

Run on the device machine (random weights, no download):
    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc-per-node N scripts/gpu/sp_check.py --out sp.json
Every rank builds the same random bf16 model from one seed (checked by a checksum); rank 0 also
runs the forward alone as the reference. Rank 0 writes the JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.backends.base import BackendOptions
from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.vae import WanVAE, WanVAEConfig, build_diffusers_vae
from engine.flashtalk.parallel.parallel_vae import ParallelVAE
from engine.flashtalk.parallel.process_group import (
    close_rank_world,
    init_rank_world,
    sequence_parallel_groups,
)
from engine.flashtalk.parallel.usp import UnifiedSequenceParallel

DTYPE = torch.bfloat16


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON result path (written by rank 0)")
    p.add_argument("--size", default="448x768", help="WIDTHxHEIGHT of the video (default 448x768)")
    p.add_argument("--frames", type=int, default=33, help="video frames per chunk (4k+1)")
    p.add_argument("--ulysses", type=int, help="force the Ulysses degree (1 = ring attention only)")
    p.add_argument("--attention", help="local attention kernel (default: fastest that runs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def timed_ms(fn, repeats: int, group=None) -> tuple[float, object]:
    """Median wall time of fn() over `repeats` runs after one warm-up, all ranks in step."""
    out, times = fn(), []
    for _ in range(repeats):
        if group is not None:
            dist.barrier(group)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2], out


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


def build_dit(seed: int, device: torch.device) -> FlashTalkDiT:
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        with device:
            return FlashTalkDiT(**FlashTalkDiT.official_config()).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(old)


def dit_inputs(dit: FlashTalkDiT, frames: int, height: int, width: int, device: torch.device) -> dict:
    c, g = dit.config, torch.Generator(device).manual_seed(1234)
    f = (frames - 1) // 4 + 1
    return {"x": torch.randn(1, c.in_dim, f, height // 8, width // 8, generator=g, device=device, dtype=DTYPE),
            "t": torch.tensor([937.5], device=device),
            "context": torch.randn(1, c.text_len, c.text_dim, generator=g, device=device, dtype=DTYPE),
            "clip_fea": torch.randn(1, 257, c.clip_dim, generator=g, device=device, dtype=DTYPE),
            "audio": torch.randn(1, frames, c.audio_window, c.audio_layers, c.audio_dim, generator=g,
                                 device=device, dtype=DTYPE)}


def weight_checksum_agrees(dit: FlashTalkDiT, device: torch.device) -> bool:
    total = torch.stack([p.float().sum() for p in dit.parameters()]).sum().reshape(1).to(device)
    sums = [torch.empty_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(sums, total)
    return all(torch.equal(s, sums[0]) for s in sums)


def check_dit(args, world, result: dict, width: int, height: int) -> None:
    dit = build_dit(args.seed, world.device)
    result["attention"] = dit.set_attention_backend(args.attention)
    result["weights_identical"] = weight_checksum_agrees(dit, world.device)
    groups = sequence_parallel_groups(world.compute, dit.config.num_heads, args.ulysses)
    result.update(ulysses_degree=groups.ulysses_degree, ring_degree=groups.ring_degree)
    inputs = dit_inputs(dit, args.frames, height, width, world.device)
    parallel = UnifiedSequenceParallel(groups)
    with torch.no_grad():
        ms, many = timed_ms(lambda: dit(**inputs, parallel=parallel), args.repeats, world.compute)
        result["dit_step_ms_ngpu"] = ms
        if world.is_leader:
            ms, one = timed_ms(lambda: dit(**inputs), args.repeats)
            result.update(dit_step_ms_1gpu=ms, dit_rel_error=rel_error(many, one),
                          dit_max_abs_error=(many - one).abs().max().item(),
                          tokens=inputs["x"].shape[2] * inputs["x"].shape[3] * inputs["x"].shape[4] // 4)
        dist.barrier(world.compute)


def build_vae(seed: int, device: torch.device) -> WanVAE:
    torch.manual_seed(seed)
    return WanVAE(build_diffusers_vae(WanVAEConfig()).to(DTYPE), device)


def check_vae(args, world, result: dict, width: int, height: int) -> None:
    g = torch.Generator(world.device).manual_seed(99)
    latents = torch.randn(1, 16, (args.frames - 1) // 4 + 1, height // 8, width // 8, generator=g,
                          device=world.device)
    video = torch.rand(1, 3, 5, height, width, generator=g, device=world.device) * 2 - 1  # motion frames
    vae = ParallelVAE(build_vae(args.seed, world.device), world.compute, world.rank, world.world_size)
    ms, many = timed_ms(lambda: vae.decode(latents), args.repeats, world.compute)
    result["vae_decode_ms_ngpu"] = ms
    ms, _ = timed_ms(lambda: vae.encode(video), args.repeats, world.compute)
    result["vae_encode_5_frames_ms_ngpu"] = ms
    if world.is_leader:
        single = build_vae(args.seed, world.device)
        ms, one = timed_ms(lambda: single.decode(latents), args.repeats)
        result.update(vae_decode_ms_1gpu=ms, vae_decode_rel_error=rel_error(many, one),
                      vae_decode_max_abs_error=(many - one).abs().max().item())
    dist.barrier(world.compute)


def main() -> int:
    args = parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    world = init_rank_world("cuda", BackendOptions.rank_timeout_s)
    result = {"world_size": world.world_size, "device": torch.cuda.get_device_name(world.device),
              "size": f"{width}x{height}", "frames": args.frames}
    check_dit(args, world, result, width, height)
    torch.cuda.empty_cache()  # the DiT is gone with check_dit's frame
    check_vae(args, world, result, width, height)
    if world.is_leader:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(json.dumps(result, indent=2))
    close_rank_world()
    return 0


if __name__ == "__main__":
    sys.exit(main())
