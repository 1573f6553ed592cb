"""The set of networks the streaming pipeline drives, loaded once per engine.

Where each network lives is the placement's business (runtime.offload applies a memory plan);
the pipeline only asks `visit(name)` around each use. Without a placement (the `none` level):
the DiT, VAE, CLIP and wav2vec2 stay on the device, and the 11 GB umT5 encoder waits on the CPU
and visits the device whole for a prompt not seen before (embeddings are cached per prompt).
The DiT is loaded block by block; `place_block` sees each block on the device as it arrives.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from engine.flashtalk.model.clip import CLIPVisual, CLIPVisualConfig
from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.random_init import materialize_random
from engine.flashtalk.model.t5 import T5TextEncoder, UMT5Config, UMT5Encoder
from engine.flashtalk.model.vae import WanVAE, WanVAEConfig, build_diffusers_vae
from engine.flashtalk.model.wav2vec import Wav2VecFeatures, normalize_loudness
from engine.flashtalk.parallel.sequence_parallel import SequenceParallel
from engine.flashtalk.weights.checkpoint_layout import CLIP_CHECKPOINT, T5_CHECKPOINT, T5_TOKENIZER, VAE_CHECKPOINT
from engine.flashtalk.weights.dit_loader import PlaceBlock, load_dit


@dataclass
class FlashTalkModels:
    dit: FlashTalkDiT
    vae: WanVAE
    clip: CLIPVisual
    text_encoder: T5TextEncoder
    audio_encoder: Wav2VecFeatures
    device: torch.device
    dtype: torch.dtype = torch.bfloat16
    parallel: SequenceParallel | None = None
    placement: Placement | None = None  # None: only umT5 moves (whole, for a new prompt)
    _prompt_cache: dict = field(default_factory=dict)
    normalize_loudness = staticmethod(normalize_loudness)

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, model_dir: Path, wav2vec_dir: Path, device: torch.device,
                        dtype: torch.dtype = torch.bfloat16, place_block: PlaceBlock | None = None) -> FlashTalkModels:
        """Load the official layout (validated beforehand by checkpoint_validation.validate_model_dir)."""
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the engine reports its own load time
        clip_dtype, text_dtype = encoder_dtypes(torch.device(device))
        dit = load_dit(model_dir, device=device, dtype=dtype, place_block=place_block)
        vae = WanVAE.from_official(model_dir / VAE_CHECKPOINT, device=device, dtype=dtype)
        clip = CLIPVisual.from_official(model_dir / CLIP_CHECKPOINT, device=device, dtype=clip_dtype)
        text = T5TextEncoder.from_official(model_dir / T5_CHECKPOINT, model_dir / T5_TOKENIZER, device="cpu",
                                           dtype=text_dtype)
        audio = Wav2VecFeatures.from_dir(wav2vec_dir, device=device)
        return cls(dit, vae, clip, text, audio, device, dtype)

    @classmethod
    def random_14b(cls, tokenizer_dir: Path, device: torch.device, dtype: torch.dtype = torch.bfloat16,
                   seed: int = 0, place_block: PlaceBlock | None = None) -> FlashTalkModels:
        """The 14B shapes with random weights, built on `device` (benchmarks, no download).

        Every network has its real size (DiT, VAE, ViT-H/14, umT5-XXL, a wav2vec2-base) so time and
        memory are those of the real model; only a tokenizer folder is needed. The DiT and umT5 are
        built one stage at a time (DiT blocks through `place_block`, umT5 stages straight to the
        CPU), so the device never holds more than the loaded placement plus one stage.
        """
        from transformers import AutoTokenizer, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

        torch.manual_seed(seed)
        with default_dtype(dtype), torch.device("meta"):
            dit = FlashTalkDiT(**FlashTalkDiT.official_config()).eval().requires_grad_(False)
            t5 = UMT5Encoder(UMT5Config()).eval().requires_grad_(False)
        for name, part in dit.named_children():
            if name != "blocks":
                materialize_random(part, device)
        for index, block in enumerate(dit.blocks):
            materialize_random(block, device)
            if place_block is not None:
                place_block(index, block)
        for stage in (t5.token_embedding, *t5.blocks, t5.norm):
            materialize_random(stage, device).to("cpu")
        with default_dtype(dtype), torch.device(device):
            vae_model = build_diffusers_vae(WanVAEConfig())
        with default_dtype(torch.float16), torch.device(device):
            clip = CLIPVisual(CLIPVisualConfig()).eval().requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        w2v = Wav2Vec2Model(Wav2Vec2Config()).to(device)  # chinese-wav2vec2-base: 12 layers of 768
        audio = Wav2VecFeatures(w2v, Wav2Vec2FeatureExtractor(return_attention_mask=True))
        return cls(dit, WanVAE(vae_model, device), clip, T5TextEncoder(t5, tokenizer),
                   audio, torch.device(device), dtype)

    # -- what the pipeline calls -----------------------------------------------------------------
    def visit(self, name: str) -> contextlib.AbstractContextManager:
        """Inside, network `name` (text_encoder, clip, vae, audio_encoder) is on the device."""
        if self.placement is not None:
            return self.placement.visit(name)
        if name == "text_encoder":
            return self._text_encoder_on_device()
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _text_encoder_on_device(self):
        model = self.text_encoder.model
        model.to(self.device)
        try:
            yield
        finally:
            model.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def encode_text(self, prompt: str) -> torch.Tensor:
        """-> [1, L, text_dim]; cached per prompt, the encoder visits the GPU only on a miss."""
        if prompt not in self._prompt_cache:
            with self.visit("text_encoder"):
                states = self.text_encoder.encode([prompt], device=self.device)
            self._prompt_cache[prompt] = states.to(self.dtype)
        return self._prompt_cache[prompt]

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """image [1, 3, H, W] in [-1, 1] -> [1, 257, clip_dim] in the DiT dtype."""
        with self.visit("clip"):
            return self.clip.encode_image(image).to(self.dtype)

    def vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        with self.visit("vae"):
            return self.vae.encode(video).to(self.dtype)

    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self.visit("vae"):
            return self.vae.decode(latents)

    def dit_forward(self, latent: torch.Tensor, t: torch.Tensor, state, audio: torch.Tensor) -> torch.Tensor:
        """latent [16, F, h, w] -> float32 velocity [16, F, h, w]; F may be fewer latent frames than
        the conditions hold (a short first chunk): it takes their leading F."""
        cond = state.cond[0, :, :latent.shape[1]]  # [20, F, h, w]
        x = torch.cat([latent.to(self.dtype), cond], dim=0)[None]  # [1, 36, F, h, w]
        return self.dit(x, t, state.context, state.clip, audio, parallel=self.parallel)[0]

    def memory_report(self) -> dict:
        if self.device.type != "cuda":
            return {}
        return {"gpu_peak_gb": torch.cuda.max_memory_allocated(self.device) / 2**30,
                "gpu_reserved_gb": torch.cuda.max_memory_reserved(self.device) / 2**30}


def encoder_dtypes(device: torch.device) -> tuple[torch.dtype, torch.dtype]:
    """(CLIP, umT5) compute dtypes: the reference's fp16 and bf16 on a GPU. A CPU has fast kernels
    for neither (bf16 is ~13x slower than fp32 without AVX512-BF16), so there both run in fp32."""
    if device.type == "cpu":
        return torch.float32, torch.float32
    return torch.float16, torch.bfloat16


class Placement(Protocol):
    """Where the networks wait between uses (runtime.offload.OffloadPlacement)."""

    def visit(self, name: str) -> contextlib.AbstractContextManager:
        """Inside, network `name` is on the compute device."""


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Modules built inside get `dtype` parameters directly (no float32 copy first)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)

