"""A real `flashtalk serve` process and real clients over the socket."""
from __future__ import annotations

import io
import os
import signal
import stat
import time

import msgpack
import numpy as np
import psutil
import pytest
import zmq
from PIL import Image

from engine.protocol import EngineClient, EngineError, SessionSettings, token_path
from engine.protocol.codec import decode, encode
from engine.protocol.messages import (
    Audio,
    CheckPortrait,
    Error,
    Event,
    Frames,
    Heartbeat,
    Hello,
    Metrics,
    PortraitChecked,
)
from tests.conftest import RawDealer


def run_file_session(client: EngineClient, portrait: bytes, audio: np.ndarray, size=128,
                     block: int = 1600) -> tuple[list[Frames], dict]:
    client.open_session(portrait, SessionSettings(width=size, height=size, mode="file"))
    for i in range(0, audio.size, block):
        client.send_audio(audio[i:i + block], 16000)
    client.end_audio()
    frames, metrics = [], {}
    while True:
        msg = client.recv(20)
        assert msg is not None, "engine stopped answering"
        if isinstance(msg, Frames):
            frames.append(msg)
        elif isinstance(msg, Metrics):
            metrics = msg.values
        elif isinstance(msg, Error):
            raise AssertionError(msg.message)
        elif isinstance(msg, Event) and msg.kind == "session_ended":
            return frames, metrics


def test_full_session_keeps_one_exact_timeline(engine, portrait_bytes, speech):
    audio = speech[:16000 * 3 + 123]
    with EngineClient(engine.address) as client:
        frames, _ = run_file_session(client, portrait_bytes, audio)
    assert [f.first_frame for f in frames] == list(np.cumsum([0] + [f.count for f in frames[:-1]]))
    total = sum(f.count for f in frames)
    assert total == -(-audio.size // 640)
    shown = np.concatenate([np.frombuffer(f.audio, np.float32) for f in frames])
    assert shown.size == total * 640
    np.testing.assert_array_equal(shown[:audio.size], audio)  # frames carry exactly the input audio
    assert not shown[audio.size:].any()
    f0 = frames[0]
    assert len(f0.rgb) == f0.count * f0.width * f0.height * 3 and "chunk_total" in f0.timings


def test_two_sessions_in_a_row_and_busy_error(engine, portrait_bytes, speech):
    with EngineClient(engine.address) as a, EngineClient(engine.address) as b:
        run_file_session(a, portrait_bytes, speech[:8000])
        a.open_session(portrait_bytes, SessionSettings(width=128, height=128))
        with pytest.raises(EngineError) as info:
            b.open_session(portrait_bytes, SessionSettings(width=128, height=128), timeout=5)
        assert info.value.code == "busy"
        a.close_session()
        time.sleep(0.2)
        frames, _ = run_file_session(b, portrait_bytes, speech[:8000])
        assert sum(f.count for f in frames) == 13


def test_wrong_or_no_token_gets_no_connection_and_wrong_version_is_refused(engine):
    """The token is checked in ZeroMQ's handshake: a peer without it gets no connection at all, and
    our client says why at once (it would otherwise wait the whole timeout for a welcome)."""
    with pytest.raises(EngineError) as info:
        EngineClient(engine.address, token="not-the-token").connect(timeout=60)
    assert info.value.code == "auth" and "did not accept our token" in str(info.value)
    assert "\n" not in str(info.value)
    for token in (None, "not-the-token"):  # no credentials at all (an old client), a wrong one
        peer = RawDealer(engine.address, token=token)
        peer.offer(encode(Hello(client="raw")))
        assert peer.handshake() != zmq.EVENT_HANDSHAKE_SUCCEEDED  # refused in the handshake
        assert not peer.sock.poll(500)  # nothing ever comes back
        peer.close()
    peer = RawDealer(engine.address)  # the token, but another protocol version
    peer.sock.send_multipart(encode(Hello(version=99)))
    assert peer.sock.poll(5000)
    reply = decode(peer.sock.recv_multipart())
    assert isinstance(reply, Error) and reply.code == "version" and "99" in reply.message and reply.fatal
    peer.close()


def test_a_client_says_so_at_once_when_the_engine_takes_no_token_in_its_handshake(tmp_path):
    """A protocol 1 engine (a ROUTER with the NULL mechanism) stands in: our PLAIN handshake fails
    and the client says the engine is an older release, instead of waiting for its timeout."""
    old = zmq.Context.instance().socket(zmq.ROUTER)
    old.setsockopt(zmq.LINGER, 0)
    address = f"ipc://{tmp_path}/old.sock"
    old.bind(address)
    try:
        with pytest.raises(EngineError) as info:
            EngineClient(address, token="some-token").connect(timeout=60)
    finally:
        old.close()
    assert info.value.code == "version" and "older release" in str(info.value) and "\n" not in str(info.value)


def test_messages_before_hello_and_malformed_ones_get_errors_and_do_not_wedge(engine, portrait_bytes, speech):
    peer = RawDealer(engine.address)
    for parts in ([b"\xc1garbage"], [msgpack.packb({"type": "audio"}), b"x", b"y"],
                  [msgpack.packb({"type": "open_session", "settings": {}}), b"png"], encode(Heartbeat())):
        peer.sock.send_multipart(parts)
        assert peer.sock.poll(5000)
        reply = decode(peer.sock.recv_multipart())
        assert isinstance(reply, Error) and reply.code == "protocol"
    peer.close()
    with EngineClient(engine.address) as client:  # the engine still serves real clients
        frames, metrics = run_file_session(client, portrait_bytes, speech[:6400])
    assert sum(f.count for f in frames) == 10 and metrics["malformed"] >= 4


def test_metrics_report_refused_clients_and_dropped_replies(engine, portrait_bytes):
    """The engine's own counters reach the session's owner: connections refused in the handshake
    (`unauthenticated`), nothing of what they sent (`malformed` stays 0), and replies it dropped
    for a client that never read them (`replies_dropped`)."""
    for token in (None, "guessed"):
        stranger = RawDealer(engine.address, token=token)
        stranger.offer([b"\xc1garbage"])  # would count as malformed, were it read
        assert stranger.handshake() != zmq.EVENT_HANDSHAKE_SUCCEEDED
        stranger.close()
    deaf_peer = RawDealer(engine.address, rcvhwm=1)  # says hello, then it never reads again
    deaf = deaf_peer.sock
    deaf.send_multipart(encode(Hello()))
    assert deaf.poll(5000) and decode(deaf.recv_multipart()).TYPE == "welcome"
    for _ in range(20_000):  # acks it never reads: far more than the socket and its reply queue hold
        deaf.send_multipart(encode(Heartbeat()))
    metrics: dict = {}
    with EngineClient(engine.address) as client:
        client.open_session(portrait_bytes, SessionSettings(width=64, height=64, mode="live"))
        deadline = time.monotonic() + 30
        while not (metrics.get("replies_dropped") and metrics.get("unauthenticated", 0) >= 2):
            assert time.monotonic() < deadline, f"counters not reported: {metrics}"
            msg = client.recv(1)
            if isinstance(msg, Metrics):
                metrics = msg.values
                deaf.send_multipart(encode(Heartbeat()))  # still there, still not reading
        client.close_session()
    deaf_peer.close()
    assert metrics["malformed"] == 0


def test_bad_portrait_and_bad_settings_are_clear_errors(engine, speech):
    with EngineClient(engine.address) as client:
        with pytest.raises(EngineError) as info:
            client.open_session(b"not an image")
        assert info.value.code == "bad_portrait"
        with pytest.raises(EngineError) as info:
            client.open_session(b"x", SessionSettings(backend="flashtalk"))
        assert info.value.code == "bad_settings" and "--backend flashtalk" in str(info.value)


def test_client_that_vanishes_frees_the_engine(engine, portrait_bytes, speech):
    ghost = EngineClient(engine.address)
    ghost.connect()
    ghost.open_session(portrait_bytes, SessionSettings(width=128, height=128))
    ghost.send_audio(speech[:16000], 16000)
    ghost.close()  # gone without closing its session; the engine times it out (2 s here)
    with EngineClient(engine.address) as client:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.open_session(portrait_bytes, SessionSettings(width=128, height=128), timeout=5)
                break
            except EngineError as exc:
                assert exc.code == "busy" and time.monotonic() < deadline
                time.sleep(0.5)
        client.close_session()


def test_slow_live_client_loses_oldest_frames_not_memory(engine, portrait_bytes):
    rss = psutil.Process(engine.proc.pid)
    with EngineClient(engine.address, rcvhwm=2) as client:
        client.open_session(portrait_bytes, SessionSettings(width=256, height=256, mode="live"))
        audio = np.random.default_rng(0).normal(0, 0.1, 16000 * 6).astype(np.float32)
        client.send_audio(audio, 16000)
        for _ in range(16):  # alive (heartbeats) but not reading: frames pile up in the engine,
            client.heartbeat()  # which must drop the oldest
            time.sleep(0.5)
        peak = rss.memory_info().rss
        firsts, dropped = [], 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (dropped and len(firsts) > 50):
            msg = client.recv(0.5)
            if isinstance(msg, Frames):
                firsts.append(msg.first_frame)
            elif isinstance(msg, Metrics):
                dropped = max(dropped, msg.values["dropped_frames"])
        client.close_session()
    assert dropped > 0
    # What was already on the wire arrives, then a jump: the dropped frames were the oldest ones.
    assert firsts == sorted(firsts)
    assert max(b - a for a, b in zip(firsts, firsts[1:])) > 2
    assert peak < 800 * 2**20, f"engine grew to {peak / 2**20:.0f} MB"


def test_slow_file_client_loses_nothing(engine, portrait_bytes):
    with EngineClient(engine.address, rcvhwm=2) as client:
        client.open_session(portrait_bytes, SessionSettings(width=128, height=128, mode="file"))
        audio = np.random.default_rng(1).normal(0, 0.1, 16000 * 30).astype(np.float32)
        for i in range(0, audio.size, 16000):
            client.send_audio(audio[i:i + 16000], 16000)
        client.end_audio()
        for _ in range(8):  # a slow reader: the engine waits instead of dropping
            client.heartbeat()
            time.sleep(0.5)
        received, metrics = 0, {}
        deadline = time.monotonic() + 120
        while True:
            msg = client.recv(20)
            assert msg is not None and time.monotonic() < deadline
            if isinstance(msg, Frames):
                assert msg.first_frame == received
                received += msg.count
            elif isinstance(msg, Metrics):
                metrics = msg.values
            elif isinstance(msg, Event) and msg.kind == "session_ended":
                break
    assert received == 750 and metrics["dropped_frames"] == 0


def test_replies_are_never_lost_behind_frames(engine, portrait_bytes):
    """Errors that meet a full socket (the client is busy, frames pile up) arrive later, in order."""
    with EngineClient(engine.address, rcvhwm=2) as client:
        client.open_session(portrait_bytes, SessionSettings(width=128, height=128, mode="file"))
        audio = np.random.default_rng(2).normal(0, 0.1, 16000 * 10).astype(np.float32)
        client.send_audio(audio, 16000)
        client.end_audio()
        time.sleep(1.5)  # not reading: the engine's queue to us fills with frames
        for _ in range(20):
            client.send(Audio(session="s999-forged", pcm=audio[:160].tobytes()))
        errors, received, last = 0, 0, None
        while True:
            msg = client.recv(20)
            assert msg is not None, "engine stopped answering"
            if isinstance(msg, Error):
                assert msg.code == "no_session"
                errors += 1
            elif isinstance(msg, Frames):
                assert msg.first_frame == received
                received += msg.count
            elif isinstance(msg, Event) and msg.kind == "session_ended":
                break
            last = msg
    assert errors == 20 and received == 250
    assert isinstance(last, Metrics) and last.values["frames"] == 250  # the final count, just before the end


def test_changing_the_input_format_mid_session_loses_no_audio(engine, portrait_bytes):
    """Each format's resampler is flushed when the next format starts: every second arrives whole."""
    t = np.arange(48000) / 48000
    parts = [(44100, 2, np.repeat(np.sin(2 * np.pi * 220 * t[:44100] * 48000 / 44100), 2)),
             (48000, 1, np.sin(2 * np.pi * 330 * t)), (16000, 1, np.full(1, 0.5))]
    with EngineClient(engine.address) as client:
        client.open_session(portrait_bytes, SessionSettings(width=128, height=128, mode="file"))
        for rate, channels, pcm in parts:
            pcm = pcm.astype(np.float32)
            block = rate // 10 * channels
            for i in range(0, pcm.size, block):
                client.send(Audio(sample_rate=rate, channels=channels,
                                  pcm=pcm[i:i + block].tobytes()))
        client.end_audio()
        frames = []
        while not isinstance(msg := client.recv(20), Event) or msg.kind != "session_ended":
            assert msg is not None and not isinstance(msg, Error), msg
            frames += [msg] if isinstance(msg, Frames) else []
    shown = np.concatenate([np.frombuffer(f.audio, np.float32) for f in frames])
    assert shown.size == 51 * 640  # 16000 + 16000 + 1 samples: ceil(32001 / 640) frames
    assert shown[32000] == np.float32(0.5) and not shown[32001:].any()


def test_live_mode_keeps_the_avatar_alive_in_silence(engine, portrait_bytes):
    with EngineClient(engine.address) as client:
        client.open_session(portrait_bytes, SessionSettings(width=128, height=128, mode="live"))
        start, frames, idle = time.monotonic(), 0, 0
        while time.monotonic() - start < 2.5:
            msg = client.recv(0.1)
            if isinstance(msg, Frames):
                frames += msg.count
                idle += msg.count if msg.idle else 0
        client.close_session()
    # After a 0.5 s grace the engine generates idle frames at real time (25 fps).
    assert 35 <= frames <= 60 and idle == frames


def test_sigterm_shuts_down_cleanly_and_files_are_private(engine):
    sock_path = engine.address[len("ipc://"):]
    tok = token_path(engine.address)
    assert stat.S_IMODE(os.stat(tok).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(sock_path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock_path).st_mode) & 0o077 == 0
    assert engine.stop(signal.SIGTERM) == 0
    assert not os.path.exists(sock_path) and not tok.exists()


def test_second_engine_on_a_live_socket_is_refused(engine):
    from tests.conftest import EngineProcess
    with pytest.raises(RuntimeError, match="already serving"):
        EngineProcess(engine.address)


def test_a_portrait_check_answers_while_the_live_session_goes_on(engine, portrait_bytes):
    """check_portrait is answered (yes with the face, no with the reason) and the open live
    session keeps sending frames meanwhile: choosing a portrait that turns out unusable must not
    end the avatar that works."""
    buf = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(buf, format="PNG")
    with EngineClient(engine.address) as client:
        opened = client.open_session(portrait_bytes, SessionSettings(width=128, height=128))
        for request, portrait in ((1, buf.getvalue()), (2, portrait_bytes), (3, b"not an image")):
            client.send(CheckPortrait(request=request, portrait=portrait))
        answers, frames_after_asking = {}, 0
        deadline = time.monotonic() + 30
        while (len(answers) < 3 or frames_after_asking < 5) and time.monotonic() < deadline:
            client.send_audio(np.zeros(640, np.float32), 16000)
            msg = client.recv(0.05)
            if isinstance(msg, PortraitChecked):
                answers[msg.request] = msg
            elif isinstance(msg, Frames) and msg.session == opened.session:
                frames_after_asking += 1
            elif isinstance(msg, Error):
                raise AssertionError(msg.message)
        assert frames_after_asking >= 5 and client.session is not None  # the session never stopped
    faceless, good, garbage = answers[1], answers[2], answers[3]
    assert not faceless.ok and faceless.code == "bad_portrait" and "no face found" in faceless.message
    assert "in this 320x240 picture a face must be at least 40 pixels wide" in faceless.message
    assert good.ok and (good.width, good.height) == (512, 512) and len(good.face_box) == 4
    assert not garbage.ok and "not a PNG, JPEG or WebP image" in garbage.message
