"""Issue 14 lever 2 on one DiT block at the 14B shape: where the FP8 block's time goes, and what
static activation scales would save.

Run on the GPU machine: `python3 scripts/gpu/block_check.py --out $OUT/block_check.json`;
`--tiny --device cpu --eager` runs the same procedure on a width-64 block, uncompiled (the
script's smoke test).

One DiTBlock (random weights, bf16) at L = 12,096 tokens (9 latent frames of 48x28, a full
448x768 chunk), compiled with dynamic=False, in four variants built from the same weights:
- bf16: the reference;
- fp8 dynamic: today's FP8Linear (per-token amax at every call);
- fp8 shared: the same, with q/k/v of self-attention quantising their common input once;
- fp8 static: per-tensor input scales fixed from a calibration pass (amax x margin / 448), so the
  cast has no reduction and can fuse into whatever produced the input.
Per variant: median ms of the block forward (CUDA events), kernel time by family from one
profiled forward (GEMM, attention, Triton-fused elementwise, other), and the block output's
relative L2 error against bf16 on inputs the calibration did not see (1.5x louder).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from engine.flashtalk.model.attention import attention, choose_backend
from engine.flashtalk.model.dit_block import DiTBlock, frame_segments
from engine.flashtalk.model.fp8_linear import FP8_DTYPE, FP8_MAX, FP8Linear, quantize_block_linears, quantize_rows
from engine.flashtalk.model.random_init import materialize_random
from engine.flashtalk.model.rope import apply_rope, rope_cos_sin
from engine.flashtalk.parallel.sequence_parallel import NoParallel

FULL = {"dim": 5120, "ffn": 13824, "heads": 40, "audio_dim": 768, "audio_tokens": 32, "grid": (9, 48, 28)}
TINY = {"dim": 64, "ffn": 128, "heads": 2, "audio_dim": 32, "audio_tokens": 4, "grid": (3, 4, 6)}
MARGIN = 2.0
DTYPE = torch.bfloat16


class StaticFP8Linear(FP8Linear):
    """FP8Linear whose input scale is a calibrated constant (experiment only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        x_fp8 = (x2.float() * self.inv_input_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        x_scale = self.input_scale.expand(x2.shape[0], 1).contiguous()  # the row-wise kernel wants [M, 1]
        if self.use_scaled_mm:
            out = torch._scaled_mm(x_fp8, self.weight.t(), scale_a=x_scale, scale_b=self.weight_scale[None],
                                   bias=self.bias, out_dtype=torch.bfloat16)
        else:
            out = self.dequantized_matmul(x_fp8, x_scale).to(x.dtype)
        return out.reshape(*lead, self.out_features)


def make_static(block: torch.nn.Module, calibrate) -> int:
    """Record every FP8Linear's input amax over `calibrate()`, then swap in StaticFP8Linear."""
    amax, hooks = {}, []
    layers = {name: m for name, m in block.named_modules() if isinstance(m, FP8Linear)}
    for name, layer in layers.items():
        def hook(_module, args, name=name):
            value = args[0].detach().abs().amax().float()
            amax[name] = torch.maximum(amax.get(name, value), value)
        hooks.append(layer.register_forward_pre_hook(hook))
    calibrate()
    for h in hooks:
        h.remove()
    for name, layer in layers.items():
        scale = (amax[name] * MARGIN / FP8_MAX).clamp(min=1e-12).reshape(1)
        layer.__class__ = StaticFP8Linear
        layer.register_buffer("input_scale", scale, persistent=False)
        layer.register_buffer("inv_input_scale", 1.0 / scale, persistent=False)
    return len(layers)


def shared_qkv(block: DiTBlock) -> None:
    """Self-attention's q/k/v quantise x once (experiment: is the triple quantisation fused away?)."""
    attn = block.self_attn

    def forward(x, rope, parallel, attn_fn):
        b, length, dim = x.shape
        x_fp8, x_scale = quantize_rows(x.reshape(-1, dim))

        def mm(layer):
            return torch._scaled_mm(x_fp8, layer.weight.t(), scale_a=x_scale, scale_b=layer.weight_scale[None],
                                    bias=layer.bias, out_dtype=torch.bfloat16).view(b, length, attn.num_heads, -1)
        q, k, v = attn.norm_q(mm(attn.q).flatten(2)), attn.norm_k(mm(attn.k).flatten(2)), mm(attn.v)
        q = apply_rope(q.view(b, length, attn.num_heads, -1), rope).to(v.dtype)
        k = apply_rope(k.view(b, length, attn.num_heads, -1), rope).to(v.dtype)
        return attn.o(parallel.self_attention(q, k, v, attn_fn).flatten(2))
    attn.forward = forward


def inputs(sizes: dict, device: torch.device, seed: int, loudness: float = 1.0) -> tuple:
    g = torch.Generator(device="cpu").manual_seed(seed)
    f, h, w = sizes["grid"]
    dim, length = sizes["dim"], f * h * w

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)
    x = randn(1, length, dim, scale=loudness).to(DTYPE)
    e0 = randn(1, 6, dim, scale=dim ** -0.5)
    rope = rope_cos_sin((f, h, w), dim // sizes["heads"], device)
    context = randn(1, 257 + 512, dim, scale=loudness).to(DTYPE)
    audio = randn(1, f, sizes["audio_tokens"], sizes["audio_dim"], scale=loudness).to(DTYPE)
    return x, e0, rope, context, audio, frame_segments(0, length, h * w, f)


def timed_ms(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def family(name: str) -> str:
    low = name.lower()
    if low.startswith("triton"):  # inductor names fused kernels after every op inside them
        return "triton_fused"
    if any(k in low for k in ("fmha", "flash", "cudnn", "attention", "sdpa")):
        return "attention"
    if any(k in low for k in ("gemm", "xmma", "cutlass", "sm90", "nvjet", "scaled_mm")):
        return "gemm"
    return "other"


def kernel_profile(fn, device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    by_family, kernels = defaultdict(float), defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type.name != "CUDA":
            continue
        us = event.device_time_total if hasattr(event, "device_time_total") else event.cuda_time_total
        by_family[family(event.name)] += us / 1e3
        kernels[event.name][0] += us / 1e3
        kernels[event.name][1] += 1
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:14]
    return {"ms_by_family": {k: round(v, 3) for k, v in by_family.items()},
            "top_kernels": [{"name": n[:90], "ms": round(t, 3), "calls": c} for n, (t, c) in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--eager", action="store_true", help="skip torch.compile (a quick smoke test)")
    args = parser.parse_args()
    device, sizes = torch.device(args.device), TINY if args.tiny else FULL
    torch.manual_seed(0)
    with torch.device("meta"):
        block = DiTBlock(sizes["dim"], sizes["ffn"], sizes["heads"], True, True, 1e-6, sizes["audio_dim"], True)
    block = materialize_random(block, device).to(DTYPE).eval().requires_grad_(False)
    backend = choose_backend(None, device, DTYPE)

    def attn(q, k, v):
        return attention(q, k, v, backend=backend)
    calib = inputs(sizes, device, seed=1)
    test = inputs(sizes, device, seed=2, loudness=1.5)
    variants = {"bf16": block}
    for name in ("fp8_dynamic", "fp8_shared", "fp8_static"):
        variants[name] = copy.deepcopy(block)
        quantize_block_linears(variants[name])
    shared_qkv(variants["fp8_shared"])
    static_layers = make_static(variants["fp8_static"], lambda: variants["fp8_static"](*calib, NoParallel(), attn))
    results = {"sizes": {**sizes, "grid": list(sizes["grid"])}, "margin": MARGIN, "static_layers": static_layers,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "compiled": not args.eager, "variants": {}}
    reference = None
    with torch.no_grad():
        for name, module in variants.items():
            compiled = module if args.eager else torch.compile(module, dynamic=False)

            def run(compiled=compiled):
                return compiled(*test, NoParallel(), attn)
            for _ in range(3):
                out = run()
            if reference is None:
                reference = out.double()
            err = float((out.double() - reference).norm() / reference.norm())
            row = {"block_ms": round(timed_ms(run, args.repeats, device), 3), "rel_err_vs_bf16": err,
                   **kernel_profile(run, device)}
            results["variants"][name] = row
            print(name, {k: v for k, v in row.items() if k != "top_kernels"}, flush=True)
            del compiled
            if device.type == "cuda":
                torch.cuda.empty_cache()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
