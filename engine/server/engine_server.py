"""The engine's socket server: a transport and one live session, driven by a single thread.

The thread polls the socket, lets the transport admit each message (size, hello), acts on
what it admits (heartbeats here, session messages in the session loop), then flushes queued
replies and services the session. Nothing it does waits on the GPU or on a slow client.
"""
from __future__ import annotations

import os
import threading

from avkit.timeline import Timeline
from engine.backends import create_backend
from engine.backends.base import Backend
from engine.protocol.messages import CheckPortrait, Error, Heartbeat, HeartbeatAck, Message, Welcome
from engine.server.config import ServerConfig
from engine.server.portrait_checks import PortraitChecks
from engine.server.session_loop import SESSION_MESSAGES, SessionLoop
from engine.server.transport import Transport

POLL_MS = 5  # the longest the loop sleeps on a quiet socket before servicing the session again
BURST = 64  # messages taken in one go before the session is serviced


class EngineServer:
    def __init__(self, config: ServerConfig, backend: Backend | None = None):
        self.config = config
        self.timeline = Timeline()
        self.backend = backend or create_backend(config.backend, config.backend_options)
        self.stop_event = threading.Event()
        self.transport = Transport(config, welcome=self._welcome, on_departed=self._on_departed,
                                   keep=self._owns_session)
        self.sessions = SessionLoop(self.backend, self.timeline, config, self.transport)
        self.portrait_checks = PortraitChecks(self.backend, self.transport, config.max_pending_checks)

    @property
    def counters(self) -> dict[str, int]:
        return {**self.transport.counters, "sessions": self.sessions.opened}

    # -- lifecycle -------------------------------------------------------------------------------
    def bind(self) -> str:
        return self.transport.bind()

    def serve_forever(self) -> None:
        assert self.transport.bound, "bind() first"
        while not self.stop_event.is_set():
            if self.transport.poll(POLL_MS):
                for ident, msg in self.transport.receive(BURST):
                    self._dispatch(ident, msg)
            self.transport.update_connections()
            self.transport.flush()
            self.portrait_checks.answer()
            self.sessions.service()
        self.shutdown()

    def shutdown(self) -> None:
        self.sessions.end("engine shutting down", wait=None)
        self.portrait_checks.close()
        self.transport.close()
        self.backend.close()

    # -- messages --------------------------------------------------------------------------------
    def _dispatch(self, ident: bytes, msg: Message) -> None:
        if isinstance(msg, Heartbeat):
            self.transport.send(ident, HeartbeatAck(nonce=msg.nonce, session=msg.session))
        elif isinstance(msg, CheckPortrait):
            self.portrait_checks.submit(ident, msg)
        elif isinstance(msg, SESSION_MESSAGES):
            self.sessions.handle(ident, msg)
        else:
            self.transport.send(ident, Error(code="protocol", message=f"{msg.TYPE} is not a client message"))

    def _welcome(self) -> Welcome:
        return Welcome(engine=f"flashtalk-engine/{os.getpid()}", backends=[self.backend.name],
                       default_backend=self.backend.name, sample_rate=self.timeline.sample_rate,
                       fps=self.timeline.fps, gpus=self.backend.gpus)

    def _on_departed(self, ident: bytes) -> None:
        self.sessions.owner_gone(ident)

    def _owns_session(self, ident: bytes) -> bool:
        return ident == self.sessions.owner
