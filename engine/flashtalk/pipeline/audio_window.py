"""The chunk's audio condition: re-encode the rolling window, keep the chunk's frames.

Each chunk the whole 8 s window (zero-initialised at session start) is loudness-normalised and
encoded by wav2vec2 at 25 features/s; the last `frame_num` frames are the chunk's (the first
`motion_frames` of them align with the motion frames). Every frame gets a 5-frame context window
(offsets -2..+2) clamped to the window.
"""
from __future__ import annotations

import numpy as np
import torch

AUDIO_CONTEXT = 2  # frames on each side of a video frame: window of 5


def chunk_frame_indices(window_frames: int, frame_num: int) -> torch.Tensor:
    """-> long [frame_num, 5]: per chunk frame, the window's feature indices (clamped)."""
    start = window_frames - frame_num
    offsets = torch.arange(-AUDIO_CONTEXT, AUDIO_CONTEXT + 1)
    centers = torch.arange(start, window_frames)[:, None]
    return (centers + offsets[None]).clamp(0, window_frames - 1)


def chunk_audio_embedding(encoder, normalize_loudness, window: np.ndarray, sample_rate: int,
                          fps: int, frame_num: int) -> torch.Tensor:
    """window: float32 [N] -> [1, frame_num, 5, layers, dim] on the encoder's device."""
    audio = normalize_loudness(window.astype(np.float64), sample_rate)
    window_frames = int(len(window) / sample_rate * fps)
    features = encoder.features(audio, window_frames)  # [window_frames, layers, dim]
    idx = chunk_frame_indices(window_frames, frame_num).to(features.device)
    return features[idx][None].contiguous()
