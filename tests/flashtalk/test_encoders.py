"""CLIP, umT5 and wav2vec2 encoders, loaded from tiny files written in the official layout."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np  # noqa: E402

from engine.flashtalk.model.clip import (  # noqa: E402
    CLIP_MEAN,
    CLIP_STD,
    CLIPVisual,
    official_clip_visual_key_shapes,
)
from engine.flashtalk.model.t5 import (  # noqa: E402
    T5RelativeBias,
    T5TextEncoder,
    UMT5Config,
    official_t5_key_shapes,
)
from engine.flashtalk.model.tiny_sizes import TINY  # noqa: E402
from engine.flashtalk.model.wav2vec import Wav2VecFeatures, normalize_loudness  # noqa: E402
from engine.flashtalk.weights.checkpoint_layout import (  # noqa: E402
    CLIP_CHECKPOINT,
    CLIP_TOKENIZER,
    T5_CHECKPOINT,
    T5_TOKENIZER,
    VAE_CHECKPOINT,
)
from engine.flashtalk.weights.tiny_encoders import write_tiny_encoders  # noqa: E402

PROMPT = "A person is talking. Only the foreground characters are moving, the background remains static."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_encoders(root / "model", root / "wav2vec", seed=0)
    return root


@pytest.fixture(scope="module")
def t5(tiny):
    model_dir = tiny / "model"
    return T5TextEncoder.from_official(model_dir / T5_CHECKPOINT, model_dir / T5_TOKENIZER)


@pytest.fixture(scope="module")
def wav2vec(tiny):
    return Wav2VecFeatures.from_dir(tiny / "wav2vec")


# -- tiny checkpoint layout --------------------------------------------------------------------

def test_tiny_files_have_the_official_layout(tiny):
    model_dir = tiny / "model"
    for name in (VAE_CHECKPOINT, CLIP_CHECKPOINT, T5_CHECKPOINT):
        assert (model_dir / name).is_file()
    for folder in (T5_TOKENIZER, CLIP_TOKENIZER):
        assert (model_dir / folder / "tokenizer.json").is_file()
    assert (tiny / "wav2vec" / "config.json").is_file()
    assert (tiny / "wav2vec" / "preprocessor_config.json").is_file()
    clip_sd = torch.load(model_dir / CLIP_CHECKPOINT, weights_only=True)
    assert "log_scale" in clip_sd and any(k.startswith("textual.blocks.") for k in clip_sd)
    t5_sd = torch.load(model_dir / T5_CHECKPOINT, weights_only=True)
    assert t5_sd["token_embedding.weight"].dtype == torch.bfloat16
    assert set(t5_sd) == set(official_t5_key_shapes(UMT5Config(
        vocab=TINY.t5_vocab, dim=TINY.t5_dim, attn_dim=TINY.t5_dim, ffn_dim=TINY.t5_ffn_dim,
        heads=TINY.t5_heads, layers=TINY.t5_layers)))


def test_the_14b_clip_layout_has_the_documented_shapes():
    shapes = official_clip_visual_key_shapes()
    assert shapes["visual.pos_embedding"] == (1, 257, 1280)
    assert shapes["visual.patch_embedding.weight"] == (1280, 3, 14, 14)
    assert shapes["visual.transformer.31.mlp.0.weight"] == (5120, 1280)
    assert "visual.patch_embedding.bias" not in shapes


# -- CLIP ----------------------------------------------------------------------------------------

def test_clip_gives_the_31_of_32_block_tokens(tiny):
    clip = CLIPVisual.from_official(tiny / "model" / CLIP_CHECKPOINT, "cpu", torch.float32)
    assert len(clip.transformer) == TINY.clip_layers - 1
    image = torch.rand(2, 3, 96, 64) * 2 - 1
    tokens = clip.encode_image(image)
    assert tokens.shape == (2, TINY.clip_tokens, TINY.clip_dim)
    assert torch.isfinite(tokens).all()
    default = CLIPVisual.from_official(tiny / "model" / CLIP_CHECKPOINT)
    assert default.encode_image(image.to(torch.bfloat16)).dtype == torch.float16


def test_clip_ignores_the_last_block_post_norm_and_head(tiny, tmp_path):
    path = tiny / "model" / CLIP_CHECKPOINT
    sd = torch.load(path, weights_only=True)
    last = f"visual.transformer.{TINY.clip_layers - 1}."
    changed = {k: (v + 1 if k.startswith((last, "visual.post_norm", "visual.head")) else v)
               for k, v in sd.items()}
    torch.save(changed, tmp_path / CLIP_CHECKPOINT)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    a = CLIPVisual.from_official(path, "cpu", torch.float32).encode_image(image)
    b = CLIPVisual.from_official(tmp_path / CLIP_CHECKPOINT, "cpu", torch.float32).encode_image(image)
    assert torch.equal(a, b)


def test_clip_preprocessing_squashes_to_224_and_applies_clip_statistics(tiny):
    clip = CLIPVisual.from_official(tiny / "model" / CLIP_CHECKPOINT, "cpu", torch.float32)
    image = torch.full((1, 3, 50, 120), 0.2)
    image[:, :, :, :20] = -0.6                    # a dark left edge: a centre crop would cut it off
    x = clip.preprocess(image)
    assert x.shape == (1, 3, 224, 224)
    for c in range(3):
        torch.testing.assert_close(x[0, c, 100, 10], torch.tensor((0.2 - CLIP_MEAN[c]) / CLIP_STD[c]))
        torch.testing.assert_close(x[0, c, 100, 112], torch.tensor((0.6 - CLIP_MEAN[c]) / CLIP_STD[c]))


def test_clip_checkpoint_without_text_tower_is_refused(tiny, tmp_path):
    sd = torch.load(tiny / "model" / CLIP_CHECKPOINT, weights_only=True)
    visual_only = {k: v for k, v in sd.items() if k.startswith("visual.")}
    torch.save(visual_only, tmp_path / "clip.pth")
    with pytest.raises(ValueError, match="no text tower"):
        CLIPVisual.from_official(tmp_path / "clip.pth")


# -- umT5 ----------------------------------------------------------------------------------------

def test_t5_pads_to_512_with_zeros_after_the_true_length(t5):
    out = t5.encode([PROMPT, "hi"])
    assert out.shape == (2, TINY.text_len, TINY.t5_dim) and out.dtype == torch.bfloat16
    lengths = t5.tokenizer([PROMPT, "hi"]).attention_mask
    for row, mask in zip(out, lengths):
        n = sum(mask)                                      # tokens incl. the closing </s>
        assert (row[:n].abs().sum(-1) > 0).all()
        assert torch.equal(row[n:], torch.zeros_like(row[n:]))


def test_t5_padding_is_masked_and_prompts_are_cleaned(t5):
    alone = t5.encode(["hi"])
    batched = t5.encode([PROMPT, "hi"])[1:]
    torch.testing.assert_close(alone, batched)             # pad tokens never leak into real ones
    messy = t5.encode(["  A person &amp;amp;   is\n talking. "])
    clean = t5.encode(["A person & is talking."])
    assert torch.equal(messy, clean)


def test_t5_relative_position_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 301)
    ours = T5RelativeBias(32, 4).bucket(rel)
    theirs = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32,
                                                   max_distance=128)
    assert torch.equal(ours, theirs)


def test_t5_checkpoint_with_a_missing_layer_is_refused(tiny, tmp_path):
    sd = torch.load(tiny / "model" / T5_CHECKPOINT, weights_only=True)
    del sd["blocks.0.ffn.gate.0.weight"]
    torch.save(sd, tmp_path / T5_CHECKPOINT)
    with pytest.raises(ValueError, match="missing keys.*gate"):
        T5TextEncoder.from_official(tmp_path / T5_CHECKPOINT, tiny / "model" / T5_TOKENIZER)


# -- wav2vec2 ------------------------------------------------------------------------------------

def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def test_wav2vec_features_have_one_vector_per_video_frame_and_layer(wav2vec):
    feats = wav2vec.features(_speech(8.0), video_frames=200)
    assert feats.shape == (200, TINY.wav2vec_layers, TINY.wav2vec_dim)
    assert feats.dtype == torch.float32
    assert wav2vec.features(_speech(1.32), video_frames=33).shape[0] == 33


def test_wav2vec_at_the_native_50hz_rate_equals_the_plain_forward(wav2vec):
    audio = _speech(1.0, seed=1)
    values = wav2vec.extractor(audio, sampling_rate=16000).input_values
    x = torch.from_numpy(np.asarray(values)).float().view(1, -1)
    with torch.no_grad():
        plain = wav2vec.model(x, output_hidden_states=True).hidden_states[1:]
    native = plain[0].shape[1]                              # 49 CNN frames for 1 s
    feats = wav2vec.features(audio, video_frames=native)
    torch.testing.assert_close(feats, torch.stack(plain, dim=2)[0], atol=1e-5, rtol=1e-5)


def test_wav2vec_base_layout_yields_twelve_layers(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=12, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=8,
                            num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(str(tmp_path))
    Wav2Vec2FeatureExtractor().save_pretrained(str(tmp_path))
    feats = Wav2VecFeatures.from_dir(tmp_path).features(_speech(0.5), video_frames=12)
    assert feats.shape == (12, 12, 16)


def test_missing_wav2vec_folder_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="chinese-wav2vec2-base"):
        Wav2VecFeatures.from_dir(tmp_path / "nope")


def test_loudness_is_normalised_to_minus_23_lufs_and_silence_is_left_alone():
    import pyloudnorm

    out = normalize_loudness(_speech(3.0) * 0.05, 16000)
    assert out.dtype == np.float32
    assert pyloudnorm.Meter(16000).integrated_loudness(out.astype(np.float64)) == pytest.approx(-23, abs=0.05)
    silence = np.zeros(16000, np.float32)
    assert np.array_equal(normalize_loudness(silence, 16000), silence)
