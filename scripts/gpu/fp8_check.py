"""FP8 vs bf16 on the 14B DiT shape with random weights: how far FP8 moves the result, and how much faster.

Run on the GPU machine: `python3 scripts/gpu/fp8_check.py --out $OUT` (writes $OUT/fp8_check.json);
`--tiny --device cpu --eager` runs the same procedure on the 2-layer test DiT at 64x64, uncompiled
(the script's smoke test).
The DiT is built once in bf16; the same inputs (and the same noise generator seed) go through
- bf16 eager: the noise floor, i.e. how far mere bf16 rounding-order changes (eager vs compiled) move
  the outputs with these random weights;
- bf16 compiled (block by block, as the engine does): the reference;
- FP8 compiled: the block linears quantised in place (irreversible, so it runs last).
For each: one DiT forward (t = 1000) and one full 4-step denoise through the streaming sampler,
with per-step velocities recorded; errors are relative L2 against bf16 compiled. Timings are the
median of --repeats runs after a warm-up (which includes torch.compile).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.dit_compile import compile_dit_blocks
from engine.flashtalk.model.fp8_linear import quantize_dit_linears
from engine.flashtalk.pipeline.models import FlashTalkModels
from engine.flashtalk.pipeline.settings import VAE_STRIDE, StreamSettings
from engine.flashtalk.pipeline.streaming import (
    StreamingPipeline,
    StreamState,
    sampler_tensors,
)
from engine.flashtalk.pipeline.timesteps import sampling_timesteps

DTYPE = torch.bfloat16
CLIP_TOKENS, TEXT_TOKENS, Z_DIM = 257, 512, 16


def build_random_dit(device: torch.device, seed: int, tiny: bool = False) -> FlashTalkDiT:
    """The official 14B DiT (or the tiny test one) with random weights, built directly in bf16 on `device`."""
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)  # constructing in float32 first would need 75 GB
    try:
        with torch.device(device):
            dit = FlashTalkDiT(**(FlashTalkDiT.tiny_config() if tiny else FlashTalkDiT.official_config()))
    finally:
        torch.set_default_dtype(old)
    dit = dit.eval().requires_grad_(False)
    dit.set_attention_backend(None)
    return dit


def random_state(dit: FlashTalkDiT, settings: StreamSettings, device: torch.device, seed: int) -> StreamState:
    """A session's conditions with random encoder outputs (the DiT sees real shapes and scales)."""
    c, (lh, lw), frames = dit.config, settings.latent_hw, settings.latent_frames
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device).to(DTYPE)

    mask = torch.zeros(1, VAE_STRIDE[0], frames, lh, lw, device=device, dtype=DTYPE)
    mask[:, :, 0] = 1
    timesteps = sampling_timesteps(settings.steps, settings.shift)
    t_steps, sigmas = sampler_tensors(timesteps, device)
    return StreamState(
        settings=settings, output_hw=(settings.height, settings.width), portrait=None,
        context=randn(1, TEXT_TOKENS, c.text_dim), clip=randn(1, CLIP_TOKENS, c.clip_dim),
        cond=torch.cat([mask, randn(1, Z_DIM, frames, lh, lw)], dim=1),  # [1, 20, F_lat, h, w]
        reference=torch.zeros(1, 3, 1, settings.height, settings.width, device=device, dtype=DTYPE),
        motion=randn(1, Z_DIM, 1, lh, lw), generator=torch.Generator(device=device),
        timesteps=timesteps, t_steps=t_steps, sigmas=sigmas)


def random_audio(dit: FlashTalkDiT, settings: StreamSettings, device: torch.device, seed: int) -> torch.Tensor:
    """wav2vec2 windows [1, frame_num, window, layers, audio_dim]."""
    c = dit.config
    g = torch.Generator(device=device).manual_seed(seed)
    shape = (1, settings.frame_num, c.audio_window, c.audio_layers, c.audio_dim)
    return torch.randn(*shape, generator=g, device=device).to(DTYPE)


def run_one(pipeline: StreamingPipeline, state: StreamState, audio: torch.Tensor, noise_seed: int,
            repeats: int) -> dict:
    """One forward and one recorded denoise (after a warm-up), then timings of both."""
    models, device = pipeline.models, pipeline.device
    s, (lh, lw) = state.settings, state.settings.latent_hw
    noise = torch.Generator(device=device).manual_seed(noise_seed)
    latent0 = torch.randn(Z_DIM, s.latent_frames, lh, lw, generator=noise, device=device).to(DTYPE)

    def forward():
        return models.dit_forward(latent0, state.t_steps[0], state, audio)  # the first step's input

    def denoise():
        state.generator.manual_seed(noise_seed)  # the same noise draws in every run
        return pipeline.denoise(state, audio)

    forward(), denoise()  # warm-up: compiles
    out = {"forward": forward().float()}
    velocities, inner = [], models.dit_forward

    def recording_forward(*args):
        velocities.append(inner(*args))
        return velocities[-1]

    models.dit_forward = recording_forward  # an instance attribute shadows the method for one run
    out["latents"] = denoise().float()
    del models.dit_forward
    out["velocities"] = velocities
    out["forward_ms"] = median_ms(forward, repeats, device)
    out["denoise_ms"] = median_ms(denoise, repeats, device)
    if device.type == "cuda":
        out["gpu_peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def median_ms(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def weight_gb(module: torch.nn.Module) -> float:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**30


def compare_precisions(device: str = "cuda", repeats: int = 5, seed: int = 0, tiny: bool = False,
                       eager: bool = False) -> dict:
    """bf16 eager, bf16 compiled and FP8 compiled on identical inputs -> errors and timings (JSON-able)."""
    device = torch.device(device)
    settings = StreamSettings(width=64, height=64) if tiny else StreamSettings()
    dit = build_random_dit(device, seed, tiny)
    state, audio = random_state(dit, settings, device, seed + 1), random_audio(dit, settings, device, seed + 2)
    pipeline = StreamingPipeline(FlashTalkModels(dit=dit, vae=None, clip=None, text_encoder=None,  # only
                                                 audio_encoder=None, device=device, dtype=DTYPE))  # the DiT runs
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": device_name, "torch": torch.__version__, "compiled": not eager,
              "tokens": settings.tokens, "steps": settings.steps, "repeats": repeats,
              "attention": dit.attention_backend}
    runs = {}
    for name in ("bf16_eager", "bf16", "fp8"):
        if name == "fp8":
            report["fp8_linears"] = quantize_dit_linears(dit)
        torch._dynamo.reset()
        if name == "bf16" and not eager:  # block by block, as the engine compiles; fp8 recompiles them
            compile_dit_blocks(dit)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        runs[name] = run_one(pipeline, state, audio, seed + 3, 1 if name == "bf16_eager" else repeats)
        runs[name]["dit_weights_gb"] = weight_gb(dit)
        print(name, {k: v for k, v in runs[name].items() if isinstance(v, float)}, flush=True)
    ref = runs["bf16"]
    for name, run in runs.items():
        report[name] = {
            "forward_rel_err": rel_err(run["forward"], ref["forward"]),
            "step_velocity_rel_err": [rel_err(v, r) for v, r in zip(run["velocities"], ref["velocities"])],
            "final_latents_rel_err": rel_err(run["latents"], ref["latents"]),
            **{k: v for k, v in run.items() if isinstance(v, float)},
        }
    report["fp8_speedup_forward"] = ref["forward_ms"] / runs["fp8"]["forward_ms"]
    report["fp8_speedup_denoise"] = ref["denoise_ms"] / runs["fp8"]["denoise_ms"]
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for fp8_check.json")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="the 2-layer test DiT at 64x64 (smoke test)")
    p.add_argument("--eager", action="store_true", help="skip torch.compile (a quick smoke test)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = compare_precisions(args.device, args.repeats, args.seed, args.tiny, args.eager)
    (args.out / "fp8_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
