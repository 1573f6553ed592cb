"""One-GPU ladder for the 14B FlashTalk shape with random weights: build once, time several levers.

Run on the GPU machine (see docs/perf-notes.md for the exact command). Writes one JSON per run to
--out and prints a table last. Each variant: same portrait, same audio, same seed; the frames of
every variant are compared with the first (relative error) so a lever that changes the result is
visible next to its speed-up.

Variants: an attention kernel name (cudnn, flash, ...) runs the eager DiT with that kernel;
"compile" compiles the DiT; "compile_vae" also compiles the VAE; "compile_fp8" quantises the DiT's
block linears to FP8, then compiles it. FP8 and the VAE compile stay on for the variants after
them (quantisation is in place), so list them last: cudnn,flash,compile,compile_vae,compile_fp8.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from avkit.audio_decode import load_audio
from avkit.portrait_image import load_portrait
from avkit.timeline import Timeline
from engine.backends.base import BackendOptions
from engine.backends.flashtalk import FlashTalkBackend
from engine.flashtalk.model.fp8_linear import FP8Linear, quantize_dit_linears
from engine.flashtalk.model.vae_compile import compile_vae, vae_is_compiled
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER
from engine.protocol.messages import SessionSettings
from engine.session.audio_ring import AudioRing
from engine.session.chunk_audio import chunk_end, context_window

ROOT = Path(__file__).resolve().parents[2]


def run_variant(backend: FlashTalkBackend, portrait, speech, chunks: int) -> dict:
    stream_t0 = time.perf_counter()
    stream = backend.open_stream(portrait, SessionSettings(mode="file"))
    prepare_s = time.perf_counter() - stream_t0
    n, timeline = stream.chunk_frames, Timeline()
    ring = AudioRing(capacity=chunk_end(0, (chunks + 1) * n, timeline), sample_rate=timeline.sample_rate)
    ring.append(np.resize(speech, ring.capacity))  # the speech, looped as long as needed
    walls, stages, outputs = [], {}, []
    first = 0.0
    for i in range(chunks + 1):
        window = context_window(ring, i * n, n, stream.context_samples, timeline)  # as a session cuts it
        t0 = time.perf_counter()
        res = stream.generate(window)
        wall = time.perf_counter() - t0
        outputs.append(res.frames)
        if i == 0:
            first = prepare_s + wall
            continue
        walls.append(wall)
        for k, v in res.timings.items():
            stages.setdefault(k, []).append(v)
    torch.cuda.synchronize()
    report = {"prepare_s": prepare_s, "first_chunk_latency_s": first,
              "chunk_ms": statistics.median(walls) * 1e3, "fps": n / statistics.median(walls),
              "stages_ms": {k: statistics.median(v) for k, v in stages.items()},
              "gpu_peak_gb": torch.cuda.max_memory_allocated() / 2**30}
    stream.close()
    return report, np.concatenate(outputs)


def apply_variant(models, variant: str) -> dict:
    """Set the DiT (and VAE) up for `variant` -> what is on now."""
    dit = getattr(models.dit, "_orig_mod", models.dit)  # undo an earlier variant's torch.compile
    compiled = variant.startswith("compile")
    dit.set_attention_backend(None if compiled else variant)  # None: the fastest (cuDNN on Hopper)
    torch._dynamo.reset()  # drop earlier graphs (and the weights they hold)
    if variant == "compile_fp8":
        quantize_dit_linears(dit)
        torch.cuda.empty_cache()
    if variant == "compile_vae":
        compile_vae(models.vae)
    models.dit = torch.compile(dit) if compiled else dit
    weights = [*dit.parameters(), *dit.buffers()]
    return {"dit_compiled": compiled, "dit_fp8": any(isinstance(m, FP8Linear) for m in dit.modules()),
            "vae_compiled": vae_is_compiled(models.vae),
            "dit_weights_gb": sum(t.numel() * t.element_size() for t in weights) / 2**30}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def attention_check(length: int = 12096) -> dict:
    """SDPA kernels at the real sequence length (not a multiple of 128): error vs float64 on 4 heads,
    speed on all 40 heads."""
    from engine.flashtalk.model.attention import attention, available_backends
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, length, 40, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    small = [x[:, :, :4] for x in (q, k, v)]
    ref = torch.nn.functional.scaled_dot_product_attention(
        *(x.double().transpose(1, 2) for x in small)).transpose(1, 2)
    out = {}
    for name in available_backends("cuda"):
        if name == "math":
            continue
        y = attention(*small, backend=name)
        attention(q, k, v, backend=name)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            attention(q, k, v, backend=name)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / 10 * 1e3
        flops = 4 * length * length * 128 * 40
        out[name] = {"rel_err_vs_fp64": float((y.double() - ref).norm() / ref.norm()), "ms": ms,
                     "tflops": flops / ms / 1e9}
    del q, k, v, small, ref
    torch.cuda.empty_cache()
    print("attention", json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer-root", type=Path, required=True, help="a make-tiny folder (tokenizer only)")
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--variants", default="cudnn,flash,compile")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-stage-timings", action="store_true",
                   help="no per-stage synchronisation: chunk times only (stage columns empty)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    results["attention_12096"] = attention_check()
    portrait = load_portrait(ROOT / "assets" / "portrait.png")
    speech = load_audio(ROOT / "assets" / "speech.wav")
    t0 = time.perf_counter()
    backend = FlashTalkBackend(BackendOptions(model_dir=args.tokenizer_root / MODEL_FOLDER,
                                              random_weights="14b", attention="cudnn"))
    results["build_s"] = time.perf_counter() - t0
    baseline = None
    backend.runtime.pipeline.stage_timings = not args.no_stage_timings
    for variant in args.variants.split(","):
        setup = apply_variant(backend.runtime.pipeline.models, variant)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        report, frames = run_variant(backend, portrait, speech, args.chunks)
        report.update(setup, variant_wall_s=time.perf_counter() - t0)
        if baseline is None:
            baseline = frames
        report["frames_rel_err_vs_first_variant"] = rel_err(frames, baseline)
        results[variant] = report
        (args.out / "ladder.json").write_text(json.dumps(results, indent=2))
        print(variant, json.dumps(report), flush=True)
    print(f"{'variant':<12}{'chunk ms':>10}{'fps':>8}{'dit step ms':>13}{'vae dec':>9}{'first s':>9}{'err':>9}")
    for variant in args.variants.split(","):
        r = results[variant]
        steps = [v for k, v in r["stages_ms"].items() if k.startswith("dit_step")]
        step = statistics.median(steps) if steps else float("nan")
        print(f"{variant:<12}{r['chunk_ms']:>10.0f}{r['fps']:>8.2f}{step:>13.0f}"
              f"{r['stages_ms'].get('vae_decode', float('nan')):>9.0f}{r['first_chunk_latency_s']:>9.2f}"
              f"{r['frames_rel_err_vs_first_variant']:>9.1e}")


if __name__ == "__main__":
    main()
