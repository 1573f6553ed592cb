"""The clients the engine remembers, each with its queue of replies not yet sent."""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Peer:
    authenticated: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    pending: deque = field(default_factory=deque)  # encoded replies the socket could not take yet


class PeerTable:
    """Routing id -> Peer, least recently seen first; bounded by `capacity`."""

    def __init__(self, capacity: int, keep: Callable[[bytes], bool]):
        self.capacity = capacity
        self._keep = keep  # never forgotten (the session's owner)
        self._peers: OrderedDict[bytes, Peer] = OrderedDict()

    def get(self, ident: bytes) -> Peer | None:
        return self._peers.get(ident)

    def items(self):
        return self._peers.items()

    def seen(self, ident: bytes) -> Peer:
        """The peer of a routing id that just sent something (remembered if new)."""
        peer = self._peers.pop(ident, None) or Peer()
        peer.last_seen = time.monotonic()
        self._peers[ident] = peer
        while len(self._peers) > self.capacity:
            old = next(iter(self._peers))
            if self._keep(old):
                self._peers.move_to_end(old)
                continue
            self._peers.popitem(last=False)
        return peer
