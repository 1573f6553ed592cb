"""The token in ZeroMQ's own handshake: the PLAIN mechanism, checked by the engine's ZAP handler.

A peer without the token never gets a connection, so it can make the engine read (and hold)
nothing: libzmq refuses it before a byte of any message. The token is the password; the username
is fixed. A client learns why it was refused only from its socket's monitor (HandshakeWatch):
libzmq closes the connection without a message.
"""
from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

PLAIN_USERNAME = "flashtalk"  # fixed: the token, the password, is the secret
ZAP_DOMAIN = "flashtalk"

_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
WATCHED_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | _FAILED


def present_token(sock: zmq.Socket, token: str) -> None:
    """A client socket's credentials, before it connects."""
    sock.plain_username = PLAIN_USERNAME.encode()
    sock.plain_password = token.encode()


class HandshakeWatch:
    """A client socket's handshakes with the engine, from the socket's monitor.

    `refusal()` is the one-line reason the engine refused the last one (code, message), or None.
    """

    def __init__(self, sock: zmq.Socket, address: str, token_source: str):
        self.address = address
        self.token_source = token_source  # where the token came from: "token read from PATH"
        self.connected = False  # a connection reached something listening at the address
        self.succeeded = False  # and the engine took our token
        self._sock = sock
        self.monitor = sock.get_monitor_socket(WATCHED_EVENTS)  # before connect: sees the first one

    def refusal(self) -> tuple[str, str] | None:
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return None
            kind = event["event"]
            if kind == zmq.EVENT_CONNECTED:
                self.connected = True
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.succeeded = True
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return "auth", (
                    f"the engine at {self.address} did not accept our token: is it another user's engine, "
                    f"or was it restarted? ({self.token_source}; connect again to read a new one, or "
                    "give the engine's own token file)")
            elif kind & _FAILED:  # a mechanism mismatch, or no way to check the token
                return "version", (
                    f"the engine at {self.address} does not take our token in its handshake: it is an "
                    "older release (or not a flashtalk engine); update the studio and the engine to "
                    "the same release")

    def close(self) -> None:
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:  # the socket is already closed
            pass
        self.monitor.close(0)
