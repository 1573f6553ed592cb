"""Reliability and security with real engine processes: soak, faults, access, no unsafe loading.

The 10-minute soak runs by default (about 15 s of puppet work); the 2-hour soak is slow:
`pytest -m slow tests/test_reliability.py -k soak`. docs/reliability.md lists what each test promises.
"""
from __future__ import annotations

import ast
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import zmq

from engine.protocol import (
    EngineClient,
    EngineError,
    SessionSettings,
    read_token,
    token_path,
)
from engine.protocol.codec import decode, encode
from engine.protocol.handshake import present_token
from engine.protocol.messages import (
    MAX_AUDIO_BLOCK_BYTES,
    Audio,
    CloseSession,
    EndOfAudio,
    Error,
    Event,
    Frames,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Message,
    Metrics,
    OpenSession,
    settings_to_dict,
)
from tests.conftest import ROOT, EngineProcess, RawDealer, process_alive, wait_for

SPF = 640  # samples per frame: 16 kHz / 25 fps
BLOCK = 8000  # 0.5 s blocks
AHEAD_S = 2.0  # the soak client keeps at most this much audio ahead of the frames it has read


# -- soak ----------------------------------------------------------------------------------------

class PatternAudio:
    """Deterministic audio of any length without holding it: sample s = pattern[s % P].

    P is prime, so no chunk or block boundary ever lines up with the pattern's period.
    """

    def __init__(self, seconds: float, period: int = 104_729):
        self.size = int(seconds * 16000) + 123  # not a whole number of frames
        self._pattern = np.random.default_rng(7).normal(0, 0.2, period).astype(np.float32)

    def slice(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi), zeros after the end (what the engine pads the last frame with)."""
        out = np.zeros(hi - lo, np.float32)
        real = max(0, min(hi, self.size) - lo)
        out[:real] = self._pattern[np.arange(lo, lo + real) % self._pattern.size]
        return out


@dataclass
class SoakResult:
    frames: int
    messages: int
    metrics: dict
    rss_warm: int
    rss_end: int
    fds_warm: int
    fds_end: int
    wall_s: float


def soak(engine: EngineProcess, portrait: bytes, audio: PatternAudio, warmup_frames: int) -> SoakResult:
    """Stream `audio` through one file-mode session, checking every Frames as it arrives."""
    proc = psutil.Process(engine.proc.pid)
    started = time.monotonic()
    sent = received = messages = 0
    metrics: dict = {}
    rss_warm = fds_warm = 0
    with EngineClient(engine.address) as client:
        client.open_session(portrait, SessionSettings(width=128, height=128, mode="file"))
        while True:
            while sent < audio.size and sent - received * SPF < AHEAD_S * 16000:
                client.send_audio(audio.slice(sent, min(sent + BLOCK, audio.size)), 16000)
                sent = min(sent + BLOCK, audio.size)
                if sent == audio.size:
                    client.end_audio()
            msg = client.recv(30)
            assert msg is not None, f"engine stopped answering after {received} frames"
            if isinstance(msg, Frames):
                assert msg.first_frame == received, "frames skipped or repeated"
                assert (msg.width, msg.height) == (128, 128) and len(msg.rgb) == msg.count * 128 * 128 * 3
                shown = np.frombuffer(msg.audio, np.float32)
                lo = msg.first_frame * SPF
                np.testing.assert_array_equal(shown, audio.slice(lo, lo + msg.count * SPF))
                received += msg.count
                messages += 1
                if not rss_warm and received >= warmup_frames:
                    rss_warm, fds_warm = proc.memory_info().rss, proc.num_fds()
            elif isinstance(msg, Metrics):
                metrics = msg.values
            elif isinstance(msg, Error):
                pytest.fail(f"engine error {msg.code}: {msg.message}")
            elif isinstance(msg, Event) and msg.kind == "session_ended":
                break
        rss_end, fds_end = proc.memory_info().rss, proc.num_fds()
    return SoakResult(received, messages, metrics, rss_warm, rss_end, fds_warm, fds_end,
                      time.monotonic() - started)


def check_soak(result: SoakResult, audio: PatternAudio) -> None:
    print(f"\nsoak: {result.frames} frames in {result.messages} messages, {result.wall_s:.1f} s wall; "
          f"RSS {result.rss_warm / 2**20:.1f} -> {result.rss_end / 2**20:.1f} MiB; "
          f"fds {result.fds_warm} -> {result.fds_end}; metrics {result.metrics}")
    expected = math.ceil(audio.size / SPF)
    assert result.frames == expected
    assert result.metrics["frames"] == expected
    assert result.metrics["dropped_frames"] == 0 and result.metrics["skipped_frames"] == 0
    assert result.metrics["idle_chunks"] == 0 and result.metrics["backlog_s"] == 0
    assert result.rss_warm and result.rss_end < result.rss_warm * 1.05, "engine memory grew"
    assert result.fds_end == result.fds_warm, "engine leaks file descriptors"


def test_soak_ten_minutes_of_audio_keeps_memory_fds_and_timeline(engine, portrait_bytes):
    audio = PatternAudio(600)
    check_soak(soak(engine, portrait_bytes, audio, warmup_frames=2500), audio)


@pytest.mark.slow
def test_soak_two_hours_of_audio(engine, portrait_bytes, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("two-hour soak: run with `pytest -m slow tests/test_reliability.py -k soak`")
    audio = PatternAudio(2 * 3600)
    check_soak(soak(engine, portrait_bytes, audio, warmup_frames=15_000), audio)


# -- faults --------------------------------------------------------------------------------------

def short_file_session(address: str, portrait: bytes, seconds: float = 1.0) -> int:
    """A normal session start to end; returns the frames received."""
    audio = PatternAudio(seconds)
    frames = 0
    with EngineClient(address) as client:
        client.open_session(portrait, SessionSettings(width=128, height=128, mode="file"))
        client.send_audio(audio.slice(0, audio.size), 16000)
        client.end_audio()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = client.recv(20)
            assert msg is not None and not isinstance(msg, Error), msg
            if isinstance(msg, Frames):
                frames += msg.count
            elif isinstance(msg, Event) and msg.kind == "session_ended":
                assert frames == math.ceil(audio.size / SPF)
                return frames
    raise AssertionError("session did not end in time")


def test_sigkilled_engine_leaves_client_waiting_and_a_new_engine_takes_the_socket(tmp_path, portrait_bytes):
    address = f"ipc://{tmp_path}/run/engine.sock"
    first = EngineProcess(address)
    old_token = read_token(address)
    client = EngineClient(address)
    client.connect()
    client.open_session(portrait_bytes, SessionSettings(width=128, height=128, mode="file"))
    client.send_audio(PatternAudio(5).slice(0, 80_000), 16000)
    wait_for(lambda: isinstance(client.recv(5), Frames), timeout=30, interval=0)
    first.proc.kill()
    first.proc.wait(10)
    while (msg := client.recv(2)) is not None:  # what was already in flight, then silence
        assert isinstance(msg, (Frames, Metrics, Event))
    assert Path(address[len("ipc://"):]).exists()  # a SIGKILLed engine cannot clean up
    second = EngineProcess(address)  # probes the stale socket, finds nobody, takes it over
    try:
        assert read_token(address) != old_token
        with pytest.raises(EngineError) as info:  # ZeroMQ reconnects it: the new engine refuses its token
            for _ in range(60):
                client.recv(1)
        assert info.value.code == "auth" and "restarted" in str(info.value)
        with pytest.raises(EngineError) as info:  # the restarted engine's handshake refuses it at once
            EngineClient(address, token=old_token).connect(timeout=60)
        assert info.value.code == "auth" and "restarted" in str(info.value)
        assert short_file_session(address, portrait_bytes) == 26
    finally:
        assert second.stop() == 0


# Starts the engine through a shell that stays its parent, as torchrun stays rank 0's parent:
# the engine must watch the launcher itself, not only its own parent.
LAUNCHER = """
import os, subprocess, sys, time
engine = [sys.executable, "-m", "engine", "serve", "--socket", sys.argv[1], "--parent-pid", str(os.getpid())]
subprocess.Popen(["sh", "-c", '"$@"; exit $?', "sh", *engine])
time.sleep(600)
"""


@pytest.mark.skipif(os.name != "posix", reason="--parent-pid is watched on POSIX systems")
def test_engine_stops_cleanly_once_the_program_that_started_it_is_gone(tmp_path):
    address = f"ipc://{tmp_path}/run/engine.sock"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, address], stdout=subprocess.PIPE, text=True,
                                cwd=ROOT)
    engine = None
    try:
        assert launcher.stdout.readline().startswith("ready ")
        [engine] = [p for p in psutil.Process(launcher.pid).children(recursive=True)
                    if p.cmdline()[1:3] == ["-m", "engine"]]
        assert engine.ppid() != launcher.pid
        time.sleep(1.5)
        assert process_alive(engine.pid)  # a live launcher keeps it serving
        launcher.kill()
        launcher.wait(10)
        wait_for(lambda: not process_alive(engine.pid), timeout=20)
    finally:
        launcher.kill()
        if engine is not None and process_alive(engine.pid):  # reparented: only its pid reaches it now
            engine.kill()
    socket_path = Path(address[len("ipc://"):])
    assert not socket_path.exists() and not list(socket_path.parent.glob("*token*"))  # a clean stop


def test_socket_file_deleted_while_serving(engine, portrait_bytes):
    """Connected clients keep working, new ones cannot find the engine, SIGTERM still exits 0."""
    with EngineClient(engine.address) as client:
        os.unlink(engine.address[len("ipc://"):])
        client.open_session(portrait_bytes, SessionSettings(width=128, height=128, mode="file"))
        client.send_audio(PatternAudio(1).slice(0, 16000), 16000)
        client.end_audio()
        wait_for(lambda: isinstance(client.recv(5), Event), timeout=30, interval=0)
        with pytest.raises(EngineError) as info:
            EngineClient(engine.address).connect(timeout=2)
        assert info.value.code == "timeout"
    assert engine.stop(signal.SIGTERM) == 0
    assert not token_path(engine.address).exists()


class RawPeer:
    """A hand-driven DEALER: sends messages exactly as given (seq included) and collects replies."""

    def __init__(self, address: str, token: str):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        present_token(self.sock, token)
        self.sock.connect(address)
        self.frames = 0  # frames seen so far, also those skipped while waiting for something else
        self.send_raw(Hello(client="raw"), seq=1)
        assert self.reply().TYPE == "welcome"

    def send_raw(self, msg: Message, seq: int) -> None:
        msg.seq = seq
        self.sock.send_multipart(encode(msg))

    def reply(self, timeout: float = 30.0, skip=(Metrics,)) -> Message:
        """The next message that is not of a `skip` type (Frames are counted either way).

        Heartbeats while waiting, so the engine never takes a slow test for a vanished client.
        """
        deadline = time.monotonic() + timeout
        while deadline > time.monotonic():
            if not self.sock.poll(500):
                self.send_raw(Heartbeat(), seq=0)
            else:
                msg = decode(self.sock.recv_multipart())
                self.frames += msg.count if isinstance(msg, Frames) else 0
                progress = isinstance(msg, Event) and msg.kind == "progress"  # a slow preparation
                if not isinstance(msg, (*skip, HeartbeatAck)) and not progress:
                    return msg
        raise AssertionError("no reply in time")

    def error(self, code: str) -> Error:
        msg = self.reply(skip=(Metrics, Frames, Event))
        assert isinstance(msg, Error) and msg.code == code, msg
        return msg

    def close(self) -> None:
        self.sock.close(0)


def test_session_state_machine_abuse_gets_error_replies_and_the_engine_keeps_serving(engine, portrait_bytes):
    peer = RawPeer(engine.address, read_token(engine.address))
    pcm = PatternAudio(1).slice(0, 16000).tobytes()
    # nothing open yet
    for msg in (Audio(pcm=pcm), EndOfAudio(), CloseSession()):
        peer.send_raw(msg, seq=2)
        peer.error("no_session")
    peer.send_raw(OpenSession(portrait=portrait_bytes,
                              settings=settings_to_dict(SessionSettings(width=128, height=128, mode="file"))), 3)
    opened = peer.reply(timeout=60)
    while isinstance(opened, Event) and opened.kind == "progress":  # a first open may take seconds
        opened = peer.reply(timeout=60)
    assert opened.TYPE == "session_opened"
    sid = opened.session
    # Sequence numbers are the sender's bookkeeping: duplicated and backwards ones are accepted in
    # arrival order (one connection keeps order), so the timeline follows arrival order.
    for seq in (5, 5, 4):
        peer.send_raw(Audio(session=sid, pcm=pcm), seq)
    # a block just over the wire limit, a block that would run too far ahead, half a sample
    peer.send_raw(Audio(session=sid, pcm=b"\0" * (MAX_AUDIO_BLOCK_BYTES + 4)), 6)
    assert "exceeds" in peer.error("protocol").message
    peer.send_raw(Audio(session=sid, pcm=b"\0" * MAX_AUDIO_BLOCK_BYTES), 7)
    assert "ahead" in peer.error("bad_audio").message
    peer.send_raw(Audio(session=sid, pcm=b"\0" * 6), 8)
    peer.error("bad_audio")
    peer.send_raw(Audio(session=sid, sample_rate=0, pcm=pcm), 9)
    peer.error("bad_audio")
    peer.send_raw(Audio(session="s999-forged", pcm=pcm), 10)
    peer.error("no_session")
    peer.send_raw(EndOfAudio(session=sid), 11)
    peer.send_raw(EndOfAudio(session=sid), 11)  # twice: harmless
    ended = False
    while not ended:
        msg = peer.reply(timeout=30, skip=(Metrics, Frames))
        assert not isinstance(msg, Error), msg
        ended = isinstance(msg, Event) and msg.kind == "session_ended"
    assert peer.frames == 3 * 25  # the three accepted seconds, nothing from the refused blocks
    # after the end: every session message is refused, twice over
    for msg in (Audio(session=sid, pcm=pcm), CloseSession(session=sid), CloseSession(session=sid),
                EndOfAudio(session=sid)):
        peer.send_raw(msg, 12)
        peer.error("no_session")
    peer.close()
    assert short_file_session(engine.address, portrait_bytes) == 26
    assert engine.proc.poll() is None


# -- access --------------------------------------------------------------------------------------

def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_on_loopback_works_with_the_token_and_a_wrong_token_gets_no_connection(portrait_bytes, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # the engine inherits it: tokens stay here
    address = f"tcp://127.0.0.1:{free_tcp_port()}"
    engine = EngineProcess(address)
    try:
        assert str(token_path(address)).startswith(str(tmp_path))
        assert short_file_session(address, portrait_bytes) == 26
        pcm = PatternAudio(1).slice(0, 16000).tobytes()
        for token in ("guessed", None):  # a wrong token, none at all: ZeroMQ's handshake refuses both
            intruder = RawDealer(address, token=token)
            for msg in (Hello(client="intruder"), OpenSession(portrait=portrait_bytes, settings={"mode": "file"}),
                        Audio(pcm=pcm), EndOfAudio()):
                intruder.offer(encode(msg))
            assert intruder.handshake() != zmq.EVENT_HANDSHAKE_SUCCEEDED
            assert not intruder.sock.poll(1000)  # no reply, no frames: nothing of it was read
            intruder.close()
        with pytest.raises(EngineError) as info:
            EngineClient(address, token="guessed").connect(timeout=60)
        assert info.value.code == "auth" and "did not accept our token" in str(info.value)
        assert short_file_session(address, portrait_bytes) == 26  # and the engine was not disturbed
    finally:
        assert engine.stop() == 0
    assert not token_path(address).exists()


def test_tcp_on_all_interfaces_needs_allow_remote(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "engine", "serve", "--backend", "puppet", "--socket",
                           f"tcp://0.0.0.0:{free_tcp_port()}"], capture_output=True, text=True,
                          check=False, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-remote" in lines[0] and "0.0.0.0" in lines[0]
    assert not list(tmp_path.rglob("*.token"))


# -- nothing on disk or on the wire can run code -------------------------------------------------

PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve"}
OBJECT_COLLECTIVES = {"broadcast_object_list", "all_gather_object", "gather_object",
                      "scatter_object_list", "send_object_list", "recv_object_list"}
# Pickle between the ranks of one torchrun job: followers trust their own leader, never the socket.
TRUSTED_OBJECT_COLLECTIVES = {"engine/flashtalk/runtime/ranks.py"}


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return ast.unparse(kw.value)
    return None


def unsafe_uses(source: str, where: str = "") -> list[str]:
    """Code (not comments or docstrings) that could unpickle or evaluate untrusted data."""
    found = []
    for node in ast.walk(ast.parse(source)):
        what = None
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any((n or "").split(".")[0] in PICKLING_MODULES for n in names):
                what = "imports a pickling module"
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("eval", "exec", "builtins.eval", "builtins.exec"):
                what = f"{func}("
            elif func == "torch.load" and _keyword(node, "weights_only") != "True":
                what = "torch.load( without weights_only=True"
            elif func in ("yaml.unsafe_load", "yaml.full_load") or (
                    func == "yaml.load" and _keyword(node, "Loader") not in ("yaml.SafeLoader", "yaml.CSafeLoader")):
                what = f"{func}( without SafeLoader"
            elif func.endswith(("np.load", "numpy.load")) and _keyword(node, "allow_pickle") == "True":
                what = "np.load(allow_pickle=True)"
            elif func.split(".")[-1] in OBJECT_COLLECTIVES and where not in TRUSTED_OBJECT_COLLECTIVES:
                what = f"{func}( (pickles)"
        if what:
            found.append(f"{where}:{node.lineno}: {what}")
    return found


def test_no_pickle_eval_or_unsafe_loaders_in_sources():
    found = []
    for package in ("engine", "studio", "avkit"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += unsafe_uses(path.read_text(encoding="utf-8"), rel)
    assert not found, "unsafe deserialisation or eval:\n" + "\n".join(found)


@pytest.mark.parametrize("code", [
    "import pickle", "from pickle import loads", "import cloudpickle as cp", "torch.load(path)",
    "torch.load(p, map_location='cpu', weights_only=False)", "x = eval(s)", "exec(code)",
    "yaml.load(fh)", "yaml.unsafe_load(fh)", "np.load(f, allow_pickle=True)",
    "dist.broadcast_object_list(box, src=0)"])
def test_unsafe_detector_flags(code):
    assert unsafe_uses(code)


@pytest.mark.parametrize("code", [
    "torch.load(p, map_location='cpu', weights_only=True, mmap=True)", "yaml.safe_load(fh)",
    "model.eval()", "ast.literal_eval(s)", "yaml.load(fh, Loader=yaml.SafeLoader)",
    "np.load(f)", '"""we never use pickle or torch.load(path) here"""', "# eval(x)"])
def test_unsafe_detector_passes(code):
    assert not unsafe_uses(code)
