"""The compiled VAE builds one graph per cache state, whatever the chunk length (issue 14, lever 3)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from engine.flashtalk.model.tiny_sizes import TINY  # noqa: E402
from engine.flashtalk.model.vae import WanVAE, official_vae_key_shapes  # noqa: E402
from engine.flashtalk.model.vae_compile import compile_vae, plain_strides, vae_is_compiled  # noqa: E402
from engine.flashtalk.weights.tiny_encoders import random_state_dict  # noqa: E402


def _contiguous_strides(shape):
    return torch.empty(shape).stride()


def test_plain_strides_give_one_layout_whatever_the_tensor_was_cut_from():
    clip = torch.randn(1, 3, 33, 8, 6)
    frame = clip[:, :, 4:5]  # a pass's input: its strides depend on the 33 frames around it
    long = torch.randn(1, 4, 6, 8, 5).permute(0, 2, 1, 3, 4)[:, :, -2:].clone()  # a cached permuted slice
    for t in (frame, long, clip[:, :, :1], torch.randn(2, 3)):
        plain = plain_strides(t)
        assert plain.stride() == _contiguous_strides(t.shape) and torch.equal(plain, t)
    one = torch.randn(1, 6, 4, 8, 5).permute(0, 2, 1, 3, 4)[:, :, -1:]  # contiguous but for size-1 strides
    assert one.is_contiguous() and one.stride() != _contiguous_strides(one.shape)
    assert plain_strides(one).data_ptr() == one.data_ptr()  # restrided, not copied


def test_plain_strides_in_channels_last_3d_keep_ndhwc_and_copy_only_what_is_not():
    nd = torch.channels_last_3d
    clip = torch.randn(1, 6, 33, 8, 5).contiguous(memory_format=nd)
    want = torch.empty(1, 6, 1, 8, 5, memory_format=nd).stride()
    frame = clip[:, :, 4:5]  # NDHWC already, but its T and N strides come from the 33 frames
    assert frame.is_contiguous(memory_format=nd) and frame.stride() != want
    plain = plain_strides(frame, nd)
    assert plain.stride() == want and plain.data_ptr() == frame.data_ptr()  # restrided, not copied
    ncdhw = torch.randn(1, 6, 2, 8, 5)
    moved = plain_strides(ncdhw, nd)
    assert moved.stride() == torch.empty(ncdhw.shape, memory_format=nd).stride() and torch.equal(moved, ncdhw)
    assert plain_strides(torch.randn(4, 3).t(), nd).stride() == (4, 1)  # not 5-D: row-major


@pytest.mark.slow
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d], ids=["ncdhw", "ndhwc"])
def test_every_chunk_length_runs_on_the_same_six_graphs_as_eager(memory_format):
    """Before: 12 graphs for this sequence, 4 built inside the second decode (minutes on a GPU)."""
    from torch._dynamo.utils import counters

    sd = random_state_dict(official_vae_key_shapes(z_dim=16, base_dim=TINY.vae_base_dim), seed=0)
    eager, vae = (WanVAE(WanVAE.from_state_dict(sd, "cpu", torch.float32).model, "cpu", memory_format)
                  for _ in range(2))
    compile_vae(vae)
    assert vae_is_compiled(vae) and not vae_is_compiled(eager)
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 1, 64, 48, generator=g) * 2 - 1
    calls = [("encode", torch.cat([ref, torch.zeros(1, 3, 32, 64, 48)], 2)), ("encode", ref),
             ("decode", torch.randn(1, 16, 3, 8, 6, generator=g)),
             ("encode", torch.rand(1, 3, 5, 64, 48, generator=g)),
             ("decode", torch.randn(1, 16, 9, 8, 6, generator=g)),
             ("encode", torch.rand(1, 3, 5, 64, 48, generator=g))]
    start = counters["stats"]["unique_graphs"]
    built = []
    for method, x in calls:
        before = counters["stats"]["unique_graphs"]
        out = getattr(vae, method)(x)
        built.append(counters["stats"]["unique_graphs"] - before)
        assert (out - getattr(eager, method)(x)).abs().max() < 1e-5
    assert counters["stats"]["unique_graphs"] - start == 6
    assert built[3:] == [0, 0, 0]  # encode(5), decode(9): nothing new once the 3 cache states exist
