"""Sequence-parallel DiT forwards on 2-4 CPU processes (gloo) equal the one-process forward.

The tiny DiT has 2 heads: 2 ranks run Ulysses (and, forced, ring), 3 ranks run ring attention
(2 and 3 share no factor), 4 ranks run both (Ulysses over 2, ring over 2). The latent shapes give
sequences that divide the world, that do not (175 tokens), and one shorter than the world.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.parallel.process_group import (
    sequence_parallel_groups,
    usp_degrees,
)
from engine.flashtalk.parallel.ring_attention import attention_with_lse, merge_partials
from engine.flashtalk.parallel.usp import UnifiedSequenceParallel
from tests.flashtalk.gloo_world import run_on_gloo_world

SHAPES = [(3, 4, 6), (5, 14, 10), (1, 2, 4)]  # (F, h, w) latents: 18, 175 and 2 tokens
SEED = 3


def _model() -> FlashTalkDiT:
    torch.manual_seed(SEED)
    return FlashTalkDiT(**FlashTalkDiT.tiny_config()).eval()


def _inputs(model: FlashTalkDiT, frames: int, h: int, w: int) -> dict:
    c, g = model.config, torch.Generator().manual_seed(frames * 100 + h * 10 + w)
    return {"x": torch.randn(1, c.in_dim, frames, h, w, generator=g),
            "t": torch.tensor([700.0]),
            "context": torch.randn(1, 7, c.text_dim, generator=g),
            "clip_fea": torch.randn(1, 257, c.clip_dim, generator=g),
            "audio": torch.randn(1, 1 + c.vae_scale * (frames - 1), c.audio_window, c.audio_layers,
                                 c.audio_dim, generator=g)}


@torch.no_grad()
def _forwards(parallel=None) -> list[np.ndarray]:
    model = _model()
    return [model(**_inputs(model, *shape), parallel=parallel).numpy() for shape in SHAPES]


def _sp_forwards(rank: int, world_size: int, ulysses_degrees: tuple) -> dict:
    import torch.distributed as dist
    heads = FlashTalkDiT.tiny_config()["num_heads"]
    out = {}
    for degree in ulysses_degrees:
        groups = sequence_parallel_groups(dist.group.WORLD, heads, ulysses_degree=degree)
        results = _forwards(UnifiedSequenceParallel(groups))
        gathered = [None] * world_size
        dist.all_gather_object(gathered, results)  # every rank must hold the same full output
        for other in gathered[1:]:
            for a, b in zip(gathered[0], other):
                np.testing.assert_array_equal(a, b)
        out[(groups.ulysses_degree, groups.ring_degree)] = results
    return out


@pytest.fixture(scope="module")
def reference() -> list[np.ndarray]:
    return _forwards()


def _assert_close(results, reference):
    for got, want, shape in zip(results, reference, SHAPES):
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 1e-5, f"latent {shape}: relative error {err:.2e}"


@pytest.mark.parametrize(("world", "degrees", "layouts"), [
    (2, (None, 1), [(2, 1), (1, 2)]),  # Ulysses 2; forced ring 2
    (3, (None,), [(1, 3)]),  # 2 heads, 3 ranks: ring only
    (4, (None,), [(2, 2)]),  # Ulysses 2 x ring 2
])
def test_sequence_parallel_forward_matches_one_process(reference, world, degrees, layouts):
    results = run_on_gloo_world(world, _sp_forwards, degrees)
    assert sorted(results) == sorted(layouts)
    for layout in layouts:
        _assert_close(results[layout], reference)


def test_lse_merge_of_key_blocks_equals_full_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 5, 3, 8, generator=g) * 3 for _ in range(3))
    full, full_lse = attention_with_lse(q, k, v)
    out = lse = None
    for part in (slice(0, 1), slice(1, 4), slice(4, 9)):
        out, lse = merge_partials(out, lse, *attention_with_lse(q, k[:, part], v[:, part]))
    torch.testing.assert_close(out, full.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lse, full_lse)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                            v.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(full, sdpa, rtol=1e-5, atol=1e-6)


def test_usp_degrees_follow_xdit():
    assert usp_degrees(8, 40) == (8, 1)
    assert usp_degrees(3, 40) == (1, 3)
    assert usp_degrees(6, 40) == (2, 3)
    assert usp_degrees(2, 40, ulysses_degree=1) == (1, 2)
    with pytest.raises(ValueError, match="must divide"):
        usp_degrees(4, 40, ulysses_degree=3)
