"""`flashtalk bench`: per-stage timings, FPS, real-time factor and memory of one backend.

It drives an AvatarStream directly (no socket) with the sample speech, cut into chunk windows as
a session cuts them (engine/session/chunk_audio.py), so the numbers are the backend's own;
transport is measured by `render --metrics-json`. GPU numbers only count when taken on a GPU
machine (docs/perf-notes.md names the card and the command).

Start-up is reported too: load_s, warm_up_s (the warm-up `serve` runs before `ready`; with
--compile, whether its graphs came from the compile cache: run twice to compare a cold and a
cached start) and first_frames_s, how soon a live session's first frames come on the warm engine.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil

from avkit.audio_decode import load_audio
from avkit.portrait_image import load_portrait
from avkit.timeline import Timeline
from engine.backends import create_backend
from engine.backends.base import Backend, BackendError
from engine.cli.common import UserError, add_backend_options, backend_options, parse_size
from engine.cli.render import ASSETS
from engine.protocol.messages import SessionSettings
from engine.session.audio_ring import AudioRing
from engine.session.chunk_audio import chunk_end, context_window


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure a backend: per-stage ms, FPS, real-time factor, memory")
    p.add_argument("--portrait", type=Path, default=ASSETS / "portrait.png")
    p.add_argument("--audio", type=Path, default=ASSETS / "speech.wav")
    p.add_argument("--size", help="WIDTHxHEIGHT (default: the backend's)")
    p.add_argument("--chunks", type=int, default=20, help="chunks to time after the first")
    p.add_argument("--steps", type=int, help="denoising steps (flashtalk)")
    p.add_argument("--json", type=Path, help="write the full result here")
    p.add_argument("--warm-up", action=argparse.BooleanOptionalAction, default=None,
                   help="warm the engine up as `serve` does before timing (default: on for a GPU backend); "
                        "load + warm-up is the engine's start time (start_s)")
    add_backend_options(p, "bench")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    timeline = Timeline()
    width, height = parse_size(args.size)
    portrait = load_portrait(args.portrait)
    speech = load_audio(args.audio, timeline.sample_rate)
    settings = SessionSettings(width=width, height=height, steps=args.steps, mode="file")
    options = backend_options(args)
    try:
        t0 = time.perf_counter()
        backend = create_backend(args.backend, options)
        load_s = time.perf_counter() - t0
        if not backend.is_leader:  # under torchrun: mirror rank 0's calls
            backend.follow()
            return 0
        warm = backend.warms_up_by_default if args.warm_up is None else args.warm_up
        warm_up_s = backend.warm_up(replace(settings, mode="live")) if warm else 0.0
        start = {"load_s": load_s, "warm_up_s": warm_up_s, "start_s": load_s + warm_up_s, **backend.start_report()}
        result = measure(backend, portrait, speech, settings, args.chunks, timeline)
        result.update(measure_first_frames(backend, portrait, speech, settings, timeline))
    except BackendError as exc:
        raise UserError(str(exc)) from None
    result.update(backend=args.backend, host=platform.node(), gpu=backend.device_name, options=vars_of(args),
                  memory_plan=backend.memory_plan_report(), **start)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    backend.close()
    return 0


def measure(backend: Backend, portrait: np.ndarray, speech: np.ndarray, settings: SessionSettings,
            chunks: int, timeline: Timeline) -> dict:
    t0 = time.perf_counter()
    stream = backend.open_stream(portrait, settings)
    prepare_s = time.perf_counter() - t0
    n = stream.chunk_frames
    ring = AudioRing(capacity=chunk_end(0, (chunks + 1) * n, timeline), sample_rate=timeline.sample_rate)
    ring.append(np.resize(speech, ring.capacity))  # the speech, looped as long as needed
    walls, stage_ms = [], {}
    first_chunk_s = 0.0
    for i in range(chunks + 1):
        window = context_window(ring, i * n, n, stream.context_samples, timeline)  # as a session cuts it
        t = time.perf_counter()
        out = stream.generate(window)
        wall = time.perf_counter() - t
        if i == 0:
            first_chunk_s = prepare_s + wall  # portrait in -> first frames out
            continue
        walls.append(wall)
        for k, v in out.timings.items():
            stage_ms.setdefault(k, []).append(v)
    stream.close()
    steady = statistics.median(walls)
    return {
        "width": stream.width, "height": stream.height, "chunk_frames": n, "chunks": chunks,
        "prepare_s": prepare_s, "first_chunk_latency_s": first_chunk_s,
        "chunk_wall_ms": {"median": steady * 1e3, "p95": _p95(walls) * 1e3},
        "fps": n / steady, "realtime_factor": (n / timeline.fps) / steady,
        "stages_ms": {k: {"median": statistics.median(v), "p95": _p95(v)} for k, v in stage_ms.items()},
        "peak_rss_mb": psutil.Process().memory_info().rss / 2**20,
        **stream.memory_report(),
    }


def measure_first_frames(backend: Backend, portrait: np.ndarray, speech: np.ndarray, settings: SessionSettings,
                         timeline: Timeline) -> dict:
    """How soon a live session's first frames come on this (by now warm) engine: from opening the
    stream to its first chunk's frames, that chunk's audio already there (a live session also waits
    for it: first_chunk_frames / fps seconds of speech)."""
    live = replace(settings, mode="live")
    ring = AudioRing(capacity=chunk_end(0, backend.plan(live).chunk_frames, timeline), sample_rate=timeline.sample_rate)
    ring.append(np.resize(speech, ring.capacity))
    t0 = time.perf_counter()
    stream = backend.open_stream(portrait, live)
    prepare_s = time.perf_counter() - t0
    n = stream.next_chunk_frames
    out = stream.generate(context_window(ring, 0, n, stream.context_samples, timeline))
    first_frames_s = time.perf_counter() - t0
    stream.close()
    return {"first_frames_s": first_frames_s, "first_chunk_frames": len(out.frames),
            "first_frames_prepare_s": prepare_s, "first_frames_stages_ms": out.timings}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def vars_of(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"}


def format_table(r: dict) -> str:
    lines = [f"backend {r['backend']}  {r['width']}x{r['height']}  chunk {r['chunk_frames']} frames",
             f"load {r['load_s']:.2f} s  prepare {r['prepare_s'] * 1e3:.0f} ms  "
             f"first chunk {r['first_chunk_latency_s'] * 1e3:.0f} ms  warm-up {r['warm_up_s']:.1f} s",
             f"live first frames {r['first_frames_s'] * 1e3:.0f} ms ({r['first_chunk_frames']} frames)",
             f"{'stage':<22}{'median ms':>12}{'p95 ms':>12}"]
    for k, v in r["stages_ms"].items():
        lines.append(f"{k:<22}{v['median']:>12.2f}{v['p95']:>12.2f}")
    lines.append(f"{'chunk (wall)':<22}{r['chunk_wall_ms']['median']:>12.2f}{r['chunk_wall_ms']['p95']:>12.2f}")
    lines.append(f"FPS {r['fps']:.1f}  real-time factor {r['realtime_factor']:.2f}  "
                 f"peak RSS {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


