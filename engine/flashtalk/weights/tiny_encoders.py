"""Tiny random encoders in exactly the official SoulX-FlashTalk file layout, for tests.

Writes the VAE, CLIP and umT5 `.pth` files and both tokenizer folders into the model directory and
a tiny wav2vec2 folder beside it; sizes come from `model.tiny_sizes.TINY`. Tokenizers are trained
here on a few sentences (no download). The loaders read every size back from the tensors.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from avkit.timeline import SAMPLE_RATE
from engine.flashtalk.model.clip import (
    CLIPTextualConfig,
    CLIPVisualConfig,
    official_clip_textual_key_shapes,
    official_clip_visual_key_shapes,
)
from engine.flashtalk.model.state_dict_check import Shapes
from engine.flashtalk.model.t5 import UMT5Config, official_t5_key_shapes
from engine.flashtalk.model.tiny_sizes import TINY, TinySizes
from engine.flashtalk.model.vae import official_vae_key_shapes
from engine.flashtalk.weights.checkpoint_layout import (
    CLIP_CHECKPOINT,
    CLIP_TOKENIZER,
    T5_CHECKPOINT,
    T5_TOKENIZER,
    VAE_CHECKPOINT,
)

CLIP_LOGIT_SCALE = math.log(1 / 0.07)
TOKENIZER_VOCAB = 200
TOKENIZER_CORPUS = (
    "A person is talking. Only the foreground characters are moving, the background remains static.",
    "The quick brown fox jumps over the lazy dog while the camera stays still.",
    "Ein Mensch spricht ruhig in die Kamera. Une personne parle. 一个人在说话。",
    "Lips, eyes and head move naturally with the speech; lighting is soft and even.",
)


def _random_tensor(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Norm scales 1, biases 0, other weights N(0, 1/fan_in): finite, well-scaled activations."""
    module = name.rsplit(".", 2)[-2] if name.count(".") else name
    if name == "log_scale":
        return torch.tensor(CLIP_LOGIT_SCALE)
    if name.endswith(".bias"):
        return torch.zeros(shape)
    if name.endswith(".gamma") or ("norm" in module and name.endswith(".weight")):
        return torch.ones(shape)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return torch.randn(shape, generator=generator) * fan_in ** -0.5


def random_state_dict(shapes: Shapes, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: _random_tensor(k, s, generator).to(dtype) for k, s in shapes.items()}


def _train_tokenizer(special: list[str], template: str) -> Tokenizer:
    """A small SentencePiece-style Unigram tokenizer; `template` adds the special tokens."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=special,
                                      unk_token="<unk>")
    tokenizer.train_from_iterator(TOKENIZER_CORPUS, trainer)
    used = [t for t in special if t in template]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tokenizer.token_to_id(t)) for t in used])
    return tokenizer


def write_umt5_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """umT5 ids: <pad> 0, </s> 1, <unk> 2; every prompt ends with </s>."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>"),
        pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def write_xlm_roberta_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """XLM-RoBERTa ids: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> 4; `<s> text </s>`."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s> $A </s>"),
        bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>")
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def tiny_clip_configs(sizes: TinySizes, text_vocab: int) -> tuple[CLIPVisualConfig, CLIPTextualConfig]:
    visual = CLIPVisualConfig(dim=sizes.clip_dim, layers=sizes.clip_layers, mlp_dim=4 * sizes.clip_dim,
                              embed_dim=sizes.clip_embed_dim)
    textual = CLIPTextualConfig(vocab=text_vocab, max_len=sizes.clip_text_max_len,
                                dim=sizes.clip_text_dim, layers=sizes.clip_text_layers,
                                embed_dim=sizes.clip_embed_dim)
    return visual, textual


def tiny_t5_config(sizes: TinySizes) -> UMT5Config:
    return UMT5Config(vocab=sizes.t5_vocab, dim=sizes.t5_dim, attn_dim=sizes.t5_dim,
                      ffn_dim=sizes.t5_ffn_dim, heads=sizes.t5_heads, layers=sizes.t5_layers)


def write_tiny_wav2vec(folder: Path, sizes: TinySizes, seed: int) -> None:
    """A random base-architecture wav2vec2 (group-norm CNN, 320x downsampling -> 50 Hz)."""
    config = Wav2Vec2Config(hidden_size=sizes.wav2vec_dim, num_hidden_layers=sizes.wav2vec_layers,
                            num_attention_heads=sizes.wav2vec_heads,
                            intermediate_size=sizes.wav2vec_ffn_dim,
                            conv_dim=(sizes.wav2vec_conv_dim,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=sizes.wav2vec_heads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Wav2Vec2Model(config)
    model.save_pretrained(str(folder))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                             do_normalize=True, return_attention_mask=False).save_pretrained(str(folder))


def write_tiny_encoders(model_dir: Path, wav2vec_dir: Path, seed: int = 0,
                        sizes: TinySizes = TINY) -> None:
    """Write every non-DiT file of the official checkpoint layout, tiny and random."""
    model_dir, wav2vec_dir = Path(model_dir), Path(wav2vec_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    wav2vec_dir.mkdir(parents=True, exist_ok=True)
    write_umt5_tokenizer(model_dir / T5_TOKENIZER)
    xlm = write_xlm_roberta_tokenizer(model_dir / CLIP_TOKENIZER)

    vae = official_vae_key_shapes(z_dim=sizes.vae_z_dim, base_dim=sizes.vae_base_dim)
    torch.save(random_state_dict(vae, seed), model_dir / VAE_CHECKPOINT)

    visual, textual = tiny_clip_configs(sizes, text_vocab=len(xlm))
    clip = {**official_clip_visual_key_shapes(visual), **official_clip_textual_key_shapes(textual)}
    torch.save(random_state_dict(clip, seed + 1), model_dir / CLIP_CHECKPOINT)

    t5 = official_t5_key_shapes(tiny_t5_config(sizes))
    torch.save(random_state_dict(t5, seed + 2, torch.bfloat16), model_dir / T5_CHECKPOINT)

    write_tiny_wav2vec(wav2vec_dir, sizes, seed + 3)
