"""Out of memory in a flashtalk session: an `out_of_memory` error for that session, and the engine
keeps serving.

A real `python -m engine serve --backend flashtalk` on the CPU with the tiny checkpoint. Its
address space is capped with RLIMIT_AS (prlimit on the running engine, after a small warm-up
session, so the cap is measured rather than guessed: torch alone maps over 1 GB, more on machines
with more cores). A capped CPU allocation then fails exactly as it does on a full machine
("DefaultCPUAllocator: can't allocate memory"), the CPU twin of CUDA's OutOfMemoryError.
"""
from __future__ import annotations

import math
import re
import resource
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from engine.protocol import EngineClient, EngineError, SessionSettings
from engine.protocol.messages import Error, Event, Frames
from tests.conftest import EngineProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(resource, "prlimit"),
                                reason="needs Linux prlimit to cap the engine's memory")

ADVICE = ("lower the resolution", "--precision fp8", "--offload", "--gpus")
SMALL = SessionSettings(width=64, height=64, mode="file")
GENERATE_SIZE = 256  # a chunk at this size maps ~150 MiB more than its preparation kept (measured)
GENERATE_HEADROOM = 32 * 2**20


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)[0]


@pytest.fixture(scope="module")
def flashtalk_engine(tiny_model, tmp_path_factory, portrait_bytes):
    """One engine for the module: each test leaves it uncapped and checks it still serves."""
    run = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as env:
        # glibc then unmaps every freed block over 128 KiB at once (no cached slack): what the
        # engine maps is what it holds, so a cap a little above it is reached by the next big tensor.
        env.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
        engine = EngineProcess(f"ipc://{run}/engine.sock", "--model", str(tiny_model), "--device", "cpu",
                               "--client-timeout", "30", backend="flashtalk")
    try:
        assert small_session(engine, portrait_bytes) == 25  # warm: threads, kernels, prompt cache
        yield engine
    finally:
        engine.stop()


def address_space(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        line = next(line for line in fh if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def cap_memory(pid: int, limit: int | None) -> None:
    """Soft limit only (any user may lift it again up to the unlimited hard limit)."""
    resource.prlimit(pid, resource.RLIMIT_AS, (resource.RLIM_INFINITY if limit is None else limit,
                                               resource.RLIM_INFINITY))


def small_session(engine: EngineProcess, portrait: bytes) -> int:
    """One second of audio at 64x64, start to end; the frames received."""
    frames = 0
    with EngineClient(engine.address) as client:
        client.open_session(portrait, SMALL)
        client.send_audio(np.zeros(16000, np.float32), 16000)
        client.end_audio()
        while True:
            msg = client.recv(60)
            assert msg is not None and not isinstance(msg, Error), msg
            if isinstance(msg, Frames):
                frames += msg.count
            elif isinstance(msg, Event) and msg.kind == "session_ended":
                return frames


def assert_clear_oom(code: str, message: str) -> None:
    assert code == "out_of_memory", message
    assert "\n" not in message and message.startswith("out of CPU memory")
    assert all(hint in message for hint in ADVICE), message


def test_out_of_memory_while_preparing_ends_that_session_and_the_engine_keeps_serving(flashtalk_engine,
                                                                                      portrait_bytes):
    pid = flashtalk_engine.proc.pid
    cap_memory(pid, address_space(pid) + 2 * 2**30)  # 2 GiB more than the warm engine maps
    try:
        # 2048x2048 needs gigabytes to encode its conditioning video (and its chunks still fit one
        # frames message: a larger size is refused before anything is allocated)
        with EngineClient(flashtalk_engine.address) as client, pytest.raises(EngineError) as info:
            client.open_session(portrait_bytes, SessionSettings(width=2048, height=2048, mode="file"))
        assert_clear_oom(info.value.code, str(info.value))
        assert re.search(r"\(\d+\.\d [MG]iB could not be allocated\)", str(info.value)), str(info.value)
        assert flashtalk_engine.proc.poll() is None
        assert small_session(flashtalk_engine, portrait_bytes) == 25  # under the same cap
    finally:
        cap_memory(pid, None)


def test_out_of_memory_while_generating_ends_that_session_and_the_engine_keeps_serving(flashtalk_engine,
                                                                                       portrait_bytes):
    pid = flashtalk_engine.proc.pid
    with EngineClient(flashtalk_engine.address) as client:
        client.open_session(portrait_bytes, SessionSettings(width=GENERATE_SIZE, height=GENERATE_SIZE, mode="file"))
        # Prepared: now leave far less room than one chunk needs beyond what preparing kept mapped.
        cap_memory(pid, address_space(pid) + GENERATE_HEADROOM)
        try:
            client.send_audio(np.zeros(2 * 16000, np.float32), 16000)
            client.end_audio()
            error, frames = None, 0
            while error is None:
                msg = client.recv(60)
                assert msg is not None, "no reply: the engine hung"
                assert not (isinstance(msg, Event) and msg.kind == "session_ended"), "no error at all"
                frames += msg.count if isinstance(msg, Frames) else 0
                error = msg if isinstance(msg, Error) else None
        finally:
            cap_memory(pid, None)
    assert_clear_oom(error.code, error.message)
    assert error.fatal and error.session == client.session.session
    assert frames < math.ceil(2 * 25)
    assert flashtalk_engine.proc.poll() is None
    assert small_session(flashtalk_engine, portrait_bytes) == 25
