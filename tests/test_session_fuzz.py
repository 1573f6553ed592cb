"""Property-based fuzz of the engine's session state machine, against a real puppet engine.

Hypothesis drives one or two raw clients (DEALER sockets that send messages exactly as given)
through random sequences of hello (good, or a wrong version: a refused one ends the connection's
standing and session), peers without the token or with a wrong one (they never get a connection:
ZeroMQ's handshake refuses them), open_session (good or bad
portrait and settings, file or live), audio (good, stereo, NaN/inf, empty, odd byte counts, bad
rates, the wrong session id), end_of_audio, close_session, heartbeat, server-only messages and
garbage bytes. A small model of the engine predicts the reply each request must get. After every
step: the engine process is alive, each request that deserves a reply got exactly the predicted
one and nothing unasked came, every message is a documented kind (docs/protocol.md), the frames of
a session tile its timeline without overlap (in file mode contiguously, carrying exactly the
audio sent), and at most one session is open. Afterwards a clean session still completes.

Requests the protocol answers with nothing (accepted audio, close_session) are followed by a
heartbeat on the same connection: one connection keeps order, so its ack means they were handled.

Default run: a modest, derandomized number of examples. `pytest -m slow tests/test_session_fuzz.py`
runs many more, with fresh random seeds.
"""
from __future__ import annotations

import io
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, assume, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from zmq.utils.monitor import recv_monitor_message

from engine.protocol import PROTOCOL_VERSION, EngineClient, SessionSettings, read_token
from engine.protocol.codec import ProtocolError, decode, encode
from engine.protocol.handshake import present_token
from engine.protocol.messages import (
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
    SessionOpened,
    Welcome,
)
from tests.conftest import ASSETS, HANDSHAKE_OUTCOMES, EngineProcess

SPF = 640  # samples per frame
REPLY_TIMEOUT_S = 30.0  # a reply that has not come by then is missing (the engine answers in ms)
# What docs/protocol.md lists for engine -> client.
DOCUMENTED_REPLIES = (Welcome, SessionOpened, Frames, Metrics, Event, Error, HeartbeatAck)
DOCUMENTED_EVENTS = {"state", "progress", "warning", "skip", "profile", "session_ended"}
DOCUMENTED_ERRORS = {"protocol", "version", "busy", "no_session", "bad_portrait", "bad_settings",
                     "bad_audio", "backend_unavailable", "out_of_memory", "backend_error"}

GOOD_SETTINGS = [{"width": 64, "height": 64}, {"width": 64, "height": 64, "chunk_frames": 1},
                 {"width": 96, "height": 64, "chunk_frames": 5, "seed": 3},
                 {"width": 64, "height": 64, "quality": "64x64", "target_latency_s": 2}]
# Refused while decoding the open_session (before the portrait is even looked at) ...
REFUSED_SETTINGS = [{"mode": "sideways"}, {"width": "big"}, {"nope": 1}, {"backend": "flashtalk"},
                    {"seed": -1}, {"width": True}, {"width": 0}, {"chunk_frames": 0},
                    {"target_latency_s": -1.0}, {"target_latency_s": "soon"}, {"quality": " "}]
# ... and refused against what the backend plans (after the portrait is decoded, before a session starts).
BACKEND_REFUSED_SETTINGS = [{"width": 3, "height": 64}, {"width": 4000, "height": 4000},
                            {"width": 64, "height": 64, "quality": "ultra"}, {"target_latency_s": 0.01}]


def _blank_png() -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("RGB", (128, 128), (120, 130, 140)).save(out, format="PNG")
    return out.getvalue()


PORTRAITS = {"good": (ASSETS / "portrait.png").read_bytes(), "garbage": b"\x89PNG not really" * 20,
             "empty": b"", "no_face": _blank_png()}


def sanitized(pcm: np.ndarray, channels: int) -> np.ndarray:
    """What the engine keeps of 16 kHz audio: mono average, non-finite -> 0, clipped to [-1, 1]."""
    mono = pcm.reshape(-1, channels).mean(axis=1, dtype=np.float32) if channels > 1 else pcm
    return np.clip(np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0), -1, 1).astype(np.float32)


@dataclass
class Tracked:
    """A session a client owns, as the client has seen it so far."""

    sid: str
    mode: str
    next_frame: int = 0  # the end of the frames received so far
    samples: list[np.ndarray] = field(default_factory=list)  # file mode: what the frames must carry
    sent: int = 0  # samples accepted
    ended: bool = False

    def expected_audio(self, lo: int, hi: int) -> np.ndarray:
        if len(self.samples) != 1:  # joined once per new block, not once per frames message
            self.samples = [np.concatenate(self.samples) if self.samples else np.zeros(0, np.float32)]
        whole = self.samples[0]
        out = np.zeros(hi - lo, np.float32)  # the last frame is padded with silence
        real = whole[lo:hi]
        out[:real.size] = real
        return out


class Peer:
    """One raw client: sends exactly what it is given, sorts what comes back."""

    def __init__(self, address: str, name: str, token: str):
        self.name = name
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        present_token(self.sock, token)
        self.sock.connect(address)
        self.authed = False
        self.session: Tracked | None = None
        self.opening_mode = ""  # the mode of the open_session in flight: its frames may follow at once
        self.replies: deque[Message] = deque()
        self.seq = itertools.count(1)

    def send(self, msg: Message) -> None:
        msg.seq = next(self.seq)
        self.sock.send_multipart(encode(msg))

    def pump(self, timeout_ms: int = 0) -> None:
        """Take in everything waiting; check frames and events as they come, queue the replies."""
        while self.sock.poll(timeout_ms):
            timeout_ms = 0
            msg = decode(self.sock.recv_multipart())
            assert isinstance(msg, DOCUMENTED_REPLIES), f"{self.name}: undocumented {msg.TYPE}"
            if isinstance(msg, Frames):
                self._check_frames(msg)
            elif isinstance(msg, Metrics):
                assert self.session is not None and msg.session == self.session.sid
            elif isinstance(msg, Event):
                assert msg.kind in DOCUMENTED_EVENTS, msg
                if msg.kind == "session_ended":
                    assert self.session is not None and msg.session == self.session.sid, msg
                    self.session.ended = True
            else:
                if isinstance(msg, Error):
                    assert msg.code in DOCUMENTED_ERRORS and msg.message and "\n" not in msg.message, msg
                elif isinstance(msg, SessionOpened):
                    assert self.session is None and self.opening_mode, f"{self.name}: unasked {msg}"
                    self.session = Tracked(msg.session, self.opening_mode)
                    self.opening_mode = ""
                self.replies.append(msg)

    def _check_frames(self, msg: Frames) -> None:
        s = self.session
        assert s is not None and msg.session == s.sid and not s.ended, f"{self.name}: stray frames {msg.session}"
        if s.mode == "file":  # file mode never drops: each chunk starts where the last ended
            assert msg.first_frame == s.next_frame, (msg.first_frame, s.next_frame)
        else:  # live mode may drop or skip, never repeat or go back
            assert msg.first_frame >= s.next_frame, (msg.first_frame, s.next_frame)
        assert msg.count >= 1 and len(msg.rgb) == msg.count * msg.width * msg.height * 3
        shown = np.frombuffer(msg.audio, np.float32)
        assert shown.size == msg.count * SPF
        if s.mode == "file":
            lo = msg.first_frame * SPF
            np.testing.assert_array_equal(shown, s.expected_audio(lo, lo + shown.size))
        s.next_frame = msg.first_frame + msg.count

    def close(self) -> None:
        self.sock.close(0)


class SessionMachine(RuleBasedStateMachine):
    """The engine's session protocol as seen by one or two clients."""

    engine: EngineProcess  # set by the test
    token: str

    def __init__(self):
        super().__init__()
        self.peers: list[Peer] = []
        self.nonces = itertools.count(1)
        self.ended_sids: list[str] = []

    # -- helpers ---------------------------------------------------------------------------------
    def peer(self, i: int) -> Peer:
        return self.peers[i % len(self.peers)]

    def pump_all(self, timeout_ms: int = 0) -> None:
        for p in self.peers:
            p.pump(timeout_ms)

    def expect(self, p: Peer, kind: type[Message], code: str | None = None) -> Message:
        """The next reply to `p` must be `kind` (an Error with `code`); other clients keep flowing."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not p.replies:
            assert time.monotonic() < deadline, f"{p.name}: no reply (expected {kind.TYPE} {code or ''})"
            assert self.engine.proc.poll() is None, "the engine died"
            p.pump(20)
            for other in self.peers:
                if other is not p:
                    other.pump(0)
        msg = p.replies.popleft()
        event(f"reply {kind.TYPE} {code or ''}".strip())  # the mix shows with --hypothesis-show-statistics
        assert isinstance(msg, kind), f"{p.name}: expected {kind.TYPE} {code or ''}, got {msg}"
        if code is not None:
            assert msg.code == code, f"{p.name}: expected error {code}, got {msg.code}: {msg.message}"
        return msg

    def barrier(self, p: Peer) -> None:
        """Everything `p` sent so far has been handled (one connection keeps order)."""
        nonce = next(self.nonces)
        p.send(Heartbeat(nonce=nonce))
        ack = self.expect(p, HeartbeatAck)
        assert ack.nonce == nonce

    def owner(self) -> Peer | None:
        return next((p for p in self.peers if p.session is not None), None)

    def wait_for_end(self, p: Peer) -> Tracked:
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not p.session.ended:
            assert time.monotonic() < deadline, f"{p.name}: the session did not end"
            assert not p.replies, f"{p.name}: unexpected {p.replies[0]}"
            p.pump(20)
        done, p.session = p.session, None
        self.ended_sids.append(done.sid)
        return done

    # -- rules -----------------------------------------------------------------------------------
    @initialize(clients=st.integers(1, 2), greet=st.booleans(), start=st.sampled_from(["", "file", "live"]))
    def connect(self, clients: int, greet: bool, start: str) -> None:
        """One or two clients; maybe already past hello, maybe with a session open (client0's)."""
        self.peers = [Peer(self.engine.address, f"client{i}", self.token) for i in range(clients)]
        for i in range(clients if greet or start else 0):
            self.hello(i)
        if start:
            self.open_session(0, 0, start)

    @rule(i=st.integers(0, 1), variant=st.sampled_from(["good", "good", "wrong_version"]))
    def hello(self, i: int, variant: str = "good") -> None:
        p = self.peer(i)
        p.send(Hello(version=99 if variant == "wrong_version" else PROTOCOL_VERSION, client="fuzz"))
        if variant == "good":
            self.expect(p, Welcome)
            p.authed = True
        else:  # a refused hello ends what the connection's earlier hello gave it
            assert self.expect(p, Error, "version").fatal
            if p.session is not None:  # and its session, silently: the fatal error says so
                self.ended_sids.append(p.session.sid)
                p.session = None
            p.authed = False

    @rule(token=st.sampled_from([None, "guessed"]), what=st.sampled_from(["hello", "open_session", "garbage"]))
    def stranger(self, token: str | None, what: str) -> None:
        """A peer without the token, or with a wrong one: ZeroMQ's handshake refuses it, so nothing
        it sends reaches the engine (the other peers' replies stay exactly as predicted)."""
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if token is not None:
            present_token(sock, token)
        monitor = sock.get_monitor_socket(HANDSHAKE_OUTCOMES)
        sock.connect(self.engine.address)
        msg = {"hello": Hello(client="stranger"), "garbage": None,
               "open_session": OpenSession(portrait=PORTRAITS["good"], settings={"mode": "file"})}[what]
        try:
            # never waits: a refused peer may have no pipe left, and a plain send would block for ever
            sock.send_multipart(encode(msg) if msg is not None else [b"\xc1"], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        try:
            assert monitor.poll(int(REPLY_TIMEOUT_S * 1000)), "no handshake at all"
            assert recv_monitor_message(monitor)["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED
            assert not sock.poll(0)
        finally:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    def _open(self, p: Peer, portrait: bytes, chosen: dict) -> bool:
        """Send open_session; True when the request reached the session checks (authed, none open)."""
        others_open = self.owner() is not None
        p.opening_mode = chosen["mode"] if p.authed and not others_open else ""
        p.send(OpenSession(portrait=portrait, settings=chosen))
        if not p.authed:
            self.expect(p, Error, "protocol")
        elif others_open:
            self.expect(p, Error, "busy")
        return p.authed and not others_open

    @rule(i=st.integers(0, 1), pick=st.integers(0, len(GOOD_SETTINGS) - 1), mode=st.sampled_from(["file", "live"]))
    def open_session(self, i: int, pick: int, mode: str) -> None:
        p = self.peer(i)
        if self._open(p, PORTRAITS["good"], {"mode": mode, **GOOD_SETTINGS[pick]}):
            opened = self.expect(p, SessionOpened)
            assert p.session is not None and p.session.sid == opened.session
            assert [q for q in self.peers if q.session is not None] == [p], "two sessions open at once"
        p.opening_mode = ""

    @rule(i=st.integers(0, 1), portrait=st.sampled_from(sorted(PORTRAITS)),
          kind=st.sampled_from(["good", "refused", "backend_refused"]), pick=st.integers(0, 10),
          mode=st.sampled_from(["file", "live"]))
    def open_session_refused(self, i: int, portrait: str, kind: str, pick: int, mode: str) -> None:
        assume(portrait != "good" or kind != "good")
        p = self.peer(i)
        table = {"good": GOOD_SETTINGS, "refused": REFUSED_SETTINGS, "backend_refused": BACKEND_REFUSED_SETTINGS}[kind]
        if self._open(p, PORTRAITS[portrait], {"mode": mode, **table[pick % len(table)]}):
            if kind == "refused":  # checked while decoding, before the portrait
                self.expect(p, Error, "bad_settings")
            elif portrait in ("garbage", "empty"):  # not an image: refused before a session starts
                self.expect(p, Error, "bad_portrait")
            elif kind == "backend_refused":  # checked before looking for a face: no session started
                assert not self.expect(p, Error, "bad_settings").fatal
            else:  # an image without a face: the session starts, then fails
                assert self.expect(p, Error, "bad_portrait").fatal
            assert p.session is None
        p.opening_mode = ""

    def _audio(self, p: Peer, sid: str, pcm: np.ndarray, data: bytes, rate: int, channels: int) -> bool:
        """Send audio; True when it got past the session checks (authed, its own open session)."""
        p.send(Audio(session=sid, pcm=data, sample_rate=rate, channels=channels))
        if not p.authed:
            self.expect(p, Error, "protocol")
        elif p.session is None or sid != p.session.sid:
            self.expect(p, Error, "no_session")
        return p.authed and p.session is not None and sid == p.session.sid

    @precondition(lambda self: self.owner() is not None)  # no session: audio_refused, stray_session_message
    @rule(i=st.integers(0, 1), samples=st.integers(0, 24_000), kind=st.sampled_from(["mono", "stereo", "nan"]),
          seed=st.integers(0, 2**16))
    def audio(self, i: int, samples: int, kind: str, seed: int) -> None:
        p = self.peer(i)
        channels = 2 if kind == "stereo" else 1
        pcm = np.random.default_rng(seed).normal(0, 0.5, samples * channels).astype(np.float32)
        if kind == "nan":  # a broken driver: the engine hears silence there, never NaN
            pcm[::7], pcm[3::11], pcm[5::13] = np.nan, np.inf, -np.inf
        sid = p.session.sid if p.session is not None else ""
        if self._audio(p, sid, pcm, pcm.tobytes(), 16_000, channels):  # accepted: no reply
            if p.session.mode == "file":
                p.session.samples.append(sanitized(pcm, channels))
            p.session.sent += samples
            self.barrier(p)

    @rule(i=st.integers(0, 1), kind=st.sampled_from(["odd_bytes", "zero_rate", "huge_rate", "no_channels",
                                                     "forged_id", "no_id", "other_client"]))
    def audio_refused(self, i: int, kind: str) -> None:
        p = self.peer(i)
        pcm = np.full(1600, 0.1, np.float32)
        data = pcm.tobytes() + (b"\0\0" if kind == "odd_bytes" else b"")  # half a sample more
        mine = p.session.sid if p.session is not None else ""
        other = next((q.session.sid for q in self.peers if q is not p and q.session is not None), "s999-other")
        sid = {"forged_id": "s999-forged", "no_id": "", "other_client": other}.get(kind, mine)
        rate = {"zero_rate": 0, "huge_rate": 10**7}.get(kind, 16_000)
        if self._audio(p, sid, pcm, data, rate, 0 if kind == "no_channels" else 1):
            self.expect(p, Error, "bad_audio")

    @precondition(lambda self: self.owner() is None)
    @rule(i=st.integers(0, 1), what=st.sampled_from(["audio", "end_of_audio", "close_session"]),
          old_id=st.booleans())
    def stray_session_message(self, i: int, what: str, old_id: bool) -> None:
        """Session messages with no session open: before any, or for one that has ended."""
        p = self.peer(i)
        msg = {"audio": Audio(pcm=np.zeros(640, np.float32).tobytes()), "end_of_audio": EndOfAudio(),
               "close_session": CloseSession()}[what]
        msg.session = self.ended_sids[-1] if old_id and self.ended_sids else ""
        p.send(msg)
        self.expect(p, Error, "no_session" if p.authed else "protocol")

    @precondition(lambda self: self.owner() is not None)
    @rule(i=st.integers(0, 1), forged=st.booleans())
    def end_of_audio(self, i: int, forged: bool) -> None:
        p = self.peer(i)
        sid = "s999-forged" if forged or p.session is None else p.session.sid
        p.send(EndOfAudio(session=sid))
        if not p.authed:
            self.expect(p, Error, "protocol")
        elif p.session is None or forged:
            self.expect(p, Error, "no_session")
        else:  # the tail is flushed, then session_ended
            done = self.wait_for_end(p)
            event(f"{done.mode} session ended with {'some' if done.next_frame else 'no'} frames")
            if done.mode == "file":
                assert done.next_frame == math.ceil(done.sent / SPF), (done.next_frame, done.sent)

    @precondition(lambda self: self.owner() is not None)
    @rule(i=st.integers(0, 1), forged=st.booleans())
    def close_session(self, i: int, forged: bool) -> None:
        p = self.peer(i)
        sid = "s999-forged" if forged or p.session is None else p.session.sid
        p.send(CloseSession(session=sid))
        if not p.authed:
            self.expect(p, Error, "protocol")
        elif p.session is None or forged:
            self.expect(p, Error, "no_session")
        else:  # ends at once, with no reply: the barrier shows it was handled
            self.barrier(p)
            self.ended_sids.append(p.session.sid)
            p.session = None

    @rule(i=st.integers(0, 1), nonce=st.integers(0, 2**31))
    def heartbeat(self, i: int, nonce: int) -> None:
        p = self.peer(i)
        p.send(Heartbeat(nonce=nonce))
        if p.authed:
            assert self.expect(p, HeartbeatAck).nonce == nonce
        else:
            self.expect(p, Error, "protocol")

    @rule(i=st.integers(0, 1), parts=st.lists(st.binary(max_size=48), min_size=1, max_size=3),
          server_only=st.booleans())
    def garbage(self, i: int, parts: list[bytes], server_only: bool) -> None:
        """Undecodable bytes, or a message only the engine sends: a protocol error, before hello or
        after."""
        p = self.peer(i)
        if server_only:
            p.send(Welcome())
            self.expect(p, Error, "protocol")
            return
        try:
            decode(parts)
            assume(False)  # a real message by chance: not garbage
        except ProtocolError:
            pass
        p.sock.send_multipart(parts)
        self.expect(p, Error, "protocol")

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def engine_alive(self) -> None:
        assert self.engine.proc.poll() is None, "the engine died"

    @invariant()
    def nothing_unasked(self) -> None:
        self.pump_all()
        for p in self.peers:
            assert not p.replies, f"{p.name}: unexpected {p.replies[0]}"

    @invariant()
    def at_most_one_session(self) -> None:
        assert sum(p.session is not None for p in self.peers) <= 1

    def teardown(self) -> None:
        """Leave the engine as found for the next example: its session closed (and seen to be).

        Best effort, never an assertion: after a failed step this must not hide that failure.
        """
        for p in self.peers:
            if p.session is not None and self.engine.proc.poll() is None:
                p.send(CloseSession(session=p.session.sid))
                p.send(Heartbeat(nonce=0))
                deadline = time.monotonic() + REPLY_TIMEOUT_S
                while time.monotonic() < deadline and p.sock.poll(100):
                    if isinstance(decode(p.sock.recv_multipart()), HeartbeatAck):
                        break
        for p in self.peers:
            p.close()


@pytest.fixture(scope="module")
def fuzz_engine(tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz")
    engine = EngineProcess(f"ipc://{run}/engine.sock", "--client-timeout", "60")  # no session times out mid-run
    yield engine
    engine.stop()


def clean_session(address: str, portrait: bytes) -> int:
    """One second of audio through a file session, start to end; the frames received."""
    frames = 0
    with EngineClient(address) as client:
        client.open_session(portrait, SessionSettings(width=64, height=64, mode="file"))
        client.send_audio(np.zeros(16000, np.float32), 16000)
        client.end_audio()
        while True:
            msg = client.recv(REPLY_TIMEOUT_S)
            assert msg is not None and not isinstance(msg, Error), msg
            frames += msg.count if isinstance(msg, Frames) else 0
            if isinstance(msg, Event) and msg.kind == "session_ended":
                return frames


def fuzz(engine: EngineProcess, config: settings) -> None:
    SessionMachine.engine = engine
    SessionMachine.token = read_token(engine.address)
    run_state_machine_as_test(SessionMachine, settings=config)
    assert engine.proc.poll() is None
    assert clean_session(engine.address, PORTRAITS["good"]) == 25


def test_session_state_machine_fuzz(fuzz_engine):
    fuzz(fuzz_engine, settings(max_examples=50, stateful_step_count=40, deadline=None, derandomize=True,
                               suppress_health_check=[HealthCheck.too_slow], database=None))


@pytest.mark.slow
def test_session_state_machine_fuzz_long(fuzz_engine, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long fuzz: run with `pytest -m slow tests/test_session_fuzz.py`")
    fuzz(fuzz_engine, settings(max_examples=500, stateful_step_count=60, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow]))
