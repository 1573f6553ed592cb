"""The engine's socket: connections, the token, bounded intake, and replies that must arrive.

One ROUTER socket, owned by the server's thread, on a ZeroMQ context of its own. The token is
checked in ZeroMQ's handshake (TokenCheck, engine.protocol.handshake): a peer without it never gets
a connection, so nothing it sends is ever read or held; refusals are counted (`unauthenticated`).
A connection that got through must still say `hello` with our protocol version before anything
else; that belongs to the connection (ConnectionWatch): it ends when the connection closes or
sends a refused hello. Every message is sized up before anything of it is kept: at most MAX_PARTS
parts and MAX_INBOUND_MESSAGE_BYTES in all (libzmq's MAXMSGSIZE bounds each part the same way).

Sends never block. Replies (errors, events, acks) never get lost behind frames: when a peer's send
queue is full they wait in that peer's small queue and go out, in order, before any further frames.
Frames and metrics are droppable: they go only when nothing waits before them. Replies to
connections that have not said hello share one small queue (the oldest dropped when it is full),
so they cost a bounded amount and never a record of their own.
"""
from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator

import zmq

from engine.protocol.address import new_token
from engine.protocol.codec import ProtocolError, decode, encode
from engine.protocol.messages import (
    ALL_MESSAGES,
    MAX_INBOUND_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Error,
    Hello,
    Message,
    Welcome,
)
from engine.server.config import ServerConfig
from engine.server.connection_watch import ConnectionWatch
from engine.server.listen_address import EngineServerError, ListenFiles, check_address, listen_error
from engine.server.peers import Peer, PeerTable
from engine.server.token_check import TokenCheck, require_token

MAX_PARTS = 1 + max(len(cls.BLOBS) for cls in ALL_MESSAGES)  # a header and the most blobs of any type
SEND_HWM = 4  # messages the socket queues per peer before a send would have to wait
RECEIVE_HWM = 1000  # whole messages queued per connection before libzmq stops reading it


class Transport:
    def __init__(self, config: ServerConfig, *, welcome: Callable[[], Welcome],
                 on_departed: Callable[[bytes], None], keep: Callable[[bytes], bool]):
        self.config = config
        self._counters = {"malformed": 0, "replies_dropped": 0}
        self._ctx: zmq.Context | None = None  # our own: its ZAP handler serves our socket only
        self._check: TokenCheck | None = None
        self._files = ListenFiles(config.address)
        self._welcome = welcome
        self._on_departed = on_departed  # a routing id that said hello on a connection now gone
        self._peers = PeerTable(config.max_clients, keep)
        self._sock: zmq.Socket | None = None
        self._watch: ConnectionWatch | None = None
        self._seq = itertools.count(1)
        self._strangers: deque[tuple[bytes, list]] = deque()  # replies to connections before hello

    # -- lifecycle -------------------------------------------------------------------------------
    def bind(self) -> str:
        address = self.config.address
        check_address(address, self.config.allow_remote)
        self._files.prepare()
        token = new_token()  # the handshake checks it from the first connection on
        ctx = zmq.Context()
        check = TokenCheck(ctx, token)
        check.start()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_MESSAGE_BYTES)
        require_token(sock)
        watch = ConnectionWatch(sock)
        old_umask = os.umask(0o177)  # the socket file is born 0600
        try:
            sock.bind(address)
            self._files.claim(token)
        except (zmq.ZMQError, EngineServerError) as exc:
            watch.close()
            sock.close(0)
            check.stop()
            ctx.term()
            self._files.remove()
            if isinstance(exc, EngineServerError):
                raise
            raise listen_error(f"listen on {address}", exc) from None
        finally:
            os.umask(old_umask)
        self._ctx, self._check, self._sock, self._watch = ctx, check, sock, watch
        return address

    @property
    def bound(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._watch.close()
            self._sock.close(0)
            self._check.stop()
            self._ctx.term()
            self._sock = self._watch = self._check = self._ctx = None
        self._files.remove()

    @property
    def counters(self) -> dict[str, int]:
        """The engine's own figures, in every metrics message: messages refused (undecodable,
        oversized, before hello, a hello of another version), connections refused in the handshake
        (no or wrong token), replies dropped."""
        refused = self._watch.refused if self._watch is not None else 0
        return {**self._counters, "unauthenticated": refused}

    def poll(self, timeout_ms: int) -> bool:
        return bool(self._sock.poll(timeout_ms, zmq.POLLIN))

    # -- inbound ---------------------------------------------------------------------------------
    def receive(self, limit: int) -> Iterator[tuple[bytes, Message]]:
        """Up to `limit` messages off the socket; yields those of connections that said hello, one
        at a time (hellos, refusals and malformed messages are answered here)."""
        for _ in range(limit):
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.update_connections()  # everything that happened before this message
            admitted = self._admit(frames)
            if admitted is not None:
                yield admitted

    def update_connections(self) -> None:
        if self._watch is not None and (closed := self._watch.update()):
            self._forget(self._peers.closed(closed))

    def _admit(self, frames: list[zmq.Frame]) -> tuple[bytes, Message] | None:
        id_frame, parts = frames[0], frames[1:]
        ident = id_frame.bytes
        connection = self._watch.connection_of(id_frame)
        peer = self._peers.find(ident, connection)
        greeted = peer is not None and peer.greeted
        if not parts:
            self._counters["malformed"] += 1
            return None
        size = sum(len(part) for part in parts)
        if len(parts) > MAX_PARTS or size > MAX_INBOUND_MESSAGE_BYTES:
            self._counters["malformed"] += 1
            self.send(ident, Error(code="protocol", message=(
                f"a message of {len(parts)} parts and {size} bytes exceeds {MAX_PARTS} parts or "
                f"{MAX_INBOUND_MESSAGE_BYTES} bytes")))
            return None
        try:
            msg = decode([part.bytes for part in parts])
        except ProtocolError as exc:
            self._counters["malformed"] += 1
            self.send(ident, Error(code="protocol", message=str(exc)))
            return None
        if peer is not None:
            self._peers.seen(ident)
        if isinstance(msg, Hello):
            self._on_hello(ident, connection, peer, msg)
            return None
        if not greeted:
            self._counters["malformed"] += 1
            self.send(ident, Error(code="protocol", message=f"send hello first, then {msg.TYPE}"))
            return None
        return ident, msg

    def _on_hello(self, ident: bytes, connection: int | None, peer: Peer | None, msg: Hello) -> None:
        """The token was checked in the handshake; hello agrees on the protocol version."""
        if msg.version != PROTOCOL_VERSION:
            self._counters["malformed"] += 1
            self.send(ident, Error(code="version", fatal=True, message=(
                f"protocol version {msg.version} is not supported by this engine (it speaks "
                f"{PROTOCOL_VERSION}): update the studio and the engine to the same release")))
            if peer is not None and peer.greeted:  # a refused hello ends what the connection had
                peer.greeted = False
                self._on_departed(ident)
        elif connection is not None:  # None: the connection closed while its hello was in flight
            _, evicted = self._peers.add(ident, connection)
            self._forget(evicted)
            self.send(ident, self._welcome())

    def _forget(self, gone: list[tuple[bytes, Peer]]) -> None:
        for ident, peer in gone:
            self._counters["replies_dropped"] += len(peer.pending)
            if peer.greeted:
                self._on_departed(ident)

    # -- peers as the session sees them ----------------------------------------------------------
    def last_seen(self, ident: bytes) -> float | None:
        """When a peer that said hello last sent anything; None when it is not (any longer) one."""
        peer = self._peers.get(ident)
        return peer.last_seen if peer is not None and peer.greeted else None

    def seen(self, ident: bytes) -> None:
        if self._peers.get(ident) is not None:
            self._peers.seen(ident)

    # -- outbound --------------------------------------------------------------------------------
    def send(self, ident: bytes, msg: Message) -> None:
        """Send a reply that must arrive: queued behind earlier ones while the peer's queue is full."""
        if self._sock is None:
            return
        msg.seq = next(self._seq)
        peer = self._peers.get(ident)
        if peer is None:  # a connection before its hello: the strangers' one small queue
            self._strangers.append((ident, encode(msg)))
            if len(self._strangers) > self.config.max_pending_replies:
                self._strangers.popleft()
                self._counters["replies_dropped"] += 1
            self._flush_strangers()
            return
        peer.pending.append(encode(msg))
        while len(peer.pending) > self.config.max_pending_replies:
            peer.pending.popleft()
            self._counters["replies_dropped"] += 1
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
        if self._strangers:
            self._flush_strangers()

    def _flush_strangers(self) -> None:
        """Replies to connections without a record, in order for each; full ones wait their turn."""
        waiting, full = deque(), set()
        while self._strangers:
            ident, parts = self._strangers.popleft()
            sent = None if ident in full else self._try_send(ident, parts)
            if ident in full or sent is False:
                full.add(ident)
                waiting.append((ident, parts))
            elif sent is None:
                self._counters["replies_dropped"] += 1
        self._strangers = waiting

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
                self._counters["replies_dropped"] += 1 + len(peer.pending)
                peer.pending.clear()
