"""Tiny DiT forward: shapes, determinism, precision sections, RoPE, audio selection and masking."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.model.audio_proj import select_frame_windows
from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.dit_block import AudioCrossAttention, frame_segments
from engine.flashtalk.model.rope import apply_rope, rope_cos_sin, rope_pairs
from engine.flashtalk.parallel.sequence_parallel import NoParallel, SequenceParallel

F_LAT, H, W = 3, 4, 6  # latent frames, latent height/width -> 3 * 2 * 3 = 18 tokens


def tiny_model(seed: int = 0, dtype=torch.float32) -> FlashTalkDiT:
    torch.manual_seed(seed)
    return FlashTalkDiT.from_config(FlashTalkDiT.tiny_config()).eval().to(dtype)


def tiny_inputs(model: FlashTalkDiT, batch: int = 1, seed: int = 1, text_tokens: int = 7):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(batch, c.in_dim, F_LAT, H, W, generator=g),
        "t": torch.full((batch,), 937.5),
        "context": torch.randn(batch, text_tokens, c.text_dim, generator=g),
        "clip_fea": torch.randn(batch, 257, c.clip_dim, generator=g),
        "audio": torch.randn(batch, 1 + c.vae_scale * (F_LAT - 1), c.audio_window, c.audio_layers, c.audio_dim,
                             generator=g),
    }


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_forward_shape_dtype_and_determinism(model):
    inputs = tiny_inputs(model, batch=2)
    with torch.no_grad():
        first, second = model(**inputs), model(**inputs)
    assert first.shape == (2, 16, F_LAT, H, W) and first.dtype == torch.float32
    assert torch.isfinite(first).all() and first.abs().mean() > 1e-3
    assert torch.equal(first, second)


def test_batch_samples_are_independent(model):
    inputs = tiny_inputs(model, batch=2)
    with torch.no_grad():
        both = model(**inputs)
        one = model(**{k: v[1:] for k, v in inputs.items()})
    torch.testing.assert_close(both[1:], one, atol=1e-5, rtol=1e-5)


def test_text_is_zero_padded_to_text_len(model):
    """Padding the T5 tokens by hand to 512 equals letting the model pad (padded tokens attended)."""
    inputs = tiny_inputs(model)
    padded = dict(inputs, context=torch.nn.functional.pad(inputs["context"], (0, 0, 0, 512 - 7)))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs), model(**padded), atol=0, rtol=0)


def test_bf16_model_keeps_modulation_time_and_head_in_float32():
    model = tiny_model(dtype=torch.bfloat16)
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, args, out: seen.update(e0=args[1], block_out=out))
    model.head.register_forward_hook(lambda m, args, out: seen.update(head=out))
    with torch.no_grad():
        out = model(**tiny_inputs(model))
    assert model.blocks[0].modulation.dtype == torch.bfloat16
    assert seen["e0"].dtype == torch.float32 and seen["head"].dtype == torch.float32
    assert all(term.dtype == torch.float32 for term in model.blocks[0].modulation_terms(seen["e0"]))
    assert seen["block_out"].dtype == torch.bfloat16 and out.dtype == torch.float32
    with torch.no_grad():
        reference = tiny_model()(**tiny_inputs(model))
    assert (out - reference).abs().max() < 0.1 * reference.abs().max()


def test_rope_matches_complex_rotation_and_restarts_at_zero():
    assert rope_pairs(128) == (22, 21, 21)
    grid, head_dim = (3, 2, 4), 32
    cos_sin = rope_cos_sin(grid, head_dim, torch.device("cpu"))
    x = torch.randn(2, 24, 3, head_dim, dtype=torch.float64)
    # oracle: per-axis frequency ladders as complex numbers, token (f, h, w) uses (f, h, w)
    pt, ph, pw = rope_pairs(head_dim)
    ladders = [torch.polar(torch.ones(n, p, dtype=torch.float64), torch.outer(
        torch.arange(n, dtype=torch.float64), 1 / 10000 ** (torch.arange(0, 2 * p, 2, dtype=torch.float64) / (2 * p))))
        for n, p in zip(grid, (pt, ph, pw))]
    idx = torch.cartesian_prod(*(torch.arange(n) for n in grid))  # [24, 3] in (f, h, w) order
    freqs = torch.cat([ladders[a][idx[:, a]] for a in range(3)], dim=1)  # [24, D/2]
    expected = torch.view_as_real(torch.view_as_complex(x.reshape(2, 24, 3, -1, 2)) * freqs[None, :, None])
    torch.testing.assert_close(apply_rope(x, cos_sin), expected.flatten(3).float())
    assert torch.equal(cos_sin[0, :, 0], torch.ones(head_dim // 2))  # token (0,0,0) is not rotated


def test_audio_selection_takes_the_eight_reference_entries():
    frames = 33
    audio = torch.zeros(1, frames, 5, 1, 2)
    audio[..., 0] = torch.arange(frames)[None, :, None, None]  # video frame id
    audio[..., 1] = torch.arange(5)[None, None, :, None]  # window offset id
    first, later = select_frame_windows(audio, vae_scale=4)
    assert first.shape == (1, 1, 5, 1, 2) and later.shape == (1, 8, 8, 1, 2)
    for j in range(1, 9):
        a, b, c, d = 4 * j - 3, 4 * j - 2, 4 * j - 1, 4 * j
        expected = [(a, 0), (a, 1), (a, 2), (b, 2), (c, 2), (d, 2), (d, 3), (d, 4)]
        got = [tuple(int(v) for v in e) for e in later[0, j - 1, :, 0]]
        assert got == expected


def test_audio_attention_is_per_latent_frame():
    torch.manual_seed(0)
    attn_mod = AudioCrossAttention(dim=16, audio_dim=8, num_heads=2)
    tpf, frames = 6, 3
    x = torch.randn(1, tpf * frames, 16)
    audio = torch.randn(1, frames, 4, 8)
    def sdpa(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    full = attn_mod(x, audio, frame_segments(0, tpf * frames, tpf, frames), sdpa)
    changed = audio.clone()
    changed[:, 1] += 1.0
    other = attn_mod(x, changed, frame_segments(0, tpf * frames, tpf, frames), sdpa)
    moved = (other - full).abs().amax(dim=(0, 2)) > 0  # per token
    assert moved.tolist() == [False] * tpf + [True] * tpf + [False] * tpf
    # any contiguous rank slice (as sequence parallelism makes) gives the same tokens
    for world in (2, 3, 4, 5):
        chunk = -(-tpf * frames // world)
        parts = []
        for rank in range(world):
            start = rank * chunk
            local = torch.nn.functional.pad(x, (0, 0, 0, chunk * world - x.shape[1]))[:, start:start + chunk]
            parts.append(attn_mod(local, audio, frame_segments(start, chunk, tpf, frames), sdpa))
        torch.testing.assert_close(torch.cat(parts, dim=1)[:, :tpf * frames], full)


def test_frame_segments_group_whole_frames_and_pad():
    assert [tuple(vars(s).values()) for s in frame_segments(0, 18, 6, 3)] == [(0, 3, 18)]
    assert [tuple(vars(s).values()) for s in frame_segments(4, 10, 6, 3)] == [(0, 1, 2), (1, 1, 6), (2, 1, 2)]
    assert [tuple(vars(s).values()) for s in frame_segments(15, 5, 6, 3)] == [(2, 1, 3), (2, 1, 2)]
    assert [tuple(vars(s).values()) for s in frame_segments(20, 5, 6, 3)] == [(2, 1, 5)]


class _RecordingParallel(NoParallel):
    """World of one that records what the DiT routes through the sequence-parallel hooks."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def split(self, x, dim):
        self.calls.append(f"split{tuple(x.shape)}@{dim}")
        return super().split(x, dim)

    def gather(self, x, dim):
        self.calls.append(f"gather@{dim}")
        return super().gather(x, dim)

    def self_attention(self, q, k, v, attn_fn):
        self.calls.append("self_attention")
        return super().self_attention(q, k, v, attn_fn)


def test_world_of_one_is_exact_and_uses_every_hook(model):
    inputs = tiny_inputs(model)
    recorder = _RecordingParallel()
    with torch.no_grad():
        plain, hooked = model(**inputs), model(**inputs, parallel=recorder)
    assert torch.equal(plain, hooked)
    tokens = F_LAT * (H // 2) * (W // 2)
    assert recorder.calls == [f"split({tokens}, 16, 2)@0", f"split(1, {tokens}, 64)@1",
                              *["self_attention"] * model.config.num_layers, "gather@1"]


def test_split_pads_the_last_rank_and_gather_drops_the_pad():
    class Rank(SequenceParallel):  # a rank whose all-gather sees every rank's identical slice layout
        def __init__(self, world, rank, full):
            super().__init__(world, rank)
            self.full = full

        def _all_gather(self, x, dim):
            chunk = x.shape[dim]
            padded = torch.nn.functional.pad(self.full, (0, chunk * self.world_size - self.full.shape[-1]))
            return padded

        def self_attention(self, q, k, v, attn_fn):
            raise NotImplementedError

    full = torch.arange(10.0)[None]
    slices = [Rank(3, r, full) for r in range(3)]
    parts = [s.split(full, dim=1) for s in slices]
    assert [p.tolist() for p in parts] == [[[0, 1, 2, 3]], [[4, 5, 6, 7]], [[8, 9, 0, 0]]]
    assert slices[2].pad == 2 and slices[2].local_range(10) == (8, 4)
    assert torch.equal(slices[2].gather(parts[2], dim=1), full)


def test_matches_diffusers_wan_i2v_when_audio_is_silenced(model):
    """With the audio branch's output projection zeroed, the DiT is Wan2.1-I2V: compare with diffusers."""
    from diffusers import WanTransformer3DModel

    c = model.config
    wan = WanTransformer3DModel(num_attention_heads=c.num_heads, attention_head_dim=c.dim // c.num_heads,
                                in_channels=c.in_dim, out_channels=c.out_dim, text_dim=c.text_dim,
                                freq_dim=c.freq_dim, ffn_dim=c.ffn_dim, num_layers=c.num_layers,
                                image_dim=c.clip_dim, added_kv_proj_dim=c.dim).eval()
    ours = {k: v.clone() for k, v in model.state_dict().items()}
    for i in range(c.num_layers):
        ours[f"blocks.{i}.audio_cross_attn.proj.weight"].zero_()
        ours[f"blocks.{i}.audio_cross_attn.proj.bias"].zero_()
    silent = tiny_model()
    silent.load_state_dict(ours)
    wan.load_state_dict({_diffusers_name(k): ours[k] for k in ours if _diffusers_name(k)})
    inputs = tiny_inputs(model, text_tokens=512)
    with torch.no_grad():
        expected = wan(inputs["x"], inputs["t"], inputs["context"], inputs["clip_fea"], return_dict=False)[0]
        got = silent(**inputs)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-3)


_TOP = {"patch_embedding": "patch_embedding", "text_embedding.0": "condition_embedder.text_embedder.linear_1",
        "text_embedding.2": "condition_embedder.text_embedder.linear_2",
        "time_embedding.0": "condition_embedder.time_embedder.linear_1",
        "time_embedding.2": "condition_embedder.time_embedder.linear_2",
        "time_projection.1": "condition_embedder.time_proj", "head.head": "proj_out",
        "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
        "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
        "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
        "img_emb.proj.4": "condition_embedder.image_embedder.norm2"}
_BLOCK = {"self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
          "self_attn.o": "attn1.to_out.0", "self_attn.norm_q": "attn1.norm_q", "self_attn.norm_k": "attn1.norm_k",
          "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v",
          "cross_attn.o": "attn2.to_out.0", "cross_attn.norm_q": "attn2.norm_q", "cross_attn.norm_k": "attn2.norm_k",
          "cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj",
          "cross_attn.norm_k_img": "attn2.norm_added_k", "norm3": "norm2", "ffn.0": "ffn.net.0.proj",
          "ffn.2": "ffn.net.2"}


def _diffusers_name(key: str) -> str | None:
    """Official key -> diffusers WanTransformer3DModel key (None for the audio-only weights)."""
    if key == "head.modulation":
        return "scale_shift_table"
    if key.startswith("audio_proj.") or ".audio_cross_attn." in key or ".norm_x." in key:
        return None
    module, param = key.rsplit(".", 1)
    if module in _TOP:
        return f"{_TOP[module]}.{param}"
    _, i, rest = key.split(".", 2)
    if rest == "modulation":
        return f"blocks.{i}.scale_shift_table"
    module, param = rest.rsplit(".", 1)
    return f"blocks.{i}.{_BLOCK[module]}.{param}"
