"""The FlashTalk engine over 2 and 3 CPU ranks (gloo) streams the frames of the one-rank engine.

The tiny checkpoint runs at 112x80 with 20-frame chunks: 7 latent frames of 5x7 patches = 245
tokens, which neither 2 nor 3 ranks divide (padding + ring attention on 3 ranks), and a 14-latent
width split into uneven VAE bands. Failure: a rank that dies ends the torchrun job within seconds,
and a rank that hangs makes the others' collectives fail after the group timeout.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.backends.base import BackendOptions
from engine.cli.torchrun_launch import torchrun_argv
from engine.protocol.messages import SessionSettings
from tests.conftest import ROOT
from tests.flashtalk.gloo_world import run_on_gloo_world
from tests.flashtalk.speech_stream import stream_speech_frames

SETTINGS = SessionSettings(width=112, height=80, chunk_frames=20, seed=5)
CHUNKS = 2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)[0]


def _stream_frames(backend) -> np.ndarray:
    return stream_speech_frames(backend, SETTINGS, CHUNKS)


def _engine_rank(rank: int, world_size: int, model_dir: Path, precision: str = "fp32", offload: str = "none"):
    from engine.backends.flashtalk import FlashTalkBackend
    backend = FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu", gpus=world_size,
                                              precision=precision, offload=offload))
    models = backend.runtime.pipeline.models
    # Each rank offloads its own copy
    assert (models.placement is None) == (offload == "none")
    # Each rank must really work on its slice: sequence-parallel DiT, band-parallel VAE.
    assert models.parallel is not None and models.parallel.world_size == world_size
    assert type(models.vae).__name__ == "ParallelVAE"
    if rank != 0:
        backend.follow()
        return None
    frames = _stream_frames(backend)
    if offload != "none":
        assert all(models.placement.at_home(name) for name in ("clip", "vae", "dit_block_0", "dit_block_1"))
    backend.close()
    return frames


# 2: Ulysses (2 heads / 2 ranks); 3: padded ring attention (slow: three ranks on the CPU; the
# padded ring itself is in the default run through test_sequence_parallel's 3-rank forward)
@pytest.fixture(scope="module")
def two_ranks_plain(model_dir) -> np.ndarray:
    """The frames of a 2-rank engine that offloads nothing (two tests compare against them)."""
    return run_on_gloo_world(2, _engine_rank, model_dir, "fp32", "none", init=False)


@pytest.mark.parametrize("world", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_ranks_stream_the_frames_of_one_rank(model_dir, world, request):
    """In float32 the split only reorders sums: frames agree to the last 8-bit step.

    (In bf16 the tiny random model amplifies that reordering over 4 steps and 2 chunks to a few
    levels on average, which is why this compares in fp32: a wiring bug shows as tens of levels.)
    """
    from engine.backends.flashtalk import FlashTalkBackend
    one = _stream_frames(FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu", precision="fp32")))
    many = (request.getfixturevalue("two_ranks_plain") if world == 2
            else run_on_gloo_world(world, _engine_rank, model_dir, "fp32", init=False))
    assert many.shape == one.shape == (4 + 20, 80, 112, 3)  # a live session: a short first chunk, then 20
    diff = np.abs(many.astype(int) - one.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01, f"max {diff.max()}, mean {diff.mean():.4f}"


def test_ranks_offloading_everything_stream_the_frames_of_ranks_that_do_not(model_dir, two_ranks_plain):
    offloaded = run_on_gloo_world(2, _engine_rank, model_dir, "fp32", "all", init=False)
    np.testing.assert_array_equal(offloaded, two_ranks_plain)


def _measure_and_switch(backend) -> np.ndarray:
    """A timing-state measurement, then a stream that switches to a smaller size and fewer steps."""
    from avkit.audio_decode import load_audio
    from avkit.portrait_image import load_portrait
    portrait = load_portrait(ROOT / "assets" / "portrait.png")
    assert backend.measure_profile(portrait, SETTINGS, "112x80/4")["112x80/2"] > 0
    speech = load_audio(ROOT / "assets" / "speech.wav")
    stream = backend.open_stream(portrait, replace(SETTINGS, mode="file"))  # full chunks from the first
    out = []
    for i, profile in enumerate(["112x80/4", "96x64/2"]):
        stream.use_profile(profile)
        end = (i + 1) * stream.chunk_frames * 640
        window = speech[max(0, end - stream.context_samples):end]
        out.append(stream.generate(np.pad(window, (stream.context_samples - window.size, 0))).frames)
    stream.close()
    return np.stack(out)


def _switching_rank(rank: int, world_size: int, model_dir: Path):
    from engine.backends.flashtalk import FlashTalkBackend
    backend = FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu", gpus=world_size, precision="fp32"))
    if rank != 0:
        backend.follow()
        return None
    frames = _measure_and_switch(backend)
    backend.close()
    return frames


def test_ranks_follow_measurements_and_profile_switches(model_dir):
    """The followers mirror the timing state and the switch (new size, new steps): same frames."""
    from engine.backends.flashtalk import FlashTalkBackend
    one = _measure_and_switch(FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu", precision="fp32")))
    many = run_on_gloo_world(2, _switching_rank, model_dir, init=False)
    assert many.shape == one.shape == (2, 20, 80, 112, 3)  # the output size stays the session's
    diff = np.abs(many.astype(int) - one.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01, f"max {diff.max()}, mean {diff.mean():.4f}"


def _hang_rank(rank: int, world_size: int, released: str) -> float | None:
    from engine.flashtalk.parallel.process_group import init_rank_world
    world = init_rank_world("cpu", timeout_s=2)
    if rank != 0:
        # a rank stuck in something that never reaches the next collective, until rank 0 has
        # seen its collective fail (at most 8 s, the longest rank 0 may take)
        deadline = time.monotonic() + 8
        while not os.path.exists(released) and time.monotonic() < deadline:
            time.sleep(0.05)
        return None
    t0 = time.perf_counter()
    try:
        with pytest.raises(RuntimeError):
            torch.distributed.all_reduce(torch.ones(3), group=world.compute)
        return time.perf_counter() - t0
    finally:
        Path(released).touch()


def test_a_hung_rank_makes_the_others_fail_after_the_timeout(tmp_path):
    elapsed = run_on_gloo_world(2, _hang_rank, str(tmp_path / "released"), init=False)
    assert 1.5 < elapsed < 7


def test_rank_timeout_must_be_positive(capsys):
    from engine.cli import main
    assert main(["serve", "--socket", "ipc:///nonexistent/engine.sock", "--rank-timeout", "0"]) == 2
    assert "--rank-timeout must be a positive number of seconds" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], check=False, capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _rank_of(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((e[5:].decode() for e in env if e.startswith(b"RANK=")), None)


def test_serve_gpus_runs_under_torchrun_and_ends_when_a_rank_dies(model_dir, tmp_path):
    address = f"ipc://{tmp_path}/engine.sock"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--socket", address, "--backend",
                             "flashtalk", "--model", str(model_dir), "--device", "cpu", "--gpus", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == f"ready {address}"  # rank 0 serves, once
        ranks = {_rank_of(p): p for p in _children(proc.pid)}  # proc is torchrun (exec)
        assert set(ranks) == {"0", "1"}
        os.kill(ranks["1"], signal.SIGKILL)
        t0 = time.perf_counter()
        code = proc.wait(timeout=40)
        assert code != 0
        assert time.perf_counter() - t0 < 30
        assert not any(Path(f"/proc/{p}").exists() and _rank_of(p) for p in ranks.values())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bench_gpus_under_torchrun_measures_on_rank_0_while_rank_1_follows(model_dir, tmp_path):
    out = tmp_path / "bench.json"
    argv = torchrun_argv(2, ["bench", "--backend", "flashtalk", "--model", str(model_dir), "--device", "cpu",
                             "--gpus", "2", "--size", "64x64", "--chunks", "1", "--json", str(out)])
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert (report["width"], report["height"], report["chunk_frames"]) == (64, 64, 28)
    assert report["options"]["gpus"] == 2 and report["fps"] > 0
