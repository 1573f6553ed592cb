"""The frozen networks that turn a clip into what the DiT trains on: VAE, CLIP, umT5, wav2vec2.

Loaded from the official checkpoint layout (the DiT is not needed to preprocess data). Each
encoder runs exactly as the streaming pipeline runs it, so cached conditions equal inference's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.flashtalk.model.clip import CLIPVisual
from engine.flashtalk.model.t5 import T5TextEncoder
from engine.flashtalk.model.vae import WanVAE
from engine.flashtalk.model.wav2vec import Wav2VecFeatures, normalize_loudness
from engine.flashtalk.weights.checkpoint_layout import CLIP_CHECKPOINT, T5_CHECKPOINT, T5_TOKENIZER, VAE_CHECKPOINT
from engine.flashtalk.weights.checkpoint_validation import CheckpointError, validate_model_dir


@dataclass
class ConditionEncoders:
    vae: WanVAE
    clip: CLIPVisual
    text: T5TextEncoder
    audio: Wav2VecFeatures
    device: torch.device

    @classmethod
    def from_model_dir(cls, model_dir: Path, wav2vec_dir: Path, device: torch.device,
                       dtype: torch.dtype) -> ConditionEncoders:
        """VAE in `dtype` (bf16 on GPUs, fp32 on CPUs), CLIP fp16 on GPUs, wav2vec fp32.

        Raises CheckpointError (one line) for a folder that is not the official layout.
        """
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the preprocessing shows its own progress
        model_dir, wav2vec_dir = Path(model_dir), Path(wav2vec_dir)
        validate_model_dir(model_dir, wav2vec_dir)
        clip_dtype = torch.float16 if device.type == "cuda" else torch.float32
        try:
            vae = WanVAE.from_official(model_dir / VAE_CHECKPOINT, device=device, dtype=dtype)
            clip = CLIPVisual.from_official(model_dir / CLIP_CHECKPOINT, device=device, dtype=clip_dtype)
            text = T5TextEncoder.from_official(model_dir / T5_CHECKPOINT, model_dir / T5_TOKENIZER, device=device,
                                               dtype=dtype)
            audio = Wav2VecFeatures.from_dir(wav2vec_dir, device=device)
        except (FileNotFoundError, ValueError) as exc:
            raise CheckpointError(str(exc).splitlines()[0]) from None
        return cls(vae, clip, text, audio, device)

    @property
    def widths(self) -> dict[str, int]:
        """The condition widths a DiT must take to train on this cache (its config keys)."""
        return {"text_dim": self.text.model.config.dim, "clip_dim": self.clip.config.dim,
                "audio_layers": self.audio.layers, "audio_dim": self.audio.dim}

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """-> float32 [text_len, text_dim], zero past the prompt's tokens (as the DiT receives it)."""
        return self.text.encode([prompt])[0].float().cpu()

    def encode_image(self, reference: torch.Tensor) -> torch.Tensor:
        """reference [1, 3, 1, H, W] in [-1, 1] -> float32 [257, clip_dim]."""
        return self.clip.encode_image(reference[:, :, 0].to(self.device))[0].float().cpu()

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, F, H, W] in [-1, 1] -> float32 [B, 16, 1 + (F-1)/4, H/8, W/8] normalised latents."""
        return self.vae.encode(video.to(self.device)).float().cpu()

    def encode_audio(self, audio: np.ndarray, frames: int, sample_rate: int) -> torch.Tensor:
        """Whole-clip speech float32 [N] -> float32 [frames, layers, dim] wav2vec2 features at 25 fps."""
        normalised = normalize_loudness(audio.astype(np.float64), sample_rate)
        return self.audio.features(normalised, frames).float().cpu()
