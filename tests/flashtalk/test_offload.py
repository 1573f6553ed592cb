"""--offload on a CPU engine with the tiny checkpoint: which tensors live where, and when.

On a CPU engine a module's home and its device copy are two different CPU buffers, so every copy
and re-pointing happens as on a GPU and can be watched through data pointers (no memory is saved).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from engine.backends.base import BackendOptions, BackendUnavailable  # noqa: E402
from engine.flashtalk.runtime.offload import BlockStream, HostHome  # noqa: E402
from engine.protocol.messages import SessionSettings  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

SMALL = SessionSettings(width=64, height=64, chunk_frames=4, seed=3)
CHUNKS = 2
# level -> networks that wait in host memory between uses (DiT blocks: all of the tiny model's 2)
AT_HOME = {"none": set(), "encoders": {"text_encoder", "clip"},
           "blocks": {"text_encoder", "clip", "dit_block_0", "dit_block_1"},
           "all": {"text_encoder", "clip", "dit_block_0", "dit_block_1", "vae", "audio_encoder"}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)[0]


def _backend(model_dir, **options):
    from engine.backends.flashtalk import FlashTalkBackend
    return FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu", precision="fp32", **options))


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _networks(models) -> dict[str, nn.Module]:
    return {"text_encoder": models.text_encoder.model, "clip": models.clip, "vae": models.vae.model,
            "audio_encoder": models.audio_encoder.model,
            **{f"dit_block_{i}": b for i, b in enumerate(models.dit.blocks)}}


def _homes(models) -> set[int]:
    """Storages of every host home the placement keeps."""
    placement = models.placement
    if placement is None:
        return set()
    homes = [v.home for v in (*placement.text.visitors, *placement.visitors.values())]
    homes += placement.blocks.homes if placement.blocks else []
    return {_storage(h.flat) for h in homes}


def _where(models) -> dict[str, set[str]]:
    """network -> {'home'} or {'device'}: where each of its parameters and buffers points now."""
    homes = _homes(models)
    return {name: {"home" if _storage(t) in homes else "device" for t in (*net.parameters(), *net.buffers())}
            for name, net in _networks(models).items()}


def test_each_level_moves_exactly_what_it_says_and_no_frame_changes(model_dir, speech):
    reference = None
    for level, at_home in AT_HOME.items():
        backend = _backend(model_dir, offload=level)
        models = backend.runtime.pipeline.models
        assert backend.memory_plan.level == level
        during_forward = []  # per streamed-block call: where its tensors and the other block's are
        for i, block in enumerate(models.dit.blocks):
            other = models.dit.blocks[1 - i]
            block.register_forward_pre_hook(  # after the streaming hook: sees the block attached
                lambda _m, _a, b=block, o=other, seen=during_forward, m=models: seen.append(
                    (_where_one(m, b), _where_one(m, o))))
        stream = backend.open_stream(_portrait(), SMALL)
        frames = []
        for window in _windows(stream, speech):
            frames.append(stream.generate(window).frames)
            where = _where(models)  # between chunks
            assert {n for n, places in where.items() if places == {"home"}} == at_home, level
            assert all(len(places) == 1 for places in where.values())  # never half moved
        stream.close()
        if "dit_block_0" in at_home:  # while a streamed block computes it is on the device, the other home
            assert during_forward and all(mine == {"device"} and theirs == {"home"}
                                          for mine, theirs in during_forward)
        frames = np.stack(frames)
        if reference is None:
            reference = frames
        np.testing.assert_array_equal(frames, reference, err_msg=f"--offload {level} changed the frames")
        backend.close()


def _where_one(models, module: nn.Module) -> set[str]:
    homes = _homes(models)
    return {"home" if _storage(t) in homes else "device" for t in module.parameters()}


def _portrait():
    from avkit.portrait_image import load_portrait
    from tests.conftest import ASSETS
    return load_portrait(ASSETS / "portrait.png")


def _windows(stream, speech):
    for i in range(CHUNKS):
        end = (i + 1) * stream.chunk_frames * 640
        window = speech[max(0, end - stream.context_samples):end]
        yield np.pad(window, (stream.context_samples - window.size, 0))


class _Step(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.register_buffer("scale", torch.rand(dim) + 0.5)
        self.fail_once = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_once:
            self.fail_once = False
            raise RuntimeError("planted failure")
        return torch.tanh(self.linear(x)) * self.scale


def _stack(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*(_Step(8) for _ in range(5))).eval().requires_grad_(False)


def test_block_stream_rotates_three_blocks_through_two_slots():
    reference, streamed = _stack(), _stack()
    x = torch.randn(3, 8)
    expected = reference(x)
    chosen = [streamed[0], streamed[2], streamed[3]]  # not neighbours: resident blocks in between
    homes = [HostHome(b, pin=False) for b in chosen]
    stream = BlockStream(chosen, homes, torch.device("cpu"))
    slots = {_storage(s) for s in stream.slots}
    seen = []
    for block in chosen:
        block.register_forward_pre_hook(lambda m, _a: seen.append(
            ({_storage(t) for t in m.parameters()}, [h.at_home for h in homes])))
    for forward in range(1, 4):
        np.testing.assert_array_equal(streamed(x), expected)
        assert all(h.at_home for h in homes)  # between forwards every streamed block is home
        assert stream.copies == 1 + 3 * forward  # the first block once cold, then one copy per block
    assert all(len(storages) == 1 and storages <= slots and sum(not home for home in at_home) == 1
               for storages, at_home in seen)  # one block on the device at a time, inside a slot
    assert len({next(iter(storages)) for storages, _ in seen}) == 2  # both slots used


def test_an_error_inside_a_streamed_block_leaves_nothing_on_the_device():
    reference, streamed = _stack(), _stack()
    x = torch.randn(3, 8)
    chosen = [streamed[1], streamed[3], streamed[4]]
    homes = [HostHome(b, pin=False) for b in chosen]
    stream = BlockStream(chosen, homes, torch.device("cpu"))
    streamed.register_forward_pre_hook(lambda *_: stream.reset())  # as OffloadPlacement does for the DiT
    chosen[1].fail_once = True
    with pytest.raises(RuntimeError, match="planted"):
        streamed(x)
    assert not homes[1].at_home  # left attached by the failure ...
    np.testing.assert_array_equal(streamed(x), reference(x))  # ... and the next forward is right
    assert all(h.at_home for h in homes)


def test_a_home_keeps_each_tensors_memory_layout_at_home_and_on_the_device():
    """A channels_last_3d convolution weight (the VAE's on CUDA) keeps its layout through the host
    home and every visit, so cuDNN gets no transposed weight; values survive the round trip."""
    conv = nn.Conv3d(4, 6, 3)
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
    model = nn.Sequential(conv, nn.Linear(5, 3))
    values = {name: t.detach().clone() for name, t in model.state_dict().items()}
    home = HostHome(model, pin=False)
    device_copy = torch.empty(home.nbytes, dtype=torch.uint8)
    home.copy_into(device_copy)
    for where in ("home", "device"):
        if where == "device":
            home.point_to(device_copy)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d) and not conv.weight.is_contiguous()
        assert model[1].weight.is_contiguous()
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(tensor, values[name], rtol=0, atol=0)
    assert not home.at_home
    home.point_home()
    assert home.at_home and conv.weight.is_contiguous(memory_format=torch.channels_last_3d)


def test_auto_with_a_budget_offloads_what_the_plan_says(model_dir):
    from engine.flashtalk.runtime.memory_plan import ALLOCATOR_RESERVE, GIB, Workload, plan_level
    from engine.flashtalk.runtime.module_sizes import checkpoint_sizes

    sizes = checkpoint_sizes(model_dir, model_dir.parent / "chinese-wav2vec2-base", "fp32")
    encoders = plan_level(sizes, "encoders", Workload.of()).peak
    backend = _backend(model_dir, offload="auto", gpu_memory_gb=encoders / (1 - ALLOCATOR_RESERVE) / GIB * 1.0001)
    assert backend.memory_plan.level == "encoders" and backend.memory_plan.requested == "auto"
    where = _where(backend.runtime.pipeline.models)
    assert where["clip"] == {"home"} and where["dit_block_0"] == {"device"}
    backend.close()


def test_a_budget_below_the_minimum_refuses_to_start_before_loading(model_dir):
    # 14B random weights on the CPU would take many minutes to build: the refusal comes first
    proc = subprocess.run([sys.executable, "-m", "engine", "bench", "--backend", "flashtalk", "--random-weights",
                           "14b", "--model", str(model_dir), "--device", "cpu", "--gpu-memory", "2"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--gpu-memory 2.0 GiB is below the" in lines[0] and "--offload all" in lines[0]
    from engine.flashtalk.runtime.memory_plan import ALLOCATOR_RESERVE, GIB, Workload, plan_level
    from engine.flashtalk.runtime.module_sizes import checkpoint_sizes

    sizes = checkpoint_sizes(model_dir, model_dir.parent / "chinese-wav2vec2-base", "fp32")
    below_none = (plan_level(sizes, "none", Workload.of()).peak - 2**20) / (1 - ALLOCATOR_RESERVE) / GIB
    with pytest.raises(BackendUnavailable, match="more than --gpu-memory .* use --offload (encoders|blocks|all)"):
        _backend(model_dir, offload="none", gpu_memory_gb=below_none)  # fits only with something offloaded


def test_bad_offload_and_gpu_memory_values_are_user_errors():
    for args, text in ((["--offload", "some"], "invalid choice"), (["--gpu-memory", "-1"], "--gpu-memory must be")):
        proc = subprocess.run([sys.executable, "-m", "engine", "bench", "--backend", "flashtalk", *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2 and text in proc.stderr, proc.stderr
