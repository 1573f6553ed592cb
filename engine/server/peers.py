"""The connections that said hello, each with its queue of replies not yet sent.

Every connection has shown the token in its handshake; only one that then said hello with our
protocol version is remembered, and only for as long as that connection lasts: a new connection
that reuses the routing id must say hello again.
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Peer:
    connection: int  # the ConnectionWatch number of the connection that said hello
    greeted: bool = True  # False once a refused hello revoked it (its queue still drains)
    last_seen: float = field(default_factory=time.monotonic)
    pending: deque = field(default_factory=deque)  # encoded replies the socket could not take yet


class PeerTable:
    """Routing id -> Peer, least recently seen first; bounded by `capacity`."""

    def __init__(self, capacity: int, keep: Callable[[bytes], bool]):
        self.capacity = capacity
        self._keep = keep  # never evicted (the session's owner)
        self._peers: OrderedDict[bytes, Peer] = OrderedDict()

    def find(self, ident: bytes, connection: int | None) -> Peer | None:
        """The peer of this routing id on this very connection, or None."""
        peer = self._peers.get(ident)
        return peer if peer is not None and connection is not None and peer.connection == connection else None

    def get(self, ident: bytes) -> Peer | None:
        return self._peers.get(ident)

    def items(self):
        return self._peers.items()

    def seen(self, ident: bytes) -> None:
        self._peers[ident].last_seen = time.monotonic()
        self._peers.move_to_end(ident)

    def add(self, ident: bytes, connection: int) -> tuple[Peer, list[tuple[bytes, Peer]]]:
        """Remember a connection that said hello; the new peer and those evicted to make room."""
        old = self._peers.pop(ident, None)
        peer = Peer(connection)
        evicted = []
        if old is not None and old.connection == connection:  # hello again on the same connection
            peer.pending = old.pending
        elif old is not None:  # an earlier connection with this id, already gone
            evicted.append((ident, old))
        self._peers[ident] = peer
        for other in list(self._peers):
            if len(self._peers) <= self.capacity:
                break
            if other != ident and not self._keep(other):
                evicted.append((other, self._peers.pop(other)))
        return peer, evicted

    def remove(self, ident: bytes) -> Peer | None:
        return self._peers.pop(ident, None)

    def closed(self, connections: list[int]) -> list[tuple[bytes, Peer]]:
        """Forget the peers of connections that closed; those forgotten."""
        gone = [(ident, peer) for ident, peer in self._peers.items() if peer.connection in connections]
        for ident, _ in gone:
            del self._peers[ident]
        return gone
