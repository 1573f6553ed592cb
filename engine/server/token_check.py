"""The engine's ZAP handler: a connection gets through ZeroMQ's handshake only with the token.

pyzmq's ThreadAuthenticator answers libzmq's ZAP requests on a thread of its own (the server's
thread may be busy for minutes warming a model up). Its PLAIN check is replaced by one that compares
in constant time and never logs the password; everything else is pyzmq's. libzmq fails closed: a
PLAIN handshake with no handler to ask (not started yet, or stopped) is refused.
"""
from __future__ import annotations

import hmac

import zmq
from zmq.auth.thread import ThreadAuthenticator

from engine.protocol.handshake import PLAIN_USERNAME, ZAP_DOMAIN


class TokenCheck(ThreadAuthenticator):
    """Allows PLAIN handshakes whose username is PLAIN_USERNAME and password the token; no other."""

    def __init__(self, context: zmq.Context, token: str):
        super().__init__(context)
        self._token = token.encode()

    def _authenticate_plain(self, domain: str, username: str, password: str) -> tuple[bool, bytes]:
        good = hmac.compare_digest(password.encode(), self._token)
        if domain == ZAP_DOMAIN and username == PLAIN_USERNAME and good:
            return True, b"OK"
        return False, b"wrong or missing token"


def require_token(sock: zmq.Socket) -> None:
    """Make a server socket ask the ZAP handler about every PLAIN handshake (before it binds)."""
    sock.plain_server = True
    sock.zap_domain = ZAP_DOMAIN.encode()
