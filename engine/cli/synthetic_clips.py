"""A synthetic talking-head dataset rendered by the puppet backend: no download, any size.

N clips = several portraits x several speech tracks. The portraits are the shipped portrait, cut
to a square around its face (so that at 64x64 the face fills the frame and the mouth spans more
than a latent pixel), and variants of it (mirrored, warmer, cooler and mirrored); the speech
tracks are the shipped speech from different start points and at slightly different tempos,
looped to the clip length.
Each clip is `clip_NNN.mp4` (H.264 + AAC, 25 fps) with `clip_NNN.png` beside it, the portrait as
the puppet framed it: the reference frame a FlashTalk model is conditioned on. Lives in the CLI
layer because it drives a backend; the training package only ever sees the MP4 folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from avkit.audio_decode import load_audio
from avkit.mp4_writer import Mp4Writer
from avkit.portrait_image import load_portrait
from avkit.timeline import Timeline
from engine.backends.puppet import PuppetBackend
from engine.backends.puppet.face_landmarks import detect_face_box
from engine.protocol.messages import SessionSettings

ASSETS = Path(__file__).resolve().parents[2] / "assets"
PORTRAIT_VARIANTS = ("original", "mirrored", "warm", "cool_mirrored")
TINTS = {"warm": (1.12, 1.0, 0.85), "cool_mirrored": (0.88, 0.97, 1.15)}  # per-channel RGB gains
FACE_CROP_WIDTHS = 2.0  # side of the square portrait crop, in face-box widths
FACE_CROP_LIFT = 0.1  # the crop's centre sits this share of its side above the face box's (hair)
SPEECH_STARTS_S = (0.0, 2.5, 5.0)
SPEECH_TEMPOS = (1.0, 0.9, 1.1)
RENDER_CHUNK_FRAMES = 25  # puppet frames per generate() call


@dataclass(frozen=True)
class SyntheticSpec:
    clips: int
    width: int
    height: int
    seconds: float
    seed: int = 0


def face_crop(portrait: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> a square around the detected face, FACE_CROP_WIDTHS face widths wide."""
    box = detect_face_box(portrait)
    if box is None:
        raise ValueError("no face in the synthetic portrait")
    x0, y0, x1, y1 = box
    side = min(round(FACE_CROP_WIDTHS * (x1 - x0)), *portrait.shape[:2])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - FACE_CROP_LIFT * side
    left = int(np.clip(round(cx - side / 2), 0, portrait.shape[1] - side))
    top = int(np.clip(round(cy - side / 2), 0, portrait.shape[0] - side))
    return np.ascontiguousarray(portrait[top:top + side, left:left + side])


def portrait_variant(portrait: np.ndarray, name: str) -> np.ndarray:
    """uint8 [H, W, 3] -> the named variant (same size)."""
    image = portrait[:, ::-1] if "mirrored" in name else portrait
    gains = np.float32(TINTS.get(name, (1.0, 1.0, 1.0)))
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def speech_variant(speech: np.ndarray, index: int, samples: int, sample_rate: int) -> np.ndarray:
    """Speech track `index`: a start point and a tempo (resampled), looped to `samples`."""
    start = int(SPEECH_STARTS_S[index % len(SPEECH_STARTS_S)] * sample_rate)
    tempo = SPEECH_TEMPOS[(index // len(SPEECH_STARTS_S)) % len(SPEECH_TEMPOS)]
    source = np.roll(speech, -start)
    positions = np.arange(int(len(source) / tempo)) * tempo
    stretched = np.interp(positions, np.arange(len(source)), source).astype(np.float32)
    return np.resize(stretched, samples)


def render_clip(backend: PuppetBackend, portrait: np.ndarray, speech: np.ndarray, spec: SyntheticSpec,
                video_path: Path, seed: int, timeline: Timeline = Timeline()) -> None:
    """The puppet saying `speech` -> video_path (MP4) and its reference frame beside it (PNG)."""
    frames = len(speech) // timeline.samples_per_frame
    settings = SessionSettings(width=spec.width, height=spec.height, chunk_frames=RENDER_CHUNK_FRAMES, seed=seed)
    stream = backend.open_stream(portrait, settings)
    context = stream.context_samples
    writer = Mp4Writer(video_path, spec.width, spec.height, timeline.fps, timeline.sample_rate)
    try:
        done = 0
        while done < frames:
            end = (done + stream.chunk_frames) * timeline.samples_per_frame
            window = speech[max(0, end - context):end]
            window = np.pad(window, (context - window.size, 0))
            chunk = stream.generate(window).frames[:frames - done]
            writer.write_frames(chunk)
            done += len(chunk)
        writer.write_audio(speech[:frames * timeline.samples_per_frame])
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        stream.close()
    Image.fromarray(stream.background).save(video_path.with_suffix(".png"))


def make_synthetic_clips(out_dir: Path, spec: SyntheticSpec, progress: bool = True) -> list[Path]:
    """Render `spec.clips` clips into out_dir; clips already there are kept (a rerun resumes)."""
    timeline = Timeline()
    out_dir.mkdir(parents=True, exist_ok=True)
    base_portrait = face_crop(load_portrait(ASSETS / "portrait.png"))
    speech = load_audio(ASSETS / "speech.wav", timeline.sample_rate)
    samples = int(spec.seconds * timeline.fps) * timeline.samples_per_frame
    backend = PuppetBackend()
    paths = []
    for i in tqdm(range(spec.clips), desc="rendering puppet clips", unit="clip", disable=not progress):
        path = out_dir / f"clip_{i:03d}.mp4"
        if not (path.is_file() and path.with_suffix(".png").is_file()):
            portrait = portrait_variant(base_portrait, PORTRAIT_VARIANTS[i % len(PORTRAIT_VARIANTS)])
            track = speech_variant(speech, i // len(PORTRAIT_VARIANTS), samples, timeline.sample_rate)
            render_clip(backend, portrait, track, spec, path, spec.seed + i, timeline)
        paths.append(path)
    return paths
