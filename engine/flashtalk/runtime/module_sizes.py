"""How many bytes each FlashTalk network takes, counted from the modules themselves.

`checkpoint_sizes` builds every network on the meta device from a checkpoint folder's configs (or
the official ones), converted as the engine converts them (FP8 block linears at --precision fp8),
so a plan exists before a byte of weights is read; `loaded_sizes` counts what an engine holds.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.flashtalk.model.clip import CLIPVisual, CLIPVisualConfig, clip_visual_config_from_state_dict
from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.fp8_linear import quantize_dit_linears
from engine.flashtalk.model.t5 import UMT5Config, UMT5Encoder, t5_config_from_state_dict
from engine.flashtalk.model.vae import WanVAEConfig, build_diffusers_vae, vae_config_from_state_dict
from engine.flashtalk.pipeline.models import default_dtype, encoder_dtypes
from engine.flashtalk.runtime.memory_plan import ModuleSizes
from engine.flashtalk.runtime.precision import PRECISION_DTYPES
from engine.flashtalk.weights.checkpoint_layout import CLIP_CHECKPOINT, T5_CHECKPOINT, VAE_CHECKPOINT, WAV2VEC_CONFIG
from engine.flashtalk.weights.checkpoint_validation import load_pth, meta_dit

AUDIO_DTYPE = torch.float32  # wav2vec2 runs in fp32 everywhere


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers, each tensor counted once."""
    seen: dict[int, int] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        seen[id(tensor)] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def sizes_of(dit: FlashTalkDiT, text: UMT5Encoder, clip: CLIPVisual, vae: nn.Module, audio: nn.Module,
             precision: str) -> ModuleSizes:
    """ModuleSizes of the five networks (real or on the meta device), as they are now."""
    blocks = tuple(module_bytes(b) for b in dit.blocks)
    text_stages = (module_bytes(text.token_embedding), *(module_bytes(b) for b in text.blocks),
                   module_bytes(text.norm))
    return ModuleSizes(precision=precision, dit_blocks=blocks, dit_other=module_bytes(dit) - sum(blocks),
                       text_stages=text_stages, clip=module_bytes(clip), vae=module_bytes(vae),
                       audio=module_bytes(audio), dit_dim=dit.config.dim, text_dim=text.config.dim,
                       text_len=dit.config.text_len, clip_dim=clip.config.dim, clip_tokens=clip.config.tokens,
                       vae_base_dim=vae.config.base_dim, audio_dim=audio.config.hidden_size)


def loaded_sizes(models, precision: str) -> ModuleSizes:
    """The sizes of a loaded FlashTalkModels (the VAE inside a ParallelVAE counted as one)."""
    return sizes_of(models.dit, models.text_encoder.model, models.clip,
                    models.vae.model, models.audio_encoder.model, precision)


def checkpoint_sizes(model_dir: Path | None, wav2vec_dir: Path | None, precision: str,
                     device: torch.device = torch.device("cuda")) -> ModuleSizes:
    """Sizes of the networks in `model_dir` (None: the official SoulX-FlashTalk-14B) at `precision`,
    in the dtypes they run in on `device` (pipeline.models loads them so).

    Reads configs and memory-mapped headers only. Raises CheckpointError for a damaged folder.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    dtype = PRECISION_DTYPES[precision]
    clip_dtype, text_dtype = encoder_dtypes(torch.device(device))
    with torch.device("meta"), default_dtype(dtype):
        dit = meta_dit(model_dir) if model_dir is not None else FlashTalkDiT(**FlashTalkDiT.official_config())
        vae_config = vae_config_from_state_dict(load_pth(model_dir / VAE_CHECKPOINT)) if model_dir else WanVAEConfig()
        vae = build_diffusers_vae(vae_config)
    with torch.device("meta"):
        if precision == "fp8":
            quantize_dit_linears(dit, use_scaled_mm=False)
        t5_config = t5_config_from_state_dict(load_pth(model_dir / T5_CHECKPOINT)) if model_dir else UMT5Config()
        text = UMT5Encoder(t5_config).to(text_dtype)
        clip_config = (clip_visual_config_from_state_dict(load_pth(model_dir / CLIP_CHECKPOINT)) if model_dir
                       else CLIPVisualConfig())
        clip = CLIPVisual(clip_config).to(clip_dtype)
        audio_config = (Wav2Vec2Config.from_pretrained(str(wav2vec_dir)) if wav2vec_dir is not None
                        and (Path(wav2vec_dir) / WAV2VEC_CONFIG).is_file() else Wav2Vec2Config())
        audio = Wav2Vec2Model(audio_config).to(AUDIO_DTYPE)
    return sizes_of(dit, text, clip, vae, audio, precision)
