"""SIGTERM while a flashtalk session is busy: the worker stops between two stages and the engine
exits 0, its socket and token removed (it used to abort: rc -6, "terminate called without an
active exception", once a 5 s join gave up on a worker still inside torch)."""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from engine.protocol import EngineClient  # noqa: E402
from engine.protocol.address import ipc_path, token_path  # noqa: E402
from engine.protocol.messages import Event, Frames, OpenSession, SessionSettings, settings_to_dict  # noqa: E402
from tests.conftest import EngineProcess  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)[0]


def stop_and_check(engine: EngineProcess) -> None:
    engine.proc.send_signal(signal.SIGTERM)
    rc = engine.proc.wait(300)  # one stage at most, however slow the machine
    stderr = engine.proc.stderr.read()
    assert rc == 0, stderr[-2000:]
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert not ipc_path(engine.address).exists() and not token_path(engine.address).exists()


@pytest.mark.parametrize("busy", ["preparing", "generating"])
def test_sigterm_during_a_session_exits_cleanly(tiny_model, tmp_path, portrait_bytes, busy):
    engine = EngineProcess(f"ipc://{tmp_path}/run/engine.sock", "--model", str(tiny_model), "--device", "cpu",
                           backend="flashtalk")
    try:
        with EngineClient(engine.address) as client:
            if busy == "preparing":  # preparing and each chunk take seconds here: stop at its first report
                settings = SessionSettings(width=128, height=128, mode="file")
                client.send(OpenSession(portrait=portrait_bytes, settings=settings_to_dict(settings)))
                wanted = (Event,)
            else:
                # 64x64: a chunk is quicker, and the 5 s of audio still leave chunks to make after the first
                client.open_session(portrait_bytes, SessionSettings(width=64, height=64, mode="file"))
                client.send_audio(np.zeros(5 * 16000, np.float32), 16000)
                client.end_audio()
                wanted = (Frames,)
            while True:
                msg = client.recv(120)
                assert msg is not None, "the engine went silent"
                if isinstance(msg, wanted) or (busy == "preparing" and msg.TYPE == "session_opened"):
                    break
            stop_and_check(engine)
    finally:
        engine.stop()
