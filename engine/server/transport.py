"""The engine's socket: peers, authentication, and replies that must arrive.

One ROUTER socket, owned by the server's thread. It decodes and checks every message and answers
hellos; the server acts on the rest.

Sends never block. Replies (errors, events, acks) never get lost behind frames: when a peer's send
queue is full they wait in that peer's small queue and go out, in order, before any further frames.
Frames and metrics are droppable: they go only when nothing waits before them.
"""
from __future__ import annotations

import hmac
import itertools
import os
import time
from collections.abc import Callable, Iterator

import zmq

from engine.protocol.address import token_path
from engine.protocol.codec import ProtocolError, decode, encode
from engine.protocol.messages import (
    MAX_INBOUND_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Error,
    Hello,
    Message,
    Welcome,
)
from engine.server.config import ServerConfig
from engine.server.listen_address import EngineServerError, ListenFiles, check_address
from engine.server.peers import Peer, PeerTable

SEND_HWM = 4  # messages the socket queues per peer before a send would have to wait
RECEIVE_HWM = 1000  # whole messages queued per connection before libzmq stops reading it


class Transport:
    def __init__(self, config: ServerConfig, context: zmq.Context, *, welcome: Callable[[], Welcome],
                 keep: Callable[[bytes], bool]):
        self.config = config
        self.counters = {"malformed": 0, "unauthenticated": 0, "replies_dropped": 0}
        self._ctx = context
        self._files = ListenFiles(config.address, context)
        self._welcome = welcome
        self._peers = PeerTable(config.max_clients, keep)
        self._sock: zmq.Socket | None = None
        self._token = ""
        self._seq = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------------
    def bind(self) -> str:
        address = self.config.address
        check_address(address, self.config.allow_remote)
        self._files.prepare()
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_MESSAGE_BYTES)
        old_umask = os.umask(0o177)  # the socket file is born 0600
        try:
            sock.bind(address)
            self._token = self._files.claim()
        except (zmq.ZMQError, EngineServerError) as exc:
            sock.close(0)
            self._files.remove()
            if isinstance(exc, EngineServerError):
                raise
            raise EngineServerError(f"cannot listen on {address}: {exc}") from None
        finally:
            os.umask(old_umask)
        self._sock = sock
        return address

    @property
    def bound(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self._files.remove()

    def poll(self, timeout_ms: int) -> bool:
        return bool(self._sock.poll(timeout_ms, zmq.POLLIN))

    # -- inbound ---------------------------------------------------------------------------------
    def receive(self, limit: int) -> Iterator[tuple[bytes, Message]]:
        """Up to `limit` messages off the socket; yields the authenticated ones to act on, one at a
        time (hellos, refusals and malformed messages are answered here)."""
        for _ in range(limit):
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            admitted = self._admit(parts)
            if admitted is not None:
                yield admitted

    def _admit(self, parts: list[bytes]) -> tuple[bytes, Message] | None:
        if len(parts) < 2:
            self.counters["malformed"] += 1
            return None
        ident, body = parts[0], parts[1:]
        peer = self._peers.seen(ident)
        try:
            msg = decode(body)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            self.send(ident, Error(code="protocol", message=str(exc)))
            return None
        if isinstance(msg, Hello):
            self._on_hello(ident, peer, msg)
            return None
        if not peer.authenticated:
            self.counters["unauthenticated"] += 1
            self.send(ident, Error(code="auth", message="send hello with the engine's token first"))
            return None
        return ident, msg

    def _on_hello(self, ident: bytes, peer: Peer, msg: Hello) -> None:
        if msg.version != PROTOCOL_VERSION:
            self.send(ident, Error(code="version", fatal=True, message=(
                f"protocol version {msg.version} is not supported by this engine (it speaks "
                f"{PROTOCOL_VERSION}): update the studio and the engine to the same release")))
        elif not hmac.compare_digest(msg.token.encode(), self._token.encode()):
            self.counters["unauthenticated"] += 1
            self.send(ident, Error(code="auth", fatal=True, message=(
                f"wrong or missing token: read it from {token_path(self.config.address)}")))
        else:
            peer.authenticated = True
            self.send(ident, self._welcome())

    # -- peers as the session sees them ----------------------------------------------------------
    def last_seen(self, ident: bytes) -> float | None:
        """When a remembered peer last sent anything; None when it is forgotten."""
        peer = self._peers.get(ident)
        return peer.last_seen if peer is not None else None

    def seen(self, ident: bytes) -> None:
        peer = self._peers.get(ident)
        if peer is not None:
            peer.last_seen = time.monotonic()

    # -- outbound --------------------------------------------------------------------------------
    def send(self, ident: bytes, msg: Message) -> None:
        """Send a reply that must arrive: queued behind earlier ones while the peer's queue is full."""
        if self._sock is None:
            return
        msg.seq = next(self._seq)
        peer = self._peers.get(ident)
        if peer is None:  # forgotten peer (or never seen): best effort only
            self._try_send(ident, encode(msg))
            return
        peer.pending.append(encode(msg))
        while len(peer.pending) > self.config.max_pending_replies:
            peer.pending.popleft()
            self.counters["replies_dropped"] += 1
        self._flush_peer(ident, peer)

    def send_droppable(self, ident: bytes, msg: Message) -> bool:
        """Frames and metrics: sent only behind every pending reply; False when it did not go out."""
        peer = self._peers.get(ident)
        if self._sock is None or (peer is not None and peer.pending):
            return False
        msg.seq = next(self._seq)
        return self._try_send(ident, encode(msg)) is True

    def flush(self) -> None:
        for ident, peer in self._peers.items():
            if peer.pending:
                self._flush_peer(ident, peer)

    def _try_send(self, ident: bytes, parts: list) -> bool | None:
        """True: sent. False: the peer's queue is full, try later. None: the peer is gone."""
        try:
            self._sock.send_multipart([ident, *parts], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError:  # EHOSTUNREACH: the peer disconnected
            return None

    def _flush_peer(self, ident: bytes, peer: Peer) -> None:
        while peer.pending:
            sent = self._try_send(ident, peer.pending[0])
            if sent is False:
                return
            peer.pending.popleft()
            if sent is None:  # gone: nobody will read the rest
                self.counters["replies_dropped"] += 1 + len(peer.pending)
                peer.pending.clear()
