"""The Wan VAE's memory layout: NDHWC (channels_last_3d) on CUDA, equal results, kept inside (issue 14, lever 3)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from engine.flashtalk.model.tiny_sizes import TINY  # noqa: E402
from engine.flashtalk.model.vae import WanVAE, conv_memory_format, official_vae_key_shapes  # noqa: E402
from engine.flashtalk.weights.tiny_encoders import random_state_dict  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

ND = torch.channels_last_3d
# The first convolution of each path (the input's layout) and some deep ones, whose inputs passed
# through the causal caches, norms and resamples.
WATCHED = ("encoder.conv_in", "post_quant_conv", "encoder.down_blocks.0.conv1", "encoder.conv_out",
           "decoder.up_blocks.3.resnets.0.conv1", "decoder.conv_out")
# The CPU's float32 conv3d computes NDHWC only through oneDNN, which it takes for batches of 2 or
# more (batch 1 goes to a plain NCDHW kernel), so the CPU test runs a batch of 2.
BATCH = 2


def _pair():
    sd = random_state_dict(official_vae_key_shapes(z_dim=16, base_dim=TINY.vae_base_dim), seed=7)
    return WanVAE.from_state_dict(sd, "cpu", torch.float32), WanVAE(
        WanVAE.from_state_dict(sd, "cpu", torch.float32).model, "cpu", ND)


def _watch(vae: WanVAE) -> dict[str, list[bool]]:
    """Per convolution, one entry per call: did its input arrive with channels innermost (NDHWC)?"""
    names = [name for name, m in vae.model.named_modules() if isinstance(m, torch.nn.Conv3d | torch.nn.Conv2d)]
    seen: dict[str, list[bool]] = {name: [] for name in names}
    for name in names:
        vae.model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: seen[name].append(args[0].stride(1) == 1))
    return seen


def test_cuda_gets_channels_last_3d_and_the_cpu_keeps_contiguous():
    assert conv_memory_format(torch.device("cuda", 0)) == ND
    assert conv_memory_format(torch.device("cpu")) == torch.contiguous_format
    plain, nd = _pair()
    assert plain.memory_format == torch.contiguous_format and nd.memory_format == ND
    conv3d = nd.model.decoder.conv_out.weight
    conv2d = nd.model.decoder.up_blocks[0].upsamplers[0].resample[1].weight
    assert conv3d.is_contiguous(memory_format=ND) and not conv3d.is_contiguous()
    assert conv2d.is_contiguous(memory_format=torch.channels_last) and not conv2d.is_contiguous()
    assert plain.model.decoder.conv_out.weight.is_contiguous()


def test_channels_last_3d_encode_and_decode_equal_contiguous_and_keep_ndhwc_inside():
    plain, nd = _pair()
    plain_seen, nd_seen = _watch(plain), _watch(nd)
    g = torch.Generator().manual_seed(0)
    video = torch.rand(BATCH, 3, 9, 32, 32, generator=g) * 2 - 1  # 3 encoder passes: 1 + 4 + 4 frames
    latents = torch.randn(BATCH, 16, 3, 4, 4, generator=g)  # 3 decoder passes, caches in all states
    for method, x in (("encode", video), ("decode", latents)):
        want, got = getattr(plain, method)(x), getattr(nd, method)(x)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item())
    assert got.is_contiguous(memory_format=ND)  # the decoded video leaves in the VAE's layout
    assert nd.encode(video).is_contiguous()  # latents go to the DiT in plain NCDHW
    # Every convolution, the upsamplers' after the frame interleave and the encoder's after its
    # zero padding included, gets channels-innermost input.
    bad = {name: calls for name, calls in nd_seen.items() if not all(calls)}
    assert not bad, f"convolutions that got NCDHW input: {bad}"
    assert sum(map(len, nd_seen.values())) > 100
    for name in WATCHED:
        assert len(nd_seen[name]) >= 1, name
        assert not any(plain_seen[name]), name  # the hook tells the layouts apart


def test_the_gpu_layout_script_runs_on_the_cpu(tmp_path):
    out = tmp_path / "vae_layout.json"
    result = subprocess.run([sys.executable, "scripts/gpu/vae_layout_check.py", "--tiny", "--device", "cpu",
                             "--warmups", "0", "--repeats", "1", "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["decode_latents"] == [1, 16, 9, 8, 6] and report["encode_video"] == [1, 3, 5, 64, 48]
    for layout in ("contiguous", "channels_last_3d"):
        assert report["layouts"][layout]["decode_ms"] > 0 and report["layouts"][layout]["encode_ms"] > 0
    # Same weights, same inputs, bf16 either way: the layouts differ by rounding order only.
    assert report["decode_rel_l2_channels_last_vs_contiguous"] < 0.1
    assert report["encode_rel_l2_channels_last_vs_contiguous"] < 0.1
    assert report["channels_last_conv_calls"] > 100
    assert report["channels_last_ncdhw_conv_inputs"] == {}  # every convolution got its input in NDHWC
