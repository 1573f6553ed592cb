"""Which connection each message came in on, so a hello (and a session) belongs to the connection.

A client picks its own routing id, and a later connection may reuse it: the id alone proves
nothing. libzmq's socket monitor reports every accepted and every closed connection by its file
descriptor, and every received message carries the descriptor it came in on (ZMQ_SRCFD). Each
accepted connection gets a number of its own; a descriptor that the OS reuses later gets a new one.

Ordering: libzmq reports a connection closed before it closes the descriptor, and reports one
accepted before it reads anything from it. So once a message has been received, draining the
monitor brings in every event that happened before it: a message is never credited to a
connection that had already closed. The monitor never drops an event (libzmq waits for room).

It also counts the connections refused in the handshake (no or wrong token): libzmq accepts them,
refuses them and closes them without handing over a message.
"""
from __future__ import annotations

import itertools

import zmq
from zmq.utils.monitor import recv_monitor_message

REFUSED_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
WATCHED_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | REFUSED_EVENTS


class ConnectionWatch:
    def __init__(self, sock: zmq.Socket):
        self._sock = sock
        self._monitor = sock.get_monitor_socket(WATCHED_EVENTS)  # before bind: sees every connection
        self._open: dict[int, int] = {}  # descriptor -> connection number
        self._numbers = itertools.count(1)
        self.refused = 0  # connections refused in the handshake so far

    def update(self) -> list[int]:
        """Take in what the monitor reported; the numbers of the connections that closed."""
        closed = []
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return closed
            kind, value = event["event"], event["value"]  # a descriptor, or why a handshake failed
            if kind & REFUSED_EVENTS:
                self.refused += 1
            elif kind == zmq.EVENT_ACCEPTED:
                self._open[value] = next(self._numbers)
            elif (number := self._open.pop(value, None)) is not None:
                closed.append(number)

    def connection_of(self, frame: zmq.Frame) -> int | None:
        """The connection a received message came in on; None if it is not (or no longer) open."""
        return self._open.get(frame.get(zmq.SRCFD))

    def close(self) -> None:
        self._sock.disable_monitor()
        self._monitor.close(0)
