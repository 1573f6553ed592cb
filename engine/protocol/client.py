"""A blocking, single-thread client for the engine socket (used by `render`, tests and the studio).

It is torch- and Qt-free. The studio runs it on a worker thread; `flashtalk render` drives it
directly. One client = one DEALER socket; zmq sockets are not thread-safe, so keep each client on
the thread that made it.
"""
from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Callable

import numpy as np
import zmq

from engine.protocol.address import read_token
from engine.protocol.codec import ProtocolError, decode, encode
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
    settings_to_dict,
)

HEARTBEAT_S = 1.0  # a waiting client pings this often; the engine times out silent clients
PREPARE_SILENCE_S = 60.0  # opening a session fails only after this long without progress from the engine
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
        self.client_name = client_name
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._seq = itertools.count(1)
        self._rcvhwm = rcvhwm
        self.welcome: Welcome | None = None
        self._last_send = 0.0
        self.session: SessionOpened | None = None

    # -- connection ------------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> Welcome:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
        sock.setsockopt(zmq.IDENTITY, _routing_id(self.client_name))
        sock.connect(self.address)
        self._sock = sock
        self.send(Hello(version=PROTOCOL_VERSION, token=self.token, client=self.client_name))
        reply = self._expect((Welcome,), timeout, what="the engine's welcome")
        self.welcome = reply
        return reply

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

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
        self._sock.send_multipart(encode(msg), copy=False)
        self._last_send = time.monotonic()

    def open_session(self, portrait: bytes, settings: SessionSettings | None = None,
                     timeout: float = PREPARE_SILENCE_S,
                     on_progress: Callable[[Event], None] | None = None) -> SessionOpened:
        """Open a session and wait until it is prepared, however long that takes.

        The engine reports its preparation stage every second; `timeout` bounds only the silence
        between two such reports (a gone or hung engine), never the preparation itself, which may
        take minutes for a large model on a CPU. Each report goes to `on_progress`.
        """
        self.session = None
        self.send(OpenSession(portrait=portrait, settings=settings_to_dict(settings or SessionSettings())))
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
            if self.welcome is not None and time.monotonic() - self._last_send > HEARTBEAT_S:
                self.heartbeat()
            left = HEARTBEAT_S if deadline is None else min(HEARTBEAT_S, deadline - time.monotonic())
            if self._sock.poll(max(0, int(left * 1000))):
                return decode(self._sock.recv_multipart(copy=True))
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _expect(self, kinds: tuple[type[Message], ...], timeout: float, what: str,
                on_progress: Callable[[Event], None] | None = None) -> Message:
        """The next message of `kinds`; a progress event from the engine restarts the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineError("timeout", f"no word from the engine for {timeout:.0f} s while waiting "
                                  f"for {what} at {self.address}: is the engine running?")
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
