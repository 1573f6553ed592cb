"""A flashtalk engine on a CPU: fp32 by default, and clients that wait on its progress, not a clock.

bf16 on CPUs without AVX512-BF16 runs ~13x slower than fp32; a fixed client timeout then gave up on
an engine that was still preparing. These run the real in-process server and a real client.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from engine.backends.base import BackendOptions  # noqa: E402
from engine.protocol import EngineClient  # noqa: E402
from engine.protocol.messages import SessionSettings  # noqa: E402
from engine.server import EngineServer, ServerConfig  # noqa: E402
from tests.conftest import EngineProcess  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)[0]


@pytest.fixture(scope="module")
def backend(tiny_model):
    from engine.backends.flashtalk import FlashTalkBackend
    backend = FlashTalkBackend(BackendOptions(model_dir=tiny_model, device="cpu"))
    yield backend
    backend.close()


def test_the_default_precision_on_a_cpu_is_fp32_for_every_network(backend):
    models = backend.runtime.pipeline.models
    assert backend.precision == "fp32"
    for name, net in (("dit", models.dit), ("vae", models.vae.model), ("clip", models.clip),
                      ("text encoder", models.text_encoder.model)):
        dtypes = {p.dtype for p in net.parameters()}
        assert dtypes == {torch.float32}, f"{name} holds {dtypes} on a CPU"


def test_an_explicit_precision_still_wins(tiny_model):
    from engine.backends.flashtalk import FlashTalkBackend
    bf16 = FlashTalkBackend(BackendOptions(model_dir=tiny_model, device="cpu", precision="bf16"))
    try:
        assert bf16.precision == "bf16" and next(bf16.runtime.pipeline.models.dit.parameters()).dtype == torch.bfloat16
    finally:
        bf16.close()


def test_opening_a_session_waits_on_progress_reports_not_on_a_fixed_timeout(backend, tmp_path, portrait_bytes):
    """The silence allowed is a quarter of what preparing takes; progress keeps the wait alive."""
    server = EngineServer(ServerConfig(address=f"ipc://{tmp_path}/engine.sock", backend="flashtalk"), backend)
    server.config.progress_interval_s = 0.01
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = SessionSettings(width=128, height=128, mode="file")  # ~2 s to prepare on a CI core
    try:
        with EngineClient(server.config.address) as client:
            first = client.open_session(portrait_bytes, settings)  # measures what preparing takes here
            client.close_session()
            silence = first.prepare_ms / 1e3 / 4
            reports = []
            opened = client.open_session(portrait_bytes, settings, timeout=silence, on_progress=reports.append)
            client.close_session()
    finally:
        server.stop_event.set()
        thread.join(10)
    assert opened.width == 128
    stages = [r.data["stage"] for r in reports]
    assert stages, "no progress was reported while the session was prepared"
    assert {"clip", "vae_cond"} & set(stages), stages  # the pipeline's own stage names
    order = [s for s in dict.fromkeys(stages) if s in ("text_encoder", "clip", "vae_cond")]
    assert order == sorted(order, key=("text_encoder", "clip", "vae_cond").index)
    assert all(r.message.startswith("preparing the session: ") for r in reports)


def test_an_engine_that_goes_silent_still_ends_the_wait(tmp_path, portrait_bytes):
    """A stopped (SIGSTOP) engine sends nothing: the wait ends after the silence allowed, one line."""
    from engine.protocol import EngineError

    engine = EngineProcess(f"ipc://{tmp_path}/run/engine.sock")
    try:
        with EngineClient(engine.address) as client:
            os.kill(engine.proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(EngineError, match="no word from the engine for 1 s") as info:
                    client.open_session(portrait_bytes, SessionSettings(mode="file"), timeout=1)
            finally:
                os.kill(engine.proc.pid, signal.SIGCONT)
        assert info.value.code == "timeout"
    finally:
        engine.stop()
