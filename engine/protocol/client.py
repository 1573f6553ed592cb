"""A blocking, single-thread client for the engine socket (used by `render`, tests and the studio).

It is torch- and Qt-free. The studio runs it on a worker thread; `flashtalk render` drives it
directly. One client = one DEALER socket; zmq sockets are not thread-safe, so keep each client on
the thread that made it.

Sending never blocks: what the socket cannot take at once waits in a small queue of our own,
sent as the engine reads; an engine that takes nothing for SEND_DEADLINE_S (stopped, hung) is
reported lost (EngineError "engine_lost") by the next send or recv, so a caller's own checks keep
running. The token goes in ZeroMQ's handshake (engine.protocol.handshake): an engine that refuses
it closes the connection without a word, so the socket's monitor tells us, and we say so at once
(EngineError "auth") instead of waiting for a welcome that cannot come. Before the token goes
out, the socket file must be ours (engine.protocol.address), and every message over a local socket
must come from a process of our own user: another user who listens at the path gets neither the
token nor the portrait and the voice.
"""
from __future__ import annotations

import itertools
import os
import secrets
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import zmq

from engine.protocol.address import (
    UntrustedPath,
    check_engine_folder,
    check_owned_socket,
    ipc_path,
    read_token,
    token_path,
)
from engine.protocol.codec import ProtocolError, decode, encode
from engine.protocol.handshake import HandshakeWatch, present_token
from engine.protocol.messages import (
    PROTOCOL_VERSION,
    Audio,
    CloseSession,
    EndOfAudio,
    Error,
    Event,
    Heartbeat,
    Hello,
    Message,
    OpenSession,
    SessionOpened,
    SessionSettings,
    Welcome,
    settings_from_dict,
    settings_to_dict,
)

HEARTBEAT_S = 1.0  # a waiting client pings this often; the engine times out silent clients
PREPARE_SILENCE_S = 60.0  # opening a session fails only after this long without progress from the engine
SEND_DEADLINE_S = 5.0  # the engine took none of our messages for this long: it is lost
MAX_UNSENT = 1000  # messages waiting for the engine to read (beyond the socket's own queue)
_CONNECTIONS = itertools.count(1)


def _routing_id(client_name: str) -> bytes:
    """New for every connection. The engine's ROUTER silently drops a connection whose id is still
    held by one it has not yet seen go (a quick reconnect): that hello would never be answered."""
    return f"{client_name}-{os.getpid()}-{next(_CONNECTIONS)}-{secrets.token_hex(4)}".encode()


class EngineError(RuntimeError):
    """The engine refused or failed something; `code` is the protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class EngineClient:
    def __init__(self, address: str, token: str | None = None, *, token_file: str | None = None,
                 client_name: str = "flashtalk-client", context: zmq.Context | None = None,
                 rcvhwm: int = 64):
        self.address = address
        self.token = token if token is not None else read_token(address, token_file)
        self.token_source = ("token given by the caller" if token is not None
                             else f"token read from {token_file or token_path(address)}")
        self.client_name = client_name
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._handshake: HandshakeWatch | None = None
        self._poller: zmq.Poller | None = None
        self._seq = itertools.count(1)
        self._rcvhwm = rcvhwm
        self.welcome: Welcome | None = None
        self._last_send = 0.0
        self._unsent: deque[list] = deque()  # encoded messages the socket could not take yet
        self._stalled_since: float | None = None  # when the socket last refused a message
        self.session: SessionOpened | None = None

    # -- connection ------------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> Welcome:
        path = ipc_path(self.address)
        if path is not None:  # before the token goes out: the folder and the socket are ours
            check_engine_folder(path.parent)
            check_owned_socket(path)
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
        sock.setsockopt(zmq.IDENTITY, _routing_id(self.client_name))
        present_token(sock, self.token)
        self._handshake = HandshakeWatch(sock, self.address, self.token_source)
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._handshake.monitor, zmq.POLLIN)
        sock.connect(self.address)
        self._sock = sock
        self.send(Hello(version=PROTOCOL_VERSION, client=self.client_name))
        reply = self._expect((Welcome,), timeout, what="the engine's welcome")
        self.welcome = reply
        return reply

    def close(self) -> None:
        if self._handshake is not None:
            self._handshake.close()
            self._handshake = self._poller = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._unsent.clear()
        self._stalled_since = None

    def __enter__(self) -> EngineClient:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        if self._sock is None:
            raise EngineError("not_connected", "not connected to an engine")
        msg.seq = next(self._seq)
        if self.session is not None and not msg.session:
            msg.session = self.session.session
        self._unsent.append(encode(msg))
        self._flush_unsent()
        self._last_send = time.monotonic()

    def _flush_unsent(self) -> None:
        """Hand queued messages to the socket without waiting; EngineError once the engine is lost."""
        while self._unsent:
            try:
                self._sock.send_multipart(self._unsent[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                now = time.monotonic()
                self._stalled_since = self._stalled_since or now
                if now - self._stalled_since > SEND_DEADLINE_S:
                    raise EngineError("engine_lost", (
                        f"the engine at {self.address} has taken none of our messages for "
                        f"{now - self._stalled_since:.0f} s: it is hung or stopped")) from None
                if len(self._unsent) > MAX_UNSENT:
                    raise EngineError("engine_lost", (
                        f"the engine at {self.address} reads far slower than we send ({len(self._unsent)} "
                        "messages wait): it is stuck or overloaded")) from None
                return
            self._unsent.popleft()
            self._stalled_since = None

    def open_session(self, portrait: bytes, settings: SessionSettings | None = None,
                     timeout: float = PREPARE_SILENCE_S,
                     on_progress: Callable[[Event], None] | None = None) -> SessionOpened:
        """Open a session and wait until it is prepared, however long that takes.

        The engine reports its preparation stage every second; `timeout` bounds only the silence
        between two such reports (a gone or hung engine), never the preparation itself, which may
        take minutes for a large model on a CPU. Each report goes to `on_progress`.
        """
        self.session = None
        wanted = settings_to_dict(settings or SessionSettings())
        try:
            settings_from_dict(wanted)  # the engine's own checks, before anything is sent
        except ValueError as exc:
            raise EngineError("bad_settings", str(exc)) from None
        self.send(OpenSession(portrait=portrait, settings=wanted))
        self.session = self._expect((SessionOpened,), timeout, what="the session to open",
                                    on_progress=on_progress)
        return self.session

    def send_audio(self, pcm: np.ndarray, sample_rate: int, capture_t: float | None = None) -> None:
        """pcm: float32 [N] or [N, channels]."""
        block = np.ascontiguousarray(pcm, dtype=np.float32)
        channels = 1 if block.ndim == 1 else block.shape[1]
        self.send(Audio(capture_t=time.monotonic() if capture_t is None else capture_t,
                        sample_rate=int(sample_rate), channels=int(channels), pcm=block.tobytes()))

    def end_audio(self) -> None:
        self.send(EndOfAudio())

    def close_session(self) -> None:
        if self.session is not None:
            self.send(CloseSession())
            self.session = None

    def heartbeat(self, nonce: int = 0) -> None:
        self.send(Heartbeat(nonce=nonce))

    # -- receiving -------------------------------------------------------------------------------
    def recv(self, timeout: float | None = None) -> Message | None:
        """Next message, or None after `timeout` seconds (None = wait forever).

        While it waits it keeps the session alive with a heartbeat every HEARTBEAT_S, so a
        client blocked on a slow engine is never mistaken for a vanished one.
        """
        if self._sock is None:
            raise EngineError("not_connected", "not connected to an engine")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._flush_unsent()
            if self.welcome is not None and time.monotonic() - self._last_send > HEARTBEAT_S:
                self.heartbeat()
            left = HEARTBEAT_S if deadline is None else min(HEARTBEAT_S, deadline - time.monotonic())
            if self._unsent:  # wake up as soon as the socket takes more, or to check the deadline
                left = min(left, 0.05)
            ready = dict(self._poller.poll(max(0, int(left * 1000))))
            if self._handshake.monitor in ready:
                self._check_handshake()
            if self._sock in ready:
                frames = self._sock.recv_multipart(copy=False)
                self._check_engine_user(frames[0])
                return decode([frame.bytes for frame in frames])
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _check_handshake(self) -> None:
        """The engine refused our token (now, or after a reconnect to an engine that restarted)."""
        refusal = self._handshake.refusal()
        if refusal is not None:
            self.close()
            raise EngineError(*refusal)

    def _silence_hint(self) -> str:
        self._check_handshake()  # a refusal that came in at the last moment is the better answer
        if not self._handshake.connected:
            return "nothing accepted a connection there: is the engine running?"
        if not self._handshake.succeeded:
            return "the handshake never finished: is the engine hung, or is that not a flashtalk engine?"
        return "is the engine running?"

    def _check_engine_user(self, frame: zmq.Frame) -> None:
        """Over a local socket the kernel names the sender's user: it must be ours."""
        if not self.address.startswith("ipc://"):
            return
        try:
            fields = frame.get("Peer-Address").split(":")  # "<host>:uid:gid:pid" (SO_PEERCRED)
        except zmq.ZMQError:  # a transport that names nobody
            return
        if len(fields) == 4 and fields[1].isdigit() and hasattr(os, "geteuid") and int(fields[1]) != os.geteuid():
            self.close()
            raise UntrustedPath(f"the engine at {self.address} runs as another user (uid {fields[1]}), who "
                                "may be posing as it: nothing more was sent; check who serves that socket")

    def _expect(self, kinds: tuple[type[Message], ...], timeout: float, what: str,
                on_progress: Callable[[Event], None] | None = None) -> Message:
        """The next message of `kinds`; a progress event from the engine restarts the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineError("timeout", f"no word from the engine for {timeout:.0f} s while waiting "
                                  f"for {what} at {self.address}: {self._silence_hint()}")
            try:
                msg = self.recv(left)
            except ProtocolError as exc:
                raise EngineError("protocol", f"engine sent an unreadable message: {exc}") from None
            if msg is None:
                continue
            if isinstance(msg, Error):
                raise EngineError(msg.code, msg.message)
            if isinstance(msg, kinds):
                return msg
            if isinstance(msg, Event) and msg.kind == "progress":
                deadline = time.monotonic() + timeout
                if on_progress is not None:
                    on_progress(msg)
