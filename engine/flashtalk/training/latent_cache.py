"""Clips preprocessed once into what the DiT trains on, one safetensors shard per clip.

A clip of N frames is cut into segments of `frame_num` frames every `new_frames` frames (the
streaming chunks: segment j+1's motion frames are segment j's last `motion_frames` frames), and
each segment is VAE-encoded on its own with a fresh causal cache, exactly as the sampler's
chunks are. Per clip a shard holds:

    latents       [S, 16, F_lat, h, w]  the segments' normalised VAE latents
    audio         [N, layers, dim]      wav2vec2 features of the whole clip at 25 fps
    audio_rms     [N]                   RMS of the speech per video frame (the lip-sync metric)
    ref_cond      [16, F_lat, h, w]     VAE(reference + frame_num-1 zero frames), the DiT's y
    ref_latent    [16, 1, h, w]         VAE(reference): chunk 0's motion latent at inference
    reference     [3, H, W]             the reference frame in [-1, 1] (colour-correction target)
    clip_tokens   [257, clip_dim]       CLIP of the reference
    text          [text_len, text_dim]  umT5 of the prompt, zero-padded

`dataset.json` holds the geometry and encoder widths; `null_prompt.safetensors` the empty
prompt's embedding (CFG's null text). Shards are written to a temporary name and renamed, so an
interrupted run resumes at the first missing clip and never leaves a half-written shard.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from avkit.timeline import Timeline
from engine.flashtalk.pipeline.audio_window import chunk_frame_indices
from engine.flashtalk.pipeline.portrait_prep import cover_resize_crop, reference_tensor
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.training.clip_source import ClipSource, DatasetError, decode_clip, probe_clip
from engine.flashtalk.training.condition_encoders import ConditionEncoders

CACHE_FORMAT = 1
DATASET_FILE = "dataset.json"
NULL_PROMPT_FILE = "null_prompt.safetensors"
SHARD_DIR = "clips"
NULL_PROMPT = ""  # CFG's unconditional text
GEOMETRY_KEYS = ("height", "width", "frame_num", "motion_frames")
VAE_BATCH = 8  # segments per VAE call


def segment_count(frames: int, settings: StreamSettings) -> int:
    """Chunks of `frame_num` frames every `new_frames` frames that fit in `frames`."""
    return max(0, (frames - settings.frame_num) // settings.new_frames + 1)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) then rename onto `path`: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# 1. Building ------------------------------------------------------------------------------------

def build_cache(clips: list[ClipSource], encoders: ConditionEncoders, settings: StreamSettings,
                out_dir: Path, progress: bool = True) -> list[Path]:
    """Preprocess every clip into `out_dir/clips/`; clips already there are kept. -> shard paths."""
    out_dir = Path(out_dir)
    for clip in clips:
        probe_clip(clip)
    (out_dir / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    _write_dataset_json(out_dir, settings, encoders.widths)
    if not (out_dir / NULL_PROMPT_FILE).is_file():
        null = {"text": encoders.encode_prompt(NULL_PROMPT).contiguous()}
        _write_atomically(out_dir / NULL_PROMPT_FILE, lambda p: save_file(null, str(p)))
    shards = []
    for index, clip in enumerate(tqdm(clips, desc="preprocessing clips", unit="clip", disable=not progress)):
        shard = out_dir / SHARD_DIR / f"{index:05d}-{clip.video.stem}.safetensors"
        if not _shard_matches(shard, clip):
            tensors, meta = encode_clip(clip, encoders, settings)
            _write_atomically(shard, lambda p, t=tensors, m=meta: save_file(t, str(p), metadata=m))
        shards.append(shard)
    return shards


def _write_dataset_json(out_dir: Path, settings: StreamSettings, widths: dict[str, int]) -> None:
    info = {"format": CACHE_FORMAT, **{k: getattr(settings, k) for k in GEOMETRY_KEYS}, "widths": widths}
    path = out_dir / DATASET_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != info:
            raise DatasetError(f"{path}: this cache was made with other settings ({_difference(old, info)}) "
                               "- use another --out folder, or the same settings")
        return
    _write_atomically(path, lambda p: p.write_text(json.dumps(info, indent=2), encoding="utf-8"))


def _difference(old: dict, new: dict) -> str:
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {old.get(k)} vs {new.get(k)}" for k in keys[:3])


def _shard_matches(shard: Path, clip: ClipSource) -> bool:
    if not shard.is_file():
        return False
    with safe_open(str(shard), framework="pt") as f:
        return (f.metadata() or {}).get("source") == str(clip.video)


def encode_clip(clip: ClipSource, encoders: ConditionEncoders,
                settings: StreamSettings) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """One clip -> (shard tensors, string metadata)."""
    timeline = Timeline(settings.sample_rate, settings.fps)
    decoded = decode_clip(clip, settings.frame_num, timeline)
    h, w = settings.height, settings.width
    frames = np.stack([cover_resize_crop(f, h, w) for f in decoded.frames])  # [N, H, W, 3]
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1  # [3, N, H, W] in [-1, 1]
    starts = range(0, segment_count(len(frames), settings) * settings.new_frames, settings.new_frames)
    segments = torch.stack([video[:, s:s + settings.frame_num] for s in starts])  # [S, 3, frame_num, H, W]
    latents = torch.cat([encoders.encode_video(segments[i:i + VAE_BATCH])
                         for i in range(0, len(segments), VAE_BATCH)])  # [S, 16, F_lat, h, w]
    ref = reference_tensor(decoded.reference, h, w, "cpu", torch.float32)  # [1, 3, 1, H, W]
    zeros = torch.zeros(1, 3, settings.frame_num - 1, h, w)
    audio_rms = np.sqrt(np.mean(decoded.audio.reshape(len(frames), -1).astype(np.float64) ** 2, axis=1))
    tensors = {
        "latents": latents,
        "audio": encoders.encode_audio(decoded.audio, len(frames), settings.sample_rate),
        "audio_rms": torch.from_numpy(audio_rms).float(),
        "ref_cond": encoders.encode_video(torch.cat([ref, zeros], dim=2))[0],
        "ref_latent": encoders.encode_video(ref)[0],
        "reference": ref[0, :, 0],
        "clip_tokens": encoders.encode_image(ref),
        "text": encoders.encode_prompt(clip.prompt),
    }
    meta = {"source": str(clip.video), "prompt": clip.prompt, "frames": str(len(frames))}
    return {k: v.contiguous() for k, v in tensors.items()}, meta


# 2. Reading -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipWindow:
    """K consecutive chunks of one clip, everything the DiT needs for each, on the CPU."""

    latents: torch.Tensor  # [K, 16, F_lat, h, w] ground-truth chunk latents
    audio: torch.Tensor  # [K, frame_num, 5, layers, dim] per-chunk wav2vec2 windows
    audio_rms: torch.Tensor  # [K, frame_num]
    ref_cond: torch.Tensor  # [16, F_lat, h, w]
    ref_latent: torch.Tensor  # [16, 1, h, w]
    reference: torch.Tensor  # [3, H, W]
    clip_tokens: torch.Tensor  # [257, clip_dim]
    text: torch.Tensor  # [text_len, text_dim]


class LatentCache:
    """Read side of a cache folder: its geometry, widths and clips, segments read on demand."""

    def __init__(self, root: Path):
        self.root = Path(root)
        path = self.root / DATASET_FILE
        if not path.is_file():
            raise DatasetError(f"{self.root}: no {DATASET_FILE} - preprocess clips first with "
                               "`flashtalk train data`")
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("format") != CACHE_FORMAT:
            raise DatasetError(f"{path}: cache format {info.get('format')}, expected {CACHE_FORMAT} - "
                               "preprocess the clips again")
        self.settings = StreamSettings(**{k: info[k] for k in GEOMETRY_KEYS}).validate()
        self.widths: dict[str, int] = info["widths"]
        self.shards = sorted((self.root / SHARD_DIR).glob("*.safetensors"))
        if not self.shards:
            raise DatasetError(f"{self.root}: no preprocessed clips in {SHARD_DIR}/ - run `flashtalk train data`")
        self.segments = [self._segments(s) for s in self.shards]
        with safe_open(str(self.root / NULL_PROMPT_FILE), framework="pt") as f:
            self.null_text = f.get_tensor("text")  # [text_len, text_dim]

    @staticmethod
    def _segments(shard: Path) -> int:
        with safe_open(str(shard), framework="pt") as f:
            return f.get_slice("latents").get_shape()[0]

    def __len__(self) -> int:
        return len(self.shards)

    def window(self, clip: int, first: int, chunks: int) -> ClipWindow:
        """Chunks first .. first+chunks-1 of clip `clip`."""
        if first < 0 or first + chunks > self.segments[clip]:
            raise IndexError(f"clip {clip} has {self.segments[clip]} chunks, asked for {first}..{first + chunks - 1}")
        s = self.settings
        with safe_open(str(self.shards[clip]), framework="pt") as f:
            latents = f.get_slice("latents")[first:first + chunks]
            features, rms = f.get_tensor("audio"), f.get_tensor("audio_rms")
            constants = {k: f.get_tensor(k) for k in ("ref_cond", "ref_latent", "reference", "clip_tokens", "text")}
        starts = [(first + k) * s.new_frames for k in range(chunks)]
        # Each chunk sees its frames' windows clamped at the chunk's end, as the streaming window is.
        audio = torch.stack([features[chunk_frame_indices(o + s.frame_num, s.frame_num)] for o in starts])
        audio_rms = torch.stack([rms[o:o + s.frame_num] for o in starts])
        return ClipWindow(latents=latents, audio=audio, audio_rms=audio_rms, **constants)
