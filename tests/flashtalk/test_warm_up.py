"""Warm-up before `ready`: the first session starts warm and produces the frames it would anyway."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.backends.base import BackendOptions
from engine.protocol.address import token_path
from engine.protocol.messages import SessionSettings
from tests.conftest import ROOT
from tests.flashtalk.speech_stream import stream_speech_frames

SMALL = SessionSettings(width=112, height=80, chunk_frames=8, seed=3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)[0]


def _session_frames(backend, chunks: int = 2) -> np.ndarray:
    return stream_speech_frames(backend, SMALL, chunks)


def test_warm_up_caches_the_prompt_and_changes_no_frame(model_dir):
    from engine.backends.flashtalk import FlashTalkBackend
    cold = _session_frames(FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu")))
    backend = FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu"))
    assert not backend.warms_up_by_default  # a CPU engine starts at once
    text_passes = []
    backend.runtime.pipeline.models.text_encoder.model.register_forward_hook(lambda *_: text_passes.append(1))
    assert backend.warm_up(SMALL) > 0
    assert len(text_passes) == 1
    assert set(backend.known_chunk_seconds(SMALL)) == {p.name for p in backend.plan(SMALL).profiles}
    warm = _session_frames(backend)
    assert len(text_passes) == 1  # the session's prompt came from the cache
    np.testing.assert_array_equal(warm, cold)  # a session's noise is its own: warm-up leaves no trace


@pytest.mark.slow
def test_after_warm_up_a_compiled_session_builds_no_graph(model_dir):
    from torch._dynamo.utils import counters

    from engine.backends.flashtalk import FlashTalkBackend
    backend = FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu", compile=True))
    backend.warm_up(SMALL)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    _session_frames(backend, chunks=3)
    assert counters["stats"]["unique_graphs"] == graphs


def test_sigterm_during_warm_up_exits_cleanly(model_dir, tmp_path):
    address = f"ipc://{tmp_path}/engine.sock"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--socket", address, "--backend",
                             "flashtalk", "--model", str(model_dir), "--device", "cpu", "--warm-up"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for line in proc.stderr:  # the default-size warm-up on the CPU takes minutes
            if line.startswith("warming up"):
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout.read() == ""  # never said ready
        assert not Path(f"{tmp_path}/engine.sock").exists() and not token_path(address).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
