"""Per-video-frame speech features from chinese-wav2vec2-base, as InfiniteTalk computes them.

The 50 Hz CNN features are linearly resampled to the video frame rate *before* the feature
projection and the transformer, so each of the 12 transformer layers yields exactly one vector per
video frame. Runs in float32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyloudnorm
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

SAMPLE_RATE = 16000
TARGET_LUFS = -23.0
IMPLAUSIBLE_LUFS = 100.0   # |loudness| above this means silence or garbage: leave the audio alone


def normalize_loudness(audio: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Scale mono audio to -23 LUFS integrated loudness (ITU-R BS.1770), as the reference does.

    Returns float32. Silence (loudness -inf or below -100 LUFS) comes back unchanged.
    """
    samples = np.asarray(audio, dtype=np.float64)
    loudness = pyloudnorm.Meter(rate).integrated_loudness(samples)
    if abs(loudness) > IMPLAUSIBLE_LUFS:
        return samples.astype(np.float32)
    return pyloudnorm.normalize.loudness(samples, loudness, TARGET_LUFS).astype(np.float32)


class Wav2VecFeatures:
    """audio float32 [N] at 16 kHz -> [video_frames, layers, dim] hidden states."""

    def __init__(self, model: Wav2Vec2Model, extractor: Wav2Vec2FeatureExtractor):
        self.model = model.eval().requires_grad_(False)
        self.extractor = extractor

    @classmethod
    def from_dir(cls, directory: str | Path, device: str | torch.device = "cpu") -> Wav2VecFeatures:
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"wav2vec2 model not found in {directory} "
                                    "(expected the chinese-wav2vec2-base folder with config.json)")
        model = Wav2Vec2Model.from_pretrained(str(directory), local_files_only=True,
                                              dtype=torch.float32)
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory), local_files_only=True)
        return cls(model.to(device), extractor)

    @property
    def layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def features(self, audio: np.ndarray, video_frames: int) -> torch.Tensor:
        """audio float32 [N] @ 16 kHz (already loudness-normalised) -> [video_frames, layers, dim]."""
        if video_frames < 1:
            raise ValueError(f"video_frames must be >= 1, got {video_frames}")
        device = self.model.device
        values = self.extractor(np.asarray(audio, dtype=np.float32), sampling_rate=SAMPLE_RATE).input_values
        x = torch.from_numpy(np.squeeze(np.asarray(values))).float().to(device).view(1, -1)

        def to_video_rate(module, inputs, cnn):  # CNN features [1, C, T50] -> [1, C, video_frames]
            return F.interpolate(cnn, size=video_frames, mode="linear", align_corners=True)

        # Resample between the CNN and the feature projection, through the model's public forward.
        hook = self.model.feature_extractor.register_forward_hook(to_video_rate)
        try:
            out = self.model(x, output_hidden_states=True, return_dict=True)
        finally:
            hook.remove()
        # hidden_states[0] is the transformer input; [1:] are the outputs of its layers.
        layers = torch.stack(out.hidden_states[1:], dim=1)    # [1, layers, video_frames, dim]
        return layers[0].transpose(0, 1).contiguous()          # [video_frames, layers, dim]
