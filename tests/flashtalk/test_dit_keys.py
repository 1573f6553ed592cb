"""The 14B DiT has exactly the official checkpoint's keys and shapes (FLASHTALK_MODEL.md §2)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.model.dit import FlashTalkDiT

DIM, FFN, LAYERS, TEXT, CLIP, AUDIO_OUT = 5120, 13824, 40, 4096, 1280, 768


def _linear(out: dict, name: str, rows: int, cols: int) -> None:
    out[f"{name}.weight"], out[f"{name}.bias"] = (rows, cols), (rows,)


def official_key_shapes() -> dict[str, tuple[int, ...]]:
    """Written from the spec's key list, independently of the model code."""
    out: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (DIM, 36, 1, 2, 2), "patch_embedding.bias": (DIM,),
        "head.modulation": (1, 2, DIM),
        "img_emb.proj.0.weight": (CLIP,), "img_emb.proj.0.bias": (CLIP,),
        "img_emb.proj.4.weight": (DIM,), "img_emb.proj.4.bias": (DIM,),
        "audio_proj.norm.weight": (AUDIO_OUT,), "audio_proj.norm.bias": (AUDIO_OUT,),
    }
    _linear(out, "text_embedding.0", DIM, TEXT)
    _linear(out, "text_embedding.2", DIM, DIM)
    _linear(out, "time_embedding.0", DIM, 256)
    _linear(out, "time_embedding.2", DIM, DIM)
    _linear(out, "time_projection.1", 6 * DIM, DIM)
    _linear(out, "head.head", 64, DIM)
    _linear(out, "img_emb.proj.1", CLIP, CLIP)
    _linear(out, "img_emb.proj.3", DIM, CLIP)
    _linear(out, "audio_proj.proj1", 512, 5 * 12 * 768)
    _linear(out, "audio_proj.proj1_vf", 512, 8 * 12 * 768)
    _linear(out, "audio_proj.proj2", 512, 512)
    _linear(out, "audio_proj.proj3", 32 * AUDIO_OUT, 512)
    for i in range(LAYERS):
        b = f"blocks.{i}"
        out[f"{b}.modulation"] = (1, 6, DIM)
        for name in ("q", "k", "v", "o"):
            _linear(out, f"{b}.self_attn.{name}", DIM, DIM)
        for name in ("q", "k", "v", "o", "k_img", "v_img"):
            _linear(out, f"{b}.cross_attn.{name}", DIM, DIM)
        for norm in ("self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q", "cross_attn.norm_k",
                     "cross_attn.norm_k_img"):
            out[f"{b}.{norm}.weight"] = (DIM,)
        for norm in ("norm3", "norm_x"):
            out[f"{b}.{norm}.weight"], out[f"{b}.{norm}.bias"] = (DIM,), (DIM,)
        _linear(out, f"{b}.ffn.0", FFN, DIM)
        _linear(out, f"{b}.ffn.2", DIM, FFN)
        _linear(out, f"{b}.audio_cross_attn.q_linear", DIM, DIM)
        _linear(out, f"{b}.audio_cross_attn.kv_linear", 2 * DIM, AUDIO_OUT)
        _linear(out, f"{b}.audio_cross_attn.proj", DIM, DIM)
    return out


@pytest.fixture(scope="module")
def meta_14b():
    with torch.device("meta"):
        return FlashTalkDiT.from_config(FlashTalkDiT.official_config())


def test_14b_state_dict_matches_official_keys_and_shapes(meta_14b):
    found = {k: tuple(v.shape) for k, v in meta_14b.state_dict().items()}
    expected = official_key_shapes()
    assert sorted(set(expected) - set(found)) == []
    assert sorted(set(found) - set(expected)) == []
    assert {k: v for k, v in found.items() if v != expected[k]} == {}


def test_14b_parameter_count_is_18_88_billion(meta_14b):
    count = sum(p.numel() for p in meta_14b.parameters())
    assert abs(count - 18.88e9) < 0.005e9
    audio = sum(p.numel() for n, p in meta_14b.named_parameters() if "audio" in n)
    assert abs(audio - (2.41e9 + 74e6)) < 0.01e9  # audio cross-attention + audio_proj


def test_official_config_is_the_14b_and_loads_without_renaming(tmp_path):
    """A Wan-style config.json (no patch_size/text_dim, extra reference-only keys) gives the 14B."""
    config = {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": "i2v", "dim": 5120,
              "eps": 1e-06, "ffn_dim": 13824, "freq_dim": 256, "in_dim": 36, "num_heads": 40,
              "num_layers": 40, "out_dim": 16, "text_len": 512, "weight_init": True}
    (tmp_path / "config.json").write_text(__import__("json").dumps(config))
    loaded = FlashTalkDiT.load_config(tmp_path)
    with torch.device("meta"):
        model = FlashTalkDiT.from_config(loaded)
    official = FlashTalkDiT.official_config()
    assert {k: model.config[k] for k in official} == official
    assert sum(p.numel() for p in model.parameters()) > 18e9


def test_non_i2v_config_is_refused():
    with pytest.raises(ValueError, match="i2v"), torch.device("meta"):
        FlashTalkDiT.from_config({**FlashTalkDiT.tiny_config(), "model_type": "t2v"})
