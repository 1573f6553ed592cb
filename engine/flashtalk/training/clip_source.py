"""Where training clips come from: a folder of talking-head MP4s, or a manifest listing them.

A folder: every `*.mp4` below it (sorted); `NAME.png`/`NAME.jpg` beside a clip is its reference
frame (the portrait the model is conditioned on, taken from outside the clip), `NAME.txt` its
prompt. A manifest (`.jsonl`): one JSON object per line, {"video": ..., "reference": ...,
"prompt": ...}, paths relative to the manifest. Clips without a reference use their first frame.
Every clip is probed before any preprocessing starts, so a bad one fails in seconds, in one line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avkit.audio_decode import AudioFileError, load_audio
from avkit.mp4_writer import read_mp4_frames
from avkit.portrait_image import PortraitImageError, load_portrait
from avkit.timeline import Timeline
from engine.flashtalk.pipeline.settings import DEFAULT_PROMPT

REFERENCE_SUFFIXES = (".png", ".jpg", ".jpeg")
MANIFEST_SUFFIX = ".jsonl"


class DatasetError(ValueError):
    """Training data that cannot be used; str() is one line naming the file and the fix."""


@dataclass(frozen=True)
class ClipSource:
    video: Path
    reference: Path | None  # None: the clip's first frame
    prompt: str


@dataclass
class DecodedClip:
    frames: np.ndarray  # uint8 [N, H, W, 3], as decoded
    audio: np.ndarray  # float32 [N * samples_per_frame] at 16 kHz, frame k <-> samples [k*spf, (k+1)*spf)
    reference: np.ndarray  # uint8 [H', W', 3]


def list_clip_sources(source: Path) -> list[ClipSource]:
    """The clips of a folder or a manifest; DatasetError if there are none."""
    source = Path(source)
    if source.is_dir():
        clips = [_folder_clip(p) for p in sorted(source.rglob("*.mp4"))]
    elif source.is_file() and source.suffix == MANIFEST_SUFFIX:
        clips = _manifest_clips(source)
    elif source.exists():
        raise DatasetError(f"{source}: not a folder of .mp4 clips or a {MANIFEST_SUFFIX} manifest")
    else:
        raise DatasetError(f"{source}: not found - give a folder of talking-head .mp4 clips or a manifest")
    if not clips:
        raise DatasetError(f"{source}: no usable clips (no .mp4 files) - add talking-head MP4s with audio, "
                           "or make a synthetic set with `flashtalk train data --synthetic N`")
    return clips


def _folder_clip(video: Path) -> ClipSource:
    reference = next((video.with_suffix(s) for s in REFERENCE_SUFFIXES if video.with_suffix(s).is_file()), None)
    prompt_file = video.with_suffix(".txt")
    prompt = prompt_file.read_text(encoding="utf-8").strip() if prompt_file.is_file() else DEFAULT_PROMPT
    return ClipSource(video, reference, prompt or DEFAULT_PROMPT)


def _manifest_clips(manifest: Path) -> list[ClipSource]:
    clips = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            video = manifest.parent / entry["video"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DatasetError(f"{manifest}:{number}: expected a JSON object with a \"video\" path") from None
        reference = entry.get("reference")
        clips.append(ClipSource(video, manifest.parent / reference if reference else None,
                                entry.get("prompt") or DEFAULT_PROMPT))
    return clips


def probe_clip(clip: ClipSource) -> None:
    """Raise DatasetError unless the clip has a video and an audio stream and its reference reads."""
    try:
        with av.open(str(clip.video)) as container:
            has_video, has_audio = bool(container.streams.video), bool(container.streams.audio)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DatasetError(f"{clip.video}: not a readable video ({str(exc).splitlines()[0][:100]}) "
                           "- re-export it as H.264 MP4 or remove it") from None
    if not has_video:
        raise DatasetError(f"{clip.video}: no video stream - remove it from the dataset")
    if not has_audio:
        raise DatasetError(f"{clip.video}: no audio track - every training clip needs its speech: "
                           "add the audio or remove the clip")
    if clip.reference is not None:
        try:
            load_portrait(clip.reference)
        except PortraitImageError as exc:
            raise DatasetError(f"{clip.reference}: {exc}") from None


def decode_clip(clip: ClipSource, min_frames: int, timeline: Timeline = Timeline()) -> DecodedClip:
    """Frames and audio cut to the same length (whole frames of audio); DatasetError if too short."""
    try:
        audio = load_audio(clip.video, timeline.sample_rate)
    except AudioFileError as exc:
        raise DatasetError(f"{clip.video}: {exc}") from None
    frames = read_mp4_frames(clip.video)
    count = min(len(frames), audio.size // timeline.samples_per_frame)
    if count < min_frames:
        raise DatasetError(f"{clip.video}: {count} frames with audio, a training chunk needs {min_frames} "
                           f"({min_frames / timeline.fps:.2f} s) - use longer clips")
    reference = load_portrait(clip.reference) if clip.reference is not None else frames[0]
    return DecodedClip(frames[:count], audio[:count * timeline.samples_per_frame], reference)
