"""FP8 linear layers: quantisation bounds, the two kernels agreeing, the tiny DiT in FP8, state dicts."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.fp8_linear import (
    BLOCK_LINEARS,
    FP8_DTYPE,
    FP8_MAX,
    FP8Linear,
    quantize_dit_linears,
    quantize_rows,
)

F_LAT, H, W = 3, 4, 6  # latent frames, height, width -> 18 video tokens
E4M3_REL_STEP = 2.0 ** -4  # half an ulp of a 3-bit mantissa, relative
E4M3_MIN_SUBNORMAL = 2.0 ** -9


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def tiny_dit(seed: int = 0) -> FlashTalkDiT:
    torch.manual_seed(seed)
    return FlashTalkDiT.from_config(FlashTalkDiT.tiny_config()).eval().requires_grad_(False).to(torch.bfloat16)


def tiny_inputs(model: FlashTalkDiT, seed: int = 1) -> dict:
    c = model.config
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(1, c.in_dim, F_LAT, H, W, generator=g),
        "t": torch.full((1,), 937.5),
        "context": torch.randn(1, 7, c.text_dim, generator=g),
        "clip_fea": torch.randn(1, 257, c.clip_dim, generator=g),
        "audio": torch.randn(1, 1 + c.vae_scale * (F_LAT - 1), c.audio_window, c.audio_layers, c.audio_dim,
                          generator=g),
    }


def test_rows_quantise_within_one_e4m3_step():
    x = torch.randn(64, 256) * torch.logspace(-3, 3, 64)[:, None]  # rows of very different magnitude
    x[5] = 0.0
    q, scale = quantize_rows(x)
    assert q.dtype == FP8_DTYPE and scale.shape == (64, 1) and scale.dtype == torch.float32
    assert torch.allclose(q.float().abs().amax(dim=1)[x.abs().amax(dim=1) > 0], torch.tensor(FP8_MAX))
    back = q.float() * scale
    bound = E4M3_REL_STEP * x.abs() + scale * E4M3_MIN_SUBNORMAL  # relative for normals, absolute below
    assert ((back - x).abs() <= bound * 1.0001).all()
    assert torch.equal(back[5], torch.zeros(256))  # an all-zero row stays zero, no NaN


def test_fp8_linear_is_close_to_the_bf16_linear():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 384).to(torch.bfloat16).requires_grad_(False)
    fp8 = FP8Linear.from_linear(linear)
    x = torch.randn(2, 50, 256, dtype=torch.bfloat16)
    y, ref = fp8(x), linear(x)
    assert fp8.weight.dtype == FP8_DTYPE and y.dtype == torch.bfloat16 and y.shape == (2, 50, 384)
    assert 1e-3 < rel_err(y, ref) < 6e-2  # really quantised, and close
    assert rel_err(fp8.dequantized_weight(), linear.weight) < 6e-2


def test_scaled_mm_and_dequantised_paths_agree():
    torch.manual_seed(1)
    linear = torch.nn.Linear(128, 64).to(torch.bfloat16).requires_grad_(False)
    x = torch.randn(37, 128, dtype=torch.bfloat16)  # a row count that is not a multiple of 16
    kernel = FP8Linear.from_linear(linear, use_scaled_mm=True)
    reference = FP8Linear.from_linear(linear, use_scaled_mm=False)
    try:
        y = kernel(x)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"torch._scaled_mm does not run on this CPU build: {str(exc).splitlines()[0]}")
    torch.testing.assert_close(y, reference(x), rtol=1e-2, atol=1e-2)  # same numbers, bf16 rounding


def test_all_block_linears_of_the_tiny_dit_become_fp8_and_nothing_else():
    model = tiny_dit()
    count = quantize_dit_linears(model)
    assert count == len(BLOCK_LINEARS) * model.config.num_layers
    fp8 = {name for name, m in model.named_modules() if isinstance(m, FP8Linear)}
    assert fp8 == {f"blocks.{i}.{n}" for i in range(model.config.num_layers) for n in BLOCK_LINEARS}
    for name in ("text_embedding.0", "time_embedding.0", "time_projection.1", "img_emb.proj.1", "head.head"):
        assert type(model.get_submodule(name)) is torch.nn.Linear
    assert quantize_dit_linears(model) == 0  # already converted


def test_tiny_dit_forward_in_fp8_stays_close_to_bf16():
    bf16, fp8 = tiny_dit(), tiny_dit()
    quantize_dit_linears(fp8)
    inputs = tiny_inputs(bf16)
    with torch.no_grad():
        ref, out = bf16(**inputs), fp8(**inputs)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert 0 < rel_err(out, ref) < 0.1


def test_state_dict_round_trips_and_bf16_checkpoints_load_into_fp8():
    source = tiny_dit(seed=0)
    bf16_state = source.state_dict()
    quantize_dit_linears(source)
    state = source.state_dict()
    assert state["blocks.0.ffn.0.weight"].dtype == FP8_DTYPE
    assert set(state) == set(bf16_state) | {f"blocks.{i}.{n}.weight_scale"
                                            for i in range(source.config.num_layers) for n in BLOCK_LINEARS}
    inputs = tiny_inputs(source)
    with torch.no_grad():
        expected = source(**inputs)
        for checkpoint in (state, bf16_state):  # an FP8 state dict, and the original bf16 one
            target = tiny_dit(seed=5)
            quantize_dit_linears(target)
            target.load_state_dict(checkpoint, strict=True)
            assert torch.equal(target.blocks[1].cross_attn.k_img.weight.float(),
                               source.blocks[1].cross_attn.k_img.weight.float())
            assert torch.equal(target(**inputs), expected)


def test_a_meta_model_quantised_first_takes_a_bf16_checkpoint_by_assignment():
    """What a shard-by-shard loader needs to hold only the FP8 weights: quantise on meta, then assign."""
    source = tiny_dit(seed=0)
    bf16_state = source.state_dict()
    with torch.device("meta"):
        target = FlashTalkDiT.from_config(FlashTalkDiT.tiny_config()).eval().requires_grad_(False)
    assert quantize_dit_linears(target, use_scaled_mm=False) == len(BLOCK_LINEARS) * target.config.num_layers
    target.load_state_dict(bf16_state, strict=True, assign=True)
    assert not any(t.is_meta for t in target.state_dict().values())
    assert target.blocks[0].self_attn.q.weight.dtype == FP8_DTYPE
    quantize_dit_linears(source)
    inputs = tiny_inputs(source)
    with torch.no_grad():
        assert torch.equal(target(**inputs), source(**inputs))
