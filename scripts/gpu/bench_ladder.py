"""One-GPU ladder for the 14B FlashTalk shape with random weights: build once, time several levers.

Run on the GPU machine (see docs/perf-notes.md for the exact command). Writes one JSON per run to
--out and prints a table last. Each variant: same portrait, same audio, same seed; the frames of
every variant are compared with the first (relative error) so a lever that changes the result is
visible next to its speed-up.
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
from engine.backends.base import BackendOptions
from engine.backends.flashtalk import FlashTalkBackend
from engine.protocol.messages import SessionSettings

ROOT = Path(__file__).resolve().parents[2]


def run_variant(backend: FlashTalkBackend, portrait, speech, chunks: int) -> dict:
    stream_t0 = time.perf_counter()
    stream = backend.open_stream(portrait, SessionSettings(mode="file"))
    prepare_s = time.perf_counter() - stream_t0
    n, ctx = stream.chunk_frames, stream.context_samples
    audio = np.resize(speech, (chunks + 1) * n * 640 + ctx)
    walls, stages, outputs = [], {}, []
    first = 0.0
    for i in range(chunks + 1):
        end = (i + 1) * n * 640
        window = np.pad(audio[max(0, end - ctx):end], (max(0, ctx - end), 0))
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
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    results["attention_12096"] = attention_check()
    portrait = load_portrait(ROOT / "assets" / "portrait.png")
    speech = load_audio(ROOT / "assets" / "speech.wav")
    t0 = time.perf_counter()
    backend = FlashTalkBackend(BackendOptions(model_dir=args.tokenizer_root / "SoulX-FlashTalk-14B",
                                              random_weights="14b", attention="cudnn"))
    results["build_s"] = time.perf_counter() - t0
    baseline = None
    for variant in args.variants.split(","):
        models = backend.pipeline.models
        if variant == "compile":
            models.dit.set_attention_backend("cudnn")
            models.dit = torch.compile(models.dit)
        else:
            models.dit.set_attention_backend(variant)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        report, frames = run_variant(backend, portrait, speech, args.chunks)
        report["variant_wall_s"] = time.perf_counter() - t0
        if baseline is None:
            baseline = frames
        report["frames_rel_err_vs_first_variant"] = rel_err(frames, baseline)
        results[variant] = report
        (args.out / "ladder.json").write_text(json.dumps(results, indent=2))
        print(variant, json.dumps(report), flush=True)
    print(f"{'variant':<10}{'chunk ms':>10}{'fps':>8}{'dit step ms':>13}{'vae dec':>9}{'first s':>9}{'err':>9}")
    for variant in args.variants.split(","):
        r = results[variant]
        step = statistics.median(v for k, v in r["stages_ms"].items() if k.startswith("dit_step"))
        print(f"{variant:<10}{r['chunk_ms']:>10.0f}{r['fps']:>8.2f}{step:>13.0f}"
              f"{r['stages_ms']['vae_decode']:>9.0f}{r['first_chunk_latency_s']:>9.2f}"
              f"{r['frames_rel_err_vs_first_variant']:>9.1e}")


if __name__ == "__main__":
    main()
