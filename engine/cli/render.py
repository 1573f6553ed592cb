"""`flashtalk render`: portrait + audio file -> MP4, through the same server and session as live use.

An in-process engine listens on a private temporary socket and a real client streams the audio to
it, so render exercises exactly the code a studio session does. `--pace realtime` streams the file
as a live source would (live_pace.py): the engine may lower the quality and skip to keep up.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avkit.audio_decode import AudioFileError, load_audio
from avkit.disk_space import DiskFullError, is_disk_full
from avkit.mp4_writer import Mp4Writer
from avkit.portrait_image import PortraitImageError, load_portrait, read_portrait_bytes
from avkit.timeline import FPS, Timeline
from engine.backends.base import BackendError
from engine.cli.common import UserError, add_backend_options, backend_options, parse_size
from engine.cli.live_pace import LivePaceError, live_summary, stream_live
from engine.protocol.client import EngineClient, EngineError
from engine.protocol.frame_decoding import decode_frames
from engine.protocol.messages import QUALITY_AUTO, QUALITY_FIXED, Error, Event, Frames, Metrics, SessionSettings
from engine.server import EngineServer, ServerConfig

ASSETS = Path(__file__).resolve().parents[2] / "assets"
BLOCK_S = 0.5  # audio block sent per message
AHEAD_S = 20.0  # how far the audio may run ahead of the frames received
MAX_SEED = 2**63 - 1  # what every backend's generator and the wire's msgpack integers carry


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="render a talking-head MP4 from a portrait and an audio file")
    p.add_argument("--portrait", type=Path, default=ASSETS / "portrait.png")
    p.add_argument("--audio", type=Path, default=ASSETS / "speech.wav")
    p.add_argument("--out", type=Path, default=Path("out/avatar.mp4"))
    p.add_argument("--size", help="WIDTHxHEIGHT of the video (default: the backend's)")
    p.add_argument("--fps", type=int, default=FPS, help="frames per second (%(default)s)")
    p.add_argument("--seed", type=int, help="random seed (default: the backend's)")
    p.add_argument("--steps", type=int, help="denoising steps (flashtalk)")
    p.add_argument("--prompt", help="text prompt (flashtalk)")
    p.add_argument("--pace", choices=["file", "realtime"], default="file",
                   help="file: every frame, as fast as the engine goes; realtime: the audio arrives as from "
                        "a microphone and the session is live (the engine may lower the quality and skip)")
    p.add_argument("--quality", metavar="Q", help=f"{QUALITY_AUTO} (keep up; the default with --pace "
                   f"realtime), {QUALITY_FIXED} (the size and steps asked for; the file default) or a profile "
                   "name such as 320x512/2")
    p.add_argument("--target-latency", type=float, metavar="S",
                   help="with --pace realtime: target live latency in seconds (default: one chunk + 0.5 s)")
    p.add_argument("--metrics-json", type=Path, help="write per-chunk timings and totals here (with --pace "
                   "realtime also latency, skips, profile and real-time factor per second)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_options(p, "render")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    timeline = Timeline()
    if args.fps != timeline.fps:
        raise UserError(f"--fps {args.fps} is not supported: the engine renders at {timeline.fps} fps")
    width, height = parse_size(args.size)
    try:
        load_portrait(args.portrait)
        portrait = read_portrait_bytes(args.portrait)
        audio = load_audio(args.audio, timeline.sample_rate)
    except (PortraitImageError, AudioFileError) as exc:
        raise UserError(str(exc)) from None
    if args.out.suffix.lower() != ".mp4":
        raise UserError(f"--out {args.out} must end in .mp4")
    if args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder: give a file name ending in .mp4")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed {args.seed} is out of range: use 0 to {MAX_SEED}")
    _refuse_overwriting_inputs(args)
    for flag, path in (("--out", args.out), ("--metrics-json", args.metrics_json)):
        if path is not None:
            _check_writable(flag, path)
    live = args.pace == "realtime"
    if not live and args.target_latency is not None:
        raise UserError("--target-latency is a live-session setting: add --pace realtime")
    if not live and args.quality == QUALITY_AUTO:
        raise UserError(f"--quality {QUALITY_AUTO} keeps up with live audio: add --pace realtime, or ask for "
                        f"{QUALITY_FIXED} or a profile")
    settings = SessionSettings(width=width, height=height, seed=args.seed, steps=args.steps,
                               prompt=args.prompt, mode="live" if live else "file", quality=args.quality,
                               target_latency_s=args.target_latency)
    with tempfile.TemporaryDirectory(prefix="flashtalk-render-") as tmp:
        config = ServerConfig(address=f"ipc://{tmp}/engine.sock", backend=args.backend,
                              backend_options=backend_options(args))
        if not args.quiet and args.backend != "puppet":
            print(f"loading the {args.backend} model ...", file=sys.stderr, flush=True)
        try:
            server = EngineServer(config)
            server.bind()
        except BackendError as exc:
            raise UserError(str(exc)) from None
        thread = threading.Thread(target=server.serve_forever, name="engine", daemon=True)
        thread.start()
        try:
            report = _stream(config.address, portrait, audio, settings, args, timeline)
        except OSError as exc:  # the writer has already removed its partial file
            if not is_disk_full(exc):
                raise
            raise UserError(f"{DiskFullError(exc.errno, args.out)} for --out") from None
        finally:
            server.stop_event.set()
            thread.join(10)
    if args.metrics_json:
        _write_metrics(args.metrics_json, report)
    if not args.quiet:
        print(f"wrote {args.out} ({report['frames']} frames, {report['fps']:.1f} fps rendering)",
              file=sys.stderr)
        if "live" in report:
            print(live_summary(report["live"]), file=sys.stderr)
    return 0


def _refuse_overwriting_inputs(args: argparse.Namespace) -> None:
    """An output that names an input would destroy it (the MP4 is renamed over it at the end)."""
    inputs = {"--audio": args.audio, "--portrait": args.portrait}
    outputs = {"--out": args.out, "--metrics-json": args.metrics_json}
    for out_flag, out in outputs.items():
        for in_flag, source in inputs.items():
            if out is not None and out.exists() and source.exists() and os.path.samefile(out, source):
                raise UserError(f"{out_flag} {out} is the {in_flag} file: choose another output name")
    if args.metrics_json is not None and args.metrics_json.resolve() == args.out.resolve():
        raise UserError(f"--metrics-json and --out are the same file ({args.out}): give each its own name")


def _check_writable(flag: str, path: Path) -> None:
    """Before any work: a folder we cannot write in fails now, with one line, not after the render."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".flashtalk-write-check-"):
            pass
    except OSError as exc:
        if is_disk_full(exc):
            raise UserError(f"{DiskFullError(exc.errno, path)} for {flag}") from None
        raise UserError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc}): "
                        "choose a folder you can write to") from None


def _write_metrics(path: Path, report: dict) -> None:
    """Whole or not at all: a full disk leaves no truncated JSON behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        path.unlink(missing_ok=True)
        raise UserError(f"{DiskFullError(exc.errno, path)} for --metrics-json") from None


def _stream(address: str, portrait: bytes, audio: np.ndarray, settings: SessionSettings,
            args: argparse.Namespace, timeline: Timeline) -> dict:
    spf = timeline.samples_per_frame
    total_frames = timeline.frames_covering(audio.size)
    block = int(BLOCK_S * timeline.sample_rate)
    with EngineClient(address, client_name="flashtalk-render") as client:
        try:
            opened = client.open_session(portrait, settings, on_progress=None if args.quiet else _ProgressLine())
        except EngineError as exc:
            raise UserError(str(exc)) from None
        writer = Mp4Writer(args.out, opened.width, opened.height, timeline.fps, timeline.sample_rate)
        bar = tqdm(total=total_frames, unit="frame", disable=args.quiet, file=sys.stderr)
        chunks, metrics, sent, received = [], {}, 0, 0
        live = None
        started = time.perf_counter()

        def write(msg: Frames) -> None:
            nonlocal received
            frames, shown_audio = decode_frames(msg)
            writer.write_frames(frames)
            writer.write_audio(shown_audio)
            received += msg.count
            bar.update(msg.count)
            chunks.append({"chunk": msg.chunk, "frames": msg.count, **msg.timings})

        try:
            if settings.mode == "live":
                try:
                    live = stream_live(client, opened, audio, timeline, write,
                                       on_warning=None if args.quiet else lambda text: tqdm.write(text, sys.stderr))
                except LivePaceError as exc:
                    raise UserError(str(exc)) from None
                metrics = live.metrics[-1][1] if live.metrics else {}
            done = live is not None
            while not done:
                while sent < audio.size and sent - received * spf < AHEAD_S * timeline.sample_rate:
                    client.send_audio(audio[sent:sent + block], timeline.sample_rate)
                    sent += block
                    if sent >= audio.size:
                        client.end_audio()
                msg = client.recv(0.2)
                if isinstance(msg, Frames):
                    write(msg)
                elif isinstance(msg, Metrics):
                    metrics = msg.values
                elif isinstance(msg, Error):
                    raise UserError(msg.message)
                elif isinstance(msg, Event) and msg.kind == "session_ended":
                    done = True
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        wall = time.perf_counter() - started
    report = _report(chunks, metrics, received, wall, opened.prepare_ms)
    if live is not None:
        report["live"] = live.report()
    return report


class _ProgressLine:
    """Says on stderr which preparation stage the engine is in, once per stage."""

    def __init__(self):
        self.stage = None

    def __call__(self, event: Event) -> None:
        stage = event.data.get("stage")
        if stage != self.stage:
            self.stage = stage
            print(event.message, file=sys.stderr, flush=True)


def _report(chunks: list[dict], metrics: dict, frames: int, wall: float, prepare_ms: float) -> dict:
    stages = sorted({k for c in chunks for k in c} - {"chunk", "frames"})
    per_stage = {}
    for stage in stages:
        values = [c[stage] for c in chunks if stage in c]
        per_stage[stage] = {"median_ms": statistics.median(values), "max_ms": max(values)}
    return {"frames": frames, "wall_s": wall, "fps": frames / wall if wall else 0.0,
            "prepare_ms": prepare_ms, "stages": per_stage, "engine": metrics, "chunks": chunks}
