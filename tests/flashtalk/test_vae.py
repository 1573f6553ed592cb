"""Wan2.1 VAE: official key layout -> diffusers, streaming encode/decode, no state across calls."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from engine.flashtalk.model.tiny_sizes import TINY  # noqa: E402
from engine.flashtalk.model.vae import (  # noqa: E402
    LATENT_MEAN,
    LATENT_STD,
    WanVAE,
    WanVAEConfig,
    build_diffusers_vae,
    convert_official_vae_state_dict,
    official_vae_key_shapes,
)
from engine.flashtalk.weights.tiny_encoders import random_state_dict  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vae():
    sd = random_state_dict(official_vae_key_shapes(z_dim=16, base_dim=TINY.vae_base_dim), seed=0)
    return WanVAE.from_state_dict(sd, "cpu", torch.float32)


def _clip(frames: int = 5, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1


def test_real_14b_vae_layout_converts_into_diffusers_without_missing_or_extra_keys():
    shapes = official_vae_key_shapes(z_dim=16, base_dim=96)
    assert shapes["encoder.conv1.weight"] == (96, 3, 3, 3, 3)
    assert shapes["decoder.upsamples.14.residual.6.weight"] == (96, 96, 3, 3, 3)
    assert shapes["encoder.downsamples.10.residual.0.gamma"] == (384, 1, 1, 1)
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    with torch.device("meta"):
        model = build_diffusers_vae(WanVAEConfig(base_dim=96, z_dim=16))
    # strict: raises on any missing/unexpected key or shape mismatch
    model.load_state_dict(convert_official_vae_state_dict(meta), strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for t in meta.values())


def test_foreign_or_damaged_vae_checkpoint_is_refused_with_one_line():
    sd = random_state_dict(official_vae_key_shapes(base_dim=TINY.vae_base_dim), seed=1)
    del sd["decoder.head.2.bias"]
    with pytest.raises(ValueError, match="missing keys") as info:
        WanVAE.from_state_dict(sd, "cpu", torch.float32)
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="Wan2.1_VAE.pth"):
        WanVAE.from_official("/nonexistent/Wan2.1_VAE.pth")


def test_tiny_round_trip_shapes_and_range_in_bf16_by_default():
    sd = random_state_dict(official_vae_key_shapes(base_dim=TINY.vae_base_dim), seed=2)
    vae = WanVAE.from_state_dict(sd)
    assert vae.dtype == torch.bfloat16
    latents = vae.encode(_clip(5, 32))
    assert latents.shape == (1, 16, 2, 4, 4) and latents.dtype == torch.bfloat16
    video = vae.decode(latents)
    assert video.shape == (1, 3, 5, 32, 32)
    assert video.min() >= -1 and video.max() <= 1


def test_no_causal_state_crosses_calls(tiny_vae):
    a, b = _clip(seed=3), _clip(seed=4)
    first = tiny_vae.encode(a)
    tiny_vae.encode(b)
    assert torch.equal(tiny_vae.encode(a), first)
    decoded = tiny_vae.decode(first)
    tiny_vae.decode(tiny_vae.encode(b))
    assert torch.equal(tiny_vae.decode(first), decoded)


def test_encoding_is_causal_frame_zero_alone_then_groups_of_four(tiny_vae):
    clip = _clip(9, 32, seed=5)
    full = tiny_vae.encode(clip)                       # 1 + 4 + 4 frames -> 3 latents
    assert full.shape[2] == 3
    torch.testing.assert_close(tiny_vae.encode(clip[:, :, :1]), full[:, :, :1])
    torch.testing.assert_close(tiny_vae.encode(clip[:, :, :5]), full[:, :, :2])


def test_latents_are_normalised_with_the_wan_constants(tiny_vae):
    clip = _clip(seed=6)
    mu = tiny_vae.model.encode(clip).latent_dist.mode()
    mean = torch.tensor(LATENT_MEAN).view(1, -1, 1, 1, 1)
    std = torch.tensor(LATENT_STD).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(tiny_vae.encode(clip), (mu - mean) / std)
    raw = tiny_vae.model.decode(mu).sample
    torch.testing.assert_close(tiny_vae.decode((mu - mean) / std), raw, atol=1e-5, rtol=1e-4)


def test_bad_clip_shapes_are_refused(tiny_vae):
    with pytest.raises(ValueError, match="1 \\+ 4k frames"):
        tiny_vae.encode(_clip(4, 32))
    with pytest.raises(ValueError, match="latents must be"):
        tiny_vae.decode(torch.zeros(1, 4, 2, 4, 4))
