"""The memory plan against the GPU: predicted vs measured peak per phase, for several offload setups.

Run on the GPU machine (docs/perf-notes.md gives the command): each setup is a FlashTalk engine
(random 14B weights, the real engine code: plan, --gpu-memory cap, offload) that opens one
session at the default size and streams chunks; every pipeline phase (umT5, CLIP, VAE encodes,
wav2vec2, each DiT step, VAE decode) is measured as torch.cuda.max_memory_allocated over the call,
next to the plan's prediction for that phase. Frames of each setup are compared with the first
setup of the same precision (offload must not change a single bit). Writes one JSON to --out and
prints a table last.

Setups: PRECISION:OFFLOAD[:GPU_MEMORY_GIB], e.g. bf16:none fp8:auto:22 bf16:blocks.
`--tiny --device cpu` runs the same procedure on the tiny checkpoint (a smoke test of the script).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avkit.audio_decode import load_audio
from avkit.portrait_image import load_portrait
from engine.backends.base import BackendOptions
from engine.backends.flashtalk import FlashTalkBackend
from engine.flashtalk.runtime.memory_plan import GIB
from engine.flashtalk.runtime.offload import host_to_device_bytes_per_s
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER
from engine.protocol.messages import SessionSettings

ROOT = Path(__file__).resolve().parents[2]
MODEL_PHASES = {"encode_text": "prompt", "encode_image": "portrait", "dit_forward": "denoise",
                "vae_decode": "decode"}


class PhasePeaks:
    """Wraps the models' calls: per phase, the largest max_memory_allocated seen during one call."""

    def __init__(self, models, device: torch.device):
        self.device, self.peaks, self.reserved, self.preparing = device, {}, {}, False
        for method, phase in MODEL_PHASES.items():
            self._wrap(models, method, lambda _p=phase: _p)
        self._wrap(models, "vae_encode", lambda: "condition" if self.preparing else "motion")
        self._wrap(models.audio_encoder, "features", lambda: "audio")

    def _wrap(self, owner, method: str, phase_of) -> None:
        inner = getattr(owner, method)

        def measured(*args, **kwargs):
            if self.device.type != "cuda":
                return inner(*args, **kwargs)
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            out = inner(*args, **kwargs)
            torch.cuda.synchronize(self.device)
            phase = phase_of()
            self.peaks[phase] = max(self.peaks.get(phase, 0), torch.cuda.max_memory_allocated(self.device))
            self.reserved[phase] = max(self.reserved.get(phase, 0), torch.cuda.max_memory_reserved(self.device))
            return out
        setattr(owner, method, measured)


def run_setup(setup: str, args, portrait, speech) -> tuple[dict, np.ndarray]:
    precision, offload, *budget = setup.split(":")
    options = BackendOptions(model_dir=args.model, device=args.device, precision=precision, offload=offload,
                             gpu_memory_gb=float(budget[0]) if budget else None, compile=args.compile,
                             random_weights=None if args.tiny else "14b", attention=args.attention)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    backend = FlashTalkBackend(options)
    load_s = time.perf_counter() - t0
    process_load_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    models = backend.runtime.pipeline.models
    phases = PhasePeaks(models, device)
    size = dict(width=args.width, height=args.height) if args.width else {}
    phases.preparing = True
    t0 = time.perf_counter()
    stream = backend.open_stream(portrait, SessionSettings(mode="file", **size))
    prepare_s = time.perf_counter() - t0
    phases.preparing = False
    n, ctx = stream.chunk_frames, stream.context_samples
    audio = np.resize(speech, (args.chunks + 1) * n * 640 + ctx)
    walls, stages, frames = [], {}, []
    for i in range(args.chunks + 1):
        end = (i + 1) * n * 640
        window = np.pad(audio[max(0, end - ctx):end], (max(0, ctx - end), 0))
        t0 = time.perf_counter()
        res = stream.generate(window)
        wall = time.perf_counter() - t0
        frames.append(res.frames)
        if i == 0:
            first_chunk_s = wall
        if i:
            walls.append(wall)
            for k, v in res.timings.items():
                stages.setdefault(k, []).append(v)
    plan = backend.memory_plan
    report = {
        "setup": setup, "plan": plan.as_dict(), "load_s": load_s, "prepare_s": prepare_s,
        "first_chunk_s": first_chunk_s,
        "chunk_ms": statistics.median(walls) * 1e3, "fps": n / statistics.median(walls),
        "stages_ms": {k: statistics.median(v) for k, v in stages.items()},
        "measured_phases_gib": {k: v / GIB for k, v in phases.peaks.items()},
        "measured_peak_gib": max(phases.peaks.values(), default=0) / GIB,
        "reserved_phases_gib": {k: v / GIB for k, v in phases.reserved.items()},
        "load_peak_gib": process_load_peak / GIB,
        "blocks_copied": getattr(getattr(models.placement, "blocks", None), "copies", 0),
    }
    if report["measured_peak_gib"]:
        report["peak_error"] = plan.peak / GIB / report["measured_peak_gib"] - 1
    stream.close()
    backend.close()
    return report, np.concatenate(frames)


def run_one(args) -> None:
    """One setup in this process (a fresh CUDA context, as an engine has): JSON + frames to files."""
    portrait = load_portrait(ROOT / "assets" / "portrait.png")
    speech = load_audio(ROOT / "assets" / "speech.wav")
    try:
        report, frames = run_setup(args.one, args, portrait, speech)
    except Exception as exc:  # noqa: BLE001 - the parent records the failure and goes on
        report, frames = {"setup": args.one, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}, None
    if frames is not None:
        np.save(args.out / "frames.npy", frames)
    (args.out / "setup.json").write_text(json.dumps(report))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, required=True, help=f"a make-tiny {MODEL_FOLDER} folder "
                   "(its tokenizer; with --tiny its weights)")
    p.add_argument("--setups", default="bf16:none,bf16:auto:46,fp8:none,fp8:auto:22")
    p.add_argument("--chunks", default="2", help="timed chunks after the first: one number, or one per setup")
    p.add_argument("--device", default="cuda")
    p.add_argument("--attention", default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--tiny", action="store_true", help="the tiny checkpoint's own weights")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        args.chunks = int(args.chunks)
        return run_one(args)
    device = torch.device(args.device)
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "host_to_device_gb_s": (host_to_device_bytes_per_s(device) or 0) / 1e9,
               "setups": []}
    setups = args.setups.split(",")
    chunks = args.chunks.split(",") if "," in args.chunks else [args.chunks] * len(setups)
    first_frames: dict[str, np.ndarray] = {}
    for setup, count in zip(setups, chunks, strict=True):
        with tempfile.TemporaryDirectory() as scratch:
            cmd = [sys.executable, __file__, "--one", setup, "--out", scratch, "--chunks", count,
                   "--model", str(args.model), "--device", args.device]
            cmd += [f"--{k}={v}" for k, v in (("attention", args.attention), ("width", args.width),
                                               ("height", args.height)) if v]
            cmd += [flag for flag, on in (("--compile", args.compile), ("--tiny", args.tiny)) if on]
            done = subprocess.run(cmd, capture_output=True, text=True)
            sys.stderr.write(done.stderr[-3000:])
            path = Path(scratch) / "setup.json"
            report = json.loads(path.read_text()) if path.is_file() else {
                "setup": setup, "error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
            frames_path = Path(scratch) / "frames.npy"
            if frames_path.is_file():
                frames = np.load(frames_path)
                reference = first_frames.setdefault(setup.split(":")[0], frames)
                count = min(len(frames), len(reference))  # the chunks both setups made
                report["frames_identical_to_first"] = bool(np.array_equal(frames[:count], reference[:count]))
                report["frames_max_abs_diff_to_first"] = int(np.abs(frames[:count].astype(np.int16)
                                                                    - reference[:count].astype(np.int16)).max())
        results["setups"].append(report)
        (args.out / "memory_check.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(report), flush=True)
    print(f"host-to-device {results['host_to_device_gb_s']:.1f} GB/s")
    print(f"{'setup':<16}{'level':<10}{'streamed':>9}{'pred GiB':>10}{'meas GiB':>10}{'err':>7}"
          f"{'chunk ms':>10}{'fps':>7}{'same':>6}")
    for r in results["setups"]:
        if "error" in r:
            print(f"{r['setup']:<16}{r['error'][:90]}")
            continue
        plan = r["plan"]
        print(f"{r['setup']:<16}{plan['level']:<10}{len(plan['streamed_blocks']):>9}{plan['predicted_peak_gib']:>10.2f}"
              f"{r['measured_peak_gib']:>10.2f}{r.get('peak_error', 0):>7.1%}{r['chunk_ms']:>10.0f}{r['fps']:>7.2f}"
              f"{'yes' if r.get('frames_identical_to_first') else 'NO':>6}")


if __name__ == "__main__":
    main()
