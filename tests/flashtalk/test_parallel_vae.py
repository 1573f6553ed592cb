"""The band-parallel Wan VAE on 3 CPU processes (gloo) equals the one-process VAE.

Bands are uneven (a 5-latent side over 3 ranks: 2, 2, 1), the split runs along the height or the
width (the longer latent side), and decode covers several latent frames, so the causal cache
frames cross band edges too.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.model.vae import WanVAE, WanVAEConfig, build_diffusers_vae
from engine.flashtalk.parallel.parallel_vae import ParallelVAE, install_band_layers
from engine.flashtalk.parallel.spatial_bands import band_sizes
from tests.flashtalk.gloo_world import run_on_gloo_world

LATENTS = [(3, 5, 4), (2, 3, 6)]  # (T, h, w): split along h (uneven), then along w
VIDEOS = [(5, 40, 32), (1, 24, 48)]  # (F, H, W) pixels
SEED = 11


def _vae() -> WanVAE:
    torch.manual_seed(SEED)
    model = build_diffusers_vae(WanVAEConfig(base_dim=8))
    for p in model.parameters():  # untrained norms are all ones: give every layer some structure
        p.data.add_(torch.randn_like(p) * 0.05)
    return WanVAE(model.float(), "cpu")


def _inputs():
    g = torch.Generator().manual_seed(SEED)
    latents = [torch.randn(1, 16, *s, generator=g) for s in LATENTS]
    videos = [torch.rand(1, 3, *s, generator=g) * 2 - 1 for s in VIDEOS]
    return latents, videos


def _run(vae) -> dict:
    latents, videos = _inputs()
    return {"decode": [vae.decode(z).numpy() for z in latents],
            "encode": [vae.encode(v).numpy() for v in videos]}


def _parallel_run(rank: int, world_size: int) -> dict:
    import torch.distributed as dist
    torch.set_grad_enabled(False)
    return _run(ParallelVAE(_vae(), dist.group.WORLD, rank, world_size))


def test_band_parallel_vae_matches_one_process():
    with torch.no_grad():  # only here: a global switch leaked into every later test (training needs grad)
        want = _run(_vae())
    got = run_on_gloo_world(3, _parallel_run)
    for kind in ("decode", "encode"):
        for a, b in zip(got[kind], want[kind]):
            assert a.shape == b.shape
            err = np.abs(a - b).max() / np.abs(b).max()
            assert err < 1e-5, f"{kind}: relative error {err:.2e}"


def test_band_sizes_are_balanced_and_cover_the_side():
    assert band_sizes(56, 8) == [7] * 8
    assert band_sizes(5, 3) == [2, 2, 1]
    with pytest.raises(ValueError, match="cannot be split across 4 GPUs"):
        band_sizes(3, 4)


def test_every_layer_that_crosses_a_band_edge_is_replaced():
    vae = _vae()
    install_band_layers(vae.model, bands=None)  # raises if a spatial conv were left unhandled
    names = {type(m).__name__ for m in vae.model.modules()}
    assert {"BandCausalConv3d", "BandConv2d", "BandDownsample", "BandAttention"} <= names
