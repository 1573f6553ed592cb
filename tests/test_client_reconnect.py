"""A client that reconnects at once is always answered.

Found while testing out-of-memory recovery: the client's ZeroMQ routing id was built from
`id(self)`, so a client reconnecting (or a new one at a recycled address) could reuse the id of a
connection the engine had not yet seen close. The engine's ROUTER then drops the new connection's
messages without a word, and the hello waits for its full timeout (5 of 30 quick reconnects).
"""
from __future__ import annotations

import zmq

from engine.protocol import EngineClient


def test_one_client_reconnecting_thirty_times_in_a_row_always_gets_its_welcome(engine):
    client = EngineClient(engine.address)
    ids = set()
    for _ in range(30):
        client.connect(timeout=5)  # raises EngineError("timeout") when the hello is lost
        ids.add(client._sock.getsockopt(zmq.IDENTITY))
        client.close()
    assert len(ids) == 30  # a fresh routing id for every connection
    assert engine.proc.poll() is None
